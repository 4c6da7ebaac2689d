#include "accounts/accounts.h"

#include <string.h>
#include <strings.h>

#include "auth/text.h"

enum { CLASS_LOWER = 1, CLASS_UPPER = 2, CLASS_DIGIT = 4, CLASS_OTHER = 8 };

/* bytes of the UTF-8 character starting at `s`, cut to `left` */
static size_t char_bytes(const char *s, size_t left)
{
    unsigned char c = (unsigned char)s[0];
    size_t n = 1;

    if (c >= 0xF0)
        n = 4;
    else if (c >= 0xE0)
        n = 3;
    else if (c >= 0xC0)
        n = 2;
    return n < left ? n : left;
}

unsigned znp_accounts__password_classes(const char *password, size_t password_len)
{
    unsigned seen = 0, count = 0;
    size_t start;

    for (size_t i = 0; i < password_len; i++) {
        unsigned char c = (unsigned char)password[i];

        if (c >= 'a' && c <= 'z')
            seen |= CLASS_LOWER;
        else if (c >= 'A' && c <= 'Z')
            seen |= CLASS_UPPER;
        else if (c >= '0' && c <= '9')
            seen |= CLASS_DIGIT;
        else if ((c & 0xC0) != 0x80 &&
                 znp_text_trim(password + i, char_bytes(password + i, password_len - i), &start) > 0)
            seen |= CLASS_OTHER; /* the first byte of a character that is not white space */
    }
    for (unsigned bit = 1; bit <= CLASS_OTHER; bit <<= 1)
        count += (seen & bit) != 0;
    return count;
}

int znp_accounts_check_password(const znp_config_t *config, const char *password, size_t password_len,
                                const char *email, znp_error_t *err)
{
    const znp_config_password_t *policy = &config->password;
    size_t length = znp_text_length(password, password_len);
    size_t start;

    if (length < policy->min_length)
        return znp_error_set(err, ZNP_E_VALIDATION_FAILED, "password", "must be at least %u characters",
                             policy->min_length);
    if (length > policy->max_length)
        return znp_error_set(err, ZNP_E_VALIDATION_FAILED, "password", "must be at most %u characters",
                             policy->max_length);
    if (znp_text_trim(password, password_len, &start) == 0)
        return znp_error_set(err, ZNP_E_VALIDATION_FAILED, "password", "must not be blank");
    if (znp_accounts__password_classes(password, password_len) < policy->require_classes)
        return znp_error_set(err, ZNP_E_VALIDATION_FAILED, "password",
                             "must mix at least %u of lower-case letters, upper-case letters, digits and other "
                             "characters",
                             policy->require_classes);
    if (email != NULL && strlen(email) == password_len && strncasecmp(password, email, password_len) == 0)
        return znp_error_set(err, ZNP_E_VALIDATION_FAILED, "password", "must not be the email address");
    return 0;
}

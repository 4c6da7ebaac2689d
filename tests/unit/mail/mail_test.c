/* Mail templates, header encoding, message text and address masking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "mail/internal.h"

/* Decode standard base64; returns the byte count written to out (NUL-terminated). */
static size_t base64_decode(char *out, const char *in, size_t len)
{
    static const char chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint32_t bits = 0;
    int count = 0;
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        const char *p = strchr(chars, in[i]);

        if (in[i] == '=' || p == NULL || in[i] == '\0')
            continue;
        bits = bits << 6 | (uint32_t)(p - chars);
        count += 6;
        if (count >= 8) {
            count -= 8;
            out[o++] = (char)((bits >> count) & 0xff);
        }
    }
    out[o] = '\0';
    return o;
}

/* Decode a header of encoded-words joined by CRLF SP back to UTF-8. */
static void decode_header(char *out, const char *header)
{
    const char *p = header;
    size_t len = 0;

    out[0] = '\0';
    while ((p = strstr(p, "=?UTF-8?B?")) != NULL) {
        const char *start = p + 10;
        const char *end = strstr(start, "?=");
        char word[256];

        assert_non_null(end);
        size_t n = base64_decode(word, start, (size_t)(end - start));

        memcpy(out + len, word, n + 1);
        len += n;
        p = end + 2;
    }
}

static void mail__render_english_substitutes(void **state)
{
    json_t *vars = json_pack("{s:s, s:i, s:s}", "code", "123456", "minutes", 15, "site_name", "Acme");
    char *subject = NULL, *body = NULL;

    (void)state;
    assert_int_equal(znp_mail__render(&subject, &body, "verify_email", ZNP_LOCALE_EN, vars), 0);
    assert_string_equal(subject, "Acme: your verification code");
    assert_non_null(strstr(body, "    123456\n"));
    assert_non_null(strstr(body, "expires in 15 minutes"));
    assert_null(strstr(body, "{{"));
    free(subject);
    free(body);
    json_decref(vars);
}

static void mail__render_chinese_substitutes(void **state)
{
    json_t *vars = json_pack("{s:s, s:i, s:s}", "code", "654321", "minutes", 30, "site_name", "极速");
    char *subject = NULL, *body = NULL;

    (void)state;
    assert_int_equal(znp_mail__render(&subject, &body, "password_reset", ZNP_LOCALE_ZH_CN, vars), 0);
    assert_string_equal(subject, "极速：重置密码验证码");
    assert_non_null(strstr(body, "654321"));
    assert_non_null(strstr(body, "30 分钟"));
    free(subject);
    free(body);
    json_decref(vars);
}

static void mail__render_every_template_both_locales(void **state)
{
    static const char *const names[] = {"verify_email", "password_reset", "email_change", "notice"};
    json_t *vars = json_pack("{s:s, s:i, s:s, s:s}", "code", "1", "minutes", 1, "site_name", "s", "message", "m");

    (void)state;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        for (int locale = ZNP_LOCALE_EN; locale <= ZNP_LOCALE_ZH_CN; locale++) {
            char *subject = NULL, *body = NULL;

            assert_int_equal(znp_mail__render(&subject, &body, names[i], (znp_locale_t)locale, vars), 0);
            assert_null(strstr(subject, "{{"));
            assert_null(strstr(body, "{{"));
            free(subject);
            free(body);
        }
        assert_true(znp_mail__template_exists(names[i]));
    }
    json_decref(vars);
}

static void mail__render_rejects_bad_input(void **state)
{
    json_t *missing = json_pack("{s:s}", "site_name", "Acme");
    json_t *vars = json_pack("{s:s, s:i, s:s}", "code", "1", "minutes", 1, "site_name", "s");
    json_t *wrong_type = json_pack("{s:b, s:i, s:s}", "code", 1, "minutes", 1, "site_name", "s");
    char *subject = NULL, *body = NULL;

    (void)state;
    assert_int_equal(znp_mail__render(&subject, &body, "verify_email", ZNP_LOCALE_EN, missing), -3);
    assert_null(subject);
    assert_null(body);
    assert_int_equal(znp_mail__render(&subject, &body, "no_such_template", ZNP_LOCALE_EN, vars), -3);
    assert_int_equal(znp_mail__render(&subject, &body, "verify_email", ZNP_LOCALE_EN, wrong_type), -3);
    assert_false(znp_mail__template_exists("no_such_template"));
    json_decref(missing);
    json_decref(vars);
    json_decref(wrong_type);
}

static void mail__render_values_cannot_inject(void **state)
{
    json_t *vars = json_pack("{s:s, s:i, s:s}", "code", "{{minutes}}", "minutes", 5, "site_name",
                             "Evil\r\nBcc: victim@example.com");
    char *subject = NULL, *body = NULL;

    (void)state;
    assert_int_equal(znp_mail__render(&subject, &body, "verify_email", ZNP_LOCALE_EN, vars), 0);
    assert_null(strchr(subject, '\r'));
    assert_null(strchr(subject, '\n'));
    assert_string_equal(subject, "Evil  Bcc: victim@example.com: your verification code");
    /* a value is inserted as text, never expanded again */
    assert_non_null(strstr(body, "    {{minutes}}\n"));
    free(subject);
    free(body);
    json_decref(vars);
}

static void mail__encode_header_ascii_unchanged(void **state)
{
    char *out = znp_mail__encode_header("Acme: your code");

    (void)state;
    assert_string_equal(out, "Acme: your code");
    free(out);
}

static void mail__encode_header_utf8_round_trips(void **state)
{
    static const char *const values[] = {
        "极速：您的验证码",
        "Café",
        "极速极速极速极速极速极速极速极速极速极速极速极速极速极速极速极速极速极速：重置密码验证码🙂🙂🙂",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char *out = znp_mail__encode_header(values[i]);
        char decoded[1024];
        const char *line = out;

        assert_non_null(out);
        assert_memory_equal(out, "=?UTF-8?B?", 10);
        /* every encoded-word is at most 75 characters */
        while (line != NULL) {
            const char *next = strstr(line, "\r\n ");
            size_t len = next != NULL ? (size_t)(next - line) : strlen(line);

            assert_true(len <= 75);
            line = next != NULL ? next + 3 : NULL;
        }
        decode_header(decoded, out);
        assert_string_equal(decoded, values[i]);
        free(out);
    }
}

static void mail__message_has_headers_and_crlf(void **state)
{
    size_t len = 0;
    char *message = znp_mail__build_message(&len, "noreply@example.com", "user@example.com", "极速：验证码",
                                            "line one\nline two\n", 0, "<abc@example.com>");
    char *body_start, decoded[256];

    (void)state;
    assert_non_null(message);
    assert_int_equal(len, strlen(message));
    assert_non_null(strstr(message, "From: <noreply@example.com>\r\n"));
    assert_non_null(strstr(message, "To: <user@example.com>\r\n"));
    assert_non_null(strstr(message, "Subject: =?UTF-8?B?"));
    assert_non_null(strstr(message, "Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"));
    assert_non_null(strstr(message, "Message-ID: <abc@example.com>\r\n"));
    assert_non_null(strstr(message, "MIME-Version: 1.0\r\n"));
    assert_non_null(strstr(message, "Content-Type: text/plain; charset=UTF-8\r\n"));
    assert_non_null(strstr(message, "Content-Transfer-Encoding: base64\r\n"));
    /* no bare LF anywhere */
    for (size_t i = 0; i < len; i++) {
        if (message[i] == '\n')
            assert_int_equal(message[i - 1], '\r');
    }
    body_start = strstr(message, "\r\n\r\n");
    assert_non_null(body_start);
    base64_decode(decoded, body_start + 4, strlen(body_start + 4));
    assert_string_equal(decoded, "line one\r\nline two\r\n");
    free(message);
}

static void mail__mask_address_table_matches(void **state)
{
    static const struct {
        const char *address;
        const char *expected;
    } cases[] = {
        {"alice@example.com", "a***@example.com"},
        {"b@example.org", "b***@example.org"},
        {"no-at-sign", "***"},
        {"@example.com", "***"},
        {NULL, "***"},
        {"张三@example.cn", "****@example.cn"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[64];

        znp_mail__mask_address(out, sizeof(out), cases[i].address);
        assert_string_equal(out, cases[i].expected);
    }
}

static void mail__address_valid_table_matches(void **state)
{
    static const struct {
        const char *address;
        int expected;
    } cases[] = {
        {"user@example.com", 1}, {"a@b", 1},          {"user@", 0},           {"@example.com", 0},
        {"no-at", 0},            {"a b@example.com", 0}, {"a\r\n@example.com", 0}, {"<a@example.com>", 0},
        {"a,b@example.com", 0},  {NULL, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(znp_mail__address_valid(cases[i].address), cases[i].expected);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mail__render_english_substitutes),
        cmocka_unit_test(mail__render_chinese_substitutes),
        cmocka_unit_test(mail__render_every_template_both_locales),
        cmocka_unit_test(mail__render_rejects_bad_input),
        cmocka_unit_test(mail__render_values_cannot_inject),
        cmocka_unit_test(mail__encode_header_ascii_unchanged),
        cmocka_unit_test(mail__encode_header_utf8_round_trips),
        cmocka_unit_test(mail__message_has_headers_and_crlf),
        cmocka_unit_test(mail__mask_address_table_matches),
        cmocka_unit_test(mail__address_valid_table_matches),
    };

    return cmocka_run_group_tests_name("mail", tests, NULL, NULL);
}

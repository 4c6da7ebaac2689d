#include "auth/password.h"

#include <argon2.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <semaphore.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "auth/auth.h"
#include "auth/text.h"
#include "core/log.h"

#define LOG_TAG  "auth"
#define SALT_LEN 16
#define HASH_LEN 32

/*
 * Each argon2 call uses m_cost KiB of memory and one core for tens of
 * milliseconds, while the worker pool may run twice as many threads as there
 * are cores. The semaphore keeps concurrent hashing to the number of cores
 * (at least 2), so a burst of sign-ins queues instead of exhausting memory.
 */
static sem_t hashing_slots;
static pthread_once_t hashing_once = PTHREAD_ONCE_INIT;

static void hashing_slots_init(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    sem_init(&hashing_slots, 0, cores < 2 ? 2u : (unsigned)cores);
}

static void slot_acquire(void)
{
    pthread_once(&hashing_once, hashing_slots_init);
    while (sem_wait(&hashing_slots) != 0) {
        /* EINTR: try again */
    }
}

static void slot_release(void)
{
    sem_post(&hashing_slots);
}

int znp_password_hash_with_salt(char *out, size_t out_size, const char *password, size_t password_len, const void *salt,
                                size_t salt_len, uint32_t t_cost, uint32_t m_cost_kib, uint32_t parallelism)
{
    int rc;

    if (out_size > 0)
        out[0] = '\0';
    if (password_len > UINT32_MAX || salt_len > UINT32_MAX)
        return ZNP_E_INTERNAL;

    slot_acquire();
    rc = argon2id_hash_encoded(t_cost, m_cost_kib, parallelism, password, password_len, salt, salt_len, HASH_LEN, out,
                               out_size);
    slot_release();
    if (rc != ARGON2_OK) {
        ZNP_ERROR(LOG_TAG, NULL, "argon2id hashing failed: %s t=%u m=%u p=%u", argon2_error_message(rc), t_cost,
                  m_cost_kib, parallelism);
        if (out_size > 0)
            out[0] = '\0';
        return ZNP_E_INTERNAL;
    }
    return 0;
}

int znp_password_hash(char *out, size_t out_size, const char *password, size_t password_len, const znp_config_t *config)
{
    unsigned char salt[SALT_LEN];

    if (RAND_bytes(salt, sizeof(salt)) != 1) {
        ZNP_ERROR(LOG_TAG, NULL, "could not draw a password salt from RAND_bytes");
        return ZNP_E_INTERNAL;
    }
    return znp_password_hash_with_salt(out, out_size, password, password_len, salt, sizeof(salt),
                                       config->auth.argon2_t_cost, config->auth.argon2_m_cost_kib,
                                       config->auth.argon2_parallelism);
}

int znp_password_verify(const char *encoded, const char *password, size_t password_len)
{
    int rc;

    if (encoded == NULL || strncmp(encoded, "$argon2id$", 10) != 0 || password_len > UINT32_MAX)
        return ZNP_E_INTERNAL;

    slot_acquire();
    rc = argon2id_verify(encoded, password, password_len);
    slot_release();
    if (rc == ARGON2_OK)
        return 0;
    if (rc == ARGON2_VERIFY_MISMATCH)
        return ZNP_E_INVALID_CREDENTIALS;
    return ZNP_E_INTERNAL;
}

/* the dummy hash and the costs it was made with, rebuilt when the configured costs change */
static pthread_mutex_t dummy_lock = PTHREAD_MUTEX_INITIALIZER;
static char dummy_hash[ZNP_PASSWORD_HASH_MAX];
static uint32_t dummy_costs[3];

int znp_password_verify_dummy(const znp_config_t *config, const char *password, size_t password_len)
{
    char encoded[ZNP_PASSWORD_HASH_MAX];
    uint32_t costs[3] = {config->auth.argon2_t_cost, config->auth.argon2_m_cost_kib, config->auth.argon2_parallelism};

    pthread_mutex_lock(&dummy_lock);
    if (dummy_hash[0] == '\0' || memcmp(costs, dummy_costs, sizeof(costs)) != 0) {
        /* a random password, so the dummy hash never matches a real one */
        unsigned char secret[24];
        if (RAND_bytes(secret, sizeof(secret)) == 1 &&
            znp_password_hash(dummy_hash, sizeof(dummy_hash), (const char *)secret, sizeof(secret), config) == 0)
            memcpy(dummy_costs, costs, sizeof(costs));
        else
            dummy_hash[0] = '\0';
        OPENSSL_cleanse(secret, sizeof(secret));
    }
    memcpy(encoded, dummy_hash, sizeof(encoded));
    pthread_mutex_unlock(&dummy_lock);

    if (encoded[0] == '\0')
        return ZNP_E_INTERNAL;
    /* the dummy password is random, so any result is reported as a mismatch */
    (void)znp_password_verify(encoded, password, password_len);
    return ZNP_E_INVALID_CREDENTIALS;
}

int znp_password_check_policy(const char *password, size_t password_len, const char *email, znp_error_t *err)
{
    size_t start;

    if (password_len > ZNP_PASSWORD_MAX_BYTES)
        return znp_error_set(err, ZNP_E_VALIDATION_FAILED, "password", "must be at most %d bytes",
                             ZNP_PASSWORD_MAX_BYTES);
    if (znp_text_length(password, password_len) < ZNP_PASSWORD_MIN_CHARS)
        return znp_error_set(err, ZNP_E_VALIDATION_FAILED, "password", "must be at least %d characters",
                             ZNP_PASSWORD_MIN_CHARS);
    if (znp_text_trim(password, password_len, &start) == 0)
        return znp_error_set(err, ZNP_E_VALIDATION_FAILED, "password", "must not be blank");
    if (email != NULL && strlen(email) == password_len && strncasecmp(password, email, password_len) == 0)
        return znp_error_set(err, ZNP_E_VALIDATION_FAILED, "password", "must not be the email address");
    return 0;
}

int znp_auth_normalize_email(char *out, size_t out_size, const char *email, znp_error_t *err)
{
    size_t start, len;
    const char *at;

    len = znp_text_trim(email, strlen(email), &start);
    if (len < 3 || len > ZNP_EMAIL_MAX || len + 1 > out_size)
        return znp_error_set(err, ZNP_E_VALIDATION_FAILED, "email", "must be 3 to %d bytes", ZNP_EMAIL_MAX);
    for (size_t i = 0; i < len; i++) {
        char c = email[start + i];
        out[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    out[len] = '\0';

    at = strchr(out, '@');
    if (at == NULL || at == out || at[1] == '\0' || strchr(at + 1, '@') != NULL)
        return znp_error_set(err, ZNP_E_VALIDATION_FAILED, "email", "must be an email address");
    return 0;
}

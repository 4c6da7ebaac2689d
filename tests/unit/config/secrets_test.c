#include "config_tests.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ACCESS  "summary-access-secret-value-0123456789"
#define REFRESH "summary-refresh-secret-value-012345678"

static void config__summary_masks_secrets(void **state)
{
    znp_config_t *c = NULL;
    char message[600];
    char *text = NULL;
    size_t size = 0;
    FILE *out;

    (void)state;
    test_clear_env();
    assert_int_equal(test_load_text(&c,
                                    "database:\n"
                                    "  dsn: \"host=db.internal user=znp password='s3cr3t pw' dbname=znp "
                                    "sslpassword=keypass\"\n"
                                    "auth:\n"
                                    "  access_secret: " ACCESS "\n"
                                    "  refresh_secret: " REFRESH "\n",
                                    message, sizeof message),
                     0);
    out = open_memstream(&text, &size);
    znp_config_print_summary(c, out);
    fclose(out);

    assert_null(strstr(text, ACCESS));
    assert_null(strstr(text, REFRESH));
    assert_null(strstr(text, "s3cr3t"));
    assert_null(strstr(text, "keypass"));
    assert_non_null(strstr(text, "**** (38 bytes)"));
    assert_non_null(strstr(text, "host=db.internal"));
    assert_non_null(strstr(text, "user=znp"));
    assert_non_null(strstr(text, "password=****"));
    assert_non_null(strstr(text, "server.listen"));
    assert_non_null(strstr(text, "(znp.yaml:2)"));
    assert_non_null(strstr(text, "(default)"));
    free(text);
    znp_config_destroy(c);
}

static void config__summary_masks_uri_password(void **state)
{
    znp_config_t *c = NULL;
    znp_config_error_t err;
    char *text = NULL;
    size_t size = 0;
    FILE *out;

    (void)state;
    test_clear_env();
    setenv("ZNP_DATABASE_DSN", "postgresql://znp:hunter2hunter2@db:5432/znp", 1);
    assert_int_equal(znp_config_load(&c, NULL, &err), 0);
    out = open_memstream(&text, &size);
    znp_config_print_summary(c, out);
    fclose(out);
    assert_null(strstr(text, "hunter2"));
    assert_non_null(strstr(text, "(env ZNP_DATABASE_DSN)"));
    free(text);
    znp_config_destroy(c);
    test_clear_env();
}

static znp_config_t *config_with_data_dir(const char *dir)
{
    znp_config_t *c = NULL;
    znp_config_error_t err;

    if (znp_config_parse(&c, NULL, &err) != 0)
        return NULL;
    if (znp_config_override(c, "database.data_dir", dir, "test", &err) != 0) {
        znp_config_destroy(c);
        return NULL;
    }
    return c;
}

static void config__secrets_generated_once(void **state)
{
    char *dir = test_make_dir();
    char *data_dir = NULL;
    char path[1024];
    znp_config_t *first = NULL, *second = NULL;
    znp_config_error_t err;
    struct stat st;

    (void)state;
    test_clear_env();
    assert_non_null(dir);
    assert_true(asprintf(&data_dir, "%s/data/nested", dir) > 0); /* created on demand */
    first = config_with_data_dir(data_dir);
    assert_non_null(first);

    assert_int_equal(znp_config_ensure_secrets(first, &err), 0);
    assert_non_null(first->auth.access_secret);
    assert_non_null(first->auth.refresh_secret);
    assert_int_equal(strlen(first->auth.access_secret), 64);
    assert_int_equal(strlen(first->auth.refresh_secret), 64);
    assert_string_not_equal(first->auth.access_secret, first->auth.refresh_secret);

    snprintf(path, sizeof path, "%s/secrets.yaml", data_dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* a second start reads the same pair */
    second = config_with_data_dir(data_dir);
    assert_int_equal(znp_config_ensure_secrets(second, &err), 0);
    assert_string_equal(second->auth.access_secret, first->auth.access_secret);
    assert_string_equal(second->auth.refresh_secret, first->auth.refresh_secret);
    znp_config_destroy(second);

    /* a configured secret wins over the file */
    second = config_with_data_dir(data_dir);
    assert_int_equal(znp_config_override(second, "auth.access_secret", ACCESS, "test", &err), 0);
    assert_int_equal(znp_config_ensure_secrets(second, &err), 0);
    assert_string_equal(second->auth.access_secret, ACCESS);
    assert_string_equal(second->auth.refresh_secret, first->auth.refresh_secret);
    znp_config_destroy(second);

    /* a file others can read is refused */
    assert_int_equal(chmod(path, 0644), 0);
    second = config_with_data_dir(data_dir);
    assert_int_equal(znp_config_ensure_secrets(second, &err), ZNP_E_VALIDATION_FAILED);
    assert_non_null(strstr(err.message, "readable by other users"));
    znp_config_destroy(second);

    znp_config_destroy(first);
    free(data_dir);
    test_remove_dir(dir);
}

/* a secrets file written before security.master_key existed gets one added, and keeps its JWT keys */
static void config__secrets_master_key_added(void **state)
{
    char *dir = test_make_dir();
    char *path = NULL, *text = NULL;
    znp_config_t *first = NULL, *second = NULL;
    znp_config_error_t err;
    size_t size = 0;
    FILE *file;

    (void)state;
    test_clear_env();
    assert_non_null(dir);
    path = test_write_file(dir, "secrets.yaml", "access_secret: \"" ACCESS "\"\nrefresh_secret: \"" REFRESH "\"\n");
    assert_non_null(path);
    assert_int_equal(chmod(path, 0600), 0);

    first = config_with_data_dir(dir);
    assert_int_equal(znp_config_ensure_secrets(first, &err), 0);
    assert_string_equal(first->auth.access_secret, ACCESS);
    assert_string_equal(first->auth.refresh_secret, REFRESH);
    assert_non_null(first->security.master_key);
    assert_int_equal(strlen(first->security.master_key), 44);
    assert_int_equal(first->security.master_key[43], '=');

    /* the key is in the file, so the next start reads the same one */
    file = fopen(path, "r");
    assert_non_null(file);
    text = calloc(1, 4096);
    size = fread(text, 1, 4095, file);
    fclose(file);
    assert_true(size > 0);
    assert_non_null(strstr(text, first->security.master_key));
    second = config_with_data_dir(dir);
    assert_int_equal(znp_config_ensure_secrets(second, &err), 0);
    assert_string_equal(second->security.master_key, first->security.master_key);
    assert_string_equal(second->auth.access_secret, ACCESS);

    znp_config_destroy(second);
    znp_config_destroy(first);
    free(text);
    free(path);
    test_remove_dir(dir);
}

static void config__secrets_file_damaged_rejected(void **state)
{
    char *dir = test_make_dir();
    char *path = test_write_file(dir, "secrets.yaml", "access_secret: short\nrefresh_secret: short\n");
    znp_config_t *c = config_with_data_dir(dir);
    znp_config_error_t err;

    (void)state;
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(znp_config_ensure_secrets(c, &err), ZNP_E_VALIDATION_FAILED);
    assert_non_null(strstr(err.message, "damaged"));
    znp_config_destroy(c);
    free(path);
    test_remove_dir(dir);
}

static void config__secrets_kept_when_configured(void **state)
{
    znp_config_t *c = config_with_data_dir("/nonexistent/never-created");
    znp_config_error_t err;

    (void)state;
    test_clear_env();
    assert_int_equal(znp_config_override(c, "auth.access_secret", ACCESS, "test", &err), 0);
    assert_int_equal(znp_config_override(c, "auth.refresh_secret", REFRESH, "test", &err), 0);
    assert_int_equal(znp_config_override(c, "security.master_key", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "test", &err), 0);
    /* nothing to generate, so the data directory is not touched */
    assert_int_equal(znp_config_ensure_secrets(c, &err), 0);
    assert_string_equal(c->auth.access_secret, ACCESS);
    znp_config_destroy(c);
}

int run_secrets_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(config__summary_masks_secrets),        cmocka_unit_test(config__summary_masks_uri_password),
        cmocka_unit_test(config__secrets_generated_once),       cmocka_unit_test(config__secrets_file_damaged_rejected),
        cmocka_unit_test(config__secrets_kept_when_configured),
        cmocka_unit_test(config__secrets_master_key_added),
    };

    return cmocka_run_group_tests_name("config_secrets", tests, NULL, NULL);
}

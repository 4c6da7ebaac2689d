#include "config_tests.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/internal.h"

static void config__defaults_applied(void **state)
{
    znp_config_t *c = NULL;
    znp_config_error_t err;

    (void)state;
    test_clear_env();
    assert_int_equal(znp_config_load(&c, NULL, &err), 0);
    assert_non_null(c);

    assert_string_equal(c->server.listen, "127.0.0.1:8080");
    assert_string_equal(c->server.grpc_listen, "127.0.0.1:8090");
    assert_null(c->server.tls_listen);
    assert_null(c->server.tls_cert);
    assert_null(c->server.tls_key);
    assert_int_equal(c->server.threads, 0);
    assert_int_equal(c->server.workers, 0);
    assert_string_equal(c->server.admin_prefix, "admin");
    assert_int_equal(c->server.max_body_bytes, 1048576);
    assert_int_equal(c->server.max_header_bytes, 16384);
    assert_int_equal(c->server.max_uri_bytes, 8192);
    assert_int_equal(c->server.read_timeout_ms, 10000);
    assert_int_equal(c->server.idle_timeout_ms, 60000);
    assert_int_equal(c->server.shutdown_timeout_ms, 10000);
    assert_int_equal(c->server.queue_limit, 4096);
    assert_true(strstr(c->server.docs_dir, "swagger-ui") != NULL);
    assert_string_equal(c->server.default_locale, "en");

    assert_null(c->database.dsn);
    assert_string_equal(c->database.data_dir, "./data");
    assert_null(c->database.pg_bin_dir);
    assert_string_equal(c->database.run_as, "postgres");
    assert_int_equal(c->database.connect_timeout_s, 5);
    assert_int_equal(c->database.statement_timeout_ms, 15000);
    assert_int_equal(c->database.reconnect_max_ms, 5000);
    assert_int_equal(c->database.auto_migrate, 1);

    assert_null(c->auth.access_secret);
    assert_null(c->auth.refresh_secret);
    assert_int_equal(c->auth.access_ttl_s, 900);
    assert_int_equal(c->auth.refresh_ttl_s, 2592000);
    assert_string_equal(c->auth.issuer, "znp");
    assert_int_equal(c->auth.argon2_t_cost, 2);
    assert_int_equal(c->auth.argon2_m_cost_kib, 19456);
    assert_int_equal(c->auth.argon2_parallelism, 1);
    assert_int_equal(c->auth.lockout_max_attempts, 5);
    assert_int_equal(c->auth.lockout_minutes, 15);
    assert_int_equal(c->auth.ip_failure_limit, 50);
    assert_int_equal(c->auth.ip_failure_window_s, 900);

    assert_string_equal(c->site.name, "znp");
    assert_string_equal(c->site.logo_url, "");
    assert_string_equal(c->site.service_name, "znp");

    assert_int_equal(c->log.level, ZNP_LOG_INFO);
    assert_null(c->log.file);
    assert_int_equal(c->log.access_log, 1);
    assert_null(c->source_path);
    znp_config_destroy(c);
}

static void config__file_values_loaded(void **state)
{
    znp_config_t *c = NULL;
    char message[600];

    (void)state;
    test_clear_env();
    assert_int_equal(test_load_text(&c,
                                    "# a comment\n"
                                    "server:\n"
                                    "  listen: \"0.0.0.0:9000\"\n"
                                    "  threads: 3\n"
                                    "  max_body_bytes: 5000000000\n"
                                    "  admin_prefix: ops-2\n"
                                    "  default_locale: zh-CN\n"
                                    "database:\n"
                                    "  dsn: \"host=/run/pg dbname=znp\"\n"
                                    "  auto_migrate: no\n"
                                    "auth:\n"
                                    "  access_secret: 0123456789abcdef0123456789abcdef\n"
                                    "  lockout_max_attempts: 0\n"
                                    "site:\n"
                                    "  name: \"测试站点\"\n"
                                    "log:\n"
                                    "  level: WARN\n"
                                    "  access_log: off\n"
                                    "  file: ~\n",
                                    message, sizeof message),
                     0);
    assert_string_equal(message, "");
    assert_string_equal(c->server.listen, "0.0.0.0:9000");
    assert_int_equal(c->server.threads, 3);
    assert_true(c->server.max_body_bytes == UINT64_C(5000000000));
    assert_string_equal(c->server.admin_prefix, "ops-2");
    assert_string_equal(c->server.default_locale, "zh-CN");
    assert_string_equal(c->server.grpc_listen, "127.0.0.1:8090"); /* untouched keys keep defaults */
    assert_string_equal(c->database.dsn, "host=/run/pg dbname=znp");
    assert_int_equal(c->database.auto_migrate, 0);
    assert_string_equal(c->auth.access_secret, "0123456789abcdef0123456789abcdef");
    assert_int_equal(c->auth.lockout_max_attempts, 0);
    assert_string_equal(c->site.name, "测试站点");
    assert_int_equal(c->log.level, ZNP_LOG_WARN);
    assert_int_equal(c->log.access_log, 0);
    assert_null(c->log.file);
    assert_string_equal(c->source_path, "znp.yaml");
    znp_config_destroy(c);
}

static void config__empty_values_mean_unset_or_default(void **state)
{
    znp_config_t *c = NULL;
    char message[600];

    (void)state;
    test_clear_env();
    assert_int_equal(test_load_text(&c,
                                    "server:\n"
                                    "  listen:\n"
                                    "  tls_listen: \"\"\n"
                                    "database:\n"
                                    "  dsn: null\n",
                                    message, sizeof message),
                     0);
    assert_string_equal(c->server.listen, "127.0.0.1:8080");
    assert_null(c->server.tls_listen);
    assert_null(c->database.dsn);
    znp_config_destroy(c);

    assert_int_equal(test_load_text(&c, "", message, sizeof message), 0);
    assert_string_equal(c->server.listen, "127.0.0.1:8080");
    znp_config_destroy(c);
}

static const struct env_case {
    const char *name;
    const char *value;
    const char *key;
} env_cases[] = {
    {"ZNP_DATABASE_DSN", "host=/tmp/sock dbname=other", "database.dsn"},
    {"ZNP_AUTH_ACCESS_SECRET", "env-access-secret-0123456789abcdef0123", "auth.access_secret"},
    {"ZNP_AUTH_REFRESH_SECRET", "env-refresh-secret-0123456789abcdef012", "auth.refresh_secret"},
    {"ZNP_LOG_LEVEL", "debug", "log.level"},
    {"ZNP_LOG_FILE", "/var/log/znp/znp.log", "log.file"},
};

static void config__env_overrides_applied(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof env_cases / sizeof env_cases[0]; i++) {
        const struct env_case *tc = &env_cases[i];
        const config__key_t *key = config__key_find(tc->key);
        znp_config_t *c = NULL;
        char message[600];
        char value[256];

        test_clear_env();
        assert_non_null(key);
        setenv(tc->name, tc->value, 1);
        /* the environment wins over the file */
        assert_int_equal(test_load_text(&c,
                                        "database:\n  dsn: \"dbname=fromfile\"\n"
                                        "log:\n  level: error\n  file: /tmp/file.log\n"
                                        "auth:\n"
                                        "  access_secret: file-access-secret-0123456789abcdef012\n"
                                        "  refresh_secret: file-refresh-secret-0123456789abcdef01\n",
                                        message, sizeof message),
                         0);
        config__format_value(value, sizeof value, c, key);
        assert_string_equal(value, tc->value);
        assert_int_equal(c->origins->items[config__key_index(key)].kind, CONFIG_FROM_ENV);
        assert_string_equal(c->origins->items[config__key_index(key)].label, tc->name);
        znp_config_destroy(c);
    }
    test_clear_env();
}

static void config__bad_env_value_rejected(void **state)
{
    znp_config_t *c = NULL;
    znp_config_error_t err;
    char message[600];

    (void)state;
    test_clear_env();
    setenv("ZNP_LOG_LEVEL", "loud", 1);
    assert_int_equal(znp_config_load(&c, NULL, &err), ZNP_E_VALIDATION_FAILED);
    assert_null(c);
    znp_config_error_format(message, sizeof message, &err);
    assert_string_equal(message, "ZNP_LOG_LEVEL: invalid value \"loud\" for log.level: "
                                 "expected one of debug, info, warn, error");

    test_clear_env();
    setenv("ZNP_AUTH_ACCESS_SECRET", "tiny-secret", 1);
    assert_int_equal(znp_config_load(&c, NULL, &err), ZNP_E_VALIDATION_FAILED);
    znp_config_error_format(message, sizeof message, &err);
    assert_string_equal(message,
                        "ZNP_AUTH_ACCESS_SECRET: auth.access_secret is too short: 11 bytes, at least 32 are required");
    assert_null(strstr(message, "tiny-secret")); /* the secret itself is not echoed */
    test_clear_env();
}

static void config__override_sets_key(void **state)
{
    znp_config_t *c = NULL;
    znp_config_error_t err;
    char message[600];

    (void)state;
    test_clear_env();
    assert_int_equal(znp_config_parse(&c, NULL, &err), 0);
    assert_int_equal(znp_config_override(c, "server.listen", "127.0.0.1:0", "--listen", &err), 0);
    assert_string_equal(c->server.listen, "127.0.0.1:0");
    assert_int_equal(znp_config_validate(c, &err), 0);

    assert_int_equal(znp_config_override(c, "server.threads", "many", "--threads", &err), ZNP_E_VALIDATION_FAILED);
    znp_config_error_format(message, sizeof message, &err);
    assert_string_equal(message, "--threads: invalid value \"many\" for server.threads: "
                                 "expected an integer from 0 to 4294967295");

    assert_int_equal(znp_config_override(c, "server.nope", "1", "--nope", &err), ZNP_E_VALIDATION_FAILED);

    assert_int_equal(znp_config_override(c, "server.grpc_listen", "localhost", "--grpc-listen", &err), 0);
    assert_int_equal(znp_config_validate(c, &err), ZNP_E_VALIDATION_FAILED);
    znp_config_error_format(message, sizeof message, &err);
    assert_true(strncmp(message, "--grpc-listen: invalid address \"localhost\"", 41) == 0);
    znp_config_destroy(c);
}

static void config__missing_file_reported(void **state)
{
    znp_config_t *c = NULL;
    znp_config_error_t err;
    char message[600];

    (void)state;
    test_clear_env();
    assert_int_equal(znp_config_load(&c, "/nonexistent/znp.yaml", &err), ZNP_E_VALIDATION_FAILED);
    assert_null(c);
    znp_config_error_format(message, sizeof message, &err);
    assert_string_equal(message,
                        "/nonexistent/znp.yaml: could not open the configuration file: No such file or directory");
}

static char *read_source_file(const char *relative)
{
    const char *root = getenv("ZNP_SOURCE_DIR");
    char path[1024];
    char *data = NULL;
    size_t size = 0;
    FILE *f;
    FILE *mem;
    char buffer[4096];
    size_t n;

    snprintf(path, sizeof path, "%s/%s", root ? root : ".", relative);
    f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    mem = open_memstream(&data, &size);
    while ((n = fread(buffer, 1, sizeof buffer, f)) > 0)
        fwrite(buffer, 1, n, mem);
    fclose(mem);
    fclose(f);
    return data;
}

/* docs/configuration.md, its Chinese twin and znp.example.yaml name every key. */
static void config__docs_list_every_key(void **state)
{
    static const char *const files[] = {"docs/configuration.md", "docs/zh-CN/configuration.md"};
    size_t count;
    const config__key_t *keys = config__keys(&count);

    (void)state;
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        char *text = read_source_file(files[f]);

        if (text == NULL)
            fail_msg("cannot read %s (set ZNP_SOURCE_DIR)", files[f]);
        for (size_t i = 0; i < count; i++) {
            char quoted[CONFIG_PATH_MAX + 2];

            snprintf(quoted, sizeof quoted, "`%s`", keys[i].path);
            if (strstr(text, quoted) == NULL)
                fail_msg("%s does not document %s", files[f], keys[i].path);
        }
        free(text);
    }
}

static void config__example_file_loads_with_every_key(void **state)
{
    const char *root = getenv("ZNP_SOURCE_DIR");
    char path[1024];
    znp_config_t *c = NULL;
    znp_config_error_t err;
    char message[600];
    size_t count;
    const config__key_t *keys = config__keys(&count);
    char *text;

    (void)state;
    test_clear_env();
    snprintf(path, sizeof path, "%s/znp.example.yaml", root ? root : ".");
    if (znp_config_load(&c, path, &err) != 0) {
        znp_config_error_format(message, sizeof message, &err);
        fail_msg("%s", message);
    }
    znp_config_destroy(c);

    text = read_source_file("znp.example.yaml");
    assert_non_null(text);
    for (size_t i = 0; i < count; i++) {
        const char *name = strrchr(keys[i].path, '.') + 1; /* nested keys show as their last component */
        char needle[CONFIG_PATH_MAX + 4];

        snprintf(needle, sizeof needle, " %s:", name);
        if (strstr(text, needle) == NULL)
            fail_msg("znp.example.yaml does not show %s", keys[i].path);
    }
    free(text);
}

int run_load_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(config__defaults_applied),
        cmocka_unit_test(config__file_values_loaded),
        cmocka_unit_test(config__empty_values_mean_unset_or_default),
        cmocka_unit_test(config__env_overrides_applied),
        cmocka_unit_test(config__bad_env_value_rejected),
        cmocka_unit_test(config__override_sets_key),
        cmocka_unit_test(config__missing_file_reported),
        cmocka_unit_test(config__docs_list_every_key),
        cmocka_unit_test(config__example_file_loads_with_every_key),
    };

    return cmocka_run_group_tests_name("config_load", tests, NULL, NULL);
}

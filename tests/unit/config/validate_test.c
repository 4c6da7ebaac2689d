#include "config_tests.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Each case is one file and the exact message it must produce. */
static const struct reject_case {
    const char *name;
    const char *yaml;
    const char *message;
} reject_cases[] = {
    {"unknown key",
     "# znp\n"
     "server:\n"
     "  listen: 127.0.0.1:8080\n"
     "  threads: 2\n"
     "\n"
     "  # typo below\n"
     "  listne: 127.0.0.1:9000\n",
     "znp.yaml:7:3: unknown key \"listne\" in \"server\"; did you mean \"listen\"?"},
    {"unknown key in the wrong section",
     "server:\n"
     "  dsn: x\n",
     "znp.yaml:2:3: unknown key \"dsn\" in \"server\"; it belongs in \"database\""},
    {"unknown section",
     "servers:\n"
     "  listen: 127.0.0.1:8080\n",
     "znp.yaml:1:1: unknown section \"servers\"; did you mean \"server\"?"},
    {"wrong type",
     "server:\n"
     "  listen: 127.0.0.1:8080\n"
     "  workers: 4\n"
     "  threads:   abc\n",
     "znp.yaml:4:14: invalid value \"abc\" for server.threads: expected an integer from 0 to 4294967295"},
    {"fraction for an integer",
     "database:\n"
     "  connect_timeout_s: 1.5\n",
     "znp.yaml:2:22: invalid value \"1.5\" for database.connect_timeout_s: expected an integer from 0 to 4294967295"},
    {"leading zero",
     "server:\n"
     "  threads: 010\n",
     "znp.yaml:2:12: invalid value \"010\" for server.threads: expected an integer from 0 to 4294967295"},
    {"negative integer",
     "server:\n"
     "  queue_limit: -1\n",
     "znp.yaml:2:16: invalid value \"-1\" for server.queue_limit: expected an integer from 0 to 4294967295"},
    {"integer out of range",
     "server:\n"
     "  threads: 4294967296\n",
     "znp.yaml:2:12: invalid value \"4294967296\" for server.threads: expected an integer from 0 to 4294967295"},
    {"null integer",
     "server:\n"
     "  threads:\n",
     "znp.yaml:2:11: missing value for server.threads: expected an integer (remove the key to use the default)"},
    {"bad boolean",
     "log:\n"
     "  access_log: maybe\n",
     "znp.yaml:2:15: invalid value \"maybe\" for log.access_log: expected true or false"},
    {"bad enum",
     "log:\n"
     "  level: loud\n",
     "znp.yaml:2:10: invalid value \"loud\" for log.level: expected one of debug, info, warn, error"},
    {"list for a scalar",
     "server:\n"
     "  listen: [a, b]\n",
     "znp.yaml:2:11: invalid value for server.listen: expected a string, not a list"},
    {"scalar for a section", "server: 8080\n",
     "znp.yaml:1:9: invalid value for section \"server\": expected a mapping of keys "
     "(write `server: {}` for an empty section)"},
    {"duplicate key",
     "server:\n"
     "  threads: 1\n"
     "  threads: 2\n",
     "znp.yaml:3:3: duplicate key \"threads\" in \"server\""},
    {"syntax error",
     "server:\n"
     "  listen: \"127.0.0.1:8080\n",
     "znp.yaml:3:1: invalid YAML: found unexpected end of stream while scanning a quoted scalar"},
    {"top level list", "- server\n",
     "znp.yaml:1:1: expected a mapping of sections (server, database, auth, site, log) at the top level"},
    {"second document",
     "server: {}\n"
     "---\n"
     "server: {}\n",
     "znp.yaml:3:1: a second YAML document is not allowed"},
    {"port out of range",
     "server:\n"
     "  listen: 127.0.0.1:70000\n",
     "znp.yaml:2:11: invalid address \"127.0.0.1:70000\" for server.listen: expected HOST:PORT with a port from 0 "
     "to 65535 (e.g. 127.0.0.1:8080 or [::1]:8080)"},
    {"port missing",
     "server:\n"
     "  grpc_listen: localhost\n",
     "znp.yaml:2:16: invalid address \"localhost\" for server.grpc_listen: expected HOST:PORT with a port from 0 "
     "to 65535 (e.g. 127.0.0.1:8080 or [::1]:8080)"},
    {"port not a number",
     "server:\n"
     "  listen: \"127.0.0.1:http\"\n",
     "znp.yaml:2:11: invalid address \"127.0.0.1:http\" for server.listen: expected HOST:PORT with a port from 0 "
     "to 65535 (e.g. 127.0.0.1:8080 or [::1]:8080)"},
    {"same port twice",
     "server:\n"
     "  listen: 127.0.0.1:9000\n"
     "  grpc_listen: 127.0.0.1:9000\n",
     "znp.yaml:3:16: server.grpc_listen must differ from server.listen (127.0.0.1:9000)"},
    {"short access secret",
     "auth:\n"
     "  access_secret: tooshort\n",
     "znp.yaml:2:18: auth.access_secret is too short: 8 bytes, at least 32 are required"},
    {"short refresh secret",
     "auth:\n"
     "  refresh_secret: \"0123456789012345678901234567890\"\n",
     "znp.yaml:2:19: auth.refresh_secret is too short: 31 bytes, at least 32 are required"},
    {"equal secrets",
     "auth:\n"
     "  access_secret: 0123456789abcdef0123456789abcdef\n"
     "  refresh_secret: 0123456789abcdef0123456789abcdef\n",
     "znp.yaml:3:19: auth.refresh_secret must differ from auth.access_secret"},
    {"tls without cert",
     "server:\n"
     "  tls_listen: 127.0.0.1:8443\n",
     "znp.yaml:2:15: server.tls_listen is set but server.tls_cert is missing"},
    {"tls without key",
     "server:\n"
     "  tls_listen: 127.0.0.1:8443\n"
     "  tls_cert: /etc/ssl/certs/ca-certificates.crt\n",
     "znp.yaml:2:15: server.tls_listen is set but server.tls_key is missing"},
    {"tls cert unreadable",
     "server:\n"
     "  tls_listen: 127.0.0.1:8443\n"
     "  tls_cert: /nonexistent/cert.pem\n"
     "  tls_key: /nonexistent/key.pem\n",
     "znp.yaml:3:13: cannot read server.tls_cert \"/nonexistent/cert.pem\": No such file or directory"},
    {"cert without tls listener",
     "server:\n"
     "  tls_cert: /nonexistent/cert.pem\n",
     "znp.yaml:2:13: server.tls_cert is set but server.tls_listen is not"},
    {"bad locale",
     "server:\n"
     "  default_locale: fr\n",
     "znp.yaml:2:19: invalid value \"fr\" for server.default_locale: expected en or zh-CN"},
    {"zero limit",
     "server:\n"
     "  queue_limit: 0\n",
     "znp.yaml:2:16: server.queue_limit must be greater than 0"},
    {"zero body limit",
     "server:\n"
     "  max_body_bytes: 0\n",
     "znp.yaml:2:19: server.max_body_bytes must be greater than 0"},
    {"zero statement timeout",
     "database:\n"
     "  statement_timeout_ms: 0\n",
     "znp.yaml:2:25: database.statement_timeout_ms must be greater than 0"},
    {"admin prefix upper case",
     "server:\n"
     "  admin_prefix: Admin\n",
     "znp.yaml:2:17: invalid value \"Admin\" for server.admin_prefix: expected 1 to 32 characters from a-z, 0-9 "
     "and -"},
    {"admin prefix too long",
     "server:\n"
     "  admin_prefix: abcdefghijklmnopqrstuvwxyz0123456\n",
     "znp.yaml:2:17: invalid value \"abcdefghijklmnopqrstuvwxyz0123456\" for server.admin_prefix: expected 1 to 32 "
     "characters from a-z, 0-9 and -"},
    {"admin prefix reserved",
     "server:\n"
     "  admin_prefix: user\n",
     "znp.yaml:2:17: server.admin_prefix cannot be \"user\": /api/v1/user is used by other routes"},
    {"admin prefix reserved subscriptions",
     "server:\n"
     "  admin_prefix: subscriptions\n",
     "znp.yaml:2:17: server.admin_prefix cannot be \"subscriptions\": /api/v1/subscriptions is used by other routes"},
    {"bad dsn",
     "database:\n"
     "  dsn: \"host=x password\"\n",
     "znp.yaml:2:8: invalid value for database.dsn: expected a libpq connection string "
     "(\"host=... dbname=... user=...\" or a postgresql:// URI)"},
    {"too many threads",
     "server:\n"
     "  threads: 1000\n",
     "znp.yaml:2:12: server.threads must be at most 256 (0 = number of cores)"},
    {"argon2 memory too small",
     "auth:\n"
     "  argon2_parallelism: 4\n"
     "  argon2_m_cost_kib: 16\n",
     "znp.yaml:3:22: auth.argon2_m_cost_kib must be at least 8 x auth.argon2_parallelism (32)"},
    {"site name too long",
     "site:\n"
     "  name: "
     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaa\"\n",
     "znp.yaml:2:9: site.name must be valid UTF-8 of at most 128 characters"},
};

static void config__bad_files_rejected_with_position(void **state)
{
    (void)state;
    test_clear_env();
    for (size_t i = 0; i < sizeof reject_cases / sizeof reject_cases[0]; i++) {
        const struct reject_case *tc = &reject_cases[i];
        znp_config_t *c = NULL;
        char message[600];
        int rc = test_load_text(&c, tc->yaml, message, sizeof message);

        if (rc == 0)
            fail_msg("case \"%s\" was accepted", tc->name);
        assert_int_equal(rc, ZNP_E_VALIDATION_FAILED);
        assert_null(c);
        if (strcmp(message, tc->message) != 0)
            fail_msg("case \"%s\":\n  got      %s\n  expected %s", tc->name, message, tc->message);
    }
}

static const struct accept_case {
    const char *name;
    const char *yaml;
} accept_cases[] = {
    {"ipv6 and port 0", "server:\n  listen: \"[::1]:0\"\n  grpc_listen: \"[::]:0\"\n"},
    {"host name", "server:\n  listen: localhost:80\n"},
    {"highest port", "server:\n  listen: 0.0.0.0:65535\n"},
    {"secret of exactly 32 bytes", "auth:\n  access_secret: \"01234567890123456789012345678901\"\n"},
    {"lockout disabled", "auth:\n  lockout_max_attempts: 0\n  lockout_minutes: 0\n"},
    {"booleans in several spellings", "log:\n  access_log: Yes\ndatabase:\n  auto_migrate: OFF\n"},
    {"empty sections", "server: {}\ndatabase: {}\nauth: {}\nsite: {}\nlog: {}\n"},
    {"only comments", "# nothing here\n"},
    {"admin prefix with digits and dash", "server:\n  admin_prefix: ops-2024\n"},
    {"uri dsn", "database:\n  dsn: \"postgresql://znp:pw@db.internal:5432/znp?sslmode=require\"\n"},
};

static void config__good_files_accepted(void **state)
{
    (void)state;
    test_clear_env();
    for (size_t i = 0; i < sizeof accept_cases / sizeof accept_cases[0]; i++) {
        znp_config_t *c = NULL;
        char message[600];

        if (test_load_text(&c, accept_cases[i].yaml, message, sizeof message) != 0)
            fail_msg("case \"%s\" was rejected: %s", accept_cases[i].name, message);
        znp_config_destroy(c);
    }
}

static void config__tls_with_readable_files_accepted(void **state)
{
    char *dir = test_make_dir();
    char *cert = test_write_file(dir, "cert.pem", "-----BEGIN CERTIFICATE-----\n");
    char *key = test_write_file(dir, "key.pem", "-----BEGIN PRIVATE KEY-----\n");
    char yaml[1024];
    znp_config_t *c = NULL;
    char message[600];

    (void)state;
    test_clear_env();
    snprintf(yaml, sizeof yaml, "server:\n  tls_listen: 127.0.0.1:8443\n  tls_cert: %s\n  tls_key: %s\n", cert, key);
    if (test_load_text(&c, yaml, message, sizeof message) != 0)
        fail_msg("%s", message);
    assert_string_equal(c->server.tls_cert, cert);
    assert_string_equal(c->server.tls_key, key);
    znp_config_destroy(c);
    free(cert);
    free(key);
    test_remove_dir(dir);
}

static void config__hostport_split(void **state)
{
    static const struct {
        const char *value;
        int ok;
        const char *host;
        unsigned port;
    } cases[] = {
        {"127.0.0.1:8080", 1, "127.0.0.1", 8080},
        {"[::1]:443", 1, "::1", 443},
        {"example.org:0", 1, "example.org", 0},
        {"::1:443", 0, NULL, 0},
        {":8080", 0, NULL, 0},
        {"host:", 0, NULL, 0},
        {"host:123456", 0, NULL, 0},
        {"host:65536", 0, NULL, 0},
        {"ho st:80", 0, NULL, 0},
        {"[::1]443", 0, NULL, 0},
        {"", 0, NULL, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char host[64];
        unsigned port = 99;
        int rc = znp_config_parse_hostport(cases[i].value, host, sizeof host, &port);

        if (!cases[i].ok) {
            if (rc == 0)
                fail_msg("\"%s\" was accepted", cases[i].value);
            continue;
        }
        if (rc != 0)
            fail_msg("\"%s\" was rejected", cases[i].value);
        assert_string_equal(host, cases[i].host);
        assert_int_equal(port, cases[i].port);
    }
}

static void config__error_format_parts(void **state)
{
    znp_config_error_t err = {.message = "bad", .file = "a.yaml", .line = 3, .column = 7};
    char out[600];

    (void)state;
    znp_config_error_format(out, sizeof out, &err);
    assert_string_equal(out, "a.yaml:3:7: bad");
    err.column = 0;
    znp_config_error_format(out, sizeof out, &err);
    assert_string_equal(out, "a.yaml:3: bad");
    err.line = 0;
    znp_config_error_format(out, sizeof out, &err);
    assert_string_equal(out, "a.yaml: bad");
    err.file[0] = '\0';
    znp_config_error_format(out, sizeof out, &err);
    assert_string_equal(out, "bad");
}

int run_validate_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(config__bad_files_rejected_with_position),
        cmocka_unit_test(config__good_files_accepted),
        cmocka_unit_test(config__tls_with_readable_files_accepted),
        cmocka_unit_test(config__hostport_split),
        cmocka_unit_test(config__error_format_parts),
    };

    return cmocka_run_group_tests_name("config_validate", tests, NULL, NULL);
}

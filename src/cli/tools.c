/*
 * znp tools check-config: validate the configuration and print it with
 * secrets masked. znp tools rotate-master-key: re-encrypt the stored user
 * identity credentials under a new credential key.
 */
#include "cli/cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "auth/sql.h"
#include "identity/identity.h"

#define CREDENTIAL_KEY_MIN 32
#define CREDENTIAL_KEY_MAX 1024

static const char tools_usage[] =
    "Usage: znp tools check-config [--config FILE]\n"
    "       znp tools rotate-master-key --new-key-stdin [--config FILE]\n"
    "\n"
    "Subcommands:\n"
    "  check-config       validate the configuration file, the environment overrides and\n"
    "                     the built-in defaults, then print every setting with its source;\n"
    "                     secrets and the database password are masked\n"
    "  rotate-master-key  re-encrypt every stored user identity credential under the new\n"
    "                     key read from the first line of standard input (32 to 1024 bytes),\n"
    "                     in one transaction; derived passwords do not change. Stop every\n"
    "                     znp instance first, then set security.credential_key (or\n"
    "                     ZNP_CREDENTIAL_KEY) to the new key before starting them again\n"
    "\n"
    "Options:\n"
    "  --config FILE      configuration file (default: $ZNP_CONFIG, else built-in defaults)\n"
    "  --new-key-stdin    read the new credential key from standard input (rotate-master-key)\n"
    "  -h, --help         print this help\n"
    "\n" CLI_EXIT_CODES_HELP;

static int check_config(int argc, char **argv, const char *config_path)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    znp_config_t *config = NULL;
    int opt, rc;

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 'h':
            fputs(tools_usage, stdout);
            return CLI_EXIT_OK;
        case ':':
            return cli_usage_error("tools", "option %s needs a value", argv[optind - 1]);
        default:
            return cli_usage_error("tools", "unknown option \"%s\"", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error("tools", "unexpected argument \"%s\"", argv[optind]);

    rc = cli_load_config(&config, cli_config_path(config_path), 1);
    if (rc != CLI_EXIT_OK)
        return rc;
    znp_config_print_summary(config, stdout);
    printf("configuration is valid\n");
    znp_config_destroy(config);
    return CLI_EXIT_OK;
}

/* Read the first line of stdin into `out` without its line ending. Returns 0, or -1 when missing or too long. */
static int read_key_line(char *out, size_t out_size)
{
    size_t len;

    if (fgets(out, (int)out_size, stdin) == NULL)
        return -1;
    len = strlen(out);
    if (len == out_size - 1 && out[len - 1] != '\n') {
        explicit_bzero(out, out_size);
        return -1;
    }
    while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == '\r'))
        out[--len] = '\0';
    return 0;
}

/* Key id of a key text: the first 4 bytes of its SHA-256, in hex. */
static void key_id_of(const char *key, char out[9])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];

    SHA256((const unsigned char *)key, strlen(key), digest);
    snprintf(out, 9, "%02x%02x%02x%02x", digest[0], digest[1], digest[2], digest[3]);
}

/* Re-encrypt every credential in one transaction; the table lock keeps rows from being added meanwhile. */
static int rekey_all(const znp_config_t *config, const char *new_key)
{
    cli_db_t db = {0};
    int64_t count = 0;
    char key_id[9];
    int rc;

    rc = cli_db_open(&db, config);
    if (rc != CLI_EXIT_OK)
        return rc;
    rc = cli_db_require_schema(db.conn, config, NULL);
    if (rc != CLI_EXIT_OK)
        goto cleanup;

    rc = znp_sql_begin(db.conn, NULL);
    if (rc == 0)
        rc = znp_sql_exec(NULL, db.conn, "LOCK TABLE user_credentials IN EXCLUSIVE MODE", 0, NULL, NULL);
    if (rc == 0)
        rc = znp_identity_rekey(db.conn, znp_identity_key(config), config->security.master_key, new_key, 0, &count,
                                NULL);
    if (rc == 0)
        rc = znp_sql_commit(db.conn, NULL);
    if (rc != 0) {
        znp_sql_rollback(db.conn, NULL);
        cli_error("could not re-encrypt the credentials: a stored credential does not open with the current key "
                  "or the database failed (see the log above); nothing was changed");
        rc = rc == ZNP_E_DATABASE_UNAVAILABLE ? CLI_EXIT_DATABASE : CLI_EXIT_RUNTIME;
        goto cleanup;
    }
    key_id_of(new_key, key_id);
    printf("re-encrypted %" PRId64 " credentials under key id %s\n", count, key_id);
    printf("set security.credential_key (or ZNP_CREDENTIAL_KEY) to the new key on every instance before starting it\n");
    rc = CLI_EXIT_OK;

cleanup:
    cli_db_close(&db);
    return rc;
}

static int rotate_master_key(int argc, char **argv, const char *config_path)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"new-key-stdin", no_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char new_key[CREDENTIAL_KEY_MAX + 2];
    znp_config_t *config = NULL;
    znp_config_error_t err;
    int from_stdin = 0, opt, rc;

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 'n':
            from_stdin = 1;
            break;
        case 'h':
            fputs(tools_usage, stdout);
            return CLI_EXIT_OK;
        case ':':
            return cli_usage_error("tools", "option %s needs a value", argv[optind - 1]);
        default:
            return cli_usage_error("tools", "unknown option \"%s\"", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error("tools", "unexpected argument \"%s\"", argv[optind]);
    if (!from_stdin)
        return cli_usage_error("tools", "missing --new-key-stdin; the key is never a command-line argument");

    rc = cli_load_config(&config, cli_config_path(config_path), 1);
    if (rc != CLI_EXIT_OK)
        return rc;
    /* the generated master key in <data_dir>/secrets.yaml opens credentials when no key is configured */
    if (znp_config_ensure_secrets(config, &err) != 0) {
        cli_error("%s", err.message);
        rc = CLI_EXIT_CONFIG;
        goto cleanup;
    }
    if (read_key_line(new_key, sizeof(new_key)) != 0 || strlen(new_key) < CREDENTIAL_KEY_MIN ||
        strlen(new_key) > CREDENTIAL_KEY_MAX) {
        rc = cli_usage_error("tools", "the new key on standard input must be one line of 32 to 1024 bytes "
                                      "(generate one with: openssl rand -base64 32)");
        goto cleanup;
    }
    if (znp_identity_key(config) != NULL && strcmp(new_key, znp_identity_key(config)) == 0) {
        rc = cli_usage_error("tools", "the new key equals the current credential key");
        goto cleanup;
    }
    rc = rekey_all(config, new_key);

cleanup:
    explicit_bzero(new_key, sizeof(new_key));
    znp_config_destroy(config);
    return rc;
}

int cli_tools(int argc, char **argv, const char *config_path)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(tools_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "check-config") == 0)
        return check_config(argc - 1, argv + 1, config_path);
    if (strcmp(argv[1], "rotate-master-key") == 0)
        return rotate_master_key(argc - 1, argv + 1, config_path);
    return cli_usage_error("tools", "unknown subcommand \"%s\"", argv[1]);
}

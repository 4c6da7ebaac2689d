/*
 * znp admin create: create an admin account, or give an existing account the
 * admin role and a new password. The password is never a command-line
 * argument, where other local users could read it from /proc.
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "auth/auth.h"

#define PASSWORD_MAX 1024

static const char admin_usage[] =
    "Usage: znp admin create --email EMAIL [--password-stdin] [--config FILE]\n"
    "\n"
    "Create an admin account (roles admin and user, active, email verified). When an\n"
    "account with EMAIL exists, it gets the admin role and the new password.\n"
    "\n"
    "The password is asked twice without echo when standard input is a terminal.\n"
    "Otherwise pass --password-stdin and write the password as the first line of\n"
    "standard input, for example: printf '%s\\n' \"$PW\" | znp admin create --email a@b.c --password-stdin\n"
    "\n"
    "Pending migrations are applied first when database.auto_migrate is on (the default).\n"
    "\n"
    "Options:\n"
    "  --email EMAIL      email address of the account\n"
    "  --password-stdin   read the password from the first line of standard input\n"
    "  --config FILE      configuration file (default: $ZNP_CONFIG, else built-in defaults)\n"
    "  -h, --help         print this help\n"
    "\n" CLI_EXIT_CODES_HELP;

/* Read one line from `f` into out without its line ending. Returns 0, or -1 on EOF, error or overflow. */
static int read_line(char *out, size_t out_size, FILE *f)
{
    size_t len;

    if (fgets(out, (int)out_size, f) == NULL)
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

/* Prompt on stderr and read a line from the terminal on stdin with echo off. */
static int prompt_hidden(const char *prompt, char *out, size_t out_size)
{
    struct termios saved, quiet;
    int rc;

    if (tcgetattr(STDIN_FILENO, &saved) != 0)
        return -1;
    quiet = saved;
    quiet.c_lflag &= (tcflag_t) ~(ECHO | ECHONL);
    quiet.c_lflag |= ICANON;
    fputs(prompt, stderr);
    fflush(stderr);
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) != 0)
        return -1;
    rc = read_line(out, out_size, stdin);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
    fputc('\n', stderr);
    return rc;
}

static int read_password(char *out, size_t out_size, int from_stdin)
{
    char again[PASSWORD_MAX + 2];

    if (from_stdin) {
        if (read_line(out, out_size, stdin) != 0)
            return cli_usage_error("admin", "could not read a password line from standard input (at most %d bytes)",
                                   PASSWORD_MAX);
        return CLI_EXIT_OK;
    }
    if (!isatty(STDIN_FILENO))
        return cli_usage_error("admin", "standard input is not a terminal; pass --password-stdin to read the "
                                        "password from it");
    if (prompt_hidden("Password: ", out, out_size) != 0)
        return cli_usage_error("admin", "could not read the password");
    if (prompt_hidden("Repeat password: ", again, sizeof again) != 0) {
        explicit_bzero(again, sizeof again);
        return cli_usage_error("admin", "could not read the password");
    }
    if (strcmp(out, again) != 0) {
        explicit_bzero(again, sizeof again);
        return cli_usage_error("admin", "the passwords do not match");
    }
    explicit_bzero(again, sizeof again);
    return CLI_EXIT_OK;
}

/* The email as znp_auth_create_admin stores it: trimmed and lower-case. */
static const char *stored_email(const char *email, char *out, size_t out_size)
{
    size_t start = strspn(email, " \t");
    size_t len = strlen(email + start);

    while (len > 0 && (email[start + len - 1] == ' ' || email[start + len - 1] == '\t'))
        len--;
    if (len >= out_size)
        len = out_size - 1;
    for (size_t i = 0; i < len; i++) {
        char c = email[start + i];

        out[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    out[len] = '\0';
    return out;
}

static int create_admin(const znp_config_t *config, const char *email, const char *password)
{
    char display[320];
    cli_db_t db = {0};
    znp_error_t err = {0};
    int64_t user_id = 0;
    int rc;

    rc = cli_db_open(&db, config);
    if (rc != CLI_EXIT_OK)
        return rc;
    rc = cli_db_require_schema(db.conn, config, NULL);
    if (rc != CLI_EXIT_OK)
        goto cleanup;

    rc = znp_auth_create_admin(db.conn, config, email, password, &user_id, &err);
    if (rc == ZNP_E_VALIDATION_FAILED) {
        rc = cli_usage_error("admin", "invalid %s: %s", err.path[0] ? err.path : "input",
                             err.detail[0] ? err.detail : znp_error_message(ZNP_E_VALIDATION_FAILED, ZNP_LOCALE_EN));
        goto cleanup;
    }
    if (rc == ZNP_E_DATABASE_UNAVAILABLE) {
        cli_error("could not create the admin account: %s", znp_error_message(rc, ZNP_LOCALE_EN));
        rc = CLI_EXIT_DATABASE;
        goto cleanup;
    }
    if (rc != 0) {
        cli_error("could not create the admin account: %s%s%s", znp_error_message(rc, ZNP_LOCALE_EN),
                  err.detail[0] ? ": " : "", err.detail);
        rc = CLI_EXIT_RUNTIME;
        goto cleanup;
    }
    printf("admin account %s is ready (user id %" PRId64 ")\n", stored_email(email, display, sizeof display), user_id);
    rc = CLI_EXIT_OK;

cleanup:
    cli_db_close(&db);
    return rc;
}

static int admin_create(int argc, char **argv, const char *config_path)
{
    static const struct option options[] = {
        {"email", required_argument, NULL, 'e'},
        {"password-stdin", no_argument, NULL, 'p'},
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    znp_config_t *config = NULL;
    const char *email = NULL;
    char password[PASSWORD_MAX + 2];
    int from_stdin = 0;
    int opt, rc;

    /* getopt_long would take --password as an abbreviation of --password-stdin */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--password") == 0 || strncmp(argv[i], "--password=", 11) == 0)
            return cli_usage_error("admin", "the password is never a command-line argument; use the prompt or "
                                            "--password-stdin");
    }

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        switch (opt) {
        case 'e':
            email = optarg;
            break;
        case 'p':
            from_stdin = 1;
            break;
        case 'c':
            config_path = optarg;
            break;
        case 'h':
            fputs(admin_usage, stdout);
            return CLI_EXIT_OK;
        case ':':
            return cli_usage_error("admin", "option %s needs a value", argv[optind - 1]);
        default:
            return cli_usage_error("admin", "unknown option \"%s\"", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error("admin", "unexpected argument \"%s\"", argv[optind]);
    if (email == NULL || email[0] == '\0')
        return cli_usage_error("admin", "missing --email");

    rc = cli_load_config(&config, cli_config_path(config_path), 1);
    if (rc != CLI_EXIT_OK)
        return rc;
    rc = read_password(password, sizeof password, from_stdin);
    if (rc == CLI_EXIT_OK && password[0] == '\0')
        rc = cli_usage_error("admin", "the password is empty");
    if (rc == CLI_EXIT_OK)
        rc = create_admin(config, email, password);

    explicit_bzero(password, sizeof password);
    znp_config_destroy(config);
    return rc;
}

int cli_admin(int argc, char **argv, const char *config_path)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(admin_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "create") == 0)
        return admin_create(argc - 1, argv + 1, config_path);
    return cli_usage_error("admin", "unknown subcommand \"%s\"", argv[1]);
}

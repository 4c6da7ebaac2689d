/*
 * The znp command line: one file per command, each returning the process
 * exit code. Output for people goes to stdout, problems to stderr, in short
 * English sentences.
 */
#ifndef ZNP_CLI_H
#define ZNP_CLI_H

#include <libpq-fe.h>

#include "config/config.h"
#include "db/db.h"

/* Exit codes; keep docs/cli.md and docs/zh-CN/cli.md in step. */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_RUNTIME = 1,  /* runtime failure: a port is taken, a thread cannot start, ... */
    CLI_EXIT_USAGE = 2,    /* bad command line or bad input value */
    CLI_EXIT_CONFIG = 3,   /* the configuration file or environment is invalid */
    CLI_EXIT_DATABASE = 4, /* the database cannot be reached, or migrations fail or do not match */
};

#define CLI_EXIT_CODES_HELP                                                                                            \
    "Exit codes: 0 success, 1 runtime failure, 2 usage error, 3 configuration error,\n"                                \
    "            4 database error.\n"

/*
 * Each command gets argv from its own name on (argv[0] = "serve") and the
 * --config value given before the command, if any.
 */
int cli_serve(int argc, char **argv, const char *config_path);
int cli_migrate(int argc, char **argv, const char *config_path);
int cli_tools(int argc, char **argv, const char *config_path);
int cli_admin(int argc, char **argv, const char *config_path);
int cli_version(int argc, char **argv, const char *config_path);

/* Print "znp: <message>" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print a usage error with a pointer to `znp <command> --help`; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *command, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* --config, else $ZNP_CONFIG, else NULL (built-in defaults). Borrowed. */
const char *cli_config_path(const char *option);

/*
 * Load the configuration; with `validate` also check it. Prints the problem
 * as "file:line:column: message" and returns CLI_EXIT_CONFIG on failure.
 */
int cli_load_config(znp_config_t **out, const char *path, int validate);

/* A database session of a CLI command: the embedded cluster when there is no DSN. */
typedef struct cli_db {
    znp_embedded_pg_t *embedded;
    char *dsn;
    PGconn *conn;
} cli_db_t;

/* Resolve and connect; prints the problem and returns CLI_EXIT_DATABASE on failure. */
int cli_db_open(cli_db_t *db, const znp_config_t *config);
/* Close the connection and stop the embedded cluster if this process started it. */
void cli_db_close(cli_db_t *db);

/*
 * Apply pending migrations when database.auto_migrate is on, else require a
 * current schema. Returns an exit code.
 */
int cli_db_require_schema(PGconn *conn, const znp_config_t *config, FILE *report);

/* --demo: create admin@example.com with a random password once, and print it. Returns an exit code. */
int cli_demo_seed(PGconn *conn, const znp_config_t *config);

#endif

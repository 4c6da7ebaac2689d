/* Helpers shared by the commands: messages, configuration and database sessions. */
#include "cli/cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

void cli_error(const char *fmt, ...)
{
    va_list args;

    fputs("znp: ", stderr);
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fputc('\n', stderr);
}

int cli_usage_error(const char *command, const char *fmt, ...)
{
    va_list args;

    fprintf(stderr, "znp %s: ", command);
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fprintf(stderr, "\nRun `znp %s --help` for usage.\n", command);
    return CLI_EXIT_USAGE;
}

const char *cli_config_path(const char *option)
{
    const char *env;

    if (option != NULL)
        return option;
    env = getenv("ZNP_CONFIG");
    return env != NULL && env[0] != '\0' ? env : NULL;
}

int cli_load_config(znp_config_t **out, const char *path, int validate)
{
    znp_config_error_t err;
    char message[1024];
    int rc;

    rc = validate ? znp_config_load(out, path, &err) : znp_config_parse(out, path, &err);
    if (rc != 0) {
        znp_config_error_format(message, sizeof message, &err);
        cli_error("%s", message);
        return CLI_EXIT_CONFIG;
    }
    /* short-lived commands report on stdout; their log shows warnings and errors unless log.level is debug */
    znp_log_min_level = (*out)->log.level == ZNP_LOG_DEBUG ? ZNP_LOG_DEBUG : ZNP_LOG_WARN;
    return CLI_EXIT_OK;
}

int cli_db_open(cli_db_t *db, const znp_config_t *config)
{
    memset(db, 0, sizeof *db);
    if (znp_db_resolve(&db->dsn, &db->embedded, config) != 0) {
        cli_error("could not start or find the database (see the messages above)");
        return CLI_EXIT_DATABASE;
    }
    if (znp_db_connect(&db->conn, db->dsn, config) != 0) {
        cli_error("could not connect to the database (see the messages above)");
        cli_db_close(db);
        return CLI_EXIT_DATABASE;
    }
    return CLI_EXIT_OK;
}

void cli_db_close(cli_db_t *db)
{
    PQfinish(db->conn);
    znp_db_embedded_stop(db->embedded);
    free(db->dsn);
    memset(db, 0, sizeof *db);
}

int cli_db_require_schema(PGconn *conn, const znp_config_t *config, FILE *report)
{
    int current;

    if (config->database.auto_migrate) {
        if (znp_migrate_up(conn, -1, report) != 0) {
            cli_error("could not apply the database migrations");
            return CLI_EXIT_DATABASE;
        }
        return CLI_EXIT_OK;
    }
    current = znp_migrate_is_current(conn);
    if (current < 0) {
        cli_error("could not read the migration state of the database");
        return CLI_EXIT_DATABASE;
    }
    if (current == 0) {
        cli_error("the database schema is not current and database.auto_migrate is off; run `znp migrate up`");
        return CLI_EXIT_DATABASE;
    }
    return CLI_EXIT_OK;
}

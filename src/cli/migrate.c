/* znp migrate up|down|status: the embedded migrations against the configured database. */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char migrate_usage[] =
    "Usage: znp migrate up [--to VERSION] [--config FILE]\n"
    "       znp migrate down --to VERSION [--config FILE]\n"
    "       znp migrate status [--config FILE]\n"
    "\n"
    "Subcommands:\n"
    "  up       apply pending migrations in order, up to VERSION (default: the latest)\n"
    "  down     revert applied migrations, newest first, until VERSION is the newest\n"
    "           applied one; --to 0 reverts every migration\n"
    "  status   list every migration as applied, pending or checksum mismatch\n"
    "\n"
    "Up and down refuse to run when an applied migration differs from the one built\n"
    "into this binary (checksum mismatch) or is unknown to it. Each migration runs in\n"
    "its own transaction, and a PostgreSQL advisory lock keeps concurrent runs apart.\n"
    "With no database.dsn, the embedded cluster under database.data_dir is used.\n"
    "\n"
    "Options:\n"
    "  --to VERSION   target version, a whole number\n"
    "  --config FILE  configuration file (default: $ZNP_CONFIG, else built-in defaults)\n"
    "  -h, --help     print this help\n"
    "\n" CLI_EXIT_CODES_HELP;

static int parse_version(const char *text, int *out)
{
    char *end = NULL;
    long value;

    if (text[0] < '0' || text[0] > '9')
        return -1;
    value = strtol(text, &end, 10);
    if (*end != '\0' || value > 9999)
        return -1;
    *out = (int)value;
    return 0;
}

int cli_migrate(int argc, char **argv, const char *config_path)
{
    static const struct option options[] = {
        {"to", required_argument, NULL, 't'},
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    znp_config_t *config = NULL;
    cli_db_t db = {0};
    const char *action = NULL;
    int target = -1, have_target = 0;
    int opt, rc;

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        switch (opt) {
        case 't':
            if (parse_version(optarg, &target) != 0)
                return cli_usage_error("migrate", "invalid value \"%s\" for --to: expected a version number", optarg);
            have_target = 1;
            break;
        case 'c':
            config_path = optarg;
            break;
        case 'h':
            fputs(migrate_usage, stdout);
            return CLI_EXIT_OK;
        case ':':
            return cli_usage_error("migrate", "option %s needs a value", argv[optind - 1]);
        default:
            return cli_usage_error("migrate", "unknown option \"%s\"", argv[optind - 1]);
        }
    }

    /* check the subcommand before touching the database */
    if (optind >= argc)
        return cli_usage_error("migrate", "missing subcommand: up, down or status");
    action = argv[optind];
    if (optind + 1 < argc)
        return cli_usage_error("migrate", "unexpected argument \"%s\"", argv[optind + 1]);
    if (strcmp(action, "up") != 0 && strcmp(action, "down") != 0 && strcmp(action, "status") != 0)
        return cli_usage_error("migrate", "unknown subcommand \"%s\": expected up, down or status", action);
    if (strcmp(action, "down") == 0 && !have_target)
        return cli_usage_error("migrate", "down needs --to VERSION (--to 0 reverts every migration)");
    if (strcmp(action, "status") == 0 && have_target)
        return cli_usage_error("migrate", "status does not take --to");

    rc = cli_load_config(&config, cli_config_path(config_path), 1);
    if (rc != CLI_EXIT_OK)
        return rc;
    rc = cli_db_open(&db, config);
    if (rc != CLI_EXIT_OK)
        goto cleanup;

    if (strcmp(action, "up") == 0) {
        if (znp_migrate_up(db.conn, target, stdout) != 0)
            rc = CLI_EXIT_DATABASE;
    } else if (strcmp(action, "down") == 0) {
        if (znp_migrate_down(db.conn, target, stdout) != 0)
            rc = CLI_EXIT_DATABASE;
    } else if (znp_migrate_status(db.conn, stdout) != 0) {
        rc = CLI_EXIT_DATABASE;
    }
    fflush(stdout);

cleanup:
    cli_db_close(&db);
    znp_config_destroy(config);
    return rc;
}

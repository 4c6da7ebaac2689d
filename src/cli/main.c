/* znp: the entry point. Picks the command; each command parses its own options. */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

#include "znp_version.h"

static const char usage_text[] =
    "Usage: znp [--config FILE] COMMAND [OPTIONS]\n"
    "\n"
    "Commands:\n"
    "  serve                   run the HTTP, h2c/TLS and gRPC servers\n"
    "  migrate up|down|status  apply, revert or list the database migrations\n"
    "  admin create            create an admin account or reset its password\n"
    "  tools check-config      validate the configuration and print it with secrets masked\n"
    "  tools rotate-master-key re-encrypt the user identity credentials under a new key\n"
    "  version                 print the version\n"
    "  help [COMMAND]          print this help or the help of COMMAND\n"
    "\n"
    "Options:\n"
    "  --config FILE   configuration file (default: $ZNP_CONFIG, else built-in defaults)\n"
    "  -h, --help      print help\n"
    "  -V, --version   print the version\n"
    "\n"
    "Run `znp COMMAND --help` for the options of a command.\n"
    "\n" CLI_EXIT_CODES_HELP;

typedef int (*command_fn)(int argc, char **argv, const char *config_path);

static const struct command {
    const char *name;
    command_fn run;
} commands[] = {
    {"serve", cli_serve}, {"migrate", cli_migrate}, {"admin", cli_admin},
    {"tools", cli_tools}, {"version", cli_version},
};

static command_fn find_command(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(commands[i].name, name) == 0)
            return commands[i].run;
    }
    return NULL;
}

int cli_version(int argc, char **argv, const char *config_path)
{
    (void)config_path;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("Usage: znp version\n\nPrint the version of znp.\n\n" CLI_EXIT_CODES_HELP);
            return CLI_EXIT_OK;
        }
        /* accepted like everywhere else; the version does not depend on it */
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            i++;
            continue;
        }
        if (strncmp(argv[i], "--config=", 9) == 0)
            continue;
        return cli_usage_error("version", "unexpected argument \"%s\"", argv[i]);
    }
    printf("znp %s\n", ZNP_VERSION);
    return CLI_EXIT_OK;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    command_fn run;
    int i = 1;

    /* options before the command */
    while (i < argc && argv[i][0] == '-') {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage_text, stdout);
            return CLI_EXIT_OK;
        }
        if (strcmp(argv[i], "-V") == 0 || strcmp(argv[i], "--version") == 0) {
            printf("znp %s\n", ZNP_VERSION);
            return CLI_EXIT_OK;
        }
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config_path = argv[i + 1];
            i += 2;
            continue;
        }
        if (strncmp(argv[i], "--config=", 9) == 0) {
            config_path = argv[i] + 9;
            i++;
            continue;
        }
        fprintf(stderr, "znp: unknown option \"%s\"\nRun `znp --help` for usage.\n", argv[i]);
        return CLI_EXIT_USAGE;
    }
    if (i == argc) {
        fputs(usage_text, stderr);
        return CLI_EXIT_USAGE;
    }

    if (strcmp(argv[i], "help") == 0) {
        char help_flag[] = "--help";
        char *help_argv[] = {i + 1 < argc ? argv[i + 1] : NULL, help_flag, NULL};

        if (i + 1 >= argc) {
            fputs(usage_text, stdout);
            return CLI_EXIT_OK;
        }
        run = find_command(argv[i + 1]);
        if (run == NULL) {
            fprintf(stderr, "znp: unknown command \"%s\"\nRun `znp --help` for usage.\n", argv[i + 1]);
            return CLI_EXIT_USAGE;
        }
        return run(2, help_argv, config_path);
    }

    run = find_command(argv[i]);
    if (run == NULL) {
        fprintf(stderr, "znp: unknown command \"%s\"\nRun `znp --help` for usage.\n", argv[i]);
        return CLI_EXIT_USAGE;
    }
    return run(argc - i, argv + i, config_path);
}

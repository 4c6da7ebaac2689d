/* znp tools check-config: validate the configuration and print it with secrets masked. */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char tools_usage[] = "Usage: znp tools check-config [--config FILE]\n"
                                  "\n"
                                  "Subcommands:\n"
                                  "  check-config   validate the configuration file, the environment overrides and\n"
                                  "                 the built-in defaults, then print every setting with its source;\n"
                                  "                 secrets and the database password are masked\n"
                                  "\n"
                                  "Options:\n"
                                  "  --config FILE  configuration file (default: $ZNP_CONFIG, else built-in defaults)\n"
                                  "  -h, --help     print this help\n"
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

int cli_tools(int argc, char **argv, const char *config_path)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(tools_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "check-config") == 0)
        return check_config(argc - 1, argv + 1, config_path);
    return cli_usage_error("tools", "unknown subcommand \"%s\"", argv[1]);
}

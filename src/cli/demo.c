/*
 * `znp serve --demo`: seed demo content once per database. For now that is
 * an admin account admin@example.com with a random password, created only
 * when no admin exists, and shown once on stdout.
 * The znp_seeds marker table comes from migration 0006.
 */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "auth/auth.h"
#include "core/log.h"

#define LOG_TAG        "demo"
#define DEMO_EMAIL     "admin@example.com"
#define DEMO_SEED_NAME "demo"
/* pg_advisory_lock key held while seeding: the ASCII bytes of "znp_seed" */
#define DEMO_LOCK_KEY "8822112275325609316"

static int exec_ok(PGconn *db, const char *sql, int param_count, const char *const *params, PGresult **out)
{
    PGresult *res = PQexecParams(db, sql, param_count, NULL, params, NULL, NULL, 0);
    ExecStatusType status = PQresultStatus(res);

    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        ZNP_ERROR(LOG_TAG, NULL, "demo seed query failed: %s", PQerrorMessage(db));
        PQclear(res);
        return -1;
    }
    if (out != NULL)
        *out = res;
    else
        PQclear(res);
    return 0;
}

/* 1 when the query returns a row, 0 when not, -1 on error. */
static int has_row(PGconn *db, const char *sql, int param_count, const char *const *params)
{
    PGresult *res = NULL;
    int found;

    if (exec_ok(db, sql, param_count, params, &res) != 0)
        return -1;
    found = PQntuples(res) > 0;
    PQclear(res);
    return found;
}

static int random_password(char *out, size_t out_size)
{
    static const char alphabet[] = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    unsigned char bytes[20];
    size_t got = 0;

    if (out_size < sizeof bytes + 1)
        return -1;
    while (got < sizeof bytes) {
        ssize_t n = getrandom(bytes + got, sizeof bytes - got, 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    /* 256 is not a multiple of 56, so 32 symbols come up 5/256 and the rest 4/256 of the time: still over 110 bits */
    for (size_t i = 0; i < sizeof bytes; i++)
        out[i] = alphabet[bytes[i] % (sizeof alphabet - 1)];
    out[sizeof bytes] = '\0';
    explicit_bzero(bytes, sizeof bytes);
    return 0;
}

static int create_demo_admin(PGconn *db, const znp_config_t *config)
{
    char password[32];
    znp_error_t err = {0};
    int rc;

    if (random_password(password, sizeof password) != 0) {
        cli_error("could not generate a random password: %s", strerror(errno));
        return CLI_EXIT_RUNTIME;
    }
    rc = znp_auth_create_admin(db, config, DEMO_EMAIL, password, NULL, &err);
    if (rc != 0) {
        cli_error("could not create the demo admin account: %s%s%s", znp_error_message(rc, ZNP_LOCALE_EN),
                  err.detail[0] ? ": " : "", err.detail);
        explicit_bzero(password, sizeof password);
        return rc == ZNP_E_DATABASE_UNAVAILABLE ? CLI_EXIT_DATABASE : CLI_EXIT_RUNTIME;
    }
    printf("\n"
           "------------------------------------------------------------\n"
           " znp demo admin account (shown once, note it now)\n"
           "   email:    %s\n"
           "   password: %s\n"
           "------------------------------------------------------------\n"
           "\n",
           DEMO_EMAIL, password);
    fflush(stdout);
    explicit_bzero(password, sizeof password);
    return CLI_EXIT_OK;
}

int cli_demo_seed(PGconn *db, const znp_config_t *config)
{
    const char *seed_params[1] = {DEMO_SEED_NAME};
    int locked = 0, found;
    int rc = CLI_EXIT_DATABASE;

    /* instances started together with --demo seed one at a time */
    if (exec_ok(db, "SELECT pg_advisory_lock(" DEMO_LOCK_KEY ")", 0, NULL, NULL) != 0)
        goto cleanup;
    locked = 1;
    found = has_row(db, "SELECT 1 FROM znp_seeds WHERE name = $1", 1, seed_params);
    if (found < 0)
        goto cleanup;
    if (found) {
        ZNP_INFO(LOG_TAG, NULL, "demo content was seeded before; skipping");
        rc = CLI_EXIT_OK;
        goto cleanup;
    }

    /* a crash between the two steps leaves an admin but no marker, and the next start only marks */
    found = has_row(db, "SELECT 1 FROM users WHERE 'admin' = ANY (roles) LIMIT 1", 0, NULL);
    if (found < 0)
        goto cleanup;
    if (!found) {
        rc = create_demo_admin(db, config);
        if (rc != CLI_EXIT_OK)
            goto cleanup;
    } else {
        ZNP_INFO(LOG_TAG, NULL, "an admin account exists; the demo admin is not created");
    }
    if (exec_ok(db, "INSERT INTO znp_seeds (name) VALUES ($1) ON CONFLICT DO NOTHING", 1, seed_params, NULL) != 0) {
        rc = CLI_EXIT_DATABASE;
        goto cleanup;
    }
    ZNP_INFO(LOG_TAG, NULL, "seeded demo content");
    rc = CLI_EXIT_OK;

cleanup:
    if (locked)
        exec_ok(db, "SELECT pg_advisory_unlock(" DEMO_LOCK_KEY ")", 0, NULL, NULL);
    return rc;
}

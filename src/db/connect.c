/*
 * Blocking connections for start-up work and the CLI, and the choice between
 * the configured DSN and the embedded cluster.
 */
#include "db/db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define LOG_TAG "db"

/* NOTICEs such as "relation already exists, skipping" go to the debug log instead of stderr. */
static void log_notice(void *data, const char *message)
{
    size_t len = strlen(message);

    (void)data;
    while (len > 0 && message[len - 1] == '\n')
        len--;
    ZNP_DEBUG(LOG_TAG, NULL, "server notice: %.*s", (int)len, message);
}

/* libpq's multi-line message as one log line: line breaks and tabs become spaces, trailing ones go. */
static const char *one_line(char *out, size_t out_size, const char *message)
{
    size_t len = 0;

    for (const char *p = message; *p != '\0' && len + 1 < out_size; p++) {
        char c = *p == '\n' || *p == '\t' ? ' ' : *p;

        if (c == ' ' && (len == 0 || out[len - 1] == ' '))
            continue;
        out[len++] = c;
    }
    while (len > 0 && out[len - 1] == ' ')
        len--;
    out[len] = '\0';
    return out;
}

int znp_db_connect(PGconn **out, const char *dsn, const znp_config_t *config)
{
    char timeout[16];
    char statement[64];
    char message[1024];
    PGconn *db = NULL;
    PGresult *res = NULL;
    int rc = 0;

    *out = NULL;
    snprintf(timeout, sizeof timeout, "%u", config->database.connect_timeout_s);
    /* keywords before dbname may be overridden by the DSN, those after it may not */
    const char *const keywords[] = {"application_name", "dbname", "connect_timeout", "client_encoding", NULL};
    const char *const values[] = {"znp", dsn, timeout, "UTF8", NULL};

    db = PQconnectdbParams(keywords, values, 1);
    if (db == NULL) {
        ZNP_ERROR(LOG_TAG, NULL, "could not connect to the database: out of memory");
        return ZNP_E_INTERNAL;
    }
    if (PQstatus(db) != CONNECTION_OK) {
        ZNP_ERROR(LOG_TAG, NULL, "could not connect to the database: %s",
                  one_line(message, sizeof message, PQerrorMessage(db)));
        rc = ZNP_E_DATABASE_UNAVAILABLE;
        goto cleanup;
    }

    PQsetNoticeProcessor(db, log_notice, NULL);

    snprintf(statement, sizeof statement, "SET statement_timeout = %u", config->database.statement_timeout_ms);
    res = PQexec(db, statement);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        ZNP_ERROR(LOG_TAG, NULL, "could not set statement_timeout: %s",
                  one_line(message, sizeof message, PQerrorMessage(db)));
        rc = ZNP_E_DATABASE_UNAVAILABLE;
        goto cleanup;
    }
    *out = db;
    db = NULL;

cleanup:
    PQclear(res);
    PQfinish(db);
    return rc;
}

int znp_db_resolve(char **dsn_out, znp_embedded_pg_t **embedded, const znp_config_t *config)
{
    *dsn_out = NULL;
    *embedded = NULL;
    if (config->database.dsn != NULL) {
        *dsn_out = strdup(config->database.dsn);
        return *dsn_out ? 0 : ZNP_E_INTERNAL;
    }
    return znp_db_embedded_start(embedded, dsn_out, config);
}

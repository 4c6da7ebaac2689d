/*
 * Schema migrations: the SQL files embedded at build time, applied in
 * version order and recorded in schema_migrations with the SHA-256 of their
 * up SQL. Up and down take a session advisory lock first, so instances that
 * start together apply each migration once (test_db checks this). Each
 * migration runs in one transaction together with its schema_migrations row.
 *
 * NOTE: a migration runs inside a transaction, so statements that refuse
 * one (CREATE INDEX CONCURRENTLY, ALTER TYPE ... ADD VALUE before
 * PostgreSQL 12) cannot be used in migrations.
 */
#include "db/db.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "db/internal.h"

#define LOG_TAG "migrate"

static const char create_table_sql[] = "CREATE TABLE IF NOT EXISTS schema_migrations (\n"
                                       "    version    integer PRIMARY KEY,\n"
                                       "    name       text NOT NULL,\n"
                                       "    checksum   text NOT NULL,\n"
                                       "    applied_at timestamptz NOT NULL DEFAULT now()\n"
                                       ")";

static const char select_applied_sql[] =
    "SELECT version, name, checksum, to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') "
    "FROM schema_migrations ORDER BY version";

/* Progress goes to `report`, or to the log when there is none. */
static void note(FILE *report, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(FILE *report, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(FILE *report, const char *fmt, ...)
{
    char line[1024];
    va_list args;

    va_start(args, fmt);
    vsnprintf(line, sizeof line, fmt, args);
    va_end(args);
    if (report != NULL)
        fprintf(report, "%s\n", line);
    else
        ZNP_INFO(LOG_TAG, NULL, "%s", line);
}

static void problem(FILE *report, const char *fmt, ...)
{
    char line[1024];
    va_list args;

    va_start(args, fmt);
    vsnprintf(line, sizeof line, fmt, args);
    va_end(args);
    if (report != NULL)
        fprintf(report, "error: %s\n", line);
    else
        ZNP_ERROR(LOG_TAG, NULL, "%s", line);
}

/* PQerrorMessage without its trailing newline. */
static const char *db_message(PGconn *db, char *buffer, size_t size)
{
    size_t len;

    snprintf(buffer, size, "%s", PQerrorMessage(db));
    len = strlen(buffer);
    while (len > 0 && (buffer[len - 1] == '\n' || buffer[len - 1] == ' '))
        buffer[--len] = '\0';
    return buffer;
}

static int exec_ok(PGconn *db, const char *sql, FILE *report, const char *action)
{
    PGresult *res = PQexec(db, sql);
    ExecStatusType status = PQresultStatus(res);
    char message[512];

    PQclear(res);
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
        return 0;
    problem(report, "could not %s: %s", action, db_message(db, message, sizeof message));
    return ZNP_E_DATABASE_UNAVAILABLE;
}

static double elapsed_ms(const struct timespec *start)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) * 1e3 + (double)(now.tv_nsec - start->tv_nsec) / 1e6;
}

/* 1 when schema_migrations exists, 0 when not, negative on error. */
static int table_exists(PGconn *db, FILE *report)
{
    PGresult *res = PQexec(db, "SELECT to_regclass('schema_migrations') IS NOT NULL");
    char message[512];
    int exists;

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        problem(report, "could not look up schema_migrations: %s", db_message(db, message, sizeof message));
        PQclear(res);
        return ZNP_E_DATABASE_UNAVAILABLE;
    }
    exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return exists;
}

/* The schema_migrations rows, ordered by version; NULL on error. */
static PGresult *load_applied(PGconn *db, FILE *report)
{
    PGresult *res = PQexec(db, select_applied_sql);
    char message[512];

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        problem(report, "could not read schema_migrations: %s", db_message(db, message, sizeof message));
        PQclear(res);
        return NULL;
    }
    return res;
}

static int row_version(const PGresult *res, int row)
{
    return (int)strtol(PQgetvalue(res, row, 0), NULL, 10);
}

static int find_row(const PGresult *res, int version)
{
    for (int row = 0; row < PQntuples(res); row++) {
        if (row_version(res, row) == version)
            return row;
    }
    return -1;
}

/*
 * Compare the applied rows with the list: every applied version must be
 * known and unchanged, because running newer SQL over a schema that an
 * edited migration built would leave it in a state no file describes.
 */
static int check_applied(const PGresult *res, const znp_migration_t *list, size_t count, FILE *report, int *current)
{
    int rc = 0;

    *current = 0;
    for (int row = 0; row < PQntuples(res); row++) {
        int version = row_version(res, row);

        if (version > *current)
            *current = version;
        if (version < 1 || (size_t)version > count) {
            problem(report,
                    "the database has migration %04d_%s, which this znp binary does not have; "
                    "use a znp build that includes it",
                    version, PQgetvalue(res, row, 1));
            rc = ZNP_E_CONFLICT;
            continue;
        }
        if (strcmp(PQgetvalue(res, row, 2), list[version - 1].checksum) != 0) {
            problem(report,
                    "checksum mismatch for migration %04d_%s: applied %.12s, this binary has %.12s; "
                    "the file changed after it was applied",
                    version, list[version - 1].name, PQgetvalue(res, row, 2), list[version - 1].checksum);
            rc = ZNP_E_CONFLICT;
        }
    }
    return rc;
}

static int lock_migrations(PGconn *db, FILE *report)
{
    return exec_ok(db, "SELECT pg_advisory_lock(" DB_MIGRATE_LOCK_KEY ")", report, "take the migration lock");
}

static void unlock_migrations(PGconn *db, FILE *report)
{
    exec_ok(db, "SELECT pg_advisory_unlock(" DB_MIGRATE_LOCK_KEY ")", report, "release the migration lock");
}

/* Run `sql` and one parameterized bookkeeping statement in one transaction. */
static int run_in_transaction(PGconn *db, const char *sql, const char *bookkeeping, int param_count,
                              const char *const *params, FILE *report, const char *label)
{
    PGresult *res = NULL;
    char message[1024];
    int rc = ZNP_E_DATABASE_UNAVAILABLE;

    if (exec_ok(db, "BEGIN", report, "begin a transaction") != 0)
        return ZNP_E_DATABASE_UNAVAILABLE;

    res = PQexec(db, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        problem(report, "%s failed: %s", label, db_message(db, message, sizeof message));
        goto cleanup;
    }
    PQclear(res);

    res = PQexecParams(db, bookkeeping, param_count, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK || strcmp(PQcmdTuples(res), "1") != 0) {
        problem(report, "%s failed to update schema_migrations: %s", label, db_message(db, message, sizeof message));
        goto cleanup;
    }
    PQclear(res);
    res = NULL;

    if (exec_ok(db, "COMMIT", report, "commit the migration") == 0)
        rc = 0;

cleanup:
    PQclear(res);
    if (rc != 0)
        exec_ok(db, "ROLLBACK", NULL, "roll back the migration");
    return rc;
}

static int apply_one(PGconn *db, const znp_migration_t *m, FILE *report)
{
    char version[16];
    char label[160];
    struct timespec start;
    const char *params[3] = {version, m->name, m->checksum};
    int rc;

    snprintf(version, sizeof version, "%d", m->version);
    snprintf(label, sizeof label, "migration %04d_%s", m->version, m->name);
    clock_gettime(CLOCK_MONOTONIC, &start);
    rc = run_in_transaction(db, m->up_sql,
                            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1::integer, $2, $3)", 3,
                            params, report, label);
    if (rc == 0)
        note(report, "applied %04d_%s (%.0f ms)", m->version, m->name, elapsed_ms(&start));
    return rc;
}

static int revert_one(PGconn *db, const znp_migration_t *m, FILE *report)
{
    char version[16];
    char label[160];
    struct timespec start;
    const char *params[1] = {version};
    int rc;

    snprintf(version, sizeof version, "%d", m->version);
    snprintf(label, sizeof label, "reverting migration %04d_%s", m->version, m->name);
    clock_gettime(CLOCK_MONOTONIC, &start);
    rc = run_in_transaction(db, m->down_sql, "DELETE FROM schema_migrations WHERE version = $1::integer", 1, params,
                            report, label);
    if (rc == 0)
        note(report, "reverted %04d_%s (%.0f ms)", m->version, m->name, elapsed_ms(&start));
    return rc;
}

int db__migrate_up(PGconn *db, const znp_migration_t *list, size_t count, int target, FILE *report)
{
    PGresult *applied = NULL;
    int locked = 0, current = 0, done = 0;
    int rc;

    if (target == -1)
        target = (int)count;
    if (target < 0 || (size_t)target > count) {
        problem(report, "there is no migration version %d: this binary has versions 1 to %zu", target, count);
        return ZNP_E_VALIDATION_FAILED;
    }

    rc = lock_migrations(db, report);
    if (rc != 0)
        goto cleanup;
    locked = 1;
    rc = exec_ok(db, create_table_sql, report, "create schema_migrations");
    if (rc != 0)
        goto cleanup;
    applied = load_applied(db, report);
    if (applied == NULL) {
        rc = ZNP_E_DATABASE_UNAVAILABLE;
        goto cleanup;
    }
    rc = check_applied(applied, list, count, report, &current);
    if (rc != 0)
        goto cleanup;
    if (current > target) {
        problem(report,
                "the database is at version %d, newer than the target %d; use `znp migrate down --to %d` to revert",
                current, target, target);
        rc = ZNP_E_CONFLICT;
        goto cleanup;
    }

    for (int version = 1; version <= target; version++) {
        if (find_row(applied, version) >= 0)
            continue;
        rc = apply_one(db, &list[version - 1], report);
        if (rc != 0)
            goto cleanup;
        done++;
    }
    if (done == 0)
        note(report, "schema is up to date at version %d", current);
    else
        note(report, "schema is at version %d", target);

cleanup:
    PQclear(applied);
    if (locked)
        unlock_migrations(db, report);
    return rc;
}

int db__migrate_down(PGconn *db, const znp_migration_t *list, size_t count, int target, FILE *report)
{
    PGresult *applied = NULL;
    int locked = 0, current = 0, done = 0;
    int rc;

    if (target < 0 || (size_t)target > count) {
        problem(report, "there is no migration version %d: this binary has versions 1 to %zu (0 reverts all)", target,
                count);
        return ZNP_E_VALIDATION_FAILED;
    }

    rc = lock_migrations(db, report);
    if (rc != 0)
        goto cleanup;
    locked = 1;
    rc = exec_ok(db, create_table_sql, report, "create schema_migrations");
    if (rc != 0)
        goto cleanup;
    applied = load_applied(db, report);
    if (applied == NULL) {
        rc = ZNP_E_DATABASE_UNAVAILABLE;
        goto cleanup;
    }
    rc = check_applied(applied, list, count, report, &current);
    if (rc != 0)
        goto cleanup;

    for (int row = PQntuples(applied) - 1; row >= 0; row--) {
        int version = row_version(applied, row);

        if (version <= target)
            break;
        rc = revert_one(db, &list[version - 1], report);
        if (rc != 0)
            goto cleanup;
        done++;
    }
    if (done == 0)
        note(report, "nothing to revert: schema is at version %d", current);
    else
        note(report, "schema is at version %d", target);

cleanup:
    PQclear(applied);
    if (locked)
        unlock_migrations(db, report);
    return rc;
}

int db__migrate_status(PGconn *db, const znp_migration_t *list, size_t count, FILE *out)
{
    PGresult *applied = NULL;
    int exists, rows, pending = 0, mismatched = 0, unknown = 0;

    exists = table_exists(db, out);
    if (exists < 0)
        return exists;
    if (exists) {
        applied = load_applied(db, out);
        if (applied == NULL)
            return ZNP_E_DATABASE_UNAVAILABLE;
    }
    rows = applied ? PQntuples(applied) : 0;

    fprintf(out, "%-8s %-32s %s\n", "VERSION", "NAME", "STATE");
    for (size_t i = 0; i < count; i++) {
        const znp_migration_t *m = &list[i];
        int row = applied ? find_row(applied, m->version) : -1;

        if (row < 0) {
            fprintf(out, "%04d     %-32s pending\n", m->version, m->name);
            pending++;
        } else if (strcmp(PQgetvalue(applied, row, 2), m->checksum) != 0) {
            fprintf(out, "%04d     %-32s checksum mismatch (applied %.12s, binary %.12s)\n", m->version, m->name,
                    PQgetvalue(applied, row, 2), m->checksum);
            mismatched++;
        } else {
            fprintf(out, "%04d     %-32s applied %s UTC\n", m->version, m->name, PQgetvalue(applied, row, 3));
        }
    }
    for (int row = 0; row < rows; row++) {
        int version = row_version(applied, row);

        if (version >= 1 && (size_t)version <= count)
            continue;
        fprintf(out, "%04d     %-32s applied %s UTC, unknown to this binary\n", version, PQgetvalue(applied, row, 1),
                PQgetvalue(applied, row, 3));
        unknown++;
    }

    if (mismatched > 0 || unknown > 0)
        fprintf(out, "schema does not match this binary: %d checksum mismatch(es), %d unknown version(s)\n", mismatched,
                unknown);
    else if (pending > 0)
        fprintf(out, "%d pending migration(s); run `znp migrate up`\n", pending);
    else
        fprintf(out, "schema is current at version %zu\n", count);
    PQclear(applied);
    return 0;
}

int db__migrate_is_current(PGconn *db, const znp_migration_t *list, size_t count)
{
    PGresult *applied = NULL;
    int exists, rc;

    exists = table_exists(db, NULL);
    if (exists <= 0)
        return exists;
    applied = load_applied(db, NULL);
    if (applied == NULL)
        return ZNP_E_DATABASE_UNAVAILABLE;
    rc = (size_t)PQntuples(applied) == count;
    for (int row = 0; rc && row < PQntuples(applied); row++) {
        int version = row_version(applied, row);

        if (version < 1 || (size_t)version > count ||
            strcmp(PQgetvalue(applied, row, 2), list[version - 1].checksum) != 0)
            rc = 0;
    }
    PQclear(applied);
    return rc;
}

int znp_migrate_up(PGconn *db, int target, FILE *report)
{
    return db__migrate_up(db, znp_migrations, znp_migration_count, target, report);
}

int znp_migrate_down(PGconn *db, int target, FILE *report)
{
    return db__migrate_down(db, znp_migrations, znp_migration_count, target, report);
}

int znp_migrate_status(PGconn *db, FILE *out)
{
    return db__migrate_status(db, znp_migrations, znp_migration_count, out);
}

int znp_migrate_is_current(PGconn *db)
{
    return db__migrate_is_current(db, znp_migrations, znp_migration_count);
}

/*
 * test_db: a throwaway embedded cluster in a temporary data directory,
 * started once through znp_db_embedded_start, then the migration engine on
 * it. Every test starts from an empty public schema.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config/config.h"
#include "db/db.h"
#include "db/internal.h"

typedef struct fixture {
    char *dir;
    znp_config_t *config;
    znp_embedded_pg_t *pg;
    char *dsn;
    PGconn *db;
} fixture_t;

static fixture_t fx;

/* ---- helpers ---- */

static char *newest_pg_tool(const char *name)
{
    DIR *dir = opendir("/usr/lib/postgresql");
    struct dirent *entry;
    long best = -1;
    char *path = NULL;

    if (dir == NULL)
        return NULL;
    while ((entry = readdir(dir)) != NULL) {
        char candidate[512];
        char *end = NULL;
        long version = strtol(entry->d_name, &end, 10);

        if (end == entry->d_name || *end != '\0' || version <= best)
            continue;
        snprintf(candidate, sizeof candidate, "/usr/lib/postgresql/%ld/bin/%s", version, name);
        if (access(candidate, X_OK) == 0)
            best = version;
    }
    closedir(dir);
    if (best >= 0 && asprintf(&path, "/usr/lib/postgresql/%ld/bin/%s", best, name) < 0)
        path = NULL;
    return path;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void exec_sql(PGconn *db, const char *sql)
{
    PGresult *res = PQexec(db, sql);
    ExecStatusType status = PQresultStatus(res);

    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(db));
    PQclear(res);
}

/* The first column of the first row of `sql` as text (malloc'd), or NULL for SQL NULL. */
static char *query_text(PGconn *db, const char *sql)
{
    PGresult *res = PQexec(db, sql);
    char *text = NULL;

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) < 1)
        fail_msg("%s: %s", sql, PQerrorMessage(db));
    if (!PQgetisnull(res, 0, 0))
        text = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return text;
}

static long query_long(PGconn *db, const char *sql)
{
    char *text = query_text(db, sql);
    long value = text ? strtol(text, NULL, 10) : -1;

    free(text);
    return value;
}

static int table_exists(PGconn *db, const char *name)
{
    char sql[256];
    char *text;
    int exists;

    snprintf(sql, sizeof sql, "SELECT to_regclass('%s') IS NOT NULL", name);
    text = query_text(db, sql);
    exists = strcmp(text, "t") == 0;
    free(text);
    return exists;
}

/*
 * Drop the \restrict and \unrestrict lines, whose key pg_dump picks at
 * random on every run (added in PostgreSQL 15.14 and 17.6).
 */
static void drop_restrict_lines(char *text)
{
    char *out = text;
    const char *line = text;

    while (*line != '\0') {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) + 1 : strlen(line);

        if (strncmp(line, "\\restrict ", 10) != 0 && strncmp(line, "\\unrestrict ", 12) != 0) {
            memmove(out, line, len);
            out += len;
        }
        line += len;
    }
    *out = '\0';
}

/* pg_dump --schema-only of the test database, malloc'd. */
static char *dump_schema(void)
{
    char *pg_dump = newest_pg_tool("pg_dump");
    char *output = NULL;
    size_t size = 0;
    FILE *mem;
    int pipe_fds[2];
    pid_t pid;
    int status = 0;
    char buffer[4096];
    ssize_t n;

    assert_non_null(pg_dump);
    assert_int_equal(pipe(pipe_fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pipe_fds[1], STDOUT_FILENO);
        close(pipe_fds[0]);
        close(pipe_fds[1]);
        execl(pg_dump, pg_dump, "--schema-only", "--no-owner", "--no-privileges", "-d", fx.dsn, (char *)NULL);
        _exit(127);
    }
    close(pipe_fds[1]);
    mem = open_memstream(&output, &size);
    while ((n = read(pipe_fds[0], buffer, sizeof buffer)) > 0)
        fwrite(buffer, 1, (size_t)n, mem);
    fclose(mem);
    close(pipe_fds[0]);
    waitpid(pid, &status, 0);
    free(pg_dump);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("pg_dump failed with status %d", status);
    drop_restrict_lines(output);
    return output;
}

/* Run `fn` with a memory stream as its report and return what it wrote (malloc'd). */
static char *capture_report(int (*fn)(PGconn *, const znp_migration_t *, size_t, int, FILE *),
                            const znp_migration_t *list, size_t count, int target, int *rc)
{
    char *text = NULL;
    size_t size = 0;
    FILE *report = open_memstream(&text, &size);

    *rc = fn(fx.db, list, count, target, report);
    fclose(report);
    return text;
}

/* ---- fixture ---- */

static int start_cluster(void **state)
{
    char *pg_ctl = newest_pg_tool("pg_ctl");
    znp_config_error_t err;
    char template[] = "/tmp/znp-db-test-XXXXXX";

    (void)state;
    if (pg_ctl == NULL) {
        fprintf(stderr, "test_db: no PostgreSQL server binaries under /usr/lib/postgresql/<N>/bin; "
                        "install the postgresql package to run these tests\n");
        return 0;
    }
    free(pg_ctl);
    if (mkdtemp(template) == NULL)
        return -1;
    fx.dir = strdup(template);
    if (znp_config_parse(&fx.config, NULL, &err) != 0 ||
        znp_config_override(fx.config, "database.data_dir", fx.dir, "test", &err) != 0 ||
        znp_config_validate(fx.config, &err) != 0) {
        fprintf(stderr, "test_db: %s\n", err.message);
        return -1;
    }
    if (znp_db_embedded_start(&fx.pg, &fx.dsn, fx.config) != 0) {
        fprintf(stderr, "test_db: could not start the embedded cluster in %s\n", fx.dir);
        return -1;
    }
    if (znp_db_connect(&fx.db, fx.dsn, fx.config) != 0)
        return -1;
    return 0;
}

static int stop_cluster(void **state)
{
    (void)state;
    PQfinish(fx.db);
    znp_db_embedded_stop(fx.pg);
    free(fx.dsn);
    znp_config_destroy(fx.config);
    if (fx.dir != NULL)
        nftw(fx.dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(fx.dir);
    memset(&fx, 0, sizeof fx);
    return 0;
}

static int reset_schema(void **state)
{
    (void)state;
    if (fx.db == NULL)
        return 0;
    exec_sql(fx.db, "DROP SCHEMA public CASCADE");
    exec_sql(fx.db, "CREATE SCHEMA public");
    return 0;
}

#define REQUIRE_CLUSTER()                                                                                              \
    do {                                                                                                               \
        if (fx.db == NULL)                                                                                             \
            skip();                                                                                                    \
    } while (0)

/* ---- migrations of the tests' own ---- */

static const znp_migration_t three[] = {
    {1, "alpha", "CREATE TABLE alpha (id int);", "DROP TABLE alpha;", "c1"},
    {2, "beta", "CREATE TABLE beta (id int);", "DROP TABLE beta;", "c2"},
    {3, "gamma", "CREATE TABLE gamma (id int);", "DROP TABLE gamma;", "c3"},
};

static const znp_migration_t failing[] = {
    {1, "alpha", "CREATE TABLE alpha (id int);", "DROP TABLE alpha;", "c1"},
    {2, "broken", "CREATE TABLE half (id int); SELECT no_such_function();", "DROP TABLE half;", "c2"},
};

/* Each applied migration appends one row; pg_sleep widens the window in which a second runner could interleave. */
static const znp_migration_t counting[] = {
    {1, "log", "CREATE TABLE apply_log (version int NOT NULL);", "DROP TABLE apply_log;", "k1"},
    {2, "two", "INSERT INTO apply_log VALUES (2); SELECT pg_sleep(0.05);", "DELETE FROM apply_log WHERE version = 2;",
     "k2"},
    {3, "three", "INSERT INTO apply_log VALUES (3); SELECT pg_sleep(0.05);", "DELETE FROM apply_log WHERE version = 3;",
     "k3"},
    {4, "four", "INSERT INTO apply_log VALUES (4); SELECT pg_sleep(0.05);", "DELETE FROM apply_log WHERE version = 4;",
     "k4"},
    {5, "five", "INSERT INTO apply_log VALUES (5); SELECT pg_sleep(0.05);", "DELETE FROM apply_log WHERE version = 5;",
     "k5"},
};

/* ---- tests ---- */

static void db__embedded_cluster_socket_only(void **state)
{
    char *value;
    char run[1024];
    struct stat st;

    (void)state;
    REQUIRE_CLUSTER();
    value = query_text(fx.db, "SHOW listen_addresses");
    assert_string_equal(value, "");
    free(value);
    value = query_text(fx.db, "SELECT current_database()");
    assert_string_equal(value, "znp");
    free(value);
    value = query_text(fx.db, "SHOW server_encoding");
    assert_string_equal(value, "UTF8");
    free(value);

    snprintf(run, sizeof run, "%s/pg/run", fx.dir);
    assert_int_equal(stat(run, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_non_null(strstr(fx.dsn, run));
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam(fx.config->database.run_as);

        assert_non_null(pw);
        assert_int_equal(st.st_uid, pw->pw_uid);
        value = query_text(fx.db, "SELECT current_user");
        assert_string_equal(value, fx.config->database.run_as);
        free(value);
    }
}

static void db__connect_sets_session(void **state)
{
    char *value;

    (void)state;
    REQUIRE_CLUSTER();
    value = query_text(fx.db, "SHOW statement_timeout");
    assert_string_equal(value, "15s");
    free(value);
    value = query_text(fx.db, "SHOW application_name");
    assert_string_equal(value, "znp");
    free(value);
    value = query_text(fx.db, "SHOW client_encoding");
    assert_string_equal(value, "UTF8");
    free(value);
}

static void db__running_cluster_reused(void **state)
{
    znp_embedded_pg_t *again = NULL;
    char *dsn = NULL;

    (void)state;
    REQUIRE_CLUSTER();
    assert_int_equal(znp_db_embedded_start(&again, &dsn, fx.config), 0);
    assert_string_equal(dsn, fx.dsn);
    /* this handle did not start the cluster, so stopping it leaves the cluster running */
    znp_db_embedded_stop(again);
    free(dsn);
    assert_int_equal(PQstatus(fx.db), CONNECTION_OK);
    assert_int_equal(query_long(fx.db, "SELECT 1"), 1);
}

static void db__up_down_up_schema_identical(void **state)
{
    char *first, *second;

    (void)state;
    REQUIRE_CLUSTER();
    assert_int_equal(znp_migrate_is_current(fx.db), 0);
    assert_int_equal(znp_migrate_up(fx.db, -1, NULL), 0);
    assert_int_equal(znp_migrate_is_current(fx.db), 1);
    assert_true(table_exists(fx.db, "users"));
    first = dump_schema();

    assert_int_equal(znp_migrate_down(fx.db, 0, NULL), 0);
    assert_int_equal(znp_migrate_is_current(fx.db), 0);
    assert_false(table_exists(fx.db, "users"));
    assert_false(table_exists(fx.db, "site_settings"));
    assert_int_equal(query_long(fx.db, "SELECT count(*) FROM schema_migrations"), 0);

    assert_int_equal(znp_migrate_up(fx.db, -1, NULL), 0);
    assert_int_equal(znp_migrate_is_current(fx.db), 1);
    second = dump_schema();
    assert_true(strlen(first) > 100);
    assert_string_equal(first, second);
    free(first);
    free(second);

    /* a second up changes nothing */
    assert_int_equal(znp_migrate_up(fx.db, -1, NULL), 0);
    assert_int_equal(query_long(fx.db, "SELECT count(*) FROM schema_migrations"), (long)znp_migration_count);
}

static void db__embedded_checksums_match_sql(void **state)
{
    (void)state;
    assert_true(znp_migration_count >= 1);
    for (size_t i = 0; i < znp_migration_count; i++) {
        assert_int_equal(znp_migrations[i].version, (int)i + 1);
        assert_int_equal(strlen(znp_migrations[i].checksum), 64);
        assert_true(strlen(znp_migrations[i].up_sql) > 0);
        assert_true(strlen(znp_migrations[i].down_sql) > 0);
    }
}

static void db__checksum_mismatch_refused(void **state)
{
    char *report;
    char *status = NULL;
    size_t size = 0;
    FILE *out;
    int rc;

    (void)state;
    REQUIRE_CLUSTER();
    report = capture_report(db__migrate_up, three, 2, -1, &rc);
    assert_int_equal(rc, 0);
    free(report);
    exec_sql(fx.db, "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1");

    report = capture_report(db__migrate_up, three, 3, -1, &rc);
    assert_int_equal(rc, ZNP_E_CONFLICT);
    assert_non_null(strstr(report, "checksum mismatch for migration 0001_alpha"));
    assert_false(table_exists(fx.db, "gamma")); /* nothing applied after the refusal */
    free(report);

    report = capture_report(db__migrate_down, three, 3, 0, &rc);
    assert_int_equal(rc, ZNP_E_CONFLICT);
    assert_true(table_exists(fx.db, "beta"));
    free(report);

    assert_int_equal(db__migrate_is_current(fx.db, three, 2), 0);
    out = open_memstream(&status, &size);
    assert_int_equal(db__migrate_status(fx.db, three, 3, out), 0);
    fclose(out);
    assert_non_null(strstr(status, "0001     alpha"));
    assert_non_null(strstr(status, "checksum mismatch (applied edited, binary c1)"));
    assert_non_null(strstr(status, "0003     gamma                            pending"));
    free(status);
}

static void db__unknown_version_refused(void **state)
{
    char *report;
    int rc;

    (void)state;
    REQUIRE_CLUSTER();
    report = capture_report(db__migrate_up, three, 3, -1, &rc);
    assert_int_equal(rc, 0);
    free(report);
    /* a binary built with only the first two migrations meets a database at version 3 */
    report = capture_report(db__migrate_up, three, 2, -1, &rc);
    assert_int_equal(rc, ZNP_E_CONFLICT);
    assert_non_null(strstr(report, "0003_gamma, which this znp binary does not have"));
    free(report);
    assert_int_equal(db__migrate_is_current(fx.db, three, 2), 0);
}

static void db__target_version_respected(void **state)
{
    char *report;
    int rc;

    (void)state;
    REQUIRE_CLUSTER();
    report = capture_report(db__migrate_up, three, 3, 2, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(report, "applied 0001_alpha"));
    assert_non_null(strstr(report, "applied 0002_beta"));
    assert_null(strstr(report, "gamma"));
    free(report);
    assert_true(table_exists(fx.db, "beta"));
    assert_false(table_exists(fx.db, "gamma"));
    assert_int_equal(db__migrate_is_current(fx.db, three, 3), 0);

    /* up to an older version than the database is refused */
    report = capture_report(db__migrate_up, three, 3, 1, &rc);
    assert_int_equal(rc, ZNP_E_CONFLICT);
    assert_non_null(strstr(report, "znp migrate down --to 1"));
    free(report);

    /* versions outside the list are refused */
    report = capture_report(db__migrate_up, three, 3, 4, &rc);
    assert_int_equal(rc, ZNP_E_VALIDATION_FAILED);
    free(report);
    report = capture_report(db__migrate_down, three, 3, -2, &rc);
    assert_int_equal(rc, ZNP_E_VALIDATION_FAILED);
    free(report);

    report = capture_report(db__migrate_up, three, 3, -1, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(report, "applied 0003_gamma"));
    assert_null(strstr(report, "applied 0001_alpha"));
    free(report);
    assert_int_equal(db__migrate_is_current(fx.db, three, 3), 1);

    report = capture_report(db__migrate_down, three, 3, 1, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(report, "reverted 0003_gamma"));
    assert_non_null(strstr(report, "reverted 0002_beta"));
    /* newest first */
    assert_true(strstr(report, "reverted 0003_gamma") < strstr(report, "reverted 0002_beta"));
    free(report);
    assert_true(table_exists(fx.db, "alpha"));
    assert_false(table_exists(fx.db, "beta"));
    assert_int_equal(query_long(fx.db, "SELECT max(version) FROM schema_migrations"), 1);

    report = capture_report(db__migrate_down, three, 3, 1, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(report, "nothing to revert"));
    free(report);

    report = capture_report(db__migrate_down, three, 3, 0, &rc);
    assert_int_equal(rc, 0);
    free(report);
    assert_false(table_exists(fx.db, "alpha"));
}

static void db__failed_migration_rolled_back(void **state)
{
    char *report;
    int rc;

    (void)state;
    REQUIRE_CLUSTER();
    report = capture_report(db__migrate_up, failing, 2, -1, &rc);
    assert_int_equal(rc, ZNP_E_DATABASE_UNAVAILABLE);
    assert_non_null(strstr(report, "migration 0002_broken failed"));
    assert_non_null(strstr(report, "no_such_function"));
    free(report);
    assert_true(table_exists(fx.db, "alpha"));
    assert_false(table_exists(fx.db, "half"));
    assert_int_equal(query_long(fx.db, "SELECT count(*) FROM schema_migrations"), 1);
    /* the session is usable afterwards and the lock was released */
    assert_int_equal(query_long(fx.db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"), 0);
}

typedef struct runner {
    pthread_barrier_t *barrier;
    PGconn *db;
    int rc;
} runner_t;

static void *run_up(void *data)
{
    runner_t *runner = data;

    pthread_barrier_wait(runner->barrier);
    runner->rc = db__migrate_up(runner->db, counting, 5, -1, NULL);
    return NULL;
}

static void db__concurrent_up_applies_once(void **state)
{
    pthread_barrier_t barrier;
    runner_t runners[2];
    pthread_t threads[2];

    (void)state;
    REQUIRE_CLUSTER();
    pthread_barrier_init(&barrier, NULL, 2);
    for (int i = 0; i < 2; i++) {
        runners[i].barrier = &barrier;
        runners[i].rc = -100;
        assert_int_equal(znp_db_connect(&runners[i].db, fx.dsn, fx.config), 0);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, run_up, &runners[i]), 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(threads[i], NULL);
        PQfinish(runners[i].db);
    }
    pthread_barrier_destroy(&barrier);

    /* both succeed: the second waited for the lock and then found nothing to do */
    assert_int_equal(runners[0].rc, 0);
    assert_int_equal(runners[1].rc, 0);
    assert_int_equal(query_long(fx.db, "SELECT count(*) FROM apply_log"), 4);
    assert_int_equal(query_long(fx.db, "SELECT count(DISTINCT version) FROM apply_log"), 4);
    assert_int_equal(query_long(fx.db, "SELECT count(*) FROM schema_migrations"), 5);
}

static void db__status_lists_pending(void **state)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out;

    (void)state;
    REQUIRE_CLUSTER();
    /* no schema_migrations table yet */
    out = open_memstream(&text, &size);
    assert_int_equal(db__migrate_status(fx.db, three, 3, out), 0);
    fclose(out);
    assert_non_null(strstr(text, "0001     alpha                            pending"));
    assert_non_null(strstr(text, "3 pending migration(s)"));
    free(text);
    assert_false(table_exists(fx.db, "schema_migrations")); /* status does not create it */

    assert_int_equal(db__migrate_up(fx.db, three, 3, 1, NULL), 0);
    text = NULL;
    out = open_memstream(&text, &size);
    assert_int_equal(db__migrate_status(fx.db, three, 3, out), 0);
    fclose(out);
    assert_non_null(strstr(text, "0001     alpha                            applied 2"));
    assert_non_null(strstr(text, "2 pending migration(s)"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(db__embedded_checksums_match_sql),
        cmocka_unit_test_setup(db__embedded_cluster_socket_only, reset_schema),
        cmocka_unit_test_setup(db__connect_sets_session, reset_schema),
        cmocka_unit_test_setup(db__running_cluster_reused, reset_schema),
        cmocka_unit_test_setup(db__up_down_up_schema_identical, reset_schema),
        cmocka_unit_test_setup(db__checksum_mismatch_refused, reset_schema),
        cmocka_unit_test_setup(db__unknown_version_refused, reset_schema),
        cmocka_unit_test_setup(db__target_version_respected, reset_schema),
        cmocka_unit_test_setup(db__failed_migration_rolled_back, reset_schema),
        cmocka_unit_test_setup(db__concurrent_up_applies_once, reset_schema),
        cmocka_unit_test_setup(db__status_lists_pending, reset_schema),
    };

    return cmocka_run_group_tests_name("db", tests, start_cluster, stop_cluster);
}

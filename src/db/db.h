/*
 * Database access: the embedded PostgreSQL cluster used when no DSN is
 * configured, connections, and the embedded migrations.
 */
#ifndef ZNP_DB_H
#define ZNP_DB_H

#include <libpq-fe.h>
#include <stdio.h>

#include "config/config.h"

typedef struct znp_embedded_pg znp_embedded_pg_t;

/*
 * Start (initdb on first use) a private cluster under
 * <database.data_dir>/pg with a Unix socket only. When znp runs as root the
 * cluster runs as database.run_as. *dsn_out (malloc'd, caller frees) is the
 * connection string to use; *out is stopped and freed by znp_db_embedded_stop.
 */
int znp_db_embedded_start(znp_embedded_pg_t **out, char **dsn_out, const znp_config_t *config);
/*
 * Make this process the owner of the cluster (znp serve): take the
 * <data_dir>/pg/serve.lock for the life of `pg`, so that znp_db_embedded_stop
 * stops the cluster even when an earlier znp had left it running. Without a
 * claim (CLI commands), stop only stops a cluster that this process started,
 * so `znp migrate status` next to a running serve leaves it alone. Fails with
 * ZNP_E_CONFLICT while another znp serve holds the lock.
 */
int znp_db_embedded_claim(znp_embedded_pg_t *pg);
/* pg_ctl stop -m fast when this process started or claimed the cluster, then free. Accepts NULL. */
void znp_db_embedded_stop(znp_embedded_pg_t *pg);

/*
 * The DSN serve and the CLI use: database.dsn when set, else the embedded
 * cluster (started into *embedded). *dsn_out malloc'd, caller frees.
 */
int znp_db_resolve(char **dsn_out, znp_embedded_pg_t **embedded, const znp_config_t *config);

/* Blocking connect with the configured timeouts and statement_timeout; *out NULL on failure (message on stderr). */
int znp_db_connect(PGconn **out, const char *dsn, const znp_config_t *config);

typedef struct znp_migration {
    int version;
    const char *name;
    const char *up_sql;
    const char *down_sql;
    const char *checksum; /* hex SHA-256 of up_sql */
} znp_migration_t;

extern const znp_migration_t znp_migrations[];
extern const size_t znp_migration_count;

/*
 * Apply pending migrations up to `target` (-1 = latest) under an advisory lock, each in a transaction.
 * Progress and problems go to `report`, or to the log when it is NULL. Fails with ZNP_E_CONFLICT
 * when an applied migration has another checksum or is unknown, or the database is past `target`.
 */
int znp_migrate_up(PGconn *db, int target, FILE *report);
/* Revert applied migrations down to `target` (0 = all), newest first; same locking, report and checks. */
int znp_migrate_down(PGconn *db, int target, FILE *report);
/* Print applied/pending versions with checksum state. */
int znp_migrate_status(PGconn *db, FILE *out);
/* 1 when every embedded migration is applied with a matching checksum, 0 when not, negative on error. */
int znp_migrate_is_current(PGconn *db);

#endif

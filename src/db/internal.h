/*
 * The migration engine over an explicit list, so tests can run it on
 * migrations of their own. The public znp_migrate_* functions pass the
 * embedded list.
 */
#ifndef ZNP_DB_INTERNAL_H
#define ZNP_DB_INTERNAL_H

#include "db/db.h"

/* pg_advisory_lock key held around up and down: the ASCII bytes of "znp_migr" */
#define DB_MIGRATE_LOCK_KEY "8822112275225208690"

int db__migrate_up(PGconn *db, const znp_migration_t *list, size_t count, int target, FILE *report);
int db__migrate_down(PGconn *db, const znp_migration_t *list, size_t count, int target, FILE *report);
int db__migrate_status(PGconn *db, const znp_migration_t *list, size_t count, FILE *out);
int db__migrate_is_current(PGconn *db, const znp_migration_t *list, size_t count);

#endif

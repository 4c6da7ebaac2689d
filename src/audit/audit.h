/*
 * The audit log: one row per admin write and per security event (sign-in
 * success and failure, lockout, MFA change, password change, role change,
 * token revocation). Rows are append-only; `diff` must never contain
 * secrets (password hashes, codes, tokens, TOTP seeds).
 */
#ifndef ZNP_AUDIT_H
#define ZNP_AUDIT_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdint.h>

#include "core/context.h"

typedef struct znp_audit_entry {
    int64_t actor_id;          /* 0 = anonymous or system */
    const char *actor_email;   /* may be NULL */
    const char *action;        /* dotted name, e.g. "auth.login.failed", "admin.user.roles" */
    const char *resource_type; /* e.g. "user", may be NULL */
    const char *resource_id;   /* text id, may be NULL */
    json_t *diff;              /* borrowed; JSON object of changes or facts, may be NULL */
} znp_audit_entry_t;

/*
 * Insert `entry` on `db`, filling IP, user agent (cut to 256 bytes of
 * printable ASCII) and request id from `ctx`, and the actor (id, email,
 * roles) from ctx->caller when entry->actor_id is 0 and a caller is signed
 * in. `ctx` may be NULL for rows the system writes, such as a dead mail job.
 * Runs inside the caller's transaction when one is open, so an audited change
 * and its audit row commit together. Returns 0 or the errors of znp_sql_exec.
 */
int znp_audit_record(znp_ctx_t *ctx, PGconn *db, const znp_audit_entry_t *entry);

/*
 * Record `action` by the caller on the resource `resource_type` with the
 * numeric id `resource_id`, on ctx->db; `diff` is borrowed and may be NULL.
 * The common case of znp_audit_record for admin writes.
 */
int znp_audit_record_resource(znp_ctx_t *ctx, const char *action, const char *resource_type, int64_t resource_id,
                              json_t *diff);

#endif

/*
 * Helpers shared by the node operations. Outputs live in ctx->arena, and a
 * rejected value records ZNP_E_VALIDATION_FAILED at `path`.
 */
#ifndef ZNP_NODES_INTERNAL_H
#define ZNP_NODES_INTERNAL_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "core/context.h"
#include "errors.gen.h"
#include "schemas.gen.h"

/* Decimal text of `v` in `buf`. */
const char *znp_nodes__int(char *buf, size_t size, int64_t v);

/* Commit when rc is 0, else roll back. Returns rc or the commit's error. */
int znp_nodes__finish(znp_ctx_t *ctx, int rc);

/* Insert one audit row for an admin write on node `id`. `diff` must not contain secrets. */
int znp_nodes__audit(znp_ctx_t *ctx, const char *action, int64_t id, json_t *diff);

/* Parse `text` as JSON into a value the arena releases. Returns NULL on failure. */
json_t *znp_nodes__json(znp_ctx_t *ctx, const char *text);

/* Arena copy of one result cell, because the result is cleared before the response is encoded. */
char *znp_nodes__column(znp_ctx_t *ctx, const PGresult *res, int row, int col);

/* Arena copy of `in` with ASCII letters lower-cased. */
char *znp_nodes__lower(znp_ctx_t *ctx, const char *in);

/* Return a copy of `s` without surrounding ASCII white space, or NULL when out of memory. */
char *znp_nodes__trimmed(znp_ctx_t *ctx, const char *s);

/*
 * Normalise the host `in` (len bytes, optionally in brackets) into *out:
 * IPv6 in canonical form without brackets (*is_v6 = 1), IPv4 as given, host
 * names lower-cased. Zone ids ("%eth0"), non-ASCII names and malformed
 * addresses are rejected.
 */
int znp_nodes__normalize_host(znp_ctx_t *ctx, const char *path, const char *in, size_t len, char **out, int *is_v6);

/* Normalise an access address: "" after trimming stays "", anything else goes through normalize_host. */
int znp_nodes__normalize_address(znp_ctx_t *ctx, const char *path, const char *in, const char **out);

/*
 * Normalise a control URL: scheme http or https (lower-cased), a host as
 * normalize_host accepts it (IPv6 written in brackets), an optional port
 * 1..65535, then the path and query unchanged. User info is rejected.
 */
int znp_nodes__normalize_url(znp_ctx_t *ctx, const char *path, const char *in, const char **out);

/* Write the tags in `in` as JSON array text: trimmed, blanks dropped, sorted bytewise, duplicates removed. */
int znp_nodes__tags_text(znp_ctx_t *ctx, const znp_array_t *in, const char **out);

/* Check that node `id_text` exists and is not deleted (ZNP_E_NOT_FOUND otherwise). `lock` takes a row lock. */
int znp_nodes__check(znp_ctx_t *ctx, const char *id_text, int lock);

#endif

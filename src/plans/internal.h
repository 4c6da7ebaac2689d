/*
 * Shared pieces of the plans module: reading plan and billing-option rows
 * into their summaries, the audit helper and the transaction end.
 */
#ifndef ZNP_PLANS_INTERNAL_H
#define ZNP_PLANS_INTERNAL_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdint.h>

#include "core/context.h"
#include "schemas.gen.h"

#define LOG_TAG "plans"

/* decimal text of `v` in `buf` */
const char *znp_plans__int(char *buf, size_t size, int64_t v);

/* Commit when rc is 0, else roll back. Returns rc or the commit's error. */
int znp_plans__finish(znp_ctx_t *ctx, int rc);

/* One audit row for an admin write on resource `type` with id `id`. */
int znp_plans__audit(znp_ctx_t *ctx, const char *action, const char *type, int64_t id, json_t *diff);

/* Columns of a billing option, in the order znp_plans__fill_option reads them. */
#define ZNP_PLANS_OPTION_COLUMNS                                                                                       \
    "id, plan_id, name, duration_value, duration_unit, price_cents, currency, sort_order, status, visible,"           \
    " extract(epoch FROM created_at)::bigint, extract(epoch FROM updated_at)::bigint"

void znp_plans__fill_option(const PGresult *res, int row, znp_plan_billing_option_t *out);

/*
 * Load the options of plans `ids` (count entries) in listing order; with
 * `on_sale` only the active and visible ones. *res is owned by the caller.
 */
int znp_plans__load_options(znp_ctx_t *ctx, const int64_t *ids, size_t count, int on_sale, PGresult **res);

/* The rows of `res` whose plan_id is `plan_id`, as an arena array of znp_plan_billing_option_t. */
int znp_plans__pick_options(znp_ctx_t *ctx, const PGresult *res, int64_t plan_id, znp_array_t *out);

/*
 * Lower-case `in`, turn every run of characters other than ASCII letters and
 * digits into one hyphen and drop hyphens at both ends. Returns an arena
 * string ("" when nothing is left), or NULL when out of memory.
 */
char *znp_plans__slugify(znp_arena_t *arena, const char *in);

/*
 * Check and normalise traffic multipliers. Keys are protocol names (ASCII
 * letters, digits, '_' or '-', at most 32 bytes), lower-cased and unique.
 * Values are numbers greater than 0 and at most 1000. On success *text is the
 * JSON text of the normalised object, with sorted keys (arena).
 */
int znp_plans__multipliers(znp_ctx_t *ctx, json_t *in, const char **text);

/* Lock plan `id` FOR UPDATE inside the open transaction; ZNP_E_NOT_FOUND when missing. */
int znp_plans__lock(znp_ctx_t *ctx, int64_t id, PGresult **res);

/* Read plan `id` with its bindings and every billing option into `out`. */
int znp_plans__reload(znp_ctx_t *ctx, int64_t id, znp_plan_t *out);

#endif

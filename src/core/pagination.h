/*
 * The `pagination` object of every list response: page, per_page, the
 * count of every matching row, and whether pages exist before and after.
 */
#ifndef ZNP_CORE_PAGINATION_H
#define ZNP_CORE_PAGINATION_H

#include <stdint.h>

#include "schemas.gen.h"

/*
 * Fill `out` for page `page` (from 1) of `per_page` rows out of `total`
 * matching rows. has_next is computed by division, so no page number a client
 * sends can overflow it.
 */
static inline void znp_pagination_fill(znp_pagination_t *out, int64_t page, int64_t per_page, int64_t total)
{
    out->page = page;
    out->per_page = per_page;
    out->total_count = total;
    out->has_prev = page > 1;
    out->has_next = total > 0 && per_page > 0 && page <= (total - 1) / per_page;
}

#endif

#include "router.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SEGMENTS ZNP_ROUTER_MAX_SEGMENTS

typedef struct segment_text {
    const char *text; /* percent-decoded, NUL-terminated, inside znp_route_match_t.buffer */
} segment_text_t;

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Whether `text` has neither '%' nor a byte of 0x80 or above (nor NUL). */
static int ascii_without_escapes(const char *text, size_t len)
{
    for (size_t k = 0; k < len; k++) {
        unsigned char c = (unsigned char)text[k];

        if (c == '%' || c >= 0x80 || c == '\0')
            return 0;
    }
    return 1;
}

/*
 * Split the raw path on '/' and percent-decode each segment into
 * out->buffer. "/" has no segments; "/a/" has two ("a" and "").
 */
static int split_path(znp_route_match_t *out, segment_text_t *segments, size_t *count, const char *path,
                      size_t path_len)
{
    size_t used = 0, n = 0, i = 1;

    *count = 0;
    if (path_len == 0 || path[0] != '/')
        return ZNP_E_ROUTE_NOT_FOUND;
    if (path_len == 1)
        return 0;

    while (i <= path_len) {
        const char *start = path + i;
        const char *slash = memchr(start, '/', path_len - i);
        size_t len = slash != NULL ? (size_t)(slash - start) : path_len - i;
        char *dst = out->buffer + used;
        size_t decoded = 0;

        if (n == MAX_SEGMENTS)
            return ZNP_E_ROUTE_NOT_FOUND;
        /* decoding never grows a segment, so len + 1 bytes suffice */
        if (len + 1 > sizeof(out->buffer) - used)
            return ZNP_E_URI_TOO_LONG;
        if (ascii_without_escapes(start, len)) {
            /* the common case: nothing to decode, and ASCII is valid UTF-8 */
            memcpy(dst, start, len);
            dst[len] = '\0';
            segments[n++].text = dst;
            used += len + 1;
            i += len + 1;
            continue;
        }
        for (size_t k = 0; k < len; k++) {
            char c = start[k];
            if (c == '%') {
                int hi, lo;
                if (len - k < 3 || (hi = hex_value((unsigned char)start[k + 1])) < 0 ||
                    (lo = hex_value((unsigned char)start[k + 2])) < 0)
                    return ZNP_E_VALIDATION_FAILED;
                c = (char)(hi * 16 + lo);
                k += 2;
                if (c == '\0')
                    return ZNP_E_VALIDATION_FAILED;
            }
            dst[decoded++] = c;
        }
        dst[decoded] = '\0';
        if (!znp_utf8_valid(dst, decoded))
            return ZNP_E_VALIDATION_FAILED;
        segments[n++].text = dst;
        used += decoded + 1;
        i += len + 1;
    }
    *count = n;
    return 0;
}

static int template_matches(const znp_route_t *route, const segment_text_t *segments, size_t count,
                            const char *admin_prefix)
{
    if (route->segment_count != count)
        return 0;
    /* compare the last segment first: routes share the leading "api" and "v1", so later segments differ sooner */
    for (size_t i = count; i-- > 0;) {
        const znp_segment_t *seg = &route->segments[i];
        switch (seg->kind) {
        case ZNP_SEG_STATIC:
            if (seg->text[0] != segments[i].text[0] || strcmp(seg->text, segments[i].text) != 0)
                return 0;
            break;
        case ZNP_SEG_PARAM:
            if (segments[i].text[0] == '\0')
                return 0;
            break;
        case ZNP_SEG_ADMIN_PREFIX:
            /* NOTE: the prefix must be one path segment. A prefix containing '/' never matches, so admin routes stay closed. */
            if (admin_prefix == NULL || admin_prefix[0] == '\0' || strcmp(admin_prefix, segments[i].text) != 0)
                return 0;
            break;
        default:
            return 0;
        }
    }
    return 1;
}

/* <0 when `a` is more specific than `b`: at the first position where they differ, a literal beats a parameter */
static int compare_specificity(const znp_route_t *a, const znp_route_t *b)
{
    for (size_t i = 0; i < a->segment_count && i < b->segment_count; i++) {
        int a_param = a->segments[i].kind == ZNP_SEG_PARAM;
        int b_param = b->segments[i].kind == ZNP_SEG_PARAM;
        if (a_param != b_param)
            return a_param ? 1 : -1;
    }
    return 0;
}

static int method_matches(const char *route_method, const char *method)
{
    if (strcmp(route_method, method) == 0)
        return 1;
    return strcmp(method, "HEAD") == 0 && strcmp(route_method, "GET") == 0;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void build_allow(znp_route_match_t *out, const char **methods, size_t count)
{
    size_t used = 0;

    qsort(methods, count, sizeof(*methods), compare_strings);
    out->allow[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        size_t len = strlen(methods[i]);
        size_t need = len + (used > 0 ? 2 : 0);
        if (i > 0 && strcmp(methods[i], methods[i - 1]) == 0)
            continue;
        if (used + need + 1 > sizeof(out->allow))
            break;
        if (used > 0) {
            memcpy(out->allow + used, ", ", 2);
            used += 2;
        }
        memcpy(out->allow + used, methods[i], len);
        used += len;
        out->allow[used] = '\0';
    }
}

/* The candidates of an indexed lookup: the routes of the path's group with its literal, or a parameter, at the key position. */
static const unsigned short *candidates(const znp_router_index_t *index, const segment_text_t *segments,
                                        size_t segment_count, size_t *count)
{
    const znp_router_group_t *group = &index->groups[segment_count];
    const znp_router_key_t *keys = index->keys + group->keys_from;
    size_t low = 0, high = group->key_count;

    if (group->key_count > 0) {
        const char *text = segments[group->key_at].text;

        while (low < high) {
            size_t mid = low + (high - low) / 2;
            int order = strcmp(text, keys[mid].text);

            if (order == 0) {
                *count = keys[mid].count;
                return index->lists + keys[mid].from;
            }
            if (order < 0)
                high = mid;
            else
                low = mid + 1;
        }
    }
    *count = group->other_count;
    return index->lists + group->other_from;
}

/* Match against every route in table order, or, with an index, only against the candidates it gives. */
static int match_among(znp_route_match_t *out, const znp_route_t *routes, size_t route_count,
                       const znp_router_index_t *index, const char *method, const char *path, size_t path_len,
                       const char *admin_prefix)
{
    segment_text_t segments[MAX_SEGMENTS];
    size_t segment_count = 0, allowed_count = 0, count = route_count;
    const unsigned short *list = NULL;
    const char *allowed[32];
    const znp_route_t *best = NULL;
    int rc;

    out->route = NULL;
    out->param_count = 0;
    out->allow[0] = '\0';
    out->buffer[0] = '\0';

    rc = split_path(out, segments, &segment_count, path, path_len);
    if (rc != 0)
        return rc;

    if (index != NULL)
        list = candidates(index, segments, segment_count, &count);
    for (size_t i = 0; i < count; i++) {
        const znp_route_t *route = &routes[list != NULL ? list[i] : i];

        if (!template_matches(route, segments, segment_count, admin_prefix))
            continue;
        if (allowed_count < sizeof(allowed) / sizeof(allowed[0]) - 1) {
            allowed[allowed_count++] = route->method;
            if (strcmp(route->method, "GET") == 0)
                allowed[allowed_count++] = "HEAD";
        }
        if (!method_matches(route->method, method))
            continue;
        /* table order decides only between routes of equal specificity, and an exact HEAD route beats GET */
        if (best == NULL || compare_specificity(route, best) < 0 ||
            (compare_specificity(route, best) == 0 && strcmp(best->method, method) != 0 &&
             strcmp(route->method, method) == 0))
            best = route;
    }

    if (best == NULL) {
        if (allowed_count == 0)
            return ZNP_E_ROUTE_NOT_FOUND;
        build_allow(out, allowed, allowed_count);
        return ZNP_E_METHOD_NOT_ALLOWED;
    }

    out->route = best;
    /* the admin prefix is reported too, under its template name, for request schemas that declare it */
    for (size_t i = 0; i < best->segment_count; i++) {
        if (best->segments[i].kind == ZNP_SEG_STATIC)
            continue;
        if (out->param_count == ZNP_ROUTER_MAX_PARAMS)
            return ZNP_E_INTERNAL;
        out->params[out->param_count].name = best->segments[i].text;
        out->params[out->param_count].value = segments[i].text;
        out->param_count++;
    }
    return 0;
}

int znp_router_match(znp_route_match_t *out, const znp_route_t *routes, size_t route_count, const char *method,
                     const char *path, size_t path_len, const char *admin_prefix)
{
    return match_among(out, routes, route_count, NULL, method, path, path_len, admin_prefix);
}

/*
 * The distinct literals at position `at` of the routes `members` (sorted,
 * into `texts`), how many of the routes have no literal there (*other) and
 * the most that share one literal (*most).
 */
static size_t literals_at(const char **texts, size_t *other, size_t *most, const znp_route_t *routes,
                          const unsigned short *members, size_t member_count, size_t at)
{
    size_t n = 0, distinct = 0, run = 0;

    *other = 0;
    *most = 0;
    for (size_t i = 0; i < member_count; i++) {
        const znp_segment_t *seg = &routes[members[i]].segments[at];

        if (seg->kind == ZNP_SEG_STATIC)
            texts[n++] = seg->text;
        else
            (*other)++;
    }
    qsort(texts, n, sizeof(*texts), compare_strings);
    for (size_t i = 0; i < n; i++) {
        if (distinct == 0 || strcmp(texts[distinct - 1], texts[i]) != 0) {
            texts[distinct++] = texts[i];
            run = 0;
        }
        if (++run > *most)
            *most = run;
    }
    return distinct;
}

/* Append to index->lists the members with `text` at `at` (any literal when NULL: none) or a parameter there. */
static int append_list(znp_router_index_t *index, size_t *used, const unsigned short *members, size_t member_count,
                       size_t at, const char *text, unsigned short *from, unsigned short *count)
{
    *from = (unsigned short)*used;
    for (size_t i = 0; i < member_count; i++) {
        const znp_segment_t *seg = &index->routes[members[i]].segments[at];

        if (seg->kind == ZNP_SEG_STATIC && (text == NULL || strcmp(seg->text, text) != 0))
            continue;
        if (*used == ZNP_ROUTER_LIST_MAX)
            return ZNP_E_INTERNAL;
        index->lists[(*used)++] = members[i];
    }
    *count = (unsigned short)(*used - *from);
    return 0;
}

/* Fill the group of the routes `members` (all with `segments` segments), keyed at its most telling position. */
static int index_group(znp_router_index_t *index, size_t *used, size_t *key_used, const unsigned short *members,
                       size_t member_count, size_t segments)
{
    znp_router_group_t *group = &index->groups[segments];
    const char *texts[ZNP_ROUTER_INDEX_MAX];
    size_t best_at = 0, best_longest = SIZE_MAX, best_size = SIZE_MAX, other, most, distinct;
    int rc;

    /* without a position to key on, every member is a candidate */
    if (segments == 0) {
        if (*used + member_count > ZNP_ROUTER_LIST_MAX)
            return ZNP_E_INTERNAL;
        group->other_from = (unsigned short)*used;
        group->other_count = (unsigned short)member_count;
        memcpy(index->lists + *used, members, member_count * sizeof(*members));
        *used += member_count;
        return 0;
    }

    /*
     * The position whose longest candidate list is shortest, then whose lists
     * are shortest in all. Each route with a parameter there is in every list.
     */
    for (size_t at = 0; at < segments; at++) {
        size_t longest, size;

        distinct = literals_at(texts, &other, &most, index->routes, members, member_count, at);
        longest = most + other;
        size = member_count - other + other * (distinct + 1);
        if (longest < best_longest || (longest == best_longest && size < best_size)) {
            best_longest = longest;
            best_size = size;
            best_at = at;
        }
    }
    distinct = literals_at(texts, &other, &most, index->routes, members, member_count, best_at);
    if (*key_used + distinct > ZNP_ROUTER_INDEX_MAX)
        return ZNP_E_INTERNAL;
    group->key_at = (unsigned short)best_at;
    group->keys_from = (unsigned short)*key_used;
    group->key_count = (unsigned short)distinct;
    for (size_t k = 0; k < distinct; k++) {
        znp_router_key_t *key = &index->keys[(*key_used)++];

        key->text = texts[k];
        rc = append_list(index, used, members, member_count, best_at, texts[k], &key->from, &key->count);
        if (rc != 0)
            return rc;
    }
    return append_list(index, used, members, member_count, best_at, NULL, &group->other_from, &group->other_count);
}

int znp_router_index_init(znp_router_index_t *index, const znp_route_t *routes, size_t route_count)
{
    unsigned short members[ZNP_ROUTER_INDEX_MAX];
    size_t used = 0, key_used = 0;

    memset(index, 0, sizeof(*index));
    if (route_count > ZNP_ROUTER_INDEX_MAX)
        return ZNP_E_INTERNAL;
    for (size_t i = 0; i < route_count; i++) {
        if (routes[i].segment_count > MAX_SEGMENTS)
            return ZNP_E_INTERNAL;
    }
    index->routes = routes;
    index->route_count = route_count;
    for (size_t n = 0; n <= MAX_SEGMENTS; n++) {
        size_t member_count = 0;
        int rc;

        for (size_t i = 0; i < route_count; i++) {
            if (routes[i].segment_count == n)
                members[member_count++] = (unsigned short)i;
        }
        rc = index_group(index, &used, &key_used, members, member_count, n);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int znp_router_match_indexed(znp_route_match_t *out, const znp_router_index_t *index, const char *method,
                             const char *path, size_t path_len, const char *admin_prefix)
{
    return match_among(out, index->routes, index->route_count, index, method, path, path_len, admin_prefix);
}

/*
 * Process metrics in Prometheus text format 0.0.4.
 *
 * Every update is a relaxed atomic operation, so any thread (event loops,
 * workers, the gRPC completion-queue thread) records without a lock. Label
 * values are interned into fixed-size open-addressing tables: a slot goes
 * from NULL to a private copy of the string with one compare-and-swap and
 * never changes again until znp_metrics_init(). When a table is full, new
 * label values are counted under the label value "other", so memory and the
 * number of series stay bounded whatever the callers pass.
 */
#include "runtime/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "errors.gen.h"
#include "runtime/health.h"
#include "runtime/pool.h"
#include "znp_version.h"

#define ROUTE_SLOTS  512  /* power of two */
#define GRPC_SLOTS   256  /* power of two */
#define SERIES_SLOTS 4096 /* power of two; (route, method, status) triples */
#define GRPC_CODES   17   /* google.rpc.Code 0..16 */
#define JOB_SLOTS    64   /* power of two; job kinds */
#define JOB_RESULTS  3

/* histogram upper bounds in seconds; the +Inf bucket is implicit */
static const double bucket_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define BUCKET_COUNT (sizeof(bucket_bounds) / sizeof(bucket_bounds[0]))

static const char *const method_names[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"};
#define METHOD_COUNT (sizeof(method_names) / sizeof(method_names[0]))

static const char *const grpc_code_names[GRPC_CODES] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

/* an interned label table; index `capacity` is the overflow label "other" */
typedef struct label_table {
    size_t capacity;
    _Atomic(char *) *slots;
} label_table_t;

typedef struct histogram {
    atomic_uint_fast64_t buckets[BUCKET_COUNT + 1]; /* not cumulative; the last one is +Inf */
    atomic_uint_fast64_t sum_ns;
} histogram_t;

static _Atomic(char *) route_slots[ROUTE_SLOTS];
static _Atomic(char *) grpc_slots[GRPC_SLOTS];
static label_table_t routes = {ROUTE_SLOTS, route_slots};
static label_table_t grpc_methods = {GRPC_SLOTS, grpc_slots};

/* key = (route index + 1) << 16 | method index << 10 | status; 0 marks a free slot */
static atomic_uint_fast32_t series_keys[SERIES_SLOTS];
static atomic_uint_fast64_t series_counts[SERIES_SLOTS];
static atomic_uint_fast64_t series_dropped;

static histogram_t http_durations[ROUTE_SLOTS + 1];
static atomic_long http_in_flight;

static atomic_uint_fast64_t grpc_counts[GRPC_SLOTS + 1][GRPC_CODES];
static histogram_t grpc_durations[GRPC_SLOTS + 1];

static const char *const job_result_names[JOB_RESULTS] = {"done", "retry", "dead"};
static _Atomic(char *) job_slots[JOB_SLOTS];
static label_table_t job_kinds = {JOB_SLOTS, job_slots};
static atomic_uint_fast64_t job_counts[JOB_SLOTS + 1][JOB_RESULTS];
static atomic_long jobs_queue_depth;

#define KERNEL_CALLS   6 /* the last one is "other" */
#define KERNEL_RESULTS 6
static const char *const kernel_call_names[KERNEL_CALLS] = {
    "status", "protocols", "event_registrations", "service_event_registrations", "node_config", "other"};
static const char *const kernel_result_names[KERNEL_RESULTS] = {"ok",          "error",     "timeout",
                                                                "unreachable", "malformed", "unauthorized"};
static atomic_uint_fast64_t kernel_counts[KERNEL_CALLS][KERNEL_RESULTS];
static histogram_t kernel_durations[KERNEL_CALLS];
static atomic_uint_fast64_t node_polls[2]; /* online, offline */

static _Atomic double start_time_seconds;

static uint64_t hash_string(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */

    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

/* Index of `name` in `table`, inserting a copy when absent; `capacity` (the "other" label) when full. */
static size_t intern(label_table_t *table, const char *name)
{
    size_t mask = table->capacity - 1;
    size_t start = (size_t)hash_string(name) & mask;

    for (size_t i = 0; i < table->capacity; i++) {
        size_t slot = (start + i) & mask;
        char *current = atomic_load_explicit(&table->slots[slot], memory_order_acquire);

        if (current == NULL) {
            char *copy = strdup(name);
            char *expected = NULL;

            if (copy == NULL)
                return table->capacity;
            if (atomic_compare_exchange_strong_explicit(&table->slots[slot], &expected, copy, memory_order_acq_rel,
                                                        memory_order_acquire))
                return slot;
            free(copy);
            current = expected; /* another thread claimed the slot first */
        }
        if (strcmp(current, name) == 0)
            return slot;
    }
    return table->capacity;
}

static const char *label_name(label_table_t *table, size_t index)
{
    if (index >= table->capacity)
        return "other";
    return atomic_load_explicit(&table->slots[index], memory_order_acquire);
}

static void clear_table(label_table_t *table)
{
    for (size_t i = 0; i < table->capacity; i++)
        free(atomic_exchange(&table->slots[i], NULL));
}

static size_t method_index(const char *method)
{
    for (size_t i = 0; i + 1 < METHOD_COUNT; i++) {
        if (strcmp(method, method_names[i]) == 0)
            return i;
    }
    return METHOD_COUNT - 1;
}

static void histogram_observe(histogram_t *histogram, double seconds)
{
    size_t bucket = 0;

    if (!(seconds >= 0)) /* also catches NaN */
        seconds = 0;
    while (bucket < BUCKET_COUNT && seconds > bucket_bounds[bucket])
        bucket++;
    atomic_fetch_add_explicit(&histogram->buckets[bucket], 1, memory_order_relaxed);
    if (seconds < 1e9)
        atomic_fetch_add_explicit(&histogram->sum_ns, (uint64_t)llround(seconds * 1e9), memory_order_relaxed);
}

static void histogram_clear(histogram_t *histogram)
{
    for (size_t i = 0; i <= BUCKET_COUNT; i++)
        atomic_store(&histogram->buckets[i], 0);
    atomic_store(&histogram->sum_ns, 0);
}

static uint64_t histogram_total(histogram_t *histogram)
{
    uint64_t total = 0;

    for (size_t i = 0; i <= BUCKET_COUNT; i++)
        total += atomic_load_explicit(&histogram->buckets[i], memory_order_relaxed);
    return total;
}

/* process_start_time_seconds: taken when the binary is loaded, before main() */
__attribute__((constructor)) static void record_start_time(void)
{
    struct timespec now;

    clock_gettime(CLOCK_REALTIME, &now);
    atomic_store(&start_time_seconds, (double)now.tv_sec + (double)now.tv_nsec / 1e9);
}

/* bumped by znp_metrics_init, which empties the label tables that route_memo points into */
static atomic_uint metrics_generation = 1;

/*
 * The route label index of each static route string, per thread, by
 * address. Interning hashes and compares the whole string, which took
 * about 220 instructions per request (callgrind).
 */
#define ROUTE_MEMO 64 /* power of two */
static __thread struct {
    const char *route;
    unsigned generation;
    size_t index;
} route_memo[ROUTE_MEMO];

static size_t route_index_of(const char *route)
{
    unsigned generation = atomic_load_explicit(&metrics_generation, memory_order_relaxed);
    size_t slot = ((uintptr_t)route >> 3) & (ROUTE_MEMO - 1);

    if (route_memo[slot].route != route || route_memo[slot].generation != generation) {
        route_memo[slot].index = intern(&routes, route);
        route_memo[slot].route = route;
        route_memo[slot].generation = generation;
    }
    return route_memo[slot].index;
}

void znp_metrics_init(void)
{
    atomic_fetch_add(&metrics_generation, 1);
    clear_table(&routes);
    clear_table(&grpc_methods);
    for (size_t i = 0; i < SERIES_SLOTS; i++) {
        atomic_store(&series_keys[i], 0);
        atomic_store(&series_counts[i], 0);
    }
    atomic_store(&series_dropped, 0);
    for (size_t i = 0; i <= ROUTE_SLOTS; i++)
        histogram_clear(&http_durations[i]);
    for (size_t i = 0; i <= GRPC_SLOTS; i++) {
        for (size_t code = 0; code < GRPC_CODES; code++)
            atomic_store(&grpc_counts[i][code], 0);
        histogram_clear(&grpc_durations[i]);
    }
    atomic_store(&http_in_flight, 0);
    clear_table(&job_kinds);
    for (size_t i = 0; i <= JOB_SLOTS; i++) {
        for (size_t r = 0; r < JOB_RESULTS; r++)
            atomic_store(&job_counts[i][r], 0);
    }
    atomic_store(&jobs_queue_depth, 0);
    for (size_t i = 0; i < KERNEL_CALLS; i++) {
        for (size_t r = 0; r < KERNEL_RESULTS; r++)
            atomic_store(&kernel_counts[i][r], 0);
        histogram_clear(&kernel_durations[i]);
    }
    atomic_store(&node_polls[0], 0);
    atomic_store(&node_polls[1], 0);
}

void znp_metrics_kernel_call(const char *call, const char *result, double seconds)
{
    size_t c = 5, r = 1; /* "other", "error" */

    for (size_t i = 0; call != NULL && i < KERNEL_CALLS; i++) {
        if (strcmp(call, kernel_call_names[i]) == 0)
            c = i;
    }
    for (size_t i = 0; result != NULL && i < KERNEL_RESULTS; i++) {
        if (strcmp(result, kernel_result_names[i]) == 0)
            r = i;
    }
    atomic_fetch_add_explicit(&kernel_counts[c][r], 1, memory_order_relaxed);
    histogram_observe(&kernel_durations[c], seconds);
}

void znp_metrics_node_poll(const char *outcome)
{
    atomic_fetch_add_explicit(&node_polls[outcome != NULL && strcmp(outcome, "online") == 0 ? 0 : 1], 1,
                              memory_order_relaxed);
}

void znp_metrics_job_finished(const char *kind, const char *result)
{
    size_t index = intern(&job_kinds, kind);

    for (size_t r = 0; r < JOB_RESULTS; r++) {
        if (strcmp(result, job_result_names[r]) == 0) {
            atomic_fetch_add_explicit(&job_counts[index][r], 1, memory_order_relaxed);
            return;
        }
    }
}

void znp_metrics_jobs_queue_depth_set(long depth)
{
    atomic_store_explicit(&jobs_queue_depth, depth, memory_order_relaxed);
}

void znp_metrics_http_in_flight_add(int delta)
{
    atomic_fetch_add_explicit(&http_in_flight, delta, memory_order_relaxed);
}

void znp_metrics_observe_request(const char *route, const char *method, int status, double seconds)
{
    size_t route_index = route_index_of(route != NULL ? route : "unmatched");
    size_t method_idx = method_index(method != NULL ? method : "");
    uint32_t key;
    size_t start;

    if (status < 0 || status > 999)
        status = 0;
    key = (uint32_t)((route_index + 1) << 16 | method_idx << 10 | (size_t)status);
    start = (size_t)((key * 2654435761u) & (SERIES_SLOTS - 1));

    histogram_observe(&http_durations[route_index], seconds);
    for (size_t i = 0; i < SERIES_SLOTS; i++) {
        size_t slot = (start + i) & (SERIES_SLOTS - 1);
        uint_fast32_t current = atomic_load_explicit(&series_keys[slot], memory_order_acquire);

        if (current == 0) {
            uint_fast32_t expected = 0;

            if (atomic_compare_exchange_strong_explicit(&series_keys[slot], &expected, key, memory_order_acq_rel,
                                                        memory_order_acquire))
                current = key;
            else
                current = expected;
        }
        if (current == key) {
            atomic_fetch_add_explicit(&series_counts[slot], 1, memory_order_relaxed);
            return;
        }
    }
    atomic_fetch_add_explicit(&series_dropped, 1, memory_order_relaxed);
}

void znp_metrics_observe_grpc(const char *method, int code, double seconds)
{
    size_t method_idx = intern(&grpc_methods, method != NULL ? method : "unknown");

    if (code < 0 || code >= GRPC_CODES)
        code = 2; /* UNKNOWN */
    atomic_fetch_add_explicit(&grpc_counts[method_idx][code], 1, memory_order_relaxed);
    histogram_observe(&grpc_durations[method_idx], seconds);
}

/* growable output buffer; `failed` sticks after the first allocation failure */
typedef struct text {
    char *data;
    size_t len;
    size_t cap;
    int failed;
} text_t;

static void text_printf(text_t *text, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_printf(text_t *text, const char *fmt, ...)
{
    va_list ap;
    int needed;

    if (text->failed)
        return;
    for (;;) {
        size_t room = text->cap - text->len;

        va_start(ap, fmt);
        needed = vsnprintf(text->data + text->len, room, fmt, ap);
        va_end(ap);
        if (needed < 0) {
            text->failed = 1;
            return;
        }
        if ((size_t)needed < room) {
            text->len += (size_t)needed;
            return;
        }

        size_t cap = text->cap * 2 > text->len + (size_t)needed + 1 ? text->cap * 2 : text->len + (size_t)needed + 1;
        char *data = realloc(text->data, cap);

        if (data == NULL) {
            text->failed = 1;
            return;
        }
        text->data = data;
        text->cap = cap;
    }
}

/* Label value with backslash, double quote and newline escaped (exposition format 0.0.4). */
static void text_label_value(text_t *text, const char *value)
{
    for (const char *p = value; *p != '\0'; p++) {
        if (*p == '\\')
            text_printf(text, "\\\\");
        else if (*p == '"')
            text_printf(text, "\\\"");
        else if (*p == '\n')
            text_printf(text, "\\n");
        else
            text_printf(text, "%c", *p);
    }
}

static void text_header(text_t *text, const char *name, const char *type, const char *help)
{
    text_printf(text, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* one histogram's samples; `label` and `value` name the series label */
static void text_histogram(text_t *text, const char *name, const char *label, const char *value, histogram_t *histogram)
{
    uint64_t cumulative = 0;

    for (size_t i = 0; i <= BUCKET_COUNT; i++) {
        cumulative += atomic_load_explicit(&histogram->buckets[i], memory_order_relaxed);
        text_printf(text, "%s_bucket{%s=\"", name, label);
        text_label_value(text, value);
        if (i < BUCKET_COUNT)
            text_printf(text, "\",le=\"%g\"} %llu\n", bucket_bounds[i], (unsigned long long)cumulative);
        else
            text_printf(text, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cumulative);
    }
    text_printf(text, "%s_sum{%s=\"", name, label);
    text_label_value(text, value);
    text_printf(text, "\"} %.9f\n", (double)atomic_load_explicit(&histogram->sum_ns, memory_order_relaxed) / 1e9);
    text_printf(text, "%s_count{%s=\"", name, label);
    text_label_value(text, value);
    text_printf(text, "\"} %llu\n", (unsigned long long)cumulative);
}

/* order for label indexes: by label text, "other" last */
static label_table_t *sort_table;

static int compare_labels(const void *a, const void *b)
{
    size_t ia = *(const size_t *)a;
    size_t ib = *(const size_t *)b;

    if (ia >= sort_table->capacity || ib >= sort_table->capacity)
        return (ia >= sort_table->capacity) - (ib >= sort_table->capacity);
    return strcmp(label_name(sort_table, ia), label_name(sort_table, ib));
}

/* Indexes of the used labels of `table` (plus "other" when `other_used`), sorted; *count set. malloc'd. */
static size_t *sorted_labels(label_table_t *table, int other_used, size_t *count)
{
    size_t *indexes = malloc((table->capacity + 1) * sizeof(*indexes));
    size_t n = 0;

    if (indexes == NULL) {
        *count = 0;
        return NULL;
    }
    for (size_t i = 0; i < table->capacity; i++) {
        if (atomic_load_explicit(&table->slots[i], memory_order_acquire) != NULL)
            indexes[n++] = i;
    }
    if (other_used)
        indexes[n++] = table->capacity;
    sort_table = table; /* render runs under render_lock */
    qsort(indexes, n, sizeof(*indexes), compare_labels);
    *count = n;
    return indexes;
}

typedef struct series_row {
    size_t route;
    size_t method;
    int status;
    uint64_t count;
} series_row_t;

static int compare_series(const void *a, const void *b)
{
    const series_row_t *x = a;
    const series_row_t *y = b;
    int by_route = compare_labels(&x->route, &y->route);

    if (by_route != 0)
        return by_route;
    if (x->method != y->method)
        return x->method < y->method ? -1 : 1;
    return x->status - y->status;
}

static void render_http(text_t *text)
{
    series_row_t *rows = malloc(SERIES_SLOTS * sizeof(*rows));
    size_t row_count = 0;
    size_t *labels = NULL;
    size_t label_count = 0;

    if (rows == NULL) {
        text->failed = 1;
        return;
    }
    for (size_t slot = 0; slot < SERIES_SLOTS; slot++) {
        uint32_t key = (uint32_t)atomic_load_explicit(&series_keys[slot], memory_order_acquire);

        if (key == 0)
            continue;
        rows[row_count].route = (key >> 16) - 1;
        rows[row_count].method = (key >> 10) & 0x3f;
        rows[row_count].status = (int)(key & 0x3ff);
        rows[row_count].count = atomic_load_explicit(&series_counts[slot], memory_order_relaxed);
        row_count++;
    }
    sort_table = &routes;
    qsort(rows, row_count, sizeof(*rows), compare_series);

    text_header(text, "znp_http_requests_total", "counter",
                "HTTP requests completed, by route template, method and status code (0 when the client left before the "
                "response).");
    for (size_t i = 0; i < row_count; i++) {
        text_printf(text, "znp_http_requests_total{route=\"");
        text_label_value(text, label_name(&routes, rows[i].route));
        text_printf(text, "\",method=\"%s\",status=\"%d\"} %llu\n", method_names[rows[i].method], rows[i].status,
                    (unsigned long long)rows[i].count);
    }
    text_header(text, "znp_http_series_dropped_total", "counter",
                "HTTP requests not counted in znp_http_requests_total because its series table was full.");
    text_printf(text, "znp_http_series_dropped_total %llu\n",
                (unsigned long long)atomic_load_explicit(&series_dropped, memory_order_relaxed));

    text_header(text, "znp_http_request_duration_seconds", "histogram",
                "Time from the complete request to the end of the response, by route template.");
    labels = sorted_labels(&routes, histogram_total(&http_durations[ROUTE_SLOTS]) > 0, &label_count);
    for (size_t i = 0; i < label_count; i++) {
        if (histogram_total(&http_durations[labels[i]]) > 0)
            text_histogram(text, "znp_http_request_duration_seconds", "route", label_name(&routes, labels[i]),
                           &http_durations[labels[i]]);
    }
    free(labels);

    text_header(text, "znp_http_requests_in_flight", "gauge",
                "HTTP requests received whose response has not ended yet.");
    text_printf(text, "znp_http_requests_in_flight %ld\n", atomic_load_explicit(&http_in_flight, memory_order_relaxed));
    free(rows);
}

static void render_grpc(text_t *text)
{
    int other_used = histogram_total(&grpc_durations[GRPC_SLOTS]) > 0;
    size_t label_count = 0;
    size_t *labels = sorted_labels(&grpc_methods, other_used, &label_count);

    text_header(text, "znp_grpc_requests_total", "counter",
                "gRPC calls finished, by full method name and status code.");
    for (size_t i = 0; i < label_count; i++) {
        for (size_t code = 0; code < GRPC_CODES; code++) {
            uint64_t count = atomic_load_explicit(&grpc_counts[labels[i]][code], memory_order_relaxed);

            if (count == 0)
                continue;
            text_printf(text, "znp_grpc_requests_total{method=\"");
            text_label_value(text, label_name(&grpc_methods, labels[i]));
            text_printf(text, "\",code=\"%s\"} %llu\n", grpc_code_names[code], (unsigned long long)count);
        }
    }
    text_header(text, "znp_grpc_request_duration_seconds", "histogram", "gRPC call duration, by full method name.");
    for (size_t i = 0; i < label_count; i++) {
        if (histogram_total(&grpc_durations[labels[i]]) > 0)
            text_histogram(text, "znp_grpc_request_duration_seconds", "method", label_name(&grpc_methods, labels[i]),
                           &grpc_durations[labels[i]]);
    }
    free(labels);
}

static void render_jobs(text_t *text)
{
    int other_used = 0;
    size_t label_count = 0;
    size_t *labels;

    for (size_t r = 0; r < JOB_RESULTS; r++)
        other_used |= atomic_load_explicit(&job_counts[JOB_SLOTS][r], memory_order_relaxed) > 0;
    labels = sorted_labels(&job_kinds, other_used, &label_count);
    text_header(text, "znp_jobs_total", "counter", "Job attempts finished, by job kind and result (done, retry, dead).");
    for (size_t i = 0; i < label_count; i++) {
        for (size_t r = 0; r < JOB_RESULTS; r++) {
            uint64_t count = atomic_load_explicit(&job_counts[labels[i]][r], memory_order_relaxed);

            if (count == 0)
                continue;
            text_printf(text, "znp_jobs_total{kind=\"");
            text_label_value(text, label_name(&job_kinds, labels[i]));
            text_printf(text, "\",result=\"%s\"} %llu\n", job_result_names[r], (unsigned long long)count);
        }
    }
    free(labels);
    text_header(text, "znp_jobs_queued", "gauge", "Jobs waiting in the queue, as last counted by a job runner.");
    text_printf(text, "znp_jobs_queued %ld\n", atomic_load_explicit(&jobs_queue_depth, memory_order_relaxed));
}

static void render_kernel(text_t *text)
{
    text_header(text, "znp_node_sync_calls_total", "counter",
                "Kernel control calls, by call (status, protocols, ...) and result (ok, error, timeout, unreachable, "
                "malformed, unauthorized).");
    for (size_t c = 0; c < KERNEL_CALLS; c++) {
        for (size_t r = 0; r < KERNEL_RESULTS; r++) {
            uint64_t count = atomic_load_explicit(&kernel_counts[c][r], memory_order_relaxed);

            if (count > 0)
                text_printf(text, "znp_node_sync_calls_total{call=\"%s\",result=\"%s\"} %llu\n", kernel_call_names[c],
                            kernel_result_names[r], (unsigned long long)count);
        }
    }
    text_header(text, "znp_node_sync_call_duration_seconds", "histogram", "Kernel control call duration, by call.");
    for (size_t c = 0; c < KERNEL_CALLS; c++) {
        if (histogram_total(&kernel_durations[c]) > 0)
            text_histogram(text, "znp_node_sync_call_duration_seconds", "call", kernel_call_names[c],
                           &kernel_durations[c]);
    }
    text_header(text, "znp_node_status_polls_total", "counter",
                "Node status polls of the status poller, by outcome (online, offline).");
    text_printf(text, "znp_node_status_polls_total{outcome=\"online\"} %llu\n",
                (unsigned long long)atomic_load_explicit(&node_polls[0], memory_order_relaxed));
    text_printf(text, "znp_node_status_polls_total{outcome=\"offline\"} %llu\n",
                (unsigned long long)atomic_load_explicit(&node_polls[1], memory_order_relaxed));
}

static void render_process(text_t *text, struct znp_pool *pool)
{
    size_t queued = 0, busy = 0, connected = 0, workers = 0;
    double started = atomic_load(&start_time_seconds);

    if (pool != NULL)
        znp_pool_stats(pool, &queued, &busy, &connected, &workers);
    text_header(text, "znp_db_pool_workers", "gauge", "Worker threads, each owning one PostgreSQL connection.");
    text_printf(text, "znp_db_pool_workers %zu\n", workers);
    text_header(text, "znp_db_pool_connected", "gauge", "Workers whose PostgreSQL connection is open.");
    text_printf(text, "znp_db_pool_connected %zu\n", connected);
    text_header(text, "znp_db_pool_busy", "gauge", "Workers running a job.");
    text_printf(text, "znp_db_pool_busy %zu\n", busy);
    text_header(text, "znp_db_pool_queued", "gauge", "Jobs waiting for a worker.");
    text_printf(text, "znp_db_pool_queued %zu\n", queued);

    text_header(text, "znp_up", "gauge", "1 while the process is running.");
    text_printf(text, "znp_up 1\n");
    text_header(text, "znp_serving", "gauge",
                "1 when the instance is ready (database up, migrations current, not draining), else 0.");
    text_printf(text, "znp_serving %d\n", znp_health_status() == ZNP_SERVING_SERVING ? 1 : 0);
    text_header(text, "znp_build_info", "gauge", "Build information; the value is always 1.");
    text_printf(text, "znp_build_info{version=\"");
    text_label_value(text, ZNP_VERSION);
    text_printf(text, "\"} 1\n");
    text_header(text, "process_start_time_seconds", "gauge",
                "Start time of the process since the Unix epoch in seconds.");
    text_printf(text, "process_start_time_seconds %.3f\n", started);
}

int znp_metrics_render(char **out, size_t *len, struct znp_pool *pool)
{
    static pthread_mutex_t render_lock = PTHREAD_MUTEX_INITIALIZER; /* guards sort_table */
    text_t text = {.data = malloc(16384), .cap = 16384};

    *out = NULL;
    *len = 0;
    if (text.data == NULL)
        return ZNP_E_INTERNAL;

    pthread_mutex_lock(&render_lock);
    render_http(&text);
    render_grpc(&text);
    render_jobs(&text);
    render_kernel(&text);
    render_process(&text, pool);
    pthread_mutex_unlock(&render_lock);

    if (text.failed) {
        free(text.data);
        return ZNP_E_INTERNAL;
    }
    *out = text.data;
    *len = text.len;
    return 0;
}

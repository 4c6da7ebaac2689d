/* Helpers shared by the files of the kernel module and its unit tests. */
#ifndef ZNP_KERNEL_INTERNAL_H
#define ZNP_KERNEL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "config/config.h"
#include "kernel/kernel.h"

/* Control base URL of `endpoint` (malloc'd): trimmed, trailing '/' removed, "/v1" appended unless present. */
int znp_kernel__base_url(const char *endpoint, char **out);

/* The "Authorization: ..." line for these credentials (malloc'd), or *out NULL for none. */
int znp_kernel__auth_header(const char *access_key, const char *secret_key, const char *token, char **out);

/* Unseal the sealed base64 credentials of node `node_id` (any may be NULL) into malloc'd strings or NULL. */
int znp_kernel__open_credentials(const znp_config_t *config, int64_t node_id, const char *ak_sealed,
                                 const char *sk_sealed, const char *token_sealed, char **ak, char **sk, char **token,
                                 const char *request_id);

/* Copy up to `len` bytes of `in` into `out` as one printable line (control bytes and broken UTF-8 become '?'). */
void znp_kernel__one_line(char *out, size_t size, const char *in, size_t len);

/* Headers of a kernel response that the config sync uses. */
typedef struct znp_kernel_reply {
    char etag[130]; /* "" when absent */
    int64_t date;   /* Date header in Unix seconds, 0 when absent or unreadable */
} znp_kernel_reply_t;

/* znp_kernel_call that also fills `reply` (may be NULL) from the response headers. */
int znp_kernel__request(const znp_kernel_target_t *t, const char *method, const char *path, json_t *body, json_t **out,
                        znp_kernel_reply_t *reply, char *errbuf, size_t errsize);

/* 1 once znp_kernel_poller_stop began: calls in flight abort. */
int znp_kernel__stopping(void);

/*
 * Move node `node_id` online or offline when its status is online or offline
 * and status sync is on (maintenance and disabled nodes keep theirs). When it
 * comes online from offline, *recovered is 1 and a recovery sync job is
 * queued in the caller's transaction.
 */
int znp_kernel__set_status(PGconn *db, const znp_config_t *config, int64_t node_id, int online, int *recovered,
                           const char *request_id);

#endif

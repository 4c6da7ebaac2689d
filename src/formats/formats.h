/*
 * Built-in client formats and client detection. Pure functions without I/O:
 * the download endpoint builds znp_formats_node_t values from protocol
 * entries, calls znp_formats_detect to pick the format and then
 * znp_formats_render. Every function here is thread-safe.
 *
 * Strings in znp_formats_node_t are borrowed: the caller keeps them alive
 * for the duration of a call. Rendered buffers are owned by the caller and
 * released with free().
 */
#ifndef ZNP_FORMATS_H
#define ZNP_FORMATS_H

#include <stddef.h>

#include "core/error.h"

typedef enum znp_formats_protocol {
    ZNP_FORMATS_VMESS = 0,
    ZNP_FORMATS_VLESS,
    ZNP_FORMATS_TROJAN,
    ZNP_FORMATS_SHADOWSOCKS,
    ZNP_FORMATS_HYSTERIA2,
    ZNP_FORMATS_TUIC,
    ZNP_FORMATS_ANYTLS,
} znp_formats_protocol_t;

typedef enum znp_formats_network {
    ZNP_FORMATS_NET_TCP = 0,
    ZNP_FORMATS_NET_WS,
    ZNP_FORMATS_NET_GRPC,
    ZNP_FORMATS_NET_H2,
} znp_formats_network_t;

#define ZNP_FORMATS_ALPN_MAX 4

typedef struct znp_formats_tls {
    int enabled;                 /* vmess, vless, trojan; always on for hysteria2, tuic, anytls */
    const char *sni;             /* NULL or "" when the client should use the host */
    const char *alpn[ZNP_FORMATS_ALPN_MAX];
    size_t alpn_count;
    const char *fingerprint;     /* uTLS client fingerprint such as "chrome"; NULL for none */
    int insecure;                /* skip certificate verification */
    const char *reality_public_key; /* vless only; non-NULL turns REALITY on */
    const char *reality_short_id;   /* 0 to 16 hex digits */
} znp_formats_tls_t;

typedef struct znp_formats_transport {
    znp_formats_network_t network;
    const char *path;            /* ws and h2 */
    const char *host;            /* ws Host header, h2 host */
    const char *service_name;    /* grpc */
} znp_formats_transport_t;

/*
 * One proxy entry as a client sees it. `host` is an IPv4 address, a bare
 * IPv6 address (no brackets, no zone id) or a DNS name. Which credential
 * field a protocol reads: vmess and vless read `uuid`; trojan, shadowsocks,
 * hysteria2 and anytls read `password`; tuic reads both.
 */
typedef struct znp_formats_node {
    znp_formats_protocol_t protocol;
    const char *name;            /* UTF-8, shown in the client */
    const char *host;
    int port;                    /* 1..65535 */
    const char *uuid;
    const char *password;
    const char *cipher;          /* shadowsocks method; vmess security (NULL means "auto") */
    int alter_id;                /* vmess */
    const char *flow;            /* vless, e.g. "xtls-rprx-vision" */
    znp_formats_transport_t transport;
    znp_formats_tls_t tls;
    const char *obfs;            /* hysteria2: "salamander" or NULL */
    const char *obfs_password;
    int up_mbps;                 /* hysteria2 bandwidth hints, 0 when unset */
    int down_mbps;
    const char *congestion_control; /* tuic, e.g. "bbr"; NULL means the client default */
    const char *udp_relay_mode;     /* tuic: "native" or "quic" */
} znp_formats_node_t;

typedef enum znp_formats_format {
    ZNP_FORMATS_BASE64 = 0,      /* base64 of share links, one per line (v2rayN, v2rayNG, Shadowrocket) */
    ZNP_FORMATS_LINKS,           /* the same share links without the base64 layer */
    ZNP_FORMATS_CLASH,           /* Clash Premium YAML: vmess, trojan, classic shadowsocks */
    ZNP_FORMATS_CLASH_META,      /* Clash.Meta / mihomo YAML: every protocol */
    ZNP_FORMATS_STASH,           /* Stash YAML (Clash dialect) */
    ZNP_FORMATS_SINGBOX,         /* sing-box JSON configuration */
    ZNP_FORMATS_SIP008,          /* SIP008 JSON, shadowsocks only */
    ZNP_FORMATS_SURGE,           /* Surge [Proxy] lines: no vless, no grpc or h2 transport */
    ZNP_FORMATS_QUANTUMULT_X,    /* Quantumult X server lines: shadowsocks, vmess, trojan */
    ZNP_FORMATS_LOON,            /* Loon node lines: no tuic, anytls, grpc or h2 */
    ZNP_FORMATS_FORMAT_COUNT,
} znp_formats_format_t;

/* Stable lowercase name of `format` ("base64", "clash-meta", ...). Borrowed, static. */
const char *znp_formats_format_name(znp_formats_format_t format);
/* MIME type for a response carrying `format`. Borrowed, static. */
const char *znp_formats_content_type(znp_formats_format_t format);

/*
 * Check that `node` is complete and every value can be written into each
 * format: valid UTF-8 name without control characters, a host as described
 * above (a zone id such as "fe80::1%eth0" is rejected), port 1..65535, the
 * credential its protocol needs (a UUID where one is read), a known
 * shadowsocks method, REALITY only on vless. Returns 0 or
 * ZNP_E_VALIDATION_FAILED with the field name in err->path (err may be NULL).
 */
int znp_formats_node_check(const znp_formats_node_t *node, znp_error_t *err);

/* Whether `cipher` is a shadowsocks 2022 method (2022-blake3-*). */
int znp_formats_is_ss2022(const char *cipher);

/* Key length in bytes a shadowsocks 2022 method needs (16 or 32), or 0 for any other method. */
size_t znp_formats_ss2022_key_len(const char *cipher);

/*
 * The shadowsocks 2022 user key of a user whose identity password is
 * `password_hex` (64 hex digits, 32 bytes): the first
 * znp_formats_ss2022_key_len(cipher) bytes of those 32, as padded standard
 * base64, written to out (at least 45 bytes). The kernel side must apply
 * the same steps to accept the key. Returns 0, or
 * ZNP_E_VALIDATION_FAILED when `cipher` is not a 2022 method, the password
 * is not 64 hex digits or `size` is too small.
 */
int znp_formats_ss2022_user_key(char *out, size_t size, const char *cipher, const char *password_hex);

/*
 * Write the share link of `node` (vmess://, vless://, trojan://, ss://,
 * hysteria2://, tuic://, anytls://) to *out (owned, NUL-terminated).
 * Names, user info and query values are percent-encoded as RFC 3986
 * requires: only unreserved characters stay literal, so a space is "%20".
 * Returns 0, or the error of znp_formats_node_check (*out is then NULL).
 */
int znp_formats_share_link(char **out, const znp_formats_node_t *node, znp_error_t *err);

/* Called once for each node a renderer leaves out, with its index and an English reason. */
typedef void (*znp_formats_skip_fn)(void *arg, size_t index, const znp_formats_node_t *node, const char *reason);

typedef struct znp_formats_options {
    /*
     * Version of the engine that reads the file ("1.11.3"), usually
     * znp_formats_client_t.version. Nodes the engine cannot use are skipped;
     * NULL or "" means the newest release, so only format limits apply.
     */
    const char *engine_version;
    znp_formats_skip_fn on_skip; /* may be NULL */
    void *skip_arg;
} znp_formats_options_t;

/*
 * Render `nodes` for `format` into *out (owned, NUL-terminated; *out_len
 * excludes the NUL). A node that fails znp_formats_node_check or that the
 * format or engine version cannot carry is skipped and reported through
 * opts->on_skip; the file stays valid, also when every node is skipped.
 * Duplicate names get a " 2", " 3"... suffix in YAML, sing-box, Surge and
 * Quantumult X output because those clients need unique names. `opts` may
 * be NULL. Returns 0, ZNP_E_VALIDATION_FAILED for an unknown format or
 * ZNP_E_INTERNAL when memory runs out.
 */
int znp_formats_render(char **out, size_t *out_len, znp_formats_format_t format, const znp_formats_node_t *nodes,
                       size_t count, const znp_formats_options_t *opts);

/*
 * Whether a `format` file read by an engine at `version` (NULL or "" for the
 * newest) can carry `node`'s protocol and options. On 0, *reason (may be
 * NULL) receives a static English explanation.
 */
int znp_formats_supports(znp_formats_format_t format, const char *version, const znp_formats_node_t *node,
                         const char **reason);

/* Client detection ------------------------------------------------------ */

typedef enum znp_formats_match {
    ZNP_FORMATS_MATCH_DEFAULT = 0, /* empty or unknown User-Agent */
    ZNP_FORMATS_MATCH_FLAG,        /* explicit flag/format query parameter */
    ZNP_FORMATS_MATCH_APP,         /* an application token */
    ZNP_FORMATS_MATCH_CORE,        /* a proxy core token */
    ZNP_FORMATS_MATCH_BROWSER,     /* a web browser: show a page, not nodes */
} znp_formats_match_t;

#define ZNP_FORMATS_TOKENS_MAX 6

/* One row of the detection table. */
typedef struct znp_formats_client_rule {
    const char *id;              /* stable identifier, e.g. "v2rayng", also accepted as a flag value */
    const char *display_name;    /* e.g. "v2rayNG" */
    znp_formats_match_t kind;    /* APP or CORE */
    znp_formats_format_t format;
    /*
     * 1 for apps that run a proxy core whose version they may not name
     * (FlClash runs mihomo): without a core token their own version says
     * nothing about the engine, so znp_formats_client_t.version stays "".
     */
    int embeds_core;
    /* lowercase User-Agent tokens; each must stand as a whole word */
    const char *tokens[ZNP_FORMATS_TOKENS_MAX];
} znp_formats_client_rule_t;

/* The detection table in precedence order; *count receives its length. Borrowed, static. */
const znp_formats_client_rule_t *znp_formats_client_rules(size_t *count);

#define ZNP_FORMATS_VERSION_MAX 32

typedef struct znp_formats_client {
    const znp_formats_client_rule_t *rule; /* NULL for browsers and the default */
    znp_formats_format_t format;
    znp_formats_match_t matched_by;
    /*
     * Version of the engine that reads the file: the version after the core
     * token of `format` when the User-Agent has one ("sing-box 1.11.3" inside
     * an SFI User-Agent), else the version after the matched token. "" when
     * the User-Agent carries none.
     */
    char version[ZNP_FORMATS_VERSION_MAX];
    char app_version[ZNP_FORMATS_VERSION_MAX]; /* version after the matched app token, "" otherwise */
} znp_formats_client_t;

/*
 * Detect the client from the `flag` query parameter (NULL or "" when absent;
 * `format` is an alias the caller passes the same way), the User-Agent and
 * the Accept header (both may be NULL). Precedence, first match wins:
 * 1. a flag that names a rule id, a format name or a rule token;
 * 2. application tokens, in table order;
 * 3. core tokens, in table order;
 * 4. a browser: a User-Agent starting with "Mozilla/" or an Accept header
 *    that lists text/html before any other type;
 * 5. the default, ZNP_FORMATS_BASE64.
 * The User-Agent is percent-decoded ("Quantumult%20X") and compared without
 * regard to case. Never fails.
 */
void znp_formats_detect(znp_formats_client_t *out, const char *flag, const char *user_agent, const char *accept);

/*
 * Compare two dotted versions numerically ("1.10.0" > "1.9.9"); a leading
 * "v" and any suffix after the numbers are ignored. Returns <0, 0 or >0.
 */
int znp_formats_version_compare(const char *a, const char *b);

/* Strict RFC 3986 parsing, used by tests to check what the renderers write. */

typedef struct znp_formats_uri {
    char *scheme;                /* lowercase */
    char *userinfo;              /* percent-decoded; NULL when absent */
    char *host;                  /* bracketless for IP literals */
    int port;                    /* -1 when absent */
    char *path;                  /* raw, may be "" */
    char *query;                 /* raw, NULL when absent */
    char *fragment;              /* percent-decoded; NULL when absent */
} znp_formats_uri_t;

/*
 * Parse `text` as an absolute URI with an authority. Rejects every character
 * RFC 3986 does not allow in its position (a space, a raw "#" or "[" in the
 * fragment, non-ASCII bytes), malformed percent-escapes, a port outside
 * 0..65535 and an IPv6 literal that inet_pton rejects. Returns 0 or
 * ZNP_E_VALIDATION_FAILED; release with znp_formats_uri_dispose.
 */
int znp_formats_uri_parse(znp_formats_uri_t *out, const char *text);
void znp_formats_uri_dispose(znp_formats_uri_t *uri);

/*
 * Find query parameter `key` in the raw `query` of a parsed URI and write its
 * percent-decoded value to *out (owned). Returns 0, ZNP_E_NOT_FOUND or
 * ZNP_E_VALIDATION_FAILED for a bad escape.
 */
int znp_formats_uri_query_get(char **out, const char *query, const char *key);

/* Percent-decode `len` bytes of `in` into *out (owned). Returns 0 or ZNP_E_VALIDATION_FAILED. */
int znp_formats_percent_decode(char **out, const char *in, size_t len);

#endif

/* Client detection from the flag parameter, User-Agent and Accept, and capability gating. */
#include "formats/formats.h"

#include <ctype.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/internal.h"

#define APP ZNP_FORMATS_MATCH_APP
#define CORE ZNP_FORMATS_MATCH_CORE

/*
 * Precedence order. App rows come before core rows because app User-Agents
 * often name the core they embed as well ("karing/1.1.0 singbox/1.12.0
 * clashmeta mihomo/1.19.0"). Within each kind the first row that matches
 * wins, so specific Clash apps come before the bare "clash" core token.
 */
static const znp_formats_client_rule_t rules[] = {
    {"karing", "Karing", APP, ZNP_FORMATS_SINGBOX, 1, {"karing"}},
    {"flclash", "FlClash", APP, ZNP_FORMATS_CLASH_META, 1, {"flclash"}},
    {"clash-verge", "Clash Verge", APP, ZNP_FORMATS_CLASH_META, 1, {"clash-verge", "clash verge", "clash-verge-rev"}},
    {"clash-nyanpasu", "Clash Nyanpasu", APP, ZNP_FORMATS_CLASH_META, 1, {"clash-nyanpasu", "nyanpasu"}},
    {"mihomo-party", "Mihomo Party", APP, ZNP_FORMATS_CLASH_META, 1, {"mihomo-party", "mihomo party"}},
    {"clashx-meta", "ClashX Meta", APP, ZNP_FORMATS_CLASH_META, 1, {"clashx meta", "clashx-meta", "clashxmeta"}},
    {"clash-for-windows", "Clash for Windows", APP, ZNP_FORMATS_CLASH, 1, {"clash-for-windows", "clashforwindows"}},
    {"stash", "Stash", APP, ZNP_FORMATS_STASH, 0, {"stash"}},
    {"shadowrocket", "Shadowrocket", APP, ZNP_FORMATS_BASE64, 0, {"shadowrocket"}},
    {"quantumult-x", "Quantumult X", APP, ZNP_FORMATS_QUANTUMULT_X, 0, {"quantumult x", "quantumultx", "quantumult"}},
    {"surge", "Surge", APP, ZNP_FORMATS_SURGE, 0, {"surge"}},
    {"loon", "Loon", APP, ZNP_FORMATS_LOON, 0, {"loon"}},
    {"v2rayng", "v2rayNG", APP, ZNP_FORMATS_BASE64, 1, {"v2rayng"}},
    {"v2rayn", "v2rayN", APP, ZNP_FORMATS_BASE64, 1, {"v2rayn"}},
    {"sing-box-app", "sing-box (SFI/SFA/SFM/SFT)", APP, ZNP_FORMATS_SINGBOX, 1, {"sfi", "sfa", "sfm", "sft"}},
    {"hiddify", "Hiddify", APP, ZNP_FORMATS_SINGBOX, 1, {"hiddify", "hiddifynext"}},
    {"nekobox", "NekoBox", APP, ZNP_FORMATS_BASE64, 1, {"nekobox", "neko box", "nekoray"}},
    {"clash-meta", "Clash.Meta (mihomo)", CORE, ZNP_FORMATS_CLASH_META, 0,
     {"mihomo", "clash.meta", "clashmeta", "clash-meta"}},
    {"clash", "Clash", CORE, ZNP_FORMATS_CLASH, 0, {"clash", "clashx"}},
    {"sing-box", "sing-box", CORE, ZNP_FORMATS_SINGBOX, 0, {"sing-box", "singbox"}},
    {"xray", "Xray", CORE, ZNP_FORMATS_BASE64, 0, {"xray"}},
    {"v2ray", "V2Ray", CORE, ZNP_FORMATS_BASE64, 0, {"v2ray", "v2fly"}},
};

#define RULE_COUNT (sizeof(rules) / sizeof(rules[0]))

const znp_formats_client_rule_t *znp_formats_client_rules(size_t *count)
{
    *count = RULE_COUNT;
    return rules;
}

/* version comparison */

static const char *skip_v(const char *s)
{
    return (s[0] == 'v' || s[0] == 'V') ? s + 1 : s;
}

int znp_formats_version_compare(const char *a, const char *b)
{
    a = skip_v(a);
    b = skip_v(b);
    while (isdigit((unsigned char)*a) || isdigit((unsigned char)*b)) {
        unsigned long x = 0;
        unsigned long y = 0;

        for (; isdigit((unsigned char)*a); a++)
            x = x < 100000000UL ? x * 10 + (unsigned long)(*a - '0') : x;
        for (; isdigit((unsigned char)*b); b++)
            y = y < 100000000UL ? y * 10 + (unsigned long)(*b - '0') : y;
        if (x != y)
            return x < y ? -1 : 1;
        a += (*a == '.' && isdigit((unsigned char)a[1])) ? 1 : 0;
        b += (*b == '.' && isdigit((unsigned char)b[1])) ? 1 : 0;
        if (!isdigit((unsigned char)*a) && !isdigit((unsigned char)*b))
            break;
    }
    return 0;
}

/* capability gating */

/*
 * First release whose outbound reads the protocol, per format. NULL in
 * `min` means no release of that format can carry it.
 * NOTE: these versions come from upstream release notes and were not
 * re-tested against each release. Correct them here if a client disagrees.
 */
static const struct {
    znp_formats_format_t format;
    znp_formats_protocol_t protocol;
    const char *min;
} caps[] = {
    {ZNP_FORMATS_CLASH, ZNP_FORMATS_VLESS, NULL},
    {ZNP_FORMATS_CLASH, ZNP_FORMATS_HYSTERIA2, NULL},
    {ZNP_FORMATS_CLASH, ZNP_FORMATS_TUIC, NULL},
    {ZNP_FORMATS_CLASH, ZNP_FORMATS_ANYTLS, NULL},
    {ZNP_FORMATS_CLASH_META, ZNP_FORMATS_TUIC, "1.14.0"},
    {ZNP_FORMATS_CLASH_META, ZNP_FORMATS_HYSTERIA2, "1.16.0"},
    {ZNP_FORMATS_CLASH_META, ZNP_FORMATS_ANYTLS, "1.19.2"},
    {ZNP_FORMATS_STASH, ZNP_FORMATS_ANYTLS, NULL},
    {ZNP_FORMATS_SINGBOX, ZNP_FORMATS_TUIC, "1.2.0"},
    {ZNP_FORMATS_SINGBOX, ZNP_FORMATS_HYSTERIA2, "1.5.0"},
    {ZNP_FORMATS_SINGBOX, ZNP_FORMATS_ANYTLS, "1.12.0"},
};

static const char *surge_limits(const znp_formats_node_t *node)
{
    if (node->protocol == ZNP_FORMATS_VLESS)
        return "Surge has no vless";
    if (node->transport.network == ZNP_FORMATS_NET_GRPC || node->transport.network == ZNP_FORMATS_NET_H2)
        return "Surge has no grpc or h2 transport";
    if (node->name != NULL && !formats__surge_name_ok(node->name))
        return "a Surge line cannot carry a name with \"=\", \",\", a double quote or surrounding spaces";
    if (!formats__surge_value_ok(node->password) || !formats__surge_value_ok(node->transport.path) ||
        !formats__surge_value_ok(node->obfs_password) ||
        (node->transport.host != NULL && strpbrk(node->transport.host, ",\"|") != NULL))
        return "a Surge line cannot carry a double quote or \"|\" in a value";
    return NULL;
}

int znp_formats_supports(znp_formats_format_t format, const char *version, const znp_formats_node_t *node,
                         const char **reason)
{
    const char *limit = NULL;

    if (format == ZNP_FORMATS_SIP008 && node->protocol != ZNP_FORMATS_SHADOWSOCKS)
        limit = "SIP008 carries only shadowsocks";
    else if (format == ZNP_FORMATS_CLASH && node->protocol == ZNP_FORMATS_SHADOWSOCKS &&
             znp_formats_is_ss2022(node->cipher))
        limit = "Clash Premium has no shadowsocks 2022 methods";
    else if (format == ZNP_FORMATS_SURGE)
        limit = surge_limits(node);
    else if (format == ZNP_FORMATS_QUANTUMULT_X)
        limit = formats__quantumultx_limits(node);
    else if (format == ZNP_FORMATS_LOON)
        limit = formats__loon_limits(node);
    for (size_t i = 0; limit == NULL && i < sizeof(caps) / sizeof(caps[0]); i++) {
        if (caps[i].format != format || caps[i].protocol != node->protocol)
            continue;
        if (caps[i].min == NULL)
            limit = "the format has no such protocol";
        else if (formats__set(version) && znp_formats_version_compare(version, caps[i].min) < 0)
            limit = "the client version is older than the first release with this protocol";
    }
    if (reason != NULL)
        *reason = limit;
    return limit == NULL;
}

/* User-Agent matching */

/* Lowercase and percent-decode `in` (at most `cap`-1 bytes); invalid escapes stay as they are. */
static void normalize(char *out, size_t cap, const char *in)
{
    size_t o = 0;
    size_t len = strnlen(in, cap - 1);

    if (memchr(in, '%', len) == NULL) {
        /* the common case: nothing to decode */
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)in[i];

            out[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
        }
        out[len] = '\0';
        return;
    }
    for (size_t i = 0; in[i] != '\0' && o + 1 < cap; i++) {
        unsigned char c = (unsigned char)in[i];

        if (c == '%' && isxdigit((unsigned char)in[i + 1]) && isxdigit((unsigned char)in[i + 2])) {
            char hex[3] = {in[i + 1], in[i + 2], '\0'};

            c = (unsigned char)strtoul(hex, NULL, 16);
            i += 2;
        }
        out[o++] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    }
    out[o] = '\0';
}

/* ASCII letters and digits, as isalnum() in the C locale, without its table lookup per call */
static int is_word(unsigned char c)
{
    unsigned char folded = c | 0x20;

    return (c >= '0' && c <= '9') || (folded >= 'a' && folded <= 'z');
}



/* Find `token` in `ua` as a whole word; returns the position just after it or NULL. */
static const char *find_token(const char *ua, const char *token)
{
    size_t len = strlen(token);

    for (const char *p = strstr(ua, token); p != NULL; p = strstr(p + 1, token)) {
        int starts = p == ua || !is_word((unsigned char)p[-1]);
        int ends = !is_word((unsigned char)p[len]);

        if (starts && ends)
            return p + len;
    }
    return NULL;
}

/* Copy the version that follows a token ("/1.2.3", " v1.2.3", ":1.2") into out, or "" */
static void read_version(char *out, const char *after)
{
    size_t n = 0;

    out[0] = '\0';
    while (*after == '/' || *after == ' ' || *after == ':' || *after == '_')
        after++;
    after = skip_v(after);
    if (!isdigit((unsigned char)*after))
        return;
    while (n + 1 < ZNP_FORMATS_VERSION_MAX && (isalnum((unsigned char)after[n]) || after[n] == '.' ||
                                                after[n] == '-' || after[n] == '+'))
        n++;
    while (n > 0 && (after[n - 1] == '.' || after[n - 1] == '-' || after[n - 1] == '+'))
        n--;
    memcpy(out, after, n);
    out[n] = '\0';
}

/*
 * The first whole-word match of each rule in one User-Agent, found in one
 * pass: at each position that starts a word, only the tokens that begin with
 * that character are compared. A rule's match is its earliest token, and
 * the longest of its tokens that start there, so "clash-verge-rev/2.1.2"
 * reads its version after "clash-verge-rev", not after "clash-verge". This
 * gives what a strstr per token gave (about 40 of them over the whole
 * User-Agent, for every download) at a fraction of the cost.
 */
typedef struct rule_hits {
    int16_t start[RULE_COUNT]; /* offset in the User-Agent, -1 when no token of the rule is there */
    int16_t end[RULE_COUNT];
} rule_hits_t;

typedef struct token_ref {
    uint64_t prefix, mask; /* the token's first (up to) 8 bytes, loaded as a word, and which bytes count */
    uint8_t rule, token, len;
} token_ref_t;

#define SCAN_SLACK 8 /* readable bytes after the User-Agent's NUL: the scan loads 8 bytes at any position */

static pthread_once_t index_once = PTHREAD_ONCE_INIT;
static token_ref_t token_refs[RULE_COUNT * ZNP_FORMATS_TOKENS_MAX]; /* grouped by first character */
static uint16_t refs_from[257]; /* the group of c: token_refs[refs_from[c] .. refs_from[c + 1]) */

static void build_token_index(void)
{
    uint16_t counts[256] = {0};
    uint16_t next[256];

    for (size_t i = 0; i < RULE_COUNT; i++) {
        for (size_t t = 0; t < ZNP_FORMATS_TOKENS_MAX && rules[i].tokens[t] != NULL; t++)
            counts[(unsigned char)rules[i].tokens[t][0]]++;
    }
    refs_from[0] = 0;
    for (size_t c = 0; c < 256; c++) {
        refs_from[c + 1] = (uint16_t)(refs_from[c] + counts[c]);
        next[c] = refs_from[c];
    }
    for (size_t i = 0; i < RULE_COUNT; i++) {
        for (size_t t = 0; t < ZNP_FORMATS_TOKENS_MAX && rules[i].tokens[t] != NULL; t++) {
            token_ref_t *ref = &token_refs[next[(unsigned char)rules[i].tokens[t][0]]++];

            ref->rule = (uint8_t)i;
            ref->token = (uint8_t)t;
            ref->len = (uint8_t)strlen(rules[i].tokens[t]);
            memcpy(&ref->prefix, rules[i].tokens[t], ref->len < 8 ? ref->len : 8);
            memset(&ref->mask, 0xff, ref->len < 8 ? ref->len : 8);
        }
    }
}

/* `ua` is normalized, shorter than 32768 bytes, and followed by SCAN_SLACK readable bytes after its NUL */
static void scan_rules(const char *ua, rule_hits_t *hits)
{
    size_t n = strlen(ua);

    pthread_once(&index_once, build_token_index);
    memset(hits->start, 0xff, sizeof(hits->start));
    for (size_t p = 0; p < n; p++) {
        unsigned char c = (unsigned char)ua[p];

        if (p > 0 && is_word((unsigned char)ua[p - 1]))
            continue;
        uint64_t word;

        if (refs_from[c] == refs_from[c + 1])
            continue;
        memcpy(&word, ua + p, sizeof(word));
        for (uint16_t k = refs_from[c]; k < refs_from[c + 1]; k++) {
            const token_ref_t *ref = &token_refs[k];
            int16_t *start = &hits->start[ref->rule];

            /* a rule found earlier keeps its match; one found here takes its longest token */
            if ((*start >= 0 && (size_t)*start < p) || ref->len > n - p || (word & ref->mask) != ref->prefix ||
                (ref->len > 8 && memcmp(ua + p + 8, rules[ref->rule].tokens[ref->token] + 8, ref->len - 8u) != 0) ||
                is_word((unsigned char)ua[p + ref->len]))
                continue;
            if (*start < 0 || p + ref->len > (size_t)hits->end[ref->rule]) {
                *start = (int16_t)p;
                hits->end[ref->rule] = (int16_t)(p + ref->len);
            }
        }
    }
}

/* The first rule of `kind` found in `ua` (scanned into `hits`); *after receives the end of its match. */
static const znp_formats_client_rule_t *match_rule(const char *ua, const rule_hits_t *hits, znp_formats_match_t kind,
                                                   const char **after)
{
    for (size_t i = 0; i < RULE_COUNT; i++) {
        if (rules[i].kind == kind && hits->start[i] >= 0) {
            *after = ua + hits->end[i];
            return &rules[i];
        }
    }
    return NULL;
}

/* The version after a core token for `format` in `ua`, taking the first token that carries one */
static void core_version(char *out, const char *ua, znp_formats_format_t format)
{
    out[0] = '\0';
    for (size_t i = 0; i < RULE_COUNT; i++) {
        if (rules[i].kind != CORE || rules[i].format != format)
            continue;
        for (size_t t = 0; t < ZNP_FORMATS_TOKENS_MAX && rules[i].tokens[t] != NULL; t++) {
            const char *end = find_token(ua, rules[i].tokens[t]);

            while (end != NULL) {
                read_version(out, end);
                if (out[0] != '\0')
                    return;
                end = find_token(end, rules[i].tokens[t]);
            }
        }
    }
}

static int flag_matches(const char *flag, const znp_formats_client_rule_t *rule)
{
    if (strcmp(flag, rule->id) == 0)
        return 1;
    for (size_t t = 0; t < ZNP_FORMATS_TOKENS_MAX && rule->tokens[t] != NULL; t++)
        if (strcmp(flag, rule->tokens[t]) == 0)
            return 1;
    return 0;
}

/* Apply an explicit flag; returns 1 when it names a rule or a format. */
static int apply_flag(znp_formats_client_t *out, const char *flag)
{
    char f[64];

    normalize(f, sizeof(f), flag);
    for (size_t i = 0; i < RULE_COUNT; i++) {
        if (flag_matches(f, &rules[i])) {
            out->rule = &rules[i];
            out->format = rules[i].format;
            return 1;
        }
    }
    for (int format = 0; format < ZNP_FORMATS_FORMAT_COUNT; format++) {
        if (strcmp(f, znp_formats_format_name((znp_formats_format_t)format)) == 0) {
            out->format = (znp_formats_format_t)format;
            return 1;
        }
    }
    return 0;
}

/* Whether the Accept value ranks text/html above every other type (equal weight: listed first). */
static int accept_prefers_html(const char *accept)
{
    char copy[1024];
    double best = -1.0;
    int best_is_html = 0;
    char *save = NULL;

    normalize(copy, sizeof(copy), accept);
    for (char *item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        char *params = strchr(item, ';');
        double q = 1.0;
        size_t len;

        while (*item == ' ' || *item == '\t')
            item++;
        len = params != NULL ? (size_t)(params - item) : strlen(item);
        while (len > 0 && (item[len - 1] == ' ' || item[len - 1] == '\t'))
            len--;
        if (params != NULL) {
            const char *qp = strstr(params, "q=");

            if (qp != NULL)
                q = strtod(qp + 2, NULL);
        }
        if (q > best) {
            best = q;
            best_is_html = len == 9 && strncmp(item, "text/html", 9) == 0;
        }
    }
    return best_is_html && best > 0.0;
}

void znp_formats_detect(znp_formats_client_t *out, const char *flag, const char *user_agent, const char *accept)
{
    char ua[512 + SCAN_SLACK];
    rule_hits_t hits;
    const char *after = NULL;
    const znp_formats_client_rule_t *rule = NULL;

    memset(out, 0, sizeof(*out));
    out->format = ZNP_FORMATS_BASE64;
    normalize(ua, sizeof(ua) - SCAN_SLACK, user_agent != NULL ? user_agent : "");
    memset(ua + strlen(ua) + 1, 0, SCAN_SLACK);
    scan_rules(ua, &hits);

    /* 1. explicit flag */
    if (formats__set(flag) && apply_flag(out, flag)) {
        out->matched_by = ZNP_FORMATS_MATCH_FLAG;
        if (out->rule != NULL && match_rule(ua, &hits, out->rule->kind, &after) == out->rule)
            read_version(out->rule->kind == APP ? out->app_version : out->version, after);
        if (out->version[0] == '\0')
            core_version(out->version, ua, out->format);
        if (out->version[0] == '\0' && out->rule != NULL && !out->rule->embeds_core)
            memcpy(out->version, out->app_version, sizeof(out->version));
        return;
    }

    /* 2. and 3. app tokens, then core tokens */
    rule = match_rule(ua, &hits, APP, &after);
    if (rule != NULL) {
        out->matched_by = ZNP_FORMATS_MATCH_APP;
        read_version(out->app_version, after);
    } else {
        rule = match_rule(ua, &hits, CORE, &after);
        if (rule != NULL)
            out->matched_by = ZNP_FORMATS_MATCH_CORE;
    }
    if (rule != NULL) {
        out->rule = rule;
        out->format = rule->format;
        if (rule->kind == CORE)
            read_version(out->version, after);
        else
            core_version(out->version, ua, rule->format);
        if (out->version[0] == '\0' && !rule->embeds_core)
            memcpy(out->version, out->app_version, sizeof(out->version));
        return;
    }

    /* 4. browsers */
    if (strncmp(ua, "mozilla/", 8) == 0 || (accept != NULL && accept_prefers_html(accept)))
        out->matched_by = ZNP_FORMATS_MATCH_BROWSER;
}

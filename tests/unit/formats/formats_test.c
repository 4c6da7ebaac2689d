/* Share links, YAML, sing-box and SIP008 output, node checks and client detection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <yaml.h>

#include "formats/formats.h"

/* golden.c */
void formats__golden_files_match(void **state);
void formats__ss2022_user_key_lengths(void **state);

#define UUID "b831381d-6324-4d53-ad4f-8cda48b30811"
#define EMOJI_NAME "\xF0\x9F\x87\xB8\xF0\x9F\x87\xAC SG-01 \xE2\x9C\x88 \xE9\xA6\x99\xE6\xB8\xAF \"x\""
#define RESERVED_NAME "HKG 01 #A&B=C/D?%"
#define RESERVED_FRAGMENT "HKG%2001%20%23A%26B%3DC%2FD%3F%25"
#define RESERVED_PASSWORD "p@ss:w/rd+="

/* fixtures */

static znp_formats_node_t make_node(znp_formats_protocol_t protocol, const char *name, const char *host)
{
    znp_formats_node_t n = {0};

    n.protocol = protocol;
    n.name = name;
    n.host = host;
    n.port = 443;
    n.uuid = UUID;
    n.password = RESERVED_PASSWORD;
    switch (protocol) {
    case ZNP_FORMATS_VMESS:
        n.tls.enabled = 1;
        n.tls.sni = "vm.example.com";
        n.transport.network = ZNP_FORMATS_NET_WS;
        n.transport.path = "/ws path?x=1";
        n.transport.host = "cdn.example.com";
        break;
    case ZNP_FORMATS_VLESS:
        n.flow = "xtls-rprx-vision";
        n.tls.enabled = 1;
        n.tls.sni = "www.example.com";
        n.tls.fingerprint = "chrome";
        n.tls.reality_public_key = "jNXHt1yRo0vDuchQlIP6Z0ZvjT3KtzVI-T4E7RoLJS0";
        n.tls.reality_short_id = "0123abcd";
        break;
    case ZNP_FORMATS_TROJAN:
        n.tls.enabled = 1;
        n.tls.sni = "tj.example.com";
        n.tls.alpn[0] = "h2";
        n.tls.alpn[1] = "http/1.1";
        n.tls.alpn_count = 2;
        n.transport.network = ZNP_FORMATS_NET_GRPC;
        n.transport.service_name = "grpc-svc";
        break;
    case ZNP_FORMATS_SHADOWSOCKS:
        n.cipher = "aes-256-gcm";
        break;
    case ZNP_FORMATS_HYSTERIA2:
        n.tls.sni = "hy.example.com";
        n.tls.insecure = 1;
        n.obfs = "salamander";
        n.obfs_password = "ob fs+pw";
        n.up_mbps = 50;
        n.down_mbps = 200;
        break;
    case ZNP_FORMATS_TUIC:
        n.tls.sni = "tuic.example.com";
        n.tls.alpn[0] = "h3";
        n.tls.alpn_count = 1;
        n.congestion_control = "bbr";
        n.udp_relay_mode = "native";
        break;
    case ZNP_FORMATS_ANYTLS:
        n.tls.sni = "any.example.com";
        n.tls.alpn[0] = "h2";
        n.tls.alpn_count = 1;
        n.tls.fingerprint = "chrome";
        break;
    }
    return n;
}

static const znp_formats_protocol_t all_protocols[] = {
    ZNP_FORMATS_VMESS, ZNP_FORMATS_VLESS, ZNP_FORMATS_TROJAN, ZNP_FORMATS_SHADOWSOCKS,
    ZNP_FORMATS_HYSTERIA2, ZNP_FORMATS_TUIC, ZNP_FORMATS_ANYTLS,
};
#define PROTOCOL_COUNT (sizeof(all_protocols) / sizeof(all_protocols[0]))

/* Decode standard or URL-safe base64 with or without padding; returns an owned string or NULL on a bad character. */
static char *b64decode(const char *in, size_t len)
{
    static const char std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc(len + 1);
    uint32_t bits = 0;
    int count = 0;
    size_t o = 0;

    assert_non_null(out);
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        const char *p;

        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        if (c == '=')
            break;
        p = c != '\0' ? strchr(std, c) : NULL;
        if (p == NULL) {
            free(out);
            return NULL;
        }
        bits = bits << 6 | (uint32_t)(p - std);
        count += 6;
        if (count >= 8) {
            count -= 8;
            out[o++] = (char)((bits >> count) & 0xff);
        }
    }
    out[o] = '\0';
    return out;
}

typedef struct skip_log {
    size_t count;
    size_t index[16];
    char reason[16][128];
} skip_log_t;

static void record_skip(void *arg, size_t index, const znp_formats_node_t *node, const char *reason)
{
    skip_log_t *log = arg;

    (void)node;
    if (log->count < 16) {
        log->index[log->count] = index;
        snprintf(log->reason[log->count], sizeof(log->reason[0]), "%s", reason);
    }
    log->count++;
}

static char *render(znp_formats_format_t format, const znp_formats_node_t *nodes, size_t count, const char *version,
                    skip_log_t *log)
{
    znp_formats_options_t opts = {.engine_version = version, .on_skip = record_skip, .skip_arg = log};
    char *out = NULL;
    size_t len = 0;

    assert_int_equal(znp_formats_render(&out, &len, format, nodes, count, &opts), 0);
    assert_non_null(out);
    assert_int_equal(strlen(out), len);
    return out;
}

/* libyaml walk: fill names with proxies[*].name and group_names with proxy-groups[0].proxies */

typedef struct yaml_names {
    size_t count;
    char name[16][256];
    size_t group_count;
    char group[20][256];
    int proxies_valid;
} yaml_names_t;

static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
    if (map == NULL || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);

        if (k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, key) == 0)
            return yaml_document_get_node(doc, p->value);
    }
    return NULL;
}

static void copy_scalar(char *out, yaml_node_t *node)
{
    assert_non_null(node);
    assert_int_equal(node->type, YAML_SCALAR_NODE);
    assert_true(node->data.scalar.length < 256);
    memcpy(out, node->data.scalar.value, node->data.scalar.length);
    out[node->data.scalar.length] = '\0';
}

static void yaml_load_names(yaml_names_t *out, const char *text)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_node_t *root;
    yaml_node_t *proxies;
    yaml_node_t *groups;

    memset(out, 0, sizeof(*out));
    assert_true(yaml_parser_initialize(&parser));
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    assert_true(yaml_parser_load(&parser, &doc));
    root = yaml_document_get_root_node(&doc);
    assert_non_null(root);

    proxies = map_get(&doc, root, "proxies");
    assert_non_null(proxies);
    assert_int_equal(proxies->type, YAML_SEQUENCE_NODE);
    out->proxies_valid = 1;
    for (yaml_node_item_t *it = proxies->data.sequence.items.start; it < proxies->data.sequence.items.top; it++) {
        yaml_node_t *proxy = yaml_document_get_node(&doc, *it);

        assert_true(out->count < 16);
        copy_scalar(out->name[out->count++], map_get(&doc, proxy, "name"));
        assert_non_null(map_get(&doc, proxy, "type"));
        assert_non_null(map_get(&doc, proxy, "server"));
        assert_non_null(map_get(&doc, proxy, "port"));
    }

    groups = map_get(&doc, root, "proxy-groups");
    assert_non_null(groups);
    assert_int_equal(groups->type, YAML_SEQUENCE_NODE);
    {
        yaml_node_t *group = yaml_document_get_node(&doc, *groups->data.sequence.items.start);
        yaml_node_t *members = map_get(&doc, group, "proxies");

        assert_non_null(members);
        for (yaml_node_item_t *it = members->data.sequence.items.start; it < members->data.sequence.items.top;
             it++) {
            assert_true(out->group_count < 20);
            copy_scalar(out->group[out->group_count++], yaml_document_get_node(&doc, *it));
        }
    }
    assert_non_null(map_get(&doc, root, "rules"));
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
}

/* Split the base64 body into links; returns the count and owned copies in links[]. */
static size_t decode_body(char *links[], size_t max, const char *body)
{
    char *plain = b64decode(body, strlen(body));
    size_t count = 0;
    char *save = NULL;

    assert_non_null(plain);
    for (char *line = strtok_r(plain, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        assert_true(count < max);
        links[count] = strdup(line);
        assert_non_null(links[count]);
        count++;
    }
    free(plain);
    return count;
}

/* strict parse of every link gives back the exact name and password */

static void check_link(const char *link, znp_formats_protocol_t protocol, const char *name, const char *password)
{
    znp_formats_uri_t uri;
    char *value = NULL;

    assert_int_equal(znp_formats_uri_parse(&uri, link), 0);
    assert_null(strchr(link, ' '));
    if (protocol == ZNP_FORMATS_VMESS) {
        char *json_text = b64decode(link + 8, strlen(link + 8));
        json_t *root;

        assert_string_equal(uri.scheme, "vmess");
        assert_non_null(json_text);
        root = json_loads(json_text, 0, NULL);
        assert_non_null(root);
        assert_string_equal(json_string_value(json_object_get(root, "ps")), name);
        assert_string_equal(json_string_value(json_object_get(root, "id")), UUID);
        json_decref(root);
        free(json_text);
        znp_formats_uri_dispose(&uri);
        return;
    }
    assert_non_null(uri.fragment);
    assert_string_equal(uri.fragment, name);
    assert_non_null(uri.userinfo);
    assert_null(strchr(link, '+'));
    switch (protocol) {
    case ZNP_FORMATS_VLESS:
        assert_string_equal(uri.scheme, "vless");
        assert_string_equal(uri.userinfo, UUID);
        assert_int_equal(znp_formats_uri_query_get(&value, uri.query, "pbk"), 0);
        assert_string_equal(value, "jNXHt1yRo0vDuchQlIP6Z0ZvjT3KtzVI-T4E7RoLJS0");
        free(value);
        assert_int_equal(znp_formats_uri_query_get(&value, uri.query, "security"), 0);
        assert_string_equal(value, "reality");
        break;
    case ZNP_FORMATS_TROJAN:
        assert_string_equal(uri.scheme, "trojan");
        assert_string_equal(uri.userinfo, password);
        assert_int_equal(znp_formats_uri_query_get(&value, uri.query, "alpn"), 0);
        assert_string_equal(value, "h2,http/1.1");
        free(value);
        assert_int_equal(znp_formats_uri_query_get(&value, uri.query, "serviceName"), 0);
        assert_string_equal(value, "grpc-svc");
        break;
    case ZNP_FORMATS_SHADOWSOCKS: {
        char *plain = b64decode(uri.userinfo, strlen(uri.userinfo));
        char expected[256];

        assert_string_equal(uri.scheme, "ss");
        assert_non_null(plain);
        snprintf(expected, sizeof(expected), "aes-256-gcm:%s", password);
        assert_string_equal(plain, expected);
        assert_null(strchr(uri.userinfo, '='));
        free(plain);
        break;
    }
    case ZNP_FORMATS_HYSTERIA2:
        assert_string_equal(uri.scheme, "hysteria2");
        assert_string_equal(uri.userinfo, password);
        assert_int_equal(znp_formats_uri_query_get(&value, uri.query, "obfs-password"), 0);
        assert_string_equal(value, "ob fs+pw");
        break;
    case ZNP_FORMATS_TUIC: {
        char expected[256];

        assert_string_equal(uri.scheme, "tuic");
        snprintf(expected, sizeof(expected), "%s:%s", UUID, password);
        assert_string_equal(uri.userinfo, expected);
        break;
    }
    case ZNP_FORMATS_ANYTLS:
        assert_string_equal(uri.scheme, "anytls");
        assert_string_equal(uri.userinfo, password);
        assert_int_equal(znp_formats_uri_query_get(&value, uri.query, "alpn"), ZNP_E_NOT_FOUND);
        break;
    case ZNP_FORMATS_VMESS:
        break;
    }
    free(value);
    assert_int_equal(uri.port, 443);
    znp_formats_uri_dispose(&uri);
}

static void formats__links_name_password_round_trip(void **state)
{
    znp_formats_node_t nodes[PROTOCOL_COUNT];
    char *links[16];
    skip_log_t log = {0};
    char *body;
    size_t count;

    (void)state;
    for (size_t i = 0; i < PROTOCOL_COUNT; i++)
        nodes[i] = make_node(all_protocols[i], RESERVED_NAME, "hk.example.com");
    body = render(ZNP_FORMATS_BASE64, nodes, PROTOCOL_COUNT, NULL, &log);
    assert_int_equal(log.count, 0);
    count = decode_body(links, 16, body);
    assert_int_equal(count, PROTOCOL_COUNT);
    for (size_t i = 0; i < count; i++) {
        const char *hash = strchr(links[i], '#');

        if (all_protocols[i] != ZNP_FORMATS_VMESS) {
            assert_non_null(hash);
            assert_string_equal(hash + 1, RESERVED_FRAGMENT);
        }
        check_link(links[i], all_protocols[i], RESERVED_NAME, RESERVED_PASSWORD);
        free(links[i]);
    }
    free(body);
}

static void formats__link_password_percent_encoded(void **state)
{
    znp_formats_node_t node = make_node(ZNP_FORMATS_TROJAN, RESERVED_NAME, "hk.example.com");
    char *link = NULL;

    (void)state;
    assert_int_equal(znp_formats_share_link(&link, &node, NULL), 0);
    assert_true(strncmp(link, "trojan://p%40ss%3Aw%2Frd%2B%3D@hk.example.com:443?", 50) == 0);
    free(link);
}

static void formats__ss2022_userinfo_plain(void **state)
{
    znp_formats_node_t node = make_node(ZNP_FORMATS_SHADOWSOCKS, "ss 2022", "1.2.3.4");
    znp_formats_uri_t uri;
    char *link = NULL;

    (void)state;
    node.cipher = "2022-blake3-aes-256-gcm";
    node.password = "YctPZ6U7xPPcU+gp3u+0tx/tRizJN9K8y+uKlW2qjlI=";
    assert_int_equal(znp_formats_share_link(&link, &node, NULL), 0);
    assert_int_equal(znp_formats_uri_parse(&uri, link), 0);
    assert_string_equal(uri.userinfo, "2022-blake3-aes-256-gcm:YctPZ6U7xPPcU+gp3u+0tx/tRizJN9K8y+uKlW2qjlI=");
    assert_string_equal(uri.host, "1.2.3.4");
    znp_formats_uri_dispose(&uri);
    free(link);
}

/* emoji, CJK and quotes in names */

static void formats__emoji_name_survives_formats(void **state)
{
    znp_formats_node_t nodes[2] = {
        make_node(ZNP_FORMATS_VMESS, EMOJI_NAME, "sg.example.com"),
        make_node(ZNP_FORMATS_SHADOWSOCKS, "plain", "sg.example.com"),
    };
    yaml_names_t names;
    skip_log_t log = {0};
    char *yaml = render(ZNP_FORMATS_CLASH_META, nodes, 2, NULL, &log);
    char *json_text = render(ZNP_FORMATS_SINGBOX, nodes, 2, NULL, &log);
    char *link = NULL;
    json_t *root;

    (void)state;
    assert_int_equal(log.count, 0);
    assert_non_null(strstr(yaml, "  - name: \"" "\xF0\x9F\x87\xB8\xF0\x9F\x87\xAC SG-01 \xE2\x9C\x88 "
                                 "\xE9\xA6\x99\xE6\xB8\xAF \\\"x\\\"\"\n"));
    yaml_load_names(&names, yaml);
    assert_int_equal(names.count, 2);
    assert_string_equal(names.name[0], EMOJI_NAME);
    assert_string_equal(names.group[0], EMOJI_NAME);

    root = json_loads(json_text, 0, NULL);
    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(root, "outbounds"), 1), "tag")),
                        EMOJI_NAME);
    json_decref(root);

    nodes[1].name = EMOJI_NAME;
    assert_int_equal(znp_formats_share_link(&link, &nodes[1], NULL), 0);
    assert_non_null(strstr(link, "#%F0%9F%87%B8%F0%9F%87%AC%20SG-01%20%E2%9C%88%20%E9%A6%99%E6%B8%AF%20%22x%22"));
    free(link);
    free(json_text);
    free(yaml);
}

static void formats__invalid_utf8_name_rejected(void **state)
{
    static const char *const bad[] = {"\xC0\xAF", "a\xED\xA0\x80", "\xF5\x80\x80\x80", "x\xE2\x82", "tab\there",
                                      "\xC2\x85"};
    znp_error_t err = {0};

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        znp_formats_node_t node = make_node(ZNP_FORMATS_TROJAN, bad[i], "a.example.com");

        assert_int_equal(znp_formats_node_check(&node, &err), ZNP_E_VALIDATION_FAILED);
        assert_string_equal(err.path, "name");
    }
}

/* YAML quoting */

static void formats__yaml_tricky_names_round_trip(void **state)
{
    static const char *const tricky[] = {
        "*star", "&anchor", "!tag", "- dash", "key: value", "'single'", "back\\slash", "# hash", "123",
        "true", "null", "~", "a\xE2\x80\xA8" "b", "[x]", "{y}", "%percent", "@at",
    };
    enum { COUNT = sizeof(tricky) / sizeof(tricky[0]) };
    znp_formats_node_t nodes[COUNT];
    yaml_names_t first;
    yaml_names_t second;
    skip_log_t log = {0};
    char *yaml;

    (void)state;
    for (size_t i = 0; i < COUNT; i++)
        nodes[i] = make_node(ZNP_FORMATS_TROJAN, tricky[i], "2001:db8::1");
    /* the parser helper stores 16 names, so check in two halves */
    yaml = render(ZNP_FORMATS_CLASH, nodes, 9, NULL, &log);
    yaml_load_names(&first, yaml);
    free(yaml);
    yaml = render(ZNP_FORMATS_STASH, nodes + 9, COUNT - 9, NULL, &log);
    yaml_load_names(&second, yaml);
    free(yaml);
    assert_int_equal(log.count, 0);
    assert_int_equal(first.count, 9);
    assert_int_equal(second.count, COUNT - 9);
    for (size_t i = 0; i < COUNT; i++)
        assert_string_equal(i < 9 ? first.name[i] : second.name[i - 9], tricky[i]);
    assert_string_equal(first.group[9], "DIRECT");
}

static void formats__yaml_empty_list_valid(void **state)
{
    znp_formats_node_t node = make_node(ZNP_FORMATS_VLESS, "reality", "a.example.com");
    yaml_names_t names;
    skip_log_t log = {0};
    char *yaml = render(ZNP_FORMATS_CLASH, &node, 1, NULL, &log);

    (void)state;
    assert_int_equal(log.count, 1);
    assert_int_equal(log.index[0], 0);
    yaml_load_names(&names, yaml);
    assert_int_equal(names.count, 0);
    assert_int_equal(names.group_count, 1);
    free(yaml);
}

/* sing-box */

static void formats__singbox_tags_unique(void **state)
{
    znp_formats_node_t nodes[PROTOCOL_COUNT + 1];
    skip_log_t log = {0};
    json_error_t jerr;
    json_t *root;
    json_t *outbounds;
    json_t *selector;
    char *text;

    (void)state;
    for (size_t i = 0; i < PROTOCOL_COUNT; i++)
        nodes[i] = make_node(all_protocols[i], RESERVED_NAME, "2001:db8::1");
    nodes[PROTOCOL_COUNT] = make_node(ZNP_FORMATS_SHADOWSOCKS, "other", "example.org");
    text = render(ZNP_FORMATS_SINGBOX, nodes, PROTOCOL_COUNT + 1, "1.12.0", &log);
    assert_int_equal(log.count, 0);
    root = json_loads(text, 0, &jerr);
    assert_non_null(root);
    outbounds = json_object_get(root, "outbounds");
    selector = json_array_get(outbounds, 0);
    assert_string_equal(json_string_value(json_object_get(selector, "type")), "selector");
    assert_int_equal(json_array_size(outbounds), PROTOCOL_COUNT + 3);
    for (size_t i = 0; i < PROTOCOL_COUNT + 1; i++) {
        json_t *ob = json_array_get(outbounds, i + 1);
        char expected[64];

        if (i == 0)
            snprintf(expected, sizeof(expected), "%s", RESERVED_NAME);
        else if (i < PROTOCOL_COUNT)
            snprintf(expected, sizeof(expected), "%s %zu", RESERVED_NAME, i + 1);
        else
            snprintf(expected, sizeof(expected), "other");
        assert_string_equal(json_string_value(json_object_get(ob, "tag")), expected);
        assert_string_equal(json_string_value(json_array_get(json_object_get(selector, "outbounds"), i)), expected);
        assert_string_equal(json_string_value(json_object_get(ob, "server")), i < PROTOCOL_COUNT ? "2001:db8::1"
                                                                                                 : "example.org");
        if (i < PROTOCOL_COUNT && all_protocols[i] == ZNP_FORMATS_ANYTLS)
            assert_null(json_object_get(json_object_get(ob, "tls"), "alpn"));
        if (i < PROTOCOL_COUNT && all_protocols[i] == ZNP_FORMATS_VLESS)
            assert_string_equal(json_string_value(json_object_get(
                                    json_object_get(json_object_get(ob, "tls"), "reality"), "short_id")),
                                "0123abcd");
    }
    json_decref(root);
    free(text);
}

static void formats__singbox_old_version_skips_anytls(void **state)
{
    znp_formats_node_t nodes[2] = {
        make_node(ZNP_FORMATS_ANYTLS, "any", "a.example.com"),
        make_node(ZNP_FORMATS_TROJAN, "tj", "a.example.com"),
    };
    skip_log_t log = {0};
    char *text = render(ZNP_FORMATS_SINGBOX, nodes, 2, "1.11.3", &log);
    json_t *root = json_loads(text, 0, NULL);

    (void)state;
    assert_int_equal(log.count, 1);
    assert_int_equal(log.index[0], 0);
    assert_non_null(root);
    assert_int_equal(json_array_size(json_object_get(root, "outbounds")), 3);
    json_decref(root);
    free(text);
}

static void formats__sip008_shadowsocks_only(void **state)
{
    znp_formats_node_t nodes[2] = {
        make_node(ZNP_FORMATS_SHADOWSOCKS, EMOJI_NAME, "2001:db8::2"),
        make_node(ZNP_FORMATS_VMESS, "vm", "a.example.com"),
    };
    skip_log_t log = {0};
    char *text = render(ZNP_FORMATS_SIP008, nodes, 2, NULL, &log);
    json_t *root = json_loads(text, 0, NULL);
    json_t *server;

    (void)state;
    assert_non_null(root);
    assert_int_equal(log.count, 1);
    assert_int_equal(json_integer_value(json_object_get(root, "version")), 1);
    assert_int_equal(json_array_size(json_object_get(root, "servers")), 1);
    server = json_array_get(json_object_get(root, "servers"), 0);
    assert_string_equal(json_string_value(json_object_get(server, "remarks")), EMOJI_NAME);
    assert_string_equal(json_string_value(json_object_get(server, "password")), RESERVED_PASSWORD);
    assert_string_equal(json_string_value(json_object_get(server, "server")), "2001:db8::2");
    json_decref(root);
    free(text);
}

/* random names and passwords */

static uint32_t next_random(uint32_t *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return *seed >> 8;
}

/* Fill out with `pieces` random fragments: printable ASCII (reserved characters included), emoji and CJK. */
static void random_text(char *out, size_t cap, uint32_t *seed, int pieces)
{
    static const char *const multibyte[] = {"\xF0\x9F\x87\xAF\xF0\x9F\x87\xB5", "\xE6\x9D\xB1", "\xC3\xA9",
                                            "\xE2\x9C\x88", "\xF0\x9F\x9A\x80"};
    size_t len = 0;

    out[0] = '\0';
    for (int i = 0; i < pieces; i++) {
        uint32_t r = next_random(seed);
        char ascii[2] = {(char)(0x20 + r % 95), '\0'};
        const char *piece = r % 4 == 0 ? multibyte[(r >> 4) % 5] : ascii;
        size_t piece_len = strlen(piece);

        if (len + piece_len + 1 > cap)
            break;
        memcpy(out + len, piece, piece_len + 1);
        len += piece_len;
    }
}

static void formats__random_names_round_trip(void **state)
{
    uint32_t seed = 20261204;

    (void)state;
    for (int round = 0; round < 40; round++) {
        char names[8][128];
        char passwords[8][128];
        znp_formats_node_t nodes[8];
        yaml_names_t parsed;
        skip_log_t log = {0};
        char *yaml;
        json_t *root;
        char *json_text;

        for (size_t i = 0; i < 8; i++) {
            char body[96];

            random_text(body, sizeof(body), &seed, 1 + (int)(next_random(&seed) % 20));
            snprintf(names[i], sizeof(names[i]), "%zu%s", i, body);
            random_text(passwords[i], sizeof(passwords[i]), &seed, 1 + (int)(next_random(&seed) % 30));
            nodes[i] = make_node(all_protocols[((size_t)round + i) % PROTOCOL_COUNT], names[i], "r.example.com");
            nodes[i].password = passwords[i];
        }

        for (size_t i = 0; i < 8; i++) {
            char *link = NULL;

            assert_int_equal(znp_formats_share_link(&link, &nodes[i], NULL), 0);
            check_link(link, nodes[i].protocol, names[i], passwords[i]);
            free(link);
        }

        yaml = render(ZNP_FORMATS_CLASH_META, nodes, 8, NULL, &log);
        yaml_load_names(&parsed, yaml);
        assert_int_equal(parsed.count, 8);
        for (size_t i = 0; i < 8; i++)
            assert_string_equal(parsed.name[i], names[i]);

        json_text = render(ZNP_FORMATS_SINGBOX, nodes, 8, NULL, &log);
        root = json_loads(json_text, 0, NULL);
        assert_non_null(root);
        for (size_t i = 0; i < 8; i++)
            assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(root, "outbounds"), i + 1),
                                                                  "tag")),
                                names[i]);
        assert_int_equal(log.count, 0);
        json_decref(root);
        free(json_text);
        free(yaml);
    }
}

/* Surge */

static void formats__surge_lines_exact(void **state)
{
    znp_formats_node_t nodes[5] = {
        make_node(ZNP_FORMATS_TROJAN, "HK 01", "hk.example.com"),
        make_node(ZNP_FORMATS_SHADOWSOCKS, "\xE9\xA6\x99\xE6\xB8\xAF 02", "2001:db8::1"),
        make_node(ZNP_FORMATS_VLESS, "v", "a.example.com"),
        make_node(ZNP_FORMATS_SHADOWSOCKS, RESERVED_NAME, "a.example.com"),
        make_node(ZNP_FORMATS_HYSTERIA2, "hy", "a.example.com"),
    };
    skip_log_t log = {0};
    char *text;

    (void)state;
    nodes[0].transport.network = ZNP_FORMATS_NET_WS;
    nodes[0].transport.path = "/ws";
    nodes[0].transport.host = "cdn.example.com";
    nodes[0].password = "a,b=c";
    text = render(ZNP_FORMATS_SURGE, nodes, 5, NULL, &log);
    assert_string_equal(text,
                        "[Proxy]\n"
                        "HK 01 = trojan, hk.example.com, 443, password=\"a,b=c\", sni=tj.example.com, "
                        "alpn=\"h2,http/1.1\", ws=true, ws-path=/ws, ws-headers=Host:cdn.example.com\n"
                        "\xE9\xA6\x99\xE6\xB8\xAF 02 = ss, 2001:db8::1, 443, encrypt-method=aes-256-gcm, "
                        "password=\"p@ss:w/rd+=\", udp-relay=true\n"
                        "hy = hysteria2, a.example.com, 443, password=\"p@ss:w/rd+=\", sni=hy.example.com, "
                        "skip-cert-verify=true, download-bandwidth=200, salamander-password=\"ob fs+pw\"\n"
                        "\n[Proxy Group]\nProxy = select, HK 01, \xE9\xA6\x99\xE6\xB8\xAF 02, hy, DIRECT\n"
                        "\n[Rule]\nFINAL,Proxy\n");
    assert_int_equal(log.count, 2);
    assert_int_equal(log.index[0], 2);
    assert_int_equal(log.index[1], 3);
    free(text);
}

static void formats__quantumultx_lines_exact(void **state)
{
    znp_formats_node_t nodes[5] = {
        make_node(ZNP_FORMATS_VMESS, "\xE9\xA6\x99\xE6\xB8\xAF 01", "hk.example.com"),
        make_node(ZNP_FORMATS_SHADOWSOCKS, RESERVED_NAME, "1.2.3.4"),
        make_node(ZNP_FORMATS_TROJAN, "tj", "a.example.com"),
        make_node(ZNP_FORMATS_TROJAN, "v6", "2001:db8::1"),
        make_node(ZNP_FORMATS_VLESS, "v", "a.example.com"),
    };
    skip_log_t log = {0};
    char *text;

    (void)state;
    nodes[2].transport.network = ZNP_FORMATS_NET_TCP;
    nodes[2].tls.insecure = 1;
    nodes[3].transport.network = ZNP_FORMATS_NET_TCP;
    text = render(ZNP_FORMATS_QUANTUMULT_X, nodes, 5, NULL, &log);
    assert_string_equal(text,
                        "vmess=hk.example.com:443, method=chacha20-poly1305, password=" UUID ", obfs=wss, "
                        "obfs-host=cdn.example.com, obfs-uri=/ws path?x=1, tls-verification=true, "
                        "tag=\xE9\xA6\x99\xE6\xB8\xAF 01\n"
                        "shadowsocks=1.2.3.4:443, method=aes-256-gcm, password=p@ss:w/rd+=, udp-relay=true, "
                        "tag=" RESERVED_NAME "\n"
                        "trojan=a.example.com:443, password=p@ss:w/rd+=, over-tls=true, tls-host=tj.example.com, "
                        "tls-verification=false, tag=tj\n");
    assert_int_equal(log.count, 2);
    assert_int_equal(log.index[0], 3);
    assert_int_equal(log.index[1], 4);
    free(text);
}

static void formats__loon_lines_exact(void **state)
{
    znp_formats_node_t nodes[6] = {
        make_node(ZNP_FORMATS_VMESS, "\xE9\xA6\x99\xE6\xB8\xAF 01", "hk.example.com"),
        make_node(ZNP_FORMATS_SHADOWSOCKS, "ss", "2001:db8::1"),
        make_node(ZNP_FORMATS_TROJAN, "tj", "a.example.com"),
        make_node(ZNP_FORMATS_HYSTERIA2, "hy", "a.example.com"),
        make_node(ZNP_FORMATS_VLESS, "reality", "a.example.com"),
        make_node(ZNP_FORMATS_TUIC, "tuic", "a.example.com"),
    };
    skip_log_t log = {0};
    char *text;

    (void)state;
    nodes[2].transport.network = ZNP_FORMATS_NET_TCP;
    nodes[3].obfs = NULL;
    text = render(ZNP_FORMATS_LOON, nodes, 6, NULL, &log);
    assert_string_equal(text,
                        "\xE9\xA6\x99\xE6\xB8\xAF 01 = vmess,hk.example.com,443,auto,\"" UUID "\",transport=ws,"
                        "path=/ws path?x=1,host=cdn.example.com,alterId=0,over-tls=true,tls-name=vm.example.com\n"
                        "ss = Shadowsocks,2001:db8::1,443,aes-256-gcm,\"p@ss:w/rd+=\",udp=true\n"
                        "tj = trojan,a.example.com,443,\"p@ss:w/rd+=\",tls-name=tj.example.com,udp=true\n"
                        "hy = Hysteria2,a.example.com,443,\"p@ss:w/rd+=\",tls-name=hy.example.com,"
                        "skip-cert-verify=true,udp=true\n");
    assert_int_equal(log.count, 2);
    assert_int_equal(log.index[0], 4);
    assert_int_equal(log.index[1], 5);
    free(text);
}

/* hosts and invalid input */

static void formats__ipv6_bracketed_once(void **state)
{
    (void)state;
    for (size_t i = 1; i < PROTOCOL_COUNT; i++) {
        znp_formats_node_t node = make_node(all_protocols[i], "v6", "2001:db8::1");
        znp_formats_uri_t uri;
        char *link = NULL;

        assert_int_equal(znp_formats_share_link(&link, &node, NULL), 0);
        assert_non_null(strstr(link, "@[2001:db8::1]:443"));
        assert_null(strstr(link, "[["));
        assert_int_equal(znp_formats_uri_parse(&uri, link), 0);
        assert_string_equal(uri.host, "2001:db8::1");
        znp_formats_uri_dispose(&uri);
        free(link);
    }
}

static void formats__invalid_nodes_rejected(void **state)
{
    static const struct {
        const char *host;
        int port;
        const char *uuid;
        const char *cipher;
        const char *path;
    } cases[] = {
        {"a.example.com", 0, UUID, "aes-128-gcm", "port"},
        {"a.example.com", 65536, UUID, "aes-128-gcm", "port"},
        {"a.example.com", -1, UUID, "aes-128-gcm", "port"},
        {"", 443, UUID, "aes-128-gcm", "host"},
        {NULL, 443, UUID, "aes-128-gcm", "host"},
        {"fe80::1%eth0", 443, UUID, "aes-128-gcm", "host"},
        {"[2001:db8::1]", 443, UUID, "aes-128-gcm", "host"},
        {"2001:db8::zz", 443, UUID, "aes-128-gcm", "host"},
        {"bad host", 443, UUID, "aes-128-gcm", "host"},
        {"a..b", 443, UUID, "aes-128-gcm", "host"},
        {"999.1.1.1", 443, UUID, "aes-128-gcm", "host"},
        {"1.2.3", 443, UUID, "aes-128-gcm", "host"},
        {"a.example.com", 443, "not-a-uuid", "aes-128-gcm", "uuid"},
        {"a.example.com", 443, UUID, "rc4-md5", "cipher"},
    };
    znp_error_t err = {0};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        znp_formats_node_t node = make_node(ZNP_FORMATS_TUIC, "n", cases[i].host);
        znp_formats_node_t ss = make_node(ZNP_FORMATS_SHADOWSOCKS, "n", "a.example.com");
        const znp_formats_node_t *target = &node;

        node.port = cases[i].port;
        node.uuid = cases[i].uuid;
        if (strcmp(cases[i].path, "cipher") == 0) {
            ss.cipher = cases[i].cipher;
            target = &ss;
        }
        znp_error_clear(&err);
        assert_int_equal(znp_formats_node_check(target, &err), ZNP_E_VALIDATION_FAILED);
        assert_string_equal(err.path, cases[i].path);
    }
}

static void formats__invalid_node_skipped_file_intact(void **state)
{
    znp_formats_node_t nodes[3] = {
        make_node(ZNP_FORMATS_TROJAN, "good 1", "a.example.com"),
        make_node(ZNP_FORMATS_TROJAN, "bad", "fe80::1%eth0"),
        make_node(ZNP_FORMATS_TROJAN, "good 2", "b.example.com"),
    };
    skip_log_t log = {0};
    char *links[4];
    char *body = render(ZNP_FORMATS_BASE64, nodes, 3, NULL, &log);
    size_t count = decode_body(links, 4, body);

    (void)state;
    assert_int_equal(log.count, 1);
    assert_int_equal(log.index[0], 1);
    assert_non_null(strstr(log.reason[0], "host"));
    assert_int_equal(count, 2);
    assert_non_null(strstr(links[0], "#good%201"));
    assert_non_null(strstr(links[1], "#good%202"));
    free(links[0]);
    free(links[1]);
    free(body);
}

static void formats__share_link_invalid_returns_error(void **state)
{
    znp_formats_node_t node = make_node(ZNP_FORMATS_VLESS, "n", "a.example.com");
    char *link = (char *)"sentinel";

    (void)state;
    node.port = 70000;
    assert_int_equal(znp_formats_share_link(&link, &node, NULL), ZNP_E_VALIDATION_FAILED);
    assert_null(link);
    node.port = 443;
    node.protocol = ZNP_FORMATS_TROJAN;
    assert_int_equal(znp_formats_share_link(&link, &node, NULL), ZNP_E_VALIDATION_FAILED);
}

/* strict URI parser */

static void formats__uri_parser_rejects_malformed(void **state)
{
    static const char *const bad[] = {
        "trojan://pw@host:443#a b",
        "trojan://pw@host:443#a#b",
        "trojan://pw@host:443?x=%G1",
        "trojan://pw@host:443#%2",
        "trojan://pw@host:70000",
        "trojan://pw@host:44a",
        "trojan://pw@[fe80::1%25eth0]:443",
        "trojan://pw@[2001:db8::1:443",
        "trojan://p w@host:443",
        "trojan://p@w@host:443",
        "trojan://pw@:443",
        "trojan://pw@host:443#caf\xC3\xA9",
        "trojan:pw@host:443",
        "1abc://host",
        "trojan://pw@host:443/a b",
    };
    znp_formats_uri_t uri;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(znp_formats_uri_parse(&uri, bad[i]), ZNP_E_VALIDATION_FAILED);
}

static void formats__uri_parser_accepts_valid(void **state)
{
    znp_formats_uri_t uri;
    char *value = NULL;

    (void)state;
    assert_int_equal(znp_formats_uri_parse(&uri, "TUIC://u%3Ax:p@[::1]:8443/p/q?a=1&b=x%20y+z#n%23"), 0);
    assert_string_equal(uri.scheme, "tuic");
    assert_string_equal(uri.userinfo, "u:x:p");
    assert_string_equal(uri.host, "::1");
    assert_int_equal(uri.port, 8443);
    assert_string_equal(uri.path, "/p/q");
    assert_string_equal(uri.fragment, "n#");
    assert_int_equal(znp_formats_uri_query_get(&value, uri.query, "b"), 0);
    assert_string_equal(value, "x y+z");
    free(value);
    znp_formats_uri_dispose(&uri);
}

/* detection */

typedef struct ua_case {
    const char *flag;
    const char *ua;
    const char *accept;
    znp_formats_format_t format;
    znp_formats_match_t matched_by;
    const char *rule;
    const char *version;
    const char *app_version;
} ua_case_t;

#define F_B64 ZNP_FORMATS_BASE64
#define F_META ZNP_FORMATS_CLASH_META
#define F_SB ZNP_FORMATS_SINGBOX
#define M_APP ZNP_FORMATS_MATCH_APP
#define M_CORE ZNP_FORMATS_MATCH_CORE

static const ua_case_t ua_cases[] = {
    /* User-Agents naming several clients and cores */
    {NULL, "karing/1.1.0 singbox/1.12.0 clashmeta mihomo/1.19.0", NULL, F_SB, M_APP, "karing", "1.12.0", "1.1.0"},
    {NULL, "FlClash/v0.8.35 clash-verge/v1.6.6 Platform/android", NULL, F_META, M_APP, "flclash", "", "0.8.35"},
    {NULL, "ClashMeta/1.19.28; mihomo/1.19.28", NULL, F_META, M_CORE, "clash-meta", "1.19.28", ""},
    {NULL, "SFI/1.12.1 (Build 1; sing-box 1.11.3; language en_US)", NULL, F_SB, M_APP, "sing-box-app", "1.11.3",
     "1.12.1"},
    {NULL, "Stash/2.4", NULL, ZNP_FORMATS_STASH, M_APP, "stash", "2.4", "2.4"},
    {NULL, "Shadowrocket/2.2", NULL, F_B64, M_APP, "shadowrocket", "2.2", "2.2"},
    {NULL, "Quantumult%20X/1.4", NULL, ZNP_FORMATS_QUANTUMULT_X, M_APP, "quantumult-x", "1.4", "1.4"},
    {NULL, "", NULL, F_B64, ZNP_FORMATS_MATCH_DEFAULT, NULL, "", ""},
    /* User-Agents of the emoji name case */
    {NULL, "clash.meta", NULL, F_META, M_CORE, "clash-meta", "", ""},
    {NULL, "sing-box 1.11.0", NULL, F_SB, M_CORE, "sing-box", "1.11.0", ""},
    {NULL, "v2rayN/6.31", NULL, F_B64, M_APP, "v2rayn", "", "6.31"},
    /* more real-world shapes */
    {NULL, "v2rayNG/1.8.19", NULL, F_B64, M_APP, "v2rayng", "", "1.8.19"},
    {NULL, "mihomo/1.18.5", NULL, F_META, M_CORE, "clash-meta", "1.18.5", ""},
    {NULL, "clash-verge/v1.3.8", NULL, F_META, M_APP, "clash-verge", "", "1.3.8"},
    {NULL, "ClashforWindows/0.20.39", NULL, ZNP_FORMATS_CLASH, M_APP, "clash-for-windows", "", "0.20.39"},
    {NULL, "clash/1.18.0", NULL, ZNP_FORMATS_CLASH, M_CORE, "clash", "1.18.0", ""},
    {NULL, "ClashX Meta/1.3.0", NULL, F_META, M_APP, "clashx-meta", "", "1.3.0"},
    {NULL, "Clash Nyanpasu/1.5.0 mihomo/1.18.7", NULL, F_META, M_APP, "clash-nyanpasu", "1.18.7", "1.5.0"},
    {NULL, "mihomo-party/v1.5.12 mihomo/1.19.1", NULL, F_META, M_APP, "mihomo-party", "1.19.1", "1.5.12"},
    {NULL, "SFA/1.10.1 (Build 342; sing-box 1.10.1; language zh_CN)", NULL, F_SB, M_APP, "sing-box-app", "1.10.1",
     "1.10.1"},
    {NULL, "SFM/1.9.0 (sing-box 1.9.0)", NULL, F_SB, M_APP, "sing-box-app", "1.9.0", "1.9.0"},
    {NULL, "HiddifyNext/2.5.7 (android) like ClashMeta v2ray sing-box", NULL, F_SB, M_APP, "hiddify", "", "2.5.7"},
    {NULL, "NekoBox/Android/1.3.4 (Prefer ClashMeta Format)", NULL, F_B64, M_APP, "nekobox", "", ""},
    {NULL, "Surge iOS/2920", NULL, ZNP_FORMATS_SURGE, M_APP, "surge", "", ""},
    {NULL, "Surge Mac/2690", NULL, ZNP_FORMATS_SURGE, M_APP, "surge", "", ""},
    {NULL, "Loon/3.2.1 (iPhone)", NULL, ZNP_FORMATS_LOON, M_APP, "loon", "3.2.1", "3.2.1"},
    {NULL, "Quantumult X/1.0.30 (iPhone14,2; iOS 16.0)", NULL, ZNP_FORMATS_QUANTUMULT_X, M_APP, "quantumult-x", "1.0.30", "1.0.30"},
    {NULL, "Stash/2.6.1 Clash/1.9.0", NULL, ZNP_FORMATS_STASH, M_APP, "stash", "2.6.1", "2.6.1"},
    {NULL, "Shadowrocket/1993 CFNetwork/1410.0.3 Darwin/22.6.0 iPhone14,5", NULL, F_B64, M_APP, "shadowrocket",
     "1993", "1993"},
    {NULL, "Xray/1.8.24", NULL, F_B64, M_CORE, "xray", "1.8.24", ""},
    {NULL, "v2ray/5.16.1", NULL, F_B64, M_CORE, "v2ray", "5.16.1", ""},
    {NULL, "Go-http-client/1.1", NULL, F_B64, ZNP_FORMATS_MATCH_DEFAULT, NULL, "", ""},
    /* more shapes seen in the field */
    {NULL, "clash-verge/v2.0.3", NULL, F_META, M_APP, "clash-verge", "", "2.0.3"},
    {NULL, "Clash-Verge-Rev/2.1.2 mihomo/1.19.1", NULL, F_META, M_APP, "clash-verge", "1.19.1", "2.1.2"},
    {NULL, "FlClash/0.8.70 Platform/windows", NULL, F_META, M_APP, "flclash", "", "0.8.70"},
    {NULL, "ClashX/1.118.0 (com.west2online.ClashX; build:1.118.0; macOS 14.5.0) Alamofire/5.8.1", NULL,
     ZNP_FORMATS_CLASH, M_CORE, "clash", "1.118.0", ""},
    {NULL, "Stash/2.7.1 Clash/1.11.0", NULL, ZNP_FORMATS_STASH, M_APP, "stash", "2.7.1", "2.7.1"},
    {NULL, "Shadowrocket/2.2.35 CFNetwork/1494.0.7 Darwin/23.4.0", NULL, F_B64, M_APP, "shadowrocket", "2.2.35",
     "2.2.35"},
    {NULL, "v2rayN/7.4.2", NULL, F_B64, M_APP, "v2rayn", "", "7.4.2"},
    {NULL, "v2rayNG/1.9.16", NULL, F_B64, M_APP, "v2rayng", "", "1.9.16"},
    {NULL, "SFA/1.11.4 (Build 500; sing-box 1.11.4; language en_US)", NULL, F_SB, M_APP, "sing-box-app", "1.11.4",
     "1.11.4"},
    {NULL, "sing-box 1.12.0 (go1.23.4, linux/amd64, CGO disabled)", NULL, F_SB, M_CORE, "sing-box", "1.12.0", ""},
    {NULL, "Surge/2950 CFNetwork/1410 Darwin/22.6.0", NULL, ZNP_FORMATS_SURGE, M_APP, "surge", "2950", "2950"},
    {NULL, "Loon/765 CFNetwork/1494.0.7 Darwin/23.4.0", NULL, ZNP_FORMATS_LOON, M_APP, "loon", "765", "765"},
    {NULL, "curl/8.5.0", NULL, F_B64, ZNP_FORMATS_MATCH_DEFAULT, NULL, "", ""},
    {NULL, "balloon-app/1.0", NULL, F_B64, ZNP_FORMATS_MATCH_DEFAULT, NULL, "", ""},
    /* browsers */
    {NULL, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36", NULL, F_B64,
     ZNP_FORMATS_MATCH_BROWSER, NULL, "", ""},
    {NULL, "SomeFetcher/1.0", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8", F_B64, ZNP_FORMATS_MATCH_BROWSER,
     NULL, "", ""},
    {NULL, "SomeFetcher/1.0", "application/json, text/html;q=0.5", F_B64, ZNP_FORMATS_MATCH_DEFAULT, NULL, "", ""},
    {NULL, NULL, "*/*", F_B64, ZNP_FORMATS_MATCH_DEFAULT, NULL, "", ""},
    {NULL, "Mozilla/5.0 (Linux; Android 14) mihomo/1.19.3", NULL, F_META, M_CORE, "clash-meta", "1.19.3", ""},
    /* explicit flag beats every token */
    {"clash", "karing/1.1.0 singbox/1.12.0 clashmeta mihomo/1.19.0", NULL, ZNP_FORMATS_CLASH, ZNP_FORMATS_MATCH_FLAG,
     "clash", "", ""},
    {"meta", "x", NULL, F_B64, ZNP_FORMATS_MATCH_DEFAULT, NULL, "", ""},
    {"clash-meta", "karing/1.1.0 singbox/1.12.0 clashmeta mihomo/1.19.0", NULL, F_META, ZNP_FORMATS_MATCH_FLAG,
     "clash-meta", "1.19.0", ""},
    {"sing-box", "SFI/1.12.1 (Build 1; sing-box 1.11.3; language en_US)", NULL, F_SB, ZNP_FORMATS_MATCH_FLAG,
     "sing-box", "1.11.3", ""},
    {"SIP008", "Mozilla/5.0", "text/html", ZNP_FORMATS_SIP008, ZNP_FORMATS_MATCH_FLAG, NULL, "", ""},
    {"v2rayNG", "", NULL, F_B64, ZNP_FORMATS_MATCH_FLAG, "v2rayng", "", ""},
};

static void formats__detect_user_agent_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(ua_cases) / sizeof(ua_cases[0]); i++) {
        const ua_case_t *c = &ua_cases[i];
        znp_formats_client_t client;

        znp_formats_detect(&client, c->flag, c->ua, c->accept);
        if (client.format != c->format || client.matched_by != c->matched_by)
            fail_msg("case %zu \"%s\": format %s matched_by %d", i, c->ua ? c->ua : "(null)",
                     znp_formats_format_name(client.format), (int)client.matched_by);
        if (c->rule == NULL)
            assert_null(client.rule);
        else
            assert_string_equal(client.rule != NULL ? client.rule->id : "(none)", c->rule);
        assert_string_equal(client.version, c->version);
        assert_string_equal(client.app_version, c->app_version);
    }
}

static void formats__detect_gates_on_core_version(void **state)
{
    znp_formats_node_t anytls = make_node(ZNP_FORMATS_ANYTLS, "any", "a.example.com");
    znp_formats_node_t hy2 = make_node(ZNP_FORMATS_HYSTERIA2, "hy2", "a.example.com");
    znp_formats_client_t client;
    const char *reason = NULL;

    (void)state;
    znp_formats_detect(&client, NULL, "SFI/1.12.1 (Build 1; sing-box 1.11.3; language en_US)", NULL);
    assert_false(znp_formats_supports(client.format, client.version, &anytls, &reason));
    assert_non_null(reason);
    assert_true(znp_formats_supports(client.format, client.version, &hy2, NULL));

    znp_formats_detect(&client, NULL, "karing/1.1.0 singbox/1.12.0 clashmeta mihomo/1.19.0", NULL);
    assert_true(znp_formats_supports(client.format, client.version, &anytls, &reason));
    assert_null(reason);

    znp_formats_detect(&client, NULL, "ClashMeta/1.19.0; mihomo/1.19.0", NULL);
    assert_false(znp_formats_supports(client.format, client.version, &anytls, NULL));
    znp_formats_detect(&client, NULL, "FlClash/v0.8.35", NULL);
    assert_true(znp_formats_supports(client.format, client.version, &anytls, NULL));
    assert_false(znp_formats_supports(ZNP_FORMATS_CLASH, NULL, &hy2, NULL));
    assert_false(znp_formats_supports(ZNP_FORMATS_SINGBOX, "1.4.9", &hy2, NULL));
    assert_true(znp_formats_supports(ZNP_FORMATS_SINGBOX, "1.5.0", &hy2, NULL));
}

static void formats__rules_table_complete(void **state)
{
    size_t count = 0;
    const znp_formats_client_rule_t *rules = znp_formats_client_rules(&count);
    int seen_core = 0;

    (void)state;
    assert_true(count >= 20);
    for (size_t i = 0; i < count; i++) {
        assert_non_null(rules[i].id);
        assert_non_null(rules[i].display_name);
        assert_non_null(rules[i].tokens[0]);
        /* every app row precedes every core row */
        if (rules[i].kind == ZNP_FORMATS_MATCH_CORE)
            seen_core = 1;
        else
            assert_false(seen_core);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(rules[i].id, rules[j].id);
    }
}

static void formats__version_compare_orders(void **state)
{
    static const struct {
        const char *a;
        const char *b;
        int sign;
    } cases[] = {
        {"1.10.0", "1.9.9", 1}, {"1.12.0", "1.12.0", 0}, {"v1.19.2", "1.19.2", 0}, {"1.19", "1.19.2", -1},
        {"1.12.0-beta.1", "1.12.0", 0}, {"2", "10", -1}, {"1.11.3", "1.12.0", -1},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int r = znp_formats_version_compare(cases[i].a, cases[i].b);
        int sign = 0;

        if (r > 0)
            sign = 1;
        else if (r < 0)
            sign = -1;
        assert_int_equal(sign, cases[i].sign);
    }
}

static void formats__format_names_and_types(void **state)
{
    (void)state;
    assert_string_equal(znp_formats_format_name(ZNP_FORMATS_CLASH_META), "clash-meta");
    assert_string_equal(znp_formats_content_type(ZNP_FORMATS_SINGBOX), "application/json");
    assert_string_equal(znp_formats_content_type(ZNP_FORMATS_STASH), "text/yaml; charset=utf-8");
    assert_string_equal(znp_formats_content_type(ZNP_FORMATS_BASE64), "text/plain; charset=utf-8");
    assert_string_equal(znp_formats_format_name(ZNP_FORMATS_FORMAT_COUNT), "unknown");
}

/*
 * Reference for the one-pass token scan in detect.c: a strstr per token, the
 * way detection first worked. Returns the rule the precedence table picks
 * for a lowercase User-Agent without flag, or NULL.
 */
static int ref_is_word(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static const char *ref_find(const char *ua, const char *token)
{
    size_t len = strlen(token);

    for (const char *p = strstr(ua, token); p != NULL; p = strstr(p + 1, token)) {
        if ((p == ua || !ref_is_word((unsigned char)p[-1])) && !ref_is_word((unsigned char)p[len]))
            return p;
    }
    return NULL;
}

static const znp_formats_client_rule_t *ref_rule(const char *ua)
{
    size_t count;
    const znp_formats_client_rule_t *rules = znp_formats_client_rules(&count);

    for (int pass = 0; pass < 2; pass++) {
        znp_formats_match_t kind = pass == 0 ? ZNP_FORMATS_MATCH_APP : ZNP_FORMATS_MATCH_CORE;

        for (size_t i = 0; i < count; i++) {
            if (rules[i].kind != kind)
                continue;
            for (size_t t = 0; t < ZNP_FORMATS_TOKENS_MAX && rules[i].tokens[t] != NULL; t++) {
                if (ref_find(ua, rules[i].tokens[t]) != NULL)
                    return &rules[i];
            }
        }
    }
    return NULL;
}

/* 20,000 generated User-Agents of rule tokens, versions, noise and separators: the scan picks the reference's rule. */
static void formats__detect_scan_matches_reference(void **state)
{
    static const char *const noise[] = {"mozilla", "okhttp", "dalvik", "android", "cla", "clashy", "v2", "meta",
                                        "pro", "box", "sing", "curl", "x", "1.2.3", "v1.19.28"};
    static const char *const separators[] = {" ", "/", ";", ":", "-", "_", ".", "(", ")", "", "; ", "/v"};
    size_t count;
    const znp_formats_client_rule_t *rules = znp_formats_client_rules(&count);
    const char *tokens[256];
    size_t token_count = 0;
    uint32_t seed = 12345;

    (void)state;
    for (size_t i = 0; i < count; i++)
        for (size_t t = 0; t < ZNP_FORMATS_TOKENS_MAX && rules[i].tokens[t] != NULL && token_count < 256; t++)
            tokens[token_count++] = rules[i].tokens[t];
    for (int n = 0; n < 20000; n++) {
        char ua[400] = "";
        size_t used = 0;
        int parts = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 6;
        znp_formats_client_t client;

        for (int k = 0; k < parts; k++) {
            uint32_t r = (seed = seed * 1103515245u + 12345u) >> 8;
            const char *word = r % 3 == 0 ? noise[r / 3 % (sizeof(noise) / sizeof(noise[0]))] : tokens[r / 3 % token_count];
            const char *sep = separators[(r >> 12) % (sizeof(separators) / sizeof(separators[0]))];

            used += (size_t)snprintf(ua + used, sizeof(ua) - used, "%s%s", word, sep);
        }
        znp_formats_detect(&client, NULL, ua, NULL);
        if (client.rule != ref_rule(ua))
            fail_msg("\"%s\": scan picked %s, reference %s", ua, client.rule != NULL ? client.rule->id : "none",
                     ref_rule(ua) != NULL ? ref_rule(ua)->id : "none");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(formats__links_name_password_round_trip),
        cmocka_unit_test(formats__link_password_percent_encoded),
        cmocka_unit_test(formats__ss2022_userinfo_plain),
        cmocka_unit_test(formats__emoji_name_survives_formats),
        cmocka_unit_test(formats__invalid_utf8_name_rejected),
        cmocka_unit_test(formats__yaml_tricky_names_round_trip),
        cmocka_unit_test(formats__random_names_round_trip),
        cmocka_unit_test(formats__yaml_empty_list_valid),
        cmocka_unit_test(formats__singbox_tags_unique),
        cmocka_unit_test(formats__singbox_old_version_skips_anytls),
        cmocka_unit_test(formats__sip008_shadowsocks_only),
        cmocka_unit_test(formats__surge_lines_exact),
        cmocka_unit_test(formats__quantumultx_lines_exact),
        cmocka_unit_test(formats__loon_lines_exact),
        cmocka_unit_test(formats__ipv6_bracketed_once),
        cmocka_unit_test(formats__invalid_nodes_rejected),
        cmocka_unit_test(formats__invalid_node_skipped_file_intact),
        cmocka_unit_test(formats__share_link_invalid_returns_error),
        cmocka_unit_test(formats__uri_parser_rejects_malformed),
        cmocka_unit_test(formats__uri_parser_accepts_valid),
        cmocka_unit_test(formats__detect_user_agent_table),
        cmocka_unit_test(formats__detect_scan_matches_reference),
        cmocka_unit_test(formats__detect_gates_on_core_version),
        cmocka_unit_test(formats__rules_table_complete),
        cmocka_unit_test(formats__version_compare_orders),
        cmocka_unit_test(formats__format_names_and_types),
        cmocka_unit_test(formats__golden_files_match),
        cmocka_unit_test(formats__ss2022_user_key_lengths),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

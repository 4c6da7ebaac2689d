/*
 * Golden files: every built-in format rendered for each entry of one fixed
 * data set, compared byte for byte with tests/golden/<format>/<kind>.<ext>.
 * With ZNP_GOLDEN_UPDATE=1 the files are written instead
 * (scripts/golden-update.sh). tests/golden/dataset.json describes the data
 * set for tests/integration/test_download_golden.py, which checks the files
 * with real parsers.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <jansson.h>

#include "formats/formats.h"

void formats__golden_files_match(void **state);
void formats__ss2022_user_key_lengths(void **state);

#define G_UUID      "b831381d-6324-4d53-ad4f-8cda48b30811"
#define G_UUID2     "0d9a3f4e-7c1b-4e8a-9f2d-5a6b7c8d9e0f"
#define G_PASSWORD  "p@ss:w/rd+="
#define G_EMOJI     "\xF0\x9F\x87\xB8\xF0\x9F\x87\xAC SG-01 \xE2\x9C\x88 \xE9\xA6\x99\xE6\xB8\xAF \"x\""
#define G_RESERVED  "HKG 01 #A&B=C/D?%"
/* 16 bytes 00..0f as base64: a 2022-blake3-aes-128-gcm key */
#define G_SS2022KEY "AAECAwQFBgcICQoLDA0ODw=="

typedef struct kind {
    const char *id; /* file stem */
    znp_formats_node_t node;
} kind_t;

static kind_t kinds[] = {
    {"vmess", {.protocol = ZNP_FORMATS_VMESS, .name = G_EMOJI, .host = "vm.example.com", .port = 443, .uuid = G_UUID,
               .transport = {.network = ZNP_FORMATS_NET_WS, .path = "/ws", .host = "cdn.example.com"},
               .tls = {.enabled = 1, .sni = "vm.example.com"}}},
    {"vmess-tcp", {.protocol = ZNP_FORMATS_VMESS, .name = "VMess TCP 东京", .host = "198.51.100.7", .port = 10086,
                   .uuid = G_UUID2, .cipher = "aes-128-gcm"}},
    {"vless-reality", {.protocol = ZNP_FORMATS_VLESS, .name = "VLESS Reality 日本", .host = "jp.example.com",
                       .port = 443, .uuid = G_UUID, .flow = "xtls-rprx-vision",
                       .tls = {.enabled = 1, .sni = "www.example.com", .fingerprint = "chrome",
                               .reality_public_key = "jNXHt1yRo0vDuchQlIP6Z0ZvjT3KtzVI-T4E7RoLJS0",
                               .reality_short_id = "0123abcd"}}},
    {"vless-ws", {.protocol = ZNP_FORMATS_VLESS, .name = G_RESERVED, .host = "2001:db8::10", .port = 8443,
                  .uuid = G_UUID2, .transport = {.network = ZNP_FORMATS_NET_WS, .path = "/vl", .host = "v.example.com"},
                  .tls = {.enabled = 1, .sni = "v.example.com"}}},
    {"trojan", {.protocol = ZNP_FORMATS_TROJAN, .name = G_RESERVED, .host = "tj.example.com", .port = 443,
                .password = G_PASSWORD,
                .tls = {.enabled = 1, .sni = "tj.example.com", .alpn = {"h2", "http/1.1"}, .alpn_count = 2}}},
    {"trojan-ws", {.protocol = ZNP_FORMATS_TROJAN, .name = "Trojan WS \xF0\x9F\x87\xAF\xF0\x9F\x87\xB5 東京",
                   .host = "tjws.example.com", .port = 443, .password = G_PASSWORD,
                   .transport = {.network = ZNP_FORMATS_NET_WS, .path = "/tj", .host = "tjws.example.com"},
                   .tls = {.enabled = 1, .sni = "tjws.example.com"}}},
    {"shadowsocks", {.protocol = ZNP_FORMATS_SHADOWSOCKS, .name = "SS 新加坡 \xF0\x9F\x87\xB8\xF0\x9F\x87\xAC", .host = "ss.example.com", .port = 8388,
                     .password = G_PASSWORD, .cipher = "aes-256-gcm"}},
    {"shadowsocks-ipv6", {.protocol = ZNP_FORMATS_SHADOWSOCKS, .name = G_EMOJI, .host = "2001:db8::1", .port = 8389,
                          .password = "plain-password", .cipher = "chacha20-ietf-poly1305"}},
    {"shadowsocks-2022", {.protocol = ZNP_FORMATS_SHADOWSOCKS, .name = "SS 2022 香港", .host = "ss22.example.com",
                          .port = 8390, .password = G_SS2022KEY, .cipher = "2022-blake3-aes-128-gcm"}},
    {"hysteria2", {.protocol = ZNP_FORMATS_HYSTERIA2, .name = G_EMOJI, .host = "hy.example.com", .port = 443,
                   .password = G_PASSWORD, .obfs = "salamander", .obfs_password = "ob fs+pw", .up_mbps = 50,
                   .down_mbps = 200, .tls = {.sni = "hy.example.com"}}},
    {"hysteria2-plain", {.protocol = ZNP_FORMATS_HYSTERIA2, .name = "Hysteria2 香港 \xE2\x9C\x88", .host = "hy2.example.com",
                         .port = 8443, .password = G_PASSWORD, .tls = {.sni = "hy2.example.com", .insecure = 1}}},
    {"tuic", {.protocol = ZNP_FORMATS_TUIC, .name = "TUIC 台北", .host = "tuic.example.com", .port = 443,
              .uuid = G_UUID, .password = G_PASSWORD, .congestion_control = "bbr", .udp_relay_mode = "native",
              .tls = {.sni = "tuic.example.com", .alpn = {"h3"}, .alpn_count = 1}}},
};
#define KIND_COUNT (sizeof(kinds) / sizeof(kinds[0]))

static const char *extension(znp_formats_format_t format)
{
    switch (format) {
    case ZNP_FORMATS_CLASH:
    case ZNP_FORMATS_CLASH_META:
    case ZNP_FORMATS_STASH:
        return "yaml";
    case ZNP_FORMATS_SINGBOX:
    case ZNP_FORMATS_SIP008:
        return "json";
    default:
        return "txt";
    }
}

static const char *protocol_name(znp_formats_protocol_t p)
{
    static const char *const names[] = {"vmess", "vless", "trojan", "shadowsocks", "hysteria2", "tuic", "anytls"};

    return names[p];
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    long size;

    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        data = malloc((size_t)size + 1);
        if (data != NULL && fread(data, 1, (size_t)size, f) == (size_t)size) {
            data[size] = '\0';
            *len = (size_t)size;
        } else {
            free(data);
            data = NULL;
        }
    }
    fclose(f);
    return data;
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Compare `data` with the golden file `path`, or write it in update mode. Returns 1 when they differ. */
static int check_golden(const char *path, const char *data, size_t len, int update)
{
    size_t old_len = 0;
    char *old;
    int differs;

    if (update) {
        write_file(path, data, len);
        return 0;
    }
    old = read_file(path, &old_len);
    differs = old == NULL || old_len != len || memcmp(old, data, len) != 0;
    if (differs)
        print_error("golden file %s %s; run scripts/golden-update.sh if the change is intended\n", path,
                    old == NULL ? "is missing" : "differs from the output");
    free(old);
    return differs;
}

/* tests/golden/dataset.json: the entries as the checker needs them. */
static char *dataset_json(void)
{
    json_t *list = json_array();
    char *text;

    for (size_t i = 0; i < KIND_COUNT; i++) {
        const znp_formats_node_t *n = &kinds[i].node;
        char *link = NULL;

        assert_int_equal(znp_formats_share_link(&link, n, NULL), 0);
        json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:s, s:i, s:s?, s:s?, s:s?, s:s}", "kind", kinds[i].id,
                                              "protocol", protocol_name(n->protocol), "name", n->name, "host", n->host,
                                              "port", n->port, "uuid", n->uuid, "password", n->password, "cipher",
                                              n->cipher, "link", link));
        free(link);
    }
    text = json_dumps(list, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    json_decref(list);
    assert_non_null(text);
    return text;
}

void formats__golden_files_match(void **state)
{
    const char *root = getenv("ZNP_SOURCE_DIR");
    const char *update_env = getenv("ZNP_GOLDEN_UPDATE");
    int update = update_env != NULL && strcmp(update_env, "1") == 0;
    int failures = 0;
    char path[4096];
    znp_formats_node_t all[KIND_COUNT];
    char *text;

    (void)state;
    if (root == NULL)
        root = ".";
    snprintf(path, sizeof(path), "%s/tests/golden", root);
    if (update)
        assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);

    for (size_t i = 0; i < KIND_COUNT; i++)
        all[i] = kinds[i].node;
    for (int f = 0; f < ZNP_FORMATS_FORMAT_COUNT; f++) {
        znp_formats_format_t format = (znp_formats_format_t)f;
        const char *name = znp_formats_format_name(format);

        snprintf(path, sizeof(path), "%s/tests/golden/%s", root, name);
        if (update)
            assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
        for (size_t k = 0; k <= KIND_COUNT; k++) {
            char *out = NULL;
            size_t len = 0;
            int whole = k == KIND_COUNT;

            assert_int_equal(znp_formats_render(&out, &len, format, whole ? all : &kinds[k].node, whole ? KIND_COUNT : 1,
                                                NULL),
                             0);
            snprintf(path, sizeof(path), "%s/tests/golden/%s/%s.%s", root, name, whole ? "all" : kinds[k].id,
                     extension(format));
            failures += check_golden(path, out, len, update);
            free(out);
        }
    }
    text = dataset_json();
    snprintf(path, sizeof(path), "%s/tests/golden/dataset.json", root);
    failures += check_golden(path, text, strlen(text), update);
    free(text);
    assert_int_equal(failures, 0);
}

void formats__ss2022_user_key_lengths(void **state)
{
    static const char password[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    char key[48];

    (void)state;
    assert_int_equal(znp_formats_ss2022_user_key(key, sizeof(key), "2022-blake3-aes-128-gcm", password), 0);
    assert_string_equal(key, G_SS2022KEY);
    assert_int_equal(znp_formats_ss2022_user_key(key, sizeof(key), "2022-blake3-aes-256-gcm", password), 0);
    assert_string_equal(key, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
    assert_int_equal(znp_formats_ss2022_user_key(key, sizeof(key), "2022-blake3-chacha20-poly1305", password), 0);
    assert_int_equal(strlen(key), 44);
    assert_int_equal(znp_formats_ss2022_user_key(key, sizeof(key), "aes-256-gcm", password), ZNP_E_VALIDATION_FAILED);
    assert_int_equal(znp_formats_ss2022_user_key(key, sizeof(key), "2022-blake3-aes-128-gcm", "00zz"),
                     ZNP_E_VALIDATION_FAILED);
    assert_int_equal(znp_formats_ss2022_user_key(key, 10, "2022-blake3-aes-256-gcm", password),
                     ZNP_E_VALIDATION_FAILED);
    assert_int_equal(znp_formats_ss2022_key_len("2022-blake3-aes-256-gcm"), 32);
    assert_int_equal(znp_formats_ss2022_key_len("aes-128-gcm"), 0);
}

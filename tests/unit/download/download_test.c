/*
 * If-None-Match matching, Accept-Encoding parsing, the Content-Disposition
 * value and binding protocol names of the download module.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "download/download.h"
#include "errors.gen.h"

static void download__etag_matches_table_matches(void **state)
{
    static const struct {
        const char *header;
        int match;
    } cases[] = {
        {"\"abc\"", 1},
        {"W/\"abc\"", 1},
        {"\"x\", \"abc\"", 1},
        {"\"x\",W/\"abc\" ", 1},
        {"*", 1},
        {"\"abcd\"", 0},
        {"\"ab\"", 0},
        {"abc", 0},
        {"", 0},
        {NULL, 0},
        {"\"x\", \"y\"", 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(znp_download_etag_matches(cases[i].header, "\"abc\""), cases[i].match);
}

static void download__accepts_gzip_table_matches(void **state)
{
    static const struct {
        const char *header;
        int gzip;
    } cases[] = {
        {NULL, 0},
        {"", 0},
        {"gzip", 1},
        {"GZip", 1},
        {"x-gzip", 1},
        {"gzip, deflate, br", 1},
        {"br,gzip", 1},
        {"gzip;q=0", 0},
        {"gzip; q=0.000", 0},
        {"gzip;Q=0", 0},
        {"gzip;q=0.001", 1},
        {"gzip;q=1.000", 1},
        {"gzip ; q=0.5", 1},
        {"identity", 0},
        {"identity;q=1, gzip;q=0.5", 0},
        {"gzip;q=0.5, identity;q=0.5", 1},
        {"gzip, identity;q=0", 1},
        {"*", 1},
        {"*;q=0", 0},
        {"*;q=0.3, gzip;q=0", 0},
        {"gzip;q=0, *", 0},
        {"*, identity;q=0.5", 1},
        {"deflate, br", 0},
        {"gzip;q=1.5", 0},
        {"gzip;q=", 0},
        {"gzip;q=abc, deflate", 0},
        {"gzip;q=0.5000", 0},
        {"gzip junk", 0},
        {"gzipx", 0},
        {",,gzip,,", 1},
        {"gzip;level=9", 1},
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (znp_download_accepts_gzip(cases[i].header) != cases[i].gzip)
            fail_msg("Accept-Encoding \"%s\": expected %d", cases[i].header != NULL ? cases[i].header : "(absent)",
                     cases[i].gzip);
    }
}

static void download__content_disposition_table_matches(void **state)
{
    static const struct {
        const char *name, *value;
    } cases[] = {
        {"znp", "attachment; filename=\"znp\""},
        {"My \"Site\"", "attachment; filename=\"My Site\""},
        {"云加速", "attachment; filename=\"___\"; filename*=UTF-8''%E4%BA%91%E5%8A%A0%E9%80%9F"},
        {"A 云", "attachment; filename=\"A _\"; filename*=UTF-8''A%20%E4%BA%91"},
    };
    char out[256];

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(znp_download_content_disposition(out, sizeof(out), cases[i].name), 0);
        assert_string_equal(out, cases[i].value);
    }
}

static void download__content_disposition_small_buffer_fails(void **state)
{
    char out[16];

    (void)state;
    assert_int_equal(znp_download_content_disposition(out, sizeof(out), "a rather long site name"), ZNP_E_INTERNAL);
}

static void download__protocol_names_map_to_formats(void **state)
{
    static const struct {
        const char *name;
        int known;
        znp_formats_protocol_t protocol;
    } cases[] = {
        {"vmess", 1, ZNP_FORMATS_VMESS},
        {"vless", 1, ZNP_FORMATS_VLESS},
        {"trojan", 1, ZNP_FORMATS_TROJAN},
        {"shadowsocks", 1, ZNP_FORMATS_SHADOWSOCKS},
        {"ss", 1, ZNP_FORMATS_SHADOWSOCKS},
        {"hysteria2", 1, ZNP_FORMATS_HYSTERIA2},
        {"hy2", 1, ZNP_FORMATS_HYSTERIA2},
        {"tuic", 1, ZNP_FORMATS_TUIC},
        {"anytls", 1, ZNP_FORMATS_ANYTLS},
        {"any_tls", 1, ZNP_FORMATS_ANYTLS},
        {"socks", 0, ZNP_FORMATS_VMESS},
        {"http", 0, ZNP_FORMATS_VMESS},
        {"VMESS", 0, ZNP_FORMATS_VMESS},
        {"", 0, ZNP_FORMATS_VMESS},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        znp_formats_protocol_t got = ZNP_FORMATS_VMESS;

        assert_int_equal(znp_download_protocol_of(cases[i].name, &got), cases[i].known);
        assert_int_equal(got, cases[i].protocol);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(download__etag_matches_table_matches),
        cmocka_unit_test(download__accepts_gzip_table_matches),
        cmocka_unit_test(download__content_disposition_table_matches),
        cmocka_unit_test(download__content_disposition_small_buffer_fails),
        cmocka_unit_test(download__protocol_names_map_to_formats),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

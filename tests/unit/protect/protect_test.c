/*
 * Unit tests of src/protect: CIDR parsing and matching, the forwarding-chain
 * walk, CORS origin matching, token buckets on a fake clock, the bounded
 * bucket table, route groups and the configuration checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "errors.gen.h"
#include "protect/protect.h"

/* a clock the tests move by hand */
static int64_t fake_now_ms(void *data)
{
    return *(const int64_t *)data;
}

static znp_ip_t ip(const char *text)
{
    znp_ip_t out;

    assert_int_equal(znp_ip_parse(&out, text, strlen(text)), 0);
    return out;
}

static void protect__cidr_parse_table(void **state)
{
    static const struct {
        const char *text;
        int ok;
        unsigned family, prefix;
    } cases[] = {
        {"10.0.0.0/8", 1, 4, 8},
        {"192.168.1.7", 1, 4, 32},
        {"0.0.0.0/0", 1, 4, 0},
        {"::/0", 1, 6, 0},
        {"2001:db8::/32", 1, 6, 32},
        {"::1", 1, 6, 128},
        {"fd00::/8", 1, 6, 8},
        {"::ffff:10.0.0.0/104", 1, 4, 8},
        {"10.0.0.1/8", 0, 0, 0}, /* host bits set */
        {"10.0.0.0/33", 0, 0, 0},
        {"10.0.0.0/", 0, 0, 0},
        {"10.0.0.0/08", 0, 0, 0},
        {"10.0.0.0/-1", 0, 0, 0},
        {"10.0.0/8", 0, 0, 0},
        {"2001:db8::/129", 0, 0, 0},
        {"2001:db8::1/32", 0, 0, 0}, /* host bits set */
        {"example.com/8", 0, 0, 0},
        {"", 0, 0, 0},
        {"/8", 0, 0, 0},
        {"1.2.3.4 /8", 0, 0, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        znp_cidr_t cidr;
        int rc = znp_cidr_parse(&cidr, cases[i].text, strlen(cases[i].text));

        if (!cases[i].ok) {
            if (rc == 0)
                fail_msg("\"%s\" parsed but is invalid", cases[i].text);
            continue;
        }
        if (rc != 0)
            fail_msg("\"%s\" did not parse", cases[i].text);
        assert_int_equal(cidr.base.family, cases[i].family);
        assert_int_equal(cidr.prefix, cases[i].prefix);
    }
}

static void protect__cidr_contains_table(void **state)
{
    static const struct {
        const char *cidr, *address;
        int inside;
    } cases[] = {
        {"10.0.0.0/8", "10.255.1.2", 1},
        {"10.0.0.0/8", "11.0.0.1", 0},
        {"192.168.0.0/23", "192.168.1.255", 1},
        {"192.168.0.0/23", "192.168.2.0", 0},
        {"0.0.0.0/0", "203.0.113.9", 1},
        {"0.0.0.0/0", "2001:db8::1", 0}, /* families never match each other */
        {"2001:db8::/32", "2001:db8:ffff::1", 1},
        {"2001:db8::/32", "2001:db9::1", 0},
        {"2001:db8::/33", "2001:db8:8000::1", 0},
        {"::/0", "::1", 1},
        {"127.0.0.1", "127.0.0.1", 1},
        {"127.0.0.1", "127.0.0.2", 0},
        {"10.0.0.0/8", "::ffff:10.1.2.3", 1}, /* IPv4-mapped peers count as IPv4 */
        {"fe80::/10", "febf::1", 1},
        {"fe80::/10", "fec0::1", 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        znp_cidr_t cidr;
        znp_ip_t address = ip(cases[i].address);

        assert_int_equal(znp_cidr_parse(&cidr, cases[i].cidr, strlen(cases[i].cidr)), 0);
        if (znp_cidr_contains(&cidr, &address) != cases[i].inside)
            fail_msg("%s in %s: expected %d", cases[i].address, cases[i].cidr, cases[i].inside);
    }
}

static void protect__cidr_list_reports_bad_entry(void **state)
{
    znp_cidr_list_t list;
    char bad[32];
    znp_ip_t inside = ip("fd12::1");

    (void)state;
    assert_int_equal(znp_cidr_list_parse(&list, " 10.0.0.0/8,fd00::/8  127.0.0.1 ", bad, sizeof(bad)), 0);
    assert_int_equal(list.count, 3);
    assert_true(znp_cidr_list_contains(&list, &inside));
    znp_cidr_list_dispose(&list);

    assert_int_equal(znp_cidr_list_parse(&list, "10.0.0.0/8, 300.1.1.1/32, ::1", bad, sizeof(bad)),
                     ZNP_E_VALIDATION_FAILED);
    assert_string_equal(bad, "300.1.1.1/32");
    assert_int_equal(list.count, 0);
    assert_null(list.items);

    assert_int_equal(znp_cidr_list_parse(&list, NULL, bad, sizeof(bad)), 0);
    assert_int_equal(list.count, 0);
    znp_cidr_list_dispose(&list);
}

static void protect__forwarded_walk_table(void **state)
{
    static const struct {
        const char *peer;
        const char *trusted;
        const char *xff;       /* NULL = no X-Forwarded-For */
        const char *forwarded; /* NULL = no Forwarded */
        const char *expected;
    } cases[] = {
        /* untrusted peers are the client whatever they send */
        {"203.0.113.5", "10.0.0.0/8", "198.51.100.1", NULL, "203.0.113.5"},
        {"203.0.113.5", "", "198.51.100.1", NULL, "203.0.113.5"},
        /* one trusted proxy */
        {"10.0.0.2", "10.0.0.0/8", "198.51.100.1", NULL, "198.51.100.1"},
        {"10.0.0.2", "10.0.0.0/8", "6.6.6.6, 198.51.100.1", NULL, "198.51.100.1"},
        /* a chain of trusted proxies is skipped from the right */
        {"10.0.0.2", "10.0.0.0/8", "6.6.6.6, 198.51.100.1, 10.1.1.1, 10.2.2.2", NULL, "198.51.100.1"},
        /* every hop trusted: the leftmost one */
        {"10.0.0.2", "10.0.0.0/8", "10.9.9.9, 10.1.1.1", NULL, "10.9.9.9"},
        /* garbage ends the walk at the last trusted hop */
        {"10.0.0.2", "10.0.0.0/8", "198.51.100.1, unknown", NULL, "10.0.0.2"},
        {"10.0.0.2", "10.0.0.0/8", "198.51.100.1, , 10.1.1.1", NULL, "10.1.1.1"},
        {"10.0.0.2", "10.0.0.0/8", "", NULL, "10.0.0.2"},
        /* ports and brackets */
        {"10.0.0.2", "10.0.0.0/8", "198.51.100.1:5555", NULL, "198.51.100.1"},
        {"10.0.0.2", "10.0.0.0/8", "[2001:db8::9]:443", NULL, "2001:db8::9"},
        {"10.0.0.2", "10.0.0.0/8", "2001:db8::9", NULL, "2001:db8::9"},
        /* IPv6 proxies */
        {"fd00::1", "fd00::/8", "198.51.100.7, fd00::2", NULL, "198.51.100.7"},
        /* Forwarded (RFC 7239) when there is no X-Forwarded-For */
        {"10.0.0.2", "10.0.0.0/8", NULL, "for=198.51.100.3;proto=https", "198.51.100.3"},
        {"10.0.0.2", "10.0.0.0/8", NULL, "for=6.6.6.6, for=\"[2001:db8::3]:80\";by=10.0.0.2", "2001:db8::3"},
        {"10.0.0.2", "10.0.0.0/8", NULL, "For=198.51.100.4, for=10.3.3.3", "198.51.100.4"},
        {"10.0.0.2", "10.0.0.0/8", NULL, "for=_hidden", "10.0.0.2"},
        {"10.0.0.2", "10.0.0.0/8", NULL, "proto=https", "10.0.0.2"},
        /* X-Forwarded-For wins over Forwarded */
        {"10.0.0.2", "10.0.0.0/8", "198.51.100.1", "for=198.51.100.9", "198.51.100.1"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        znp_cidr_list_t trusted;
        znp_ip_t peer = ip(cases[i].peer);
        znp_ip_t client;
        char text[ZNP_IP_TEXT_MAX];
        const char *xff = cases[i].xff;
        const char *fwd = cases[i].forwarded;

        assert_int_equal(znp_cidr_list_parse(&trusted, cases[i].trusted, NULL, 0), 0);
        znp_client_ip_resolve(&client, &peer, &trusted, xff, xff ? strlen(xff) : 0, fwd, fwd ? strlen(fwd) : 0);
        znp_ip_format(text, sizeof(text), &client);
        if (strcmp(text, cases[i].expected) != 0)
            fail_msg("case %zu (xff \"%s\", forwarded \"%s\"): got %s, expected %s", i, xff ? xff : "-",
                     fwd ? fwd : "-", text, cases[i].expected);
        znp_cidr_list_dispose(&trusted);
    }
}

static void protect__origin_match_table(void **state)
{
    static const char patterns[] = "https://app.example.com, https://*.example.com, http://localhost:5173";
    static const struct {
        const char *origin;
        int allowed;
    } cases[] = {
        {"https://app.example.com", 1},
        {"https://APP.Example.com", 1},
        {"https://app.example.com:443", 1},
        {"https://shop.example.com", 1},
        {"https://a.b.example.com", 1},
        {"http://localhost:5173", 1},
        {"https://evil-example.com", 0},
        {"https://example.com", 0}, /* the wildcard needs a label in front */
        {"https://example.com.evil.test", 0},
        {"https://evil.test/.example.com", 0},
        {"https://shop.example.com.", 0},
        {"https://.example.com", 0},
        {"http://app.example.com", 0}, /* scheme differs */
        {"https://app.example.com:8443", 0},
        {"http://localhost", 0},
        {"http://localhost:5174", 0},
        {"https://app.example.com/", 0},
        {"https://user@app.example.com", 0},
        {"null", 0},
        {"", 0},
        {"https://app.example.com\r\nX: y", 0},
    };
    znp_origin_list_t list;

    (void)state;
    assert_int_equal(znp_origin_list_parse(&list, patterns, NULL, 0), 0);
    assert_int_equal(list.count, 3);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = znp_origin_list_match(&list, cases[i].origin, strlen(cases[i].origin));

        if (got != cases[i].allowed)
            fail_msg("origin \"%s\": got %d, expected %d", cases[i].origin, got, cases[i].allowed);
    }
    znp_origin_list_dispose(&list);

    assert_int_equal(znp_origin_list_parse(&list, "*", NULL, 0), 0);
    assert_true(znp_origin_list_match(&list, "https://anything.test", 21));
    znp_origin_list_dispose(&list);
}

static void protect__origin_list_rejects_invalid(void **state)
{
    static const char *const invalid[] = {
        "example.com",
        "https://",
        "ftp://example.com",
        "https://example.com/path",
        "https://*.*.example.com",
        "https://ex*ample.com",
        "https://example.com:0",
        "https://example.com:65536",
        "https://*",
    };
    char bad[64];

    (void)state;
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        znp_origin_list_t list;
        char text[128];

        snprintf(text, sizeof(text), "https://ok.test, %s", invalid[i]);
        if (znp_origin_list_parse(&list, text, bad, sizeof(bad)) != ZNP_E_VALIDATION_FAILED)
            fail_msg("\"%s\" was accepted", invalid[i]);
        assert_string_equal(bad, invalid[i]);
    }
}

static void protect__bucket_refills_on_fake_clock(void **state)
{
    znp_rate_t rate = {.per_minute = 60, .burst = 3}; /* one token a second */
    znp_bucket_t bucket;
    znp_rate_verdict_t v;
    int64_t now = 1000000;

    (void)state;
    znp_bucket_init(&bucket, rate, now);
    for (int i = 0; i < 3; i++) {
        znp_bucket_take(&bucket, rate, now, &v);
        assert_true(v.allowed);
        assert_int_equal(v.limit, 3);
        assert_int_equal(v.remaining, (uint32_t)(2 - i));
    }
    znp_bucket_take(&bucket, rate, now, &v);
    assert_false(v.allowed);
    assert_int_equal(v.retry_after_s, 1);
    assert_int_equal(v.reset_s, 3);

    /* half a token is not enough */
    now += 500;
    znp_bucket_take(&bucket, rate, now, &v);
    assert_false(v.allowed);
    assert_int_equal(v.retry_after_s, 1);

    now += 500;
    znp_bucket_take(&bucket, rate, now, &v);
    assert_true(v.allowed);
    assert_int_equal(v.remaining, 0);

    /* a long pause refills only up to the burst */
    now += 3600 * 1000;
    for (int i = 0; i < 3; i++) {
        znp_bucket_take(&bucket, rate, now, &v);
        assert_true(v.allowed);
    }
    znp_bucket_take(&bucket, rate, now, &v);
    assert_false(v.allowed);

    /* a slow rate: 2 per minute means 30 s per token */
    znp_rate_t slow = {.per_minute = 2, .burst = 1};

    znp_bucket_init(&bucket, slow, now);
    znp_bucket_take(&bucket, slow, now, &v);
    assert_true(v.allowed);
    znp_bucket_take(&bucket, slow, now + 1000, &v);
    assert_false(v.allowed);
    assert_int_equal(v.retry_after_s, 29);
}

static void protect__limiter_bound_with_100000_ips(void **state)
{
    const size_t cap = 10000;
    znp_rate_t rate = {.per_minute = 60, .burst = 5};
    int64_t now = 0;
    znp_limiter_t *limiter = NULL;
    size_t peak = 0;

    (void)state;
    assert_int_equal(znp_limiter_create(&limiter, cap, fake_now_ms, &now), 0);
    assert_true(znp_limiter_capacity(limiter) <= cap);
    for (uint32_t i = 0; i < 100000; i++) {
        uint8_t key[5] = {4, (uint8_t)(i >> 24), (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i};
        znp_rate_verdict_t v;
        size_t size;

        znp_limiter_take(limiter, key, sizeof(key), rate, &v);
        assert_true(v.allowed);
        now += 1;
        if (i % 97 == 0 || i > 99900) {
            size = znp_limiter_size(limiter);
            if (size > peak)
                peak = size;
            if (size > cap)
                fail_msg("%zu buckets after %u keys, the cap is %zu", size, i + 1, cap);
        }
    }
    assert_true(peak <= cap);
    assert_true(peak >= cap * 9 / 10); /* the shards fill up evenly */
    znp_limiter_destroy(limiter);
}

static void protect__limiter_keeps_recent_keys(void **state)
{
    znp_rate_t rate = {.per_minute = 1, .burst = 1};
    int64_t now = 0;
    znp_limiter_t *limiter = NULL;
    znp_rate_verdict_t v;
    static const char hot[] = "hot-key";

    (void)state;
    assert_int_equal(znp_limiter_create(&limiter, 64, fake_now_ms, &now), 0);
    znp_limiter_take(limiter, hot, sizeof(hot), rate, &v);
    assert_true(v.allowed);
    for (uint32_t i = 0; i < 5000; i++) {
        znp_limiter_take(limiter, &i, sizeof(i), rate, &v);
        /* the hot key is used all the time, so it is never the least recently used one */
        znp_limiter_take(limiter, hot, sizeof(hot), rate, &v);
        if (v.allowed)
            fail_msg("hot key got a fresh bucket after %u other keys", i + 1);
    }
    assert_true(znp_limiter_size(limiter) <= 64);

    /* an evicted key starts full again */
    uint32_t first = 0;

    znp_limiter_take(limiter, &first, sizeof(first), rate, &v);
    assert_true(v.allowed);
    znp_limiter_destroy(limiter);
}

static void protect__limiter_hashed_take_shares_bucket(void **state)
{
    znp_rate_t rate = {.per_minute = 1, .burst = 2};
    int64_t now = 0;
    znp_limiter_t *limiter = NULL;
    znp_rate_verdict_t v;
    static const char key[] = "GZ2vJd0hN6oK1cT8uQy3Aw";
    static const char other[] = "pm8GEqCPuflGCje2IBMCug";
    uint64_t hash;

    (void)state;
    assert_int_equal(znp_limiter_create(&limiter, 64, fake_now_ms, &now), 0);
    hash = znp_limiter_hash(limiter, key, strlen(key));
    assert_true(hash == znp_limiter_hash(limiter, key, strlen(key)));
    assert_true(hash != znp_limiter_hash(limiter, other, strlen(other)));

    /* the hints touch no bucket, and a hashed take and a plain one spend from the same bucket */
    znp_limiter_prefetch_slot(limiter, hash);
    znp_limiter_prefetch_bucket(limiter, hash);
    assert_int_equal(znp_limiter_size(limiter), 0);
    znp_limiter_take_hashed(limiter, hash, key, strlen(key), rate, &v);
    assert_true(v.allowed);
    znp_limiter_prefetch_bucket(limiter, hash);
    znp_limiter_take(limiter, key, strlen(key), rate, &v);
    assert_true(v.allowed);
    znp_limiter_take_hashed(limiter, hash, key, strlen(key), rate, &v);
    assert_false(v.allowed);
    assert_int_equal(znp_limiter_size(limiter), 1);

    /* keys longer than ZNP_LIMITER_KEY_MAX hash by their first ZNP_LIMITER_KEY_MAX bytes, as take counts them */
    char a[ZNP_LIMITER_KEY_MAX + 8], b[ZNP_LIMITER_KEY_MAX + 8];

    memset(a, 'a', sizeof(a));
    memcpy(b, a, sizeof(b));
    b[sizeof(b) - 1] = 'b';
    assert_true(znp_limiter_hash(limiter, a, sizeof(a)) == znp_limiter_hash(limiter, b, sizeof(b)));
    znp_limiter_destroy(limiter);
}

static void protect__limiter_keys_spread_over_slots(void **state)
{
    znp_rate_t rate = {.per_minute = 60, .burst = 5};
    int64_t now = 0;
    znp_limiter_t *limiter = NULL;
    znp_rate_verdict_t v;
    size_t used = 0, longest = 0;

    (void)state;
    /* the download's table: 65,536 keys, so one slot per key at most */
    assert_int_equal(znp_limiter_create(&limiter, 65536, fake_now_ms, &now), 0);
    for (uint32_t i = 0; i < 20000; i++) {
        char key[23];

        snprintf(key, sizeof(key), "token-%016u", i);
        znp_limiter_take(limiter, key, strlen(key), rate, &v);
    }
    znp_limiter_chains(limiter, &used, &longest);
    /* random placement of 20,000 keys in 65,536 slots fills about 17,000; with one slot in 16 it was 4,096 */
    assert_true(used > 15000);
    assert_true(longest <= 8);
    znp_limiter_destroy(limiter);
}

static void protect__limiter_zero_rate_allows(void **state)
{
    znp_rate_t none = {.per_minute = 0, .burst = 0};
    int64_t now = 0;
    znp_limiter_t *limiter = NULL;
    znp_rate_verdict_t v;

    (void)state;
    assert_int_equal(znp_limiter_create(&limiter, 16, fake_now_ms, &now), 0);
    for (int i = 0; i < 100; i++) {
        znp_limiter_take(limiter, "k", 1, none, &v);
        assert_true(v.allowed);
        assert_false(v.limited);
    }
    assert_int_equal(znp_limiter_size(limiter), 0);
    znp_limiter_destroy(limiter);
    znp_limiter_destroy(NULL);
}

static void protect__group_of_table(void **state)
{
    static const struct {
        const char *path;
        znp_route_group_t group;
    } cases[] = {
        {"/api/v1/panel/users", ZNP_GROUP_ADMIN},
        {"/api/v1/panel", ZNP_GROUP_ADMIN},
        {"/api/v1/panelx/users", ZNP_GROUP_PUBLIC},
        {"/api/v1/user/account/profile", ZNP_GROUP_USER},
        {"/api/v1/user", ZNP_GROUP_USER},
        {"/api/v1/users", ZNP_GROUP_PUBLIC},
        {"/api/v1/auth/login", ZNP_GROUP_PUBLIC},
        {"/api/v1/admin/users", ZNP_GROUP_PUBLIC}, /* the prefix here is "panel" */
        {"/openapi.json", ZNP_GROUP_PUBLIC},
        {"/", ZNP_GROUP_PUBLIC},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        znp_route_group_t got = znp_protect_group_of(cases[i].path, strlen(cases[i].path), "panel");

        if (got != cases[i].group)
            fail_msg("%s: got %s, expected %s", cases[i].path, znp_protect_group_name(got),
                     znp_protect_group_name(cases[i].group));
    }
    /* the route template form the HTTP face checks after routing */
    assert_int_equal(znp_protect_group_of("/api/v1/{admin}/users/{id}", 26, "{admin}"), ZNP_GROUP_ADMIN);
}

/* Write `yaml` to a temporary file and load it. Returns the znp_config_load result. */
static int load_yaml(const char *yaml, znp_config_t **out, znp_config_error_t *err)
{
    char path[] = "/tmp/znp-protect-test-XXXXXX";
    int fd = mkstemp(path);
    int rc;

    assert_true(fd >= 0);
    assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    unsetenv("ZNP_DATABASE_DSN");
    rc = znp_config_load(out, path, err);
    unlink(path);
    return rc;
}

static void protect__config_errors_name_the_line(void **state)
{
    static const struct {
        const char *yaml;
        unsigned line;
        const char *needle;
    } cases[] = {
        {"server:\n  trusted_proxies: \"10.0.0.0/8, 10.0.0.1/8\"\n", 2, "10.0.0.1/8"},
        {"admin:\n  burst: 3\n  allow_cidrs: \"::1, nope\"\n", 3, "nope"},
        {"cors:\n  allow_origins: \"*\"\n  allow_credentials: true\n", 3, "cors.allow_credentials"},
        {"cors:\n  groups:\n    user:\n      allow_origins: \"https://ok.test, example.com\"\n", 4, "example.com"},
        {"cors:\n  groups:\n    admin:\n      enabled: maybe\n", 4, "cors.groups.admin.enabled"},
        {"rate_limits:\n  groups:\n    user:\n      ip:\n        rate_per_minute: 10\n", 5,
         "rate_limits.groups.user.ip.burst"},
        {"rate_limits:\n  groups:\n    nobody: {}\n", 3, "nobody"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        znp_config_t *config = NULL;
        znp_config_error_t err;

        if (load_yaml(cases[i].yaml, &config, &err) != ZNP_E_VALIDATION_FAILED)
            fail_msg("case %zu loaded", i);
        if (strstr(err.message, cases[i].needle) == NULL)
            fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, err.message, cases[i].needle);
        if (err.line != cases[i].line)
            fail_msg("case %zu: line %u, expected %u (%s)", i, err.line, cases[i].line, err.message);
        assert_null(config);
    }
}

static void protect__admit_with_fake_clock(void **state)
{
    static const char yaml[] = "admin:\n"
                               "  allow_cidrs: \"192.0.2.0/24, 2001:db8::/32\"\n"
                               "  rate_per_minute: 60\n"
                               "  burst: 1\n"
                               "rate_limits:\n"
                               "  groups:\n"
                               "    public:\n"
                               "      ip: {rate_per_minute: 60, burst: 2}\n"
                               "      global: {rate_per_minute: 600, burst: 3}\n"
                               "    user:\n"
                               "      user: {rate_per_minute: 60, burst: 1}\n";
    znp_config_t *config = NULL;
    znp_config_error_t err;
    znp_protect_t *protect = NULL;
    znp_rate_verdict_t v;
    int64_t now = 5000;
    znp_ip_t a = ip("198.51.100.1"), b = ip("198.51.100.2"), inside = ip("2001:db8::5");
    znp_rate_limit_t op = {.ip = {.per_minute = 60, .burst = 1}};

    (void)state;
    assert_int_equal(load_yaml(yaml, &config, &err), 0);
    assert_int_equal(znp_protect_create(&protect, config, fake_now_ms, &now), 0);

    /* admin allow-list, then its per-IP bucket */
    assert_int_equal(znp_protect_admit_request(protect, ZNP_GROUP_ADMIN, &a, &v), ZNP_E_ACCESS_DENIED);
    assert_int_equal(znp_protect_admit_request(protect, ZNP_GROUP_ADMIN, &inside, &v), 0);
    assert_int_equal(znp_protect_admit_request(protect, ZNP_GROUP_ADMIN, &inside, &v), ZNP_E_TOO_MANY_REQUESTS);

    /* the public per-IP bucket has room for 2 requests, the global one for 3 from everyone */
    assert_int_equal(znp_protect_admit_request(protect, ZNP_GROUP_PUBLIC, &a, &v), 0);
    assert_int_equal(znp_protect_admit_request(protect, ZNP_GROUP_PUBLIC, &a, &v), 0);
    assert_int_equal(znp_protect_admit_request(protect, ZNP_GROUP_PUBLIC, &a, &v), ZNP_E_TOO_MANY_REQUESTS);
    assert_int_equal(v.retry_after_s, 1);
    assert_int_equal(znp_protect_admit_request(protect, ZNP_GROUP_PUBLIC, &b, &v), 0);
    assert_int_equal(v.remaining, 0); /* the global bucket is the tighter one now */
    assert_int_equal(znp_protect_admit_request(protect, ZNP_GROUP_PUBLIC, &b, &v), ZNP_E_TOO_MANY_REQUESTS);
    now += 1000;
    assert_int_equal(znp_protect_admit_request(protect, ZNP_GROUP_PUBLIC, &a, &v), 0);

    /* operation limits and user limits */
    assert_int_equal(znp_protect_admit_operation(protect, 7, &op, &a, &v), 0);
    assert_int_equal(znp_protect_admit_operation(protect, 7, &op, &a, &v), ZNP_E_TOO_MANY_REQUESTS);
    assert_int_equal(znp_protect_admit_operation(protect, 8, &op, &a, &v), 0);
    assert_int_equal(znp_protect_admit_user(protect, ZNP_GROUP_USER, 7, NULL, 42, &v), 0);
    assert_int_equal(znp_protect_admit_user(protect, ZNP_GROUP_USER, 7, NULL, 42, &v), ZNP_E_TOO_MANY_REQUESTS);
    assert_int_equal(znp_protect_admit_user(protect, ZNP_GROUP_USER, 7, NULL, 43, &v), 0);
    assert_int_equal(znp_protect_admit_user(protect, ZNP_GROUP_USER, 7, NULL, 0, &v), 0); /* anonymous */

    znp_protect_destroy(protect);
    znp_config_destroy(config);
}

static void protect__cors_groups_resolve(void **state)
{
    static const char yaml[] = "cors:\n"
                               "  enabled: true\n"
                               "  allow_origins: \"https://app.example.com\"\n"
                               "  allow_credentials: true\n"
                               "  groups:\n"
                               "    public: {allow_origins: \"*\", allow_credentials: \"false\"}\n"
                               "    admin: {enabled: \"false\"}\n";
    znp_config_t *config = NULL;
    znp_config_error_t err;
    znp_protect_t *protect = NULL;

    (void)state;
    assert_int_equal(load_yaml(yaml, &config, &err), 0);
    assert_int_equal(znp_protect_create(&protect, config, NULL, NULL), 0);
    assert_true(protect->cors[ZNP_GROUP_USER].enabled);
    assert_true(protect->cors[ZNP_GROUP_USER].allow_credentials);
    assert_true(znp_origin_list_match(&protect->cors[ZNP_GROUP_USER].origins, "https://app.example.com", 23));
    assert_false(znp_origin_list_match(&protect->cors[ZNP_GROUP_USER].origins, "https://other.test", 18));
    assert_true(protect->cors[ZNP_GROUP_PUBLIC].origins.any);
    assert_false(protect->cors[ZNP_GROUP_PUBLIC].allow_credentials);
    assert_false(protect->cors[ZNP_GROUP_ADMIN].enabled);
    assert_true(znp_cors_method_allowed(&protect->cors[ZNP_GROUP_USER], "PATCH", 5));
    assert_false(znp_cors_method_allowed(&protect->cors[ZNP_GROUP_USER], "PATC", 4));
    assert_false(znp_cors_method_allowed(&protect->cors[ZNP_GROUP_USER], "TRACE", 5));
    znp_protect_destroy(protect);
    znp_config_destroy(config);
}

static void protect__ip_format_round_trip(void **state)
{
    static const char *const cases[] = {"0.0.0.0", "255.255.255.255", "10.20.100.7", "1.2.3.4", "127.0.0.1",
                                        "::1",     "2001:db8::ff"};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        znp_ip_t ip;
        char text[ZNP_IP_TEXT_MAX];

        assert_int_equal(znp_ip_parse(&ip, cases[i], strlen(cases[i])), 0);
        znp_ip_format(text, sizeof(text), &ip);
        assert_string_equal(text, cases[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(protect__ip_format_round_trip),
        cmocka_unit_test(protect__cidr_parse_table),
        cmocka_unit_test(protect__cidr_contains_table),
        cmocka_unit_test(protect__cidr_list_reports_bad_entry),
        cmocka_unit_test(protect__forwarded_walk_table),
        cmocka_unit_test(protect__origin_match_table),
        cmocka_unit_test(protect__origin_list_rejects_invalid),
        cmocka_unit_test(protect__bucket_refills_on_fake_clock),
        cmocka_unit_test(protect__limiter_bound_with_100000_ips),
        cmocka_unit_test(protect__limiter_keeps_recent_keys),
        cmocka_unit_test(protect__limiter_zero_rate_allows),
        cmocka_unit_test(protect__limiter_hashed_take_shares_bucket),
        cmocka_unit_test(protect__limiter_keys_spread_over_slots),
        cmocka_unit_test(protect__group_of_table),
        cmocka_unit_test(protect__config_errors_name_the_line),
        cmocka_unit_test(protect__admit_with_fake_clock),
        cmocka_unit_test(protect__cors_groups_resolve),
    };

    return cmocka_run_group_tests_name("protect", tests, NULL, NULL);
}

/* Host, control URL and tag normalisation of the nodes module. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "errors.gen.h"
#include "nodes/internal.h"

typedef struct fixture {
    znp_arena_t arena;
    znp_error_t err;
    znp_ctx_t ctx;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    znp_arena_init(&f->arena, 0);
    f->ctx.arena = &f->arena;
    f->ctx.err = &f->err;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    znp_arena_dispose(&f->arena);
    free(f);
    return 0;
}

static void nodes__address_table_normalised(void **state)
{
    static const struct {
        const char *in, *out; /* out NULL: rejected */
    } cases[] = {
        {"[2001:DB8::1]", "2001:db8::1"},
        {"2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"},
        {"[::ffff:192.0.2.1]", "::ffff:192.0.2.1"},
        {"  Edge.Example.NET ", "edge.example.net"},
        {"192.0.2.10", "192.0.2.10"},
        {"", ""},
        {"   ", ""},
        {"fe80::1%eth0", NULL},
        {"[fe80::1%25eth0]", NULL},
        {"[2001:db8::1", NULL},
        {"2001:db8::1]", NULL},
        {"[]", NULL},
        {"2001:db8::zz", NULL},
        {"300.1.1.1", NULL},
        {"a b", NULL},
        {"-host", NULL},
        {"h\xc3\xa4st", NULL},
    };
    fixture_t *f = *state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *out = NULL;
        int rc = znp_nodes__normalize_address(&f->ctx, "$.access_address", cases[i].in, &out);

        if (cases[i].out == NULL) {
            assert_int_equal(rc, ZNP_E_VALIDATION_FAILED);
        } else {
            assert_int_equal(rc, 0);
            assert_string_equal(out, cases[i].out);
        }
    }
}

static void nodes__url_table_normalised(void **state)
{
    static const struct {
        const char *in, *out; /* out NULL: rejected */
    } cases[] = {
        {"http://[2001:DB8::2]:8080/v1", "http://[2001:db8::2]:8080/v1"},
        {"HTTPS://Kernel.EXAMPLE.com", "https://kernel.example.com"},
        {"https://127.0.0.1:65535/api?x=1", "https://127.0.0.1:65535/api?x=1"},
        {"http://host:1", "http://host:1"},
        {"http://host/Path", "http://host/Path"},
        {"http://host:0", NULL},
        {"http://host:65536", NULL},
        {"http://host:", NULL},
        {"http://host:8a", NULL},
        {"http://:80", NULL},
        {"http://", NULL},
        {"ftp://host", NULL},
        {"host:80", NULL},
        {"http://user:pass@host", NULL},
        {"http://[fe80::1%eth0]:80", NULL},
        {"http://fe80::1", NULL},
        {"http://[::1]x", NULL},
    };
    fixture_t *f = *state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *out = NULL;
        int rc = znp_nodes__normalize_url(&f->ctx, "$.control_endpoint", cases[i].in, &out);

        if (cases[i].out == NULL) {
            assert_int_equal(rc, ZNP_E_VALIDATION_FAILED);
        } else {
            assert_int_equal(rc, 0);
            assert_string_equal(out, cases[i].out);
        }
    }
}

static void nodes__tags_sorted_unique(void **state)
{
    char *items[] = {" premium", "asia", "premium", "", "  ", "Asia", "b "};
    znp_array_t in = {sizeof items / sizeof items[0], items};
    znp_array_t none = {0, NULL};
    fixture_t *f = *state;
    const char *out = NULL;

    assert_int_equal(znp_nodes__tags_text(&f->ctx, &in, &out), 0);
    assert_string_equal(out, "[\"Asia\",\"asia\",\"b\",\"premium\"]");
    assert_int_equal(znp_nodes__tags_text(&f->ctx, &none, &out), 0);
    assert_string_equal(out, "[]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(nodes__address_table_normalised, setup, teardown),
        cmocka_unit_test_setup_teardown(nodes__url_table_normalised, setup, teardown),
        cmocka_unit_test_setup_teardown(nodes__tags_sorted_unique, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

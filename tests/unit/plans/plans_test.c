/* Slug normalisation and traffic-multiplier checks of the plans module. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>
#include <string.h>

#include "core/context.h"
#include "errors.gen.h"
#include "plans/internal.h"

static void plans__slugify_table_matches(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"Pro Plan", "pro-plan"},
        {"My_Slug  X", "my-slug-x"},
        {"--a--b--", "a-b"},
        {"  standard  ", "standard"},
        {"旗舰套餐", ""},
        {"旗舰 Plus 2", "plus-2"},
        {"", ""},
        {"A1-B2", "a1-b2"},
    };
    znp_arena_t arena;

    (void)state;
    znp_arena_init(&arena, 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *slug = znp_plans__slugify(&arena, cases[i].in);

        assert_non_null(slug);
        assert_string_equal(slug, cases[i].out);
    }
    znp_arena_dispose(&arena);
}

static void plans__slugify_long_input_capped(void **state)
{
    char in[400];
    znp_arena_t arena;
    char *slug;

    (void)state;
    memset(in, 'a', sizeof in - 1);
    in[sizeof in - 1] = '\0';
    znp_arena_init(&arena, 0);
    slug = znp_plans__slugify(&arena, in);
    assert_non_null(slug);
    assert_int_equal(strlen(slug), 128);
    znp_arena_dispose(&arena);
}

static void plans__multipliers_table_checked(void **state)
{
    static const struct {
        const char *in;
        int rc;
        const char *out;
    } cases[] = {
        {"{}", 0, "{}"},
        {"{\"VLESS\": 1, \"ss\": 1.5}", 0, "{\"ss\":1.5,\"vless\":1.0}"},
        {"{\"hy-2_x\": 1000}", 0, "{\"hy-2_x\":1000.0}"},
        {"{\"ss\": 0}", ZNP_E_VALIDATION_FAILED, NULL},
        {"{\"ss\": -1}", ZNP_E_VALIDATION_FAILED, NULL},
        {"{\"ss\": 1000.5}", ZNP_E_VALIDATION_FAILED, NULL},
        {"{\"ss\": \"2\"}", ZNP_E_VALIDATION_FAILED, NULL},
        {"{\"ss\": null}", ZNP_E_VALIDATION_FAILED, NULL},
        {"{\"\": 1}", ZNP_E_VALIDATION_FAILED, NULL},
        {"{\"s s\": 1}", ZNP_E_VALIDATION_FAILED, NULL},
        {"{\"SS\": 1, \"ss\": 2}", ZNP_E_VALIDATION_FAILED, NULL},
        {"{\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\": 1}", ZNP_E_VALIDATION_FAILED, NULL},
        {"[1]", ZNP_E_VALIDATION_FAILED, NULL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        znp_arena_t arena;
        znp_error_t err = {0};
        znp_ctx_t ctx = {0};
        json_t *in = json_loads(cases[i].in, JSON_DECODE_ANY, NULL);
        const char *text = NULL;

        assert_non_null(in);
        znp_arena_init(&arena, 0);
        ctx.arena = &arena;
        ctx.err = &err;
        assert_int_equal(znp_plans__multipliers(&ctx, in, &text), cases[i].rc);
        if (cases[i].out != NULL)
            assert_string_equal(text, cases[i].out);
        else
            assert_string_equal(err.path, "$.traffic_multipliers");
        json_decref(in);
        znp_arena_dispose(&arena);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plans__slugify_table_matches),
        cmocka_unit_test(plans__slugify_long_input_capped),
        cmocka_unit_test(plans__multipliers_table_checked),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

#include "auth_tests.h"

#include <string.h>

#include "auth/text.h"

static void text__trim_removes_unicode_space(void **state)
{
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {
        {"name", "name"},
        {"  name  ", "name"},
        {"\t\r\n\v\fname\n", "name"},
        {"\xe3\x80\x80name\xe3\x80\x80", "name"},             /* U+3000 ideographic space */
        {"\xc2\xa0name\xc2\x85", "name"},                     /* U+00A0, U+0085 */
        {"\xe2\x80\x83name\xe2\x80\xaf\xe2\x81\x9f", "name"}, /* U+2003, U+202F, U+205F */
        {"\xef\xbb\xbfname", "name"},                         /* U+FEFF */
        {" my panel ", "my panel"},                           /* inner space stays */
        {"\xe3\x80\x80", ""},
        {"", ""},
        {" \xe4\xb8\xad\xe6\x96\x87 ", "\xe4\xb8\xad\xe6\x96\x87"}, /* non-space multibyte kept whole */
        {"\xe2\x80\x8bname", "\xe2\x80\x8bname"},                   /* U+200B zero width space is not White_Space */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t start = 99;
        size_t len = znp_text_trim(cases[i].in, strlen(cases[i].in), &start);
        print_message("case %zu\n", i);
        assert_int_equal(len, strlen(cases[i].out));
        assert_memory_equal(cases[i].in + start, cases[i].out, len);
    }
}

static void text__length_counts_code_points(void **state)
{
    (void)state;
    assert_int_equal(znp_text_length("", 0), 0);
    assert_int_equal(znp_text_length("abc", 3), 3);
    assert_int_equal(znp_text_length("\xe4\xb8\xad\xe6\x96\x87", 6), 2);
    assert_int_equal(znp_text_length("\xf0\x9f\x98\x80x", 5), 2);
}

static void text__prefix_stops_at_code_point(void **state)
{
    const char *s = "a\xe4\xb8\xad"
                    "b\xf0\x9f\x98\x80";

    (void)state;
    assert_int_equal(znp_text_prefix(s, strlen(s), 0), 0);
    assert_int_equal(znp_text_prefix(s, strlen(s), 1), 1);
    assert_int_equal(znp_text_prefix(s, strlen(s), 2), 4);
    assert_int_equal(znp_text_prefix(s, strlen(s), 3), 5);
    assert_int_equal(znp_text_prefix(s, strlen(s), 4), 9);
    assert_int_equal(znp_text_prefix(s, strlen(s), 100), 9);
}

static void text__copy_cuts_on_boundary(void **state)
{
    const char *s = "ab\xe4\xb8\xad";
    char out[5];

    (void)state;
    assert_int_equal(znp_text_copy(out, sizeof(out), s, strlen(s)), 2);
    assert_string_equal(out, "ab");
    assert_int_equal(znp_text_copy(out, sizeof(out), "abcd", 4), 4);
    assert_string_equal(out, "abcd");
    assert_int_equal(znp_text_copy(out, 1, "abcd", 4), 0);
    assert_string_equal(out, "");
}

int run_text_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(text__trim_removes_unicode_space),
        cmocka_unit_test(text__length_counts_code_points),
        cmocka_unit_test(text__prefix_stops_at_code_point),
        cmocka_unit_test(text__copy_cuts_on_boundary),
    };

    return cmocka_run_group_tests_name("text", tests, NULL, NULL);
}

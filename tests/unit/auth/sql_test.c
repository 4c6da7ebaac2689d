#include "auth_tests.h"

#include <string.h>

#include "auth/sql.h"

static const znp_sql_order_t ORDERS[] = {
    {"updated_at", "updated_at ASC", "updated_at DESC"},
    {"name", "name ASC", "name DESC"},
    {"id", "id ASC", "id DESC"},
};

static void sql__order_picks_whitelisted_text(void **state)
{
    static const struct {
        const char *sort;
        const char *direction;
        int desc_default;
        const char *out;
    } cases[] = {
        {"name", "asc", 1, "name ASC"},
        {"name", "desc", 0, "name DESC"},
        {"id", "asc", 0, "id ASC"},
        {"id", "desc", 1, "id DESC"},
        {"name", NULL, 1, "name DESC"},
        {"name", NULL, 0, "name ASC"},
        {NULL, NULL, 1, "updated_at DESC"},
        {NULL, "asc", 1, "updated_at ASC"},
        {"password", "desc", 0, "updated_at DESC"}, /* not whitelisted: the first key */
        {"name; DROP TABLE users", "asc", 0, "updated_at ASC"},
        {"NAME", "asc", 0, "updated_at ASC"}, /* keys match exactly */
        {"", "desc", 0, "updated_at DESC"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        print_message("case %zu\n", i);
        assert_string_equal(znp_sql_order(ORDERS, sizeof(ORDERS) / sizeof(ORDERS[0]), cases[i].sort, cases[i].direction,
                                          cases[i].desc_default),
                            cases[i].out);
    }
}

static void sql__order_returns_table_text(void **state)
{
    (void)state;
    /* borrowed from the table, so callers may keep it for the statement */
    assert_ptr_equal(znp_sql_order(ORDERS, 3, "id", "desc", 0), ORDERS[2].desc);
    assert_ptr_equal(znp_sql_order(ORDERS, 1, "id", "asc", 0), ORDERS[0].asc); /* "id" is past `count` */
}

static void sql__offset_never_overflows(void **state)
{
    static const struct {
        int64_t page;
        int64_t per_page;
        int64_t out;
    } cases[] = {
        {1, 20, 0},
        {2, 20, 20},
        {3, 1, 2},
        {1000000, 1000, 999999000}, /* the spec's largest page and per_page */
        {0, 20, 0},
        {-5, 20, 0},
        {INT64_MIN, 20, 0},
        {5, 0, 0},
        {5, -1, 0},
        {INT64_MAX, 2, INT64_MAX},
        {INT64_MAX, INT64_MAX, INT64_MAX},
        {INT64_MAX / 1000 + 1, 1000, INT64_MAX / 1000 * 1000}, /* the last page that still fits */
        {INT64_MAX / 1000 + 2, 1000, INT64_MAX},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        print_message("case %zu\n", i);
        assert_int_equal(znp_sql_offset(cases[i].page, cases[i].per_page), cases[i].out);
    }
}

static void sql__list_rejects_too_many_filters(void **state)
{
    const char *filter[ZNP_SQL_LIST_FILTER_MAX + 1] = {0};
    znp_sql_list_t list = {"SELECT 1", "SELECT 1", filter, ZNP_SQL_LIST_FILTER_MAX + 1, 1, 20};
    znp_pagination_t pagination;
    PGresult *res = (PGresult *)&pagination;

    (void)state;
    /* checked before any statement, so no connection is needed */
    assert_int_equal(znp_sql_list(&res, &pagination, NULL, &list, NULL), ZNP_E_INTERNAL);
    assert_null(res);
    list.filter_count = 0;
    assert_int_equal(znp_sql_list(&res, &pagination, NULL, &list, NULL), ZNP_E_DATABASE_UNAVAILABLE);
    assert_null(res);
}

int run_sql_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sql__order_picks_whitelisted_text),
        cmocka_unit_test(sql__order_returns_table_text),
        cmocka_unit_test(sql__offset_never_overflows),
        cmocka_unit_test(sql__list_rejects_too_many_filters),
    };

    return cmocka_run_group_tests_name("sql", tests, NULL, NULL);
}

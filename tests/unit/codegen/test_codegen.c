/*
 * Tests of codegen/generate.py (run as a child process) and of the error
 * table it generates. ctest sets ZNP_SOURCE_DIR to the repository root;
 * protoc-c must be on PATH.
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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "errors.gen.h"

#define CMD_MAX    4096
#define OUTPUT_MAX 65536

static const char *source_dir(void)
{
    const char *dir = getenv("ZNP_SOURCE_DIR");
    if (dir == NULL || dir[0] == '\0') {
        fail_msg("ZNP_SOURCE_DIR is not set; run the test through ctest");
    }
    return dir;
}

static void make_temp_dir(char *out, size_t size)
{
    int n = snprintf(out, size, "/tmp/codegen-test-XXXXXX");
    assert_true(n > 0 && (size_t)n < size);
    assert_non_null(mkdtemp(out));
}

static void remove_tree(const char *dir)
{
    char cmd[CMD_MAX];
    int n = snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_true(n > 0 && (size_t)n < sizeof(cmd));
    assert_int_equal(system(cmd), 0);
}

/* Run `cmd` through /bin/sh with stdout and stderr captured into `output`; return its exit status. */
static int run(const char *cmd, char *output, size_t output_size)
{
    char log_path[] = "/tmp/codegen-test-log-XXXXXX";
    char full[CMD_MAX];
    int fd = mkstemp(log_path);
    assert_true(fd >= 0);
    close(fd);

    int n = snprintf(full, sizeof(full), "%s >'%s' 2>&1", cmd, log_path);
    assert_true(n > 0 && (size_t)n < sizeof(full));
    int status = system(full);
    assert_true(status != -1 && WIFEXITED(status));

    FILE *f = fopen(log_path, "rb");
    assert_non_null(f);
    size_t len = fread(output, 1, output_size - 1, f);
    output[len] = '\0';
    fclose(f);
    unlink(log_path);
    return WEXITSTATUS(status);
}

/* Run the generator with `root` as --root and `out` as --out. */
static int run_generator(const char *root, const char *out, char *output, size_t output_size)
{
    char cmd[CMD_MAX];
    int n = snprintf(cmd, sizeof(cmd),
                     "/usr/bin/python3 '%s/codegen/generate.py' --root '%s' --protoc-c protoc-c --out '%s'",
                     source_dir(), root, out);
    assert_true(n > 0 && (size_t)n < sizeof(cmd));
    return run(cmd, output, output_size);
}

static int path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void fixture_copy(const char *dest)
{
    char cmd[CMD_MAX];
    int n =
        snprintf(cmd, sizeof(cmd), "cp -R '%s/tests/unit/codegen/fixtures/base/spec' '%s/spec'", source_dir(), dest);
    assert_true(n > 0 && (size_t)n < sizeof(cmd));
    assert_int_equal(system(cmd), 0);
}

/* Replace the first occurrence of `old` in `path` by `replacement`; the test fails if `old` is absent. */
static void replace_in_file(const char *path, const char *old, const char *replacement)
{
    static char text[OUTPUT_MAX];
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t len = fread(text, 1, sizeof(text) - 1, f);
    text[len] = '\0';
    fclose(f);

    char *at = strstr(text, old);
    if (at == NULL) {
        fail_msg("fixture %s does not contain %s", path, old);
    }
    f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(text, 1, (size_t)(at - text), f);
    fputs(replacement, f);
    fputs(at + strlen(old), f);
    assert_int_equal(fclose(f), 0);
}

static void codegen__output_deterministic_identical(void **state)
{
    (void)state;
    char first[64], second[64], cmd[CMD_MAX];
    static char output[OUTPUT_MAX];
    make_temp_dir(first, sizeof(first));
    make_temp_dir(second, sizeof(second));

    assert_int_equal(run_generator(source_dir(), first, output, sizeof(output)), 0);
    assert_int_equal(run_generator(source_dir(), second, output, sizeof(output)), 0);

    int n = snprintf(cmd, sizeof(cmd), "diff -r '%s' '%s'", first, second);
    assert_true(n > 0 && (size_t)n < sizeof(cmd));
    int status = run(cmd, output, sizeof(output));
    if (status != 0) {
        fail_msg("two runs differ:\n%s", output);
    }

    static const char *const expected[] = {
        "generated/errors.gen.h",
        "generated/errors.gen.c",
        "generated/schemas.gen.h",
        "generated/schemas.gen.c",
        "generated/operations.gen.h",
        "generated/routes.gen.c",
        "generated/grpc_methods.gen.h",
        "generated/grpc_methods.gen.c",
        "generated/openapi.json",
        "generated/openapi.gen.c",
        "generated/proto/znp/v1/znp.pb-c.c",
        "generated/proto/grpc/health/v1/health.pb-c.h",
        "docs/api-reference.md",
        "docs/zh-CN/api-reference.md",
        "docs/error-codes.md",
        "docs/zh-CN/error-codes.md",
    };
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
        char path[CMD_MAX];
        n = snprintf(path, sizeof(path), "%s/%s", first, expected[i]);
        assert_true(n > 0 && (size_t)n < sizeof(path));
        if (!path_exists(path)) {
            fail_msg("missing output %s", expected[i]);
        }
    }
    remove_tree(first);
    remove_tree(second);
}

static void codegen__unchanged_file_untouched(void **state)
{
    (void)state;
    char dir[64], path[CMD_MAX];
    static char output[OUTPUT_MAX];
    struct stat before, after;
    make_temp_dir(dir, sizeof(dir));

    assert_int_equal(run_generator(source_dir(), dir, output, sizeof(output)), 0);
    int n = snprintf(path, sizeof(path), "%s/generated/schemas.gen.c", dir);
    assert_true(n > 0 && (size_t)n < sizeof(path));
    assert_int_equal(stat(path, &before), 0);
    sleep(1);
    assert_int_equal(run_generator(source_dir(), dir, output, sizeof(output)), 0);
    assert_int_equal(stat(path, &after), 0);
    assert_int_equal(before.st_mtim.tv_sec, after.st_mtim.tv_sec);
    assert_int_equal(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
    assert_non_null(strstr(output, "0 file(s) written"));
    remove_tree(dir);
}

static void codegen__committed_output_current(void **state)
{
    (void)state;
    char cmd[CMD_MAX];
    static char output[OUTPUT_MAX];
    int n = snprintf(cmd, sizeof(cmd), "'%s/scripts/check-generated'", source_dir());
    assert_true(n > 0 && (size_t)n < sizeof(cmd));
    if (run(cmd, output, sizeof(output)) != 0) {
        fail_msg("generated/ or the generated docs are stale:\n%s", output);
    }
}

static void codegen__fixture_base_accepted(void **state)
{
    (void)state;
    char dir[64], out[CMD_MAX];
    static char output[OUTPUT_MAX];
    make_temp_dir(dir, sizeof(dir));
    fixture_copy(dir);
    int n = snprintf(out, sizeof(out), "%s/out", dir);
    assert_true(n > 0 && (size_t)n < sizeof(out));

    int status = run_generator(dir, out, output, sizeof(output));
    if (status != 0) {
        fail_msg("the base fixture must be valid:\n%s", output);
    }
    remove_tree(dir);
}

/* One broken spec: `file` under spec/ of the base fixture gets `old` replaced by `replacement`. */
typedef struct broken_case {
    const char *name;
    const char *file;
    const char *old;
    const char *replacement;
    const char *message; /* substring the generator must print */
} broken_case_t;

static const broken_case_t broken_cases[] = {
    {"duplicate operationId", "paths/system.yaml", "operationId: update_item", "operationId: ping",
     "duplicate operationId 'ping'"},
    {"unknown error key", "paths/system.yaml", "x-znp-errors: [not_found]", "x-znp-errors: [no_such_error]",
     "unknown error key 'no_such_error'"},
    {"code and http mismatch", "errors.yaml", "code: 404002", "code: 403002",
     "code 403002 must start with the HTTP status 404"},
    {"missing zh message", "errors.yaml", "    zh: 资源不存在\n", "", "missing or empty zh message"},
    {"duplicate error code", "errors.yaml", "code: 404002", "code: 500000", "duplicate code 500000"},
    {"code not six digits", "errors.yaml", "code: 404002", "code: 40402", "code must be a six-digit integer"},
    {"invalid grpc name", "errors.yaml", "grpc: NOT_FOUND", "grpc: MISSING", "grpc must be a google.rpc.Code name"},
    {"unresolved schema ref", "openapi.yaml", "schemas/system.yaml#/Widget", "schemas/system.yaml#/Gadget",
     "unresolved $ref 'schemas/system.yaml#/Gadget'"},
    {"unresolved file ref", "openapi.yaml", "$ref: paths/system.yaml#/ping", "$ref: paths/missing.yaml#/ping",
     "unresolved $ref 'paths/missing.yaml#/ping'"},
    {"role without security", "paths/system.yaml", "      - bearer: []\n", "", "x-znp-role admin needs a security"},
    {"security without role", "paths/system.yaml", "    x-znp-role: admin\n", "", "but no x-znp-role"},
    {"undeclared tag", "paths/system.yaml", "tags: [system]", "tags: [other]", "tag 'other' is not declared"},
    {"two tags", "paths/system.yaml", "tags: [system]", "tags: [system, system]", "needs exactly one tag"},
    {"camelCase operationId", "paths/system.yaml", "operationId: update_item", "operationId: updateItem",
     "operationId must be snake_case"},
    {"missing summary", "paths/system.yaml", "    summary: Ping\n", "", "operation ping needs a summary"},
    {"no 2xx response", "paths/system.yaml", "      '200':\n        description: Pong",
     "      '404':\n        description: Pong", "needs exactly one 2xx response"},
    {"undeclared path parameter", "openapi.yaml", "/items/{item_id}:", "/items/{item_id}/{part}:",
     "path parameter {part} of /items/{item_id}/{part} is not declared"},
    {"unsupported schema type", "schemas/system.yaml", "type: [string, 'null']", "type: [string, integer]",
     "type list must be one type"},
    {"unsupported keyword", "schemas/system.yaml", "maxLength: 64", "maxlength: 64",
     "keyword 'maxlength' is not supported"},
    {"proto unknown operation", "proto/znp/v1/znp.proto", "znp:operation ping", "znp:operation pong",
     "znp:operation 'pong' is not an operationId"},
    {"reserved C type name", "openapi.yaml", "    Widget:\n", "    Item:\n", "which src/ already defines"},
    {"answer cache on a database operation", "paths/system.yaml", "    summary: Ping\n",
     "    summary: Ping\n    x-znp-cache-seconds: 1\n", "x-znp-cache-seconds needs a public x-znp-inline GET"},
    {"answer cache of zero seconds", "paths/system.yaml", "    summary: Ping\n",
     "    summary: Ping\n    x-znp-inline: true\n    x-znp-cache-seconds: 0\n",
     "x-znp-cache-seconds must be an integer from 1 to 3600"},
    {"page without a maximum", "paths/system.yaml", "    summary: Ping\n",
     "    summary: Ping\n    parameters:\n      - name: page\n        in: query\n        schema:\n"
     "          type: integer\n          minimum: 1\n",
     "query parameter 'page' needs a maximum from 1 to 1000000"},
};

static void codegen__broken_spec_rejected(void **state)
{
    (void)state;
    static char output[OUTPUT_MAX];
    for (size_t i = 0; i < sizeof(broken_cases) / sizeof(broken_cases[0]); i++) {
        const broken_case_t *c = &broken_cases[i];
        char dir[64], path[CMD_MAX], out[CMD_MAX];
        make_temp_dir(dir, sizeof(dir));
        fixture_copy(dir);
        int n = snprintf(path, sizeof(path), "%s/spec/%s", dir, c->file);
        assert_true(n > 0 && (size_t)n < sizeof(path));
        replace_in_file(path, c->old, c->replacement);
        n = snprintf(out, sizeof(out), "%s/out", dir);
        assert_true(n > 0 && (size_t)n < sizeof(out));

        int status = run_generator(dir, out, output, sizeof(output));
        if (status == 0) {
            fail_msg("case '%s': the generator accepted the broken spec", c->name);
        }
        if (strstr(output, c->message) == NULL) {
            fail_msg("case '%s': expected a message containing \"%s\", got:\n%s", c->name, c->message, output);
        }
        if (strstr(output, "nothing written") == NULL) {
            fail_msg("case '%s': expected the summary line, got:\n%s", c->name, output);
        }
        if (path_exists(out)) {
            fail_msg("case '%s': the generator wrote %s despite the problem", c->name, out);
        }
        remove_tree(dir);
    }
}

static void codegen__every_problem_reported(void **state)
{
    (void)state;
    char dir[64], path[CMD_MAX], out[CMD_MAX];
    static char output[OUTPUT_MAX];
    make_temp_dir(dir, sizeof(dir));
    fixture_copy(dir);
    int n = snprintf(path, sizeof(path), "%s/spec/errors.yaml", dir);
    assert_true(n > 0 && (size_t)n < sizeof(path));
    replace_in_file(path, "code: 404002", "code: 403002");
    replace_in_file(path, "    zh: 资源不存在\n", "");
    n = snprintf(path, sizeof(path), "%s/spec/paths/system.yaml", dir);
    assert_true(n > 0 && (size_t)n < sizeof(path));
    replace_in_file(path, "operationId: update_item", "operationId: ping");
    n = snprintf(out, sizeof(out), "%s/out", dir);
    assert_true(n > 0 && (size_t)n < sizeof(out));

    assert_int_not_equal(run_generator(dir, out, output, sizeof(output)), 0);
    assert_non_null(strstr(output, "spec/errors.yaml: /errors/1/code: code 403002 must start"));
    assert_non_null(strstr(output, "spec/errors.yaml: /errors/1/zh: missing or empty zh message"));
    assert_non_null(strstr(output, "spec/paths/system.yaml: /item/patch/operationId: duplicate operationId"));
    assert_non_null(strstr(output, "3 problem(s)"));
    remove_tree(dir);
}

static void codegen__error_table_complete(void **state)
{
    (void)state;
    assert_true(znp_error_table_count > 0);
    assert_int_equal(znp_error_table_count, ZNP_ERROR_COUNT);
    assert_int_equal(ZNP_E_INTERNAL, -1);
    assert_int_equal(znp_error_table[0].err, ZNP_E_INTERNAL);

    for (size_t i = 0; i < znp_error_table_count; i++) {
        const znp_error_info_t *e = &znp_error_table[i];
        assert_int_equal(e->err, -(int)(i + 1));
        assert_non_null(e->key);
        assert_true(e->key[0] != '\0');
        assert_non_null(e->message_en);
        assert_true(e->message_en[0] != '\0');
        assert_non_null(e->message_zh);
        assert_true(e->message_zh[0] != '\0');
        assert_in_range(e->code, 100000, 999999);
        assert_int_equal(e->code / 1000, e->http_status);
        assert_in_range(e->grpc_status, 1, 16);
        for (size_t j = 0; j < i; j++) {
            if (znp_error_table[j].code == e->code) {
                fail_msg("code %d used by %s and %s", e->code, znp_error_table[j].key, e->key);
            }
            if (strcmp(znp_error_table[j].key, e->key) == 0) {
                fail_msg("key %s appears twice", e->key);
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(codegen__error_table_complete),     cmocka_unit_test(codegen__output_deterministic_identical),
        cmocka_unit_test(codegen__unchanged_file_untouched), cmocka_unit_test(codegen__committed_output_current),
        cmocka_unit_test(codegen__fixture_base_accepted),    cmocka_unit_test(codegen__broken_spec_rejected),
        cmocka_unit_test(codegen__every_problem_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

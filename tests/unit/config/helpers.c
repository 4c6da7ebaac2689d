#include "config_tests.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *test_make_dir(void)
{
    const char *tmp = getenv("TMPDIR");
    char *path = NULL;

    if (asprintf(&path, "%s/znp-config-test-XXXXXX", tmp && tmp[0] ? tmp : "/tmp") < 0)
        return NULL;
    if (mkdtemp(path) == NULL) {
        free(path);
        return NULL;
    }
    return path;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void test_remove_dir(char *dir)
{
    if (dir == NULL)
        return;
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

char *test_write_file(const char *dir, const char *name, const char *text)
{
    char *path = NULL;
    FILE *f;

    if (asprintf(&path, "%s/%s", dir, name) < 0)
        return NULL;
    f = fopen(path, "w");
    if (f == NULL) {
        free(path);
        return NULL;
    }
    fputs(text, f);
    fclose(f);
    return path;
}

void test_clear_env(void)
{
    unsetenv("ZNP_DATABASE_DSN");
    unsetenv("ZNP_AUTH_ACCESS_SECRET");
    unsetenv("ZNP_AUTH_REFRESH_SECRET");
    unsetenv("ZNP_LOG_LEVEL");
    unsetenv("ZNP_LOG_FILE");
}

int test_load_text(znp_config_t **out, const char *yaml, char *message, size_t message_size)
{
    char *dir = test_make_dir();
    char *path = NULL;
    char *cwd = getcwd(NULL, 0);
    znp_config_error_t err;
    int rc = -1;

    message[0] = '\0';
    if (dir == NULL || cwd == NULL)
        goto cleanup;
    /* load by a relative name so messages read "znp.yaml:L:C: ..." */
    path = test_write_file(dir, "znp.yaml", yaml);
    if (path == NULL || chdir(dir) != 0)
        goto cleanup;
    rc = znp_config_load(out, "znp.yaml", &err);
    if (rc != 0)
        znp_config_error_format(message, message_size, &err);
    if (chdir(cwd) != 0)
        rc = -1;

cleanup:
    free(cwd);
    free(path);
    test_remove_dir(dir);
    return rc;
}

/*
 * Generated JWT secrets and the master key kept in
 * <database.data_dir>/secrets.yaml, for installations that configure none.
 * Without this file every restart would sign tokens with new keys and sign
 * every user out, and data sealed under the master key (TOTP seeds) could no
 * longer be decrypted.
 */
#include "config/config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/internal.h"

#define SECRET_RANDOM_BYTES 48
#define SECRET_TEXT_MAX     128
#define MASTER_KEY_BYTES    32

typedef struct secrets_file {
    char *access_secret;
    char *refresh_secret;
    char *master_key; /* NULL in files written before the master key existed */
} secrets_file_t;

static const cyaml_schema_field_t secrets_fields[] = {
    CYAML_FIELD_STRING_PTR("access_secret", CYAML_FLAG_POINTER, secrets_file_t, access_secret, 32, 1024),
    CYAML_FIELD_STRING_PTR("refresh_secret", CYAML_FLAG_POINTER, secrets_file_t, refresh_secret, 32, 1024),
    CYAML_FIELD_STRING_PTR("master_key", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, secrets_file_t, master_key, 44, 44),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t secrets_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, secrets_file_t, secrets_fields),
};

static const cyaml_config_t secrets_cyaml = {
    .log_fn = NULL,
    .mem_fn = cyaml_mem,
    .log_level = CYAML_LOG_ERROR,
    .flags = CYAML_CFG_DEFAULT,
};

/* mkdir -p with `mode` for the directories it creates */
static int make_dirs(const char *path, mode_t mode)
{
    char buffer[4096];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof buffer)
        return -1;
    memcpy(buffer, path, len + 1);
    for (char *p = buffer + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buffer, mode) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buffer, mode) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

static int random_bytes(unsigned char *out, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = getrandom(out + got, len - got, 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

static int random_secret(char *out, size_t out_size)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char bytes[SECRET_RANDOM_BYTES];
    size_t len = 0;

    if (random_bytes(bytes, sizeof bytes) != 0)
        return -1;
    /* base64url without padding: 48 bytes are exactly 64 characters */
    for (size_t i = 0; i + 2 < sizeof bytes && len + 4 < out_size; i += 3) {
        unsigned v = ((unsigned)bytes[i] << 16) | ((unsigned)bytes[i + 1] << 8) | bytes[i + 2];

        out[len++] = alphabet[(v >> 18) & 63];
        out[len++] = alphabet[(v >> 12) & 63];
        out[len++] = alphabet[(v >> 6) & 63];
        out[len++] = alphabet[v & 63];
    }
    out[len] = '\0';
    explicit_bzero(bytes, sizeof bytes);
    return 0;
}

/* 32 random bytes in standard base64 with padding (44 characters), the form security.master_key takes */
static int random_master_key(char out[SECRET_TEXT_MAX])
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char bytes[MASTER_KEY_BYTES + 1] = {0};
    size_t len = 0;

    if (random_bytes(bytes, MASTER_KEY_BYTES) != 0)
        return -1;
    /* 32 bytes: ten whole groups, then two bytes that become three characters and one '=' */
    for (size_t i = 0; i < MASTER_KEY_BYTES; i += 3) {
        unsigned v = ((unsigned)bytes[i] << 16) | ((unsigned)bytes[i + 1] << 8) |
                     (i + 2 < MASTER_KEY_BYTES ? bytes[i + 2] : 0);

        out[len++] = alphabet[(v >> 18) & 63];
        out[len++] = alphabet[(v >> 12) & 63];
        out[len++] = alphabet[(v >> 6) & 63];
        out[len++] = i + 2 < MASTER_KEY_BYTES ? alphabet[v & 63] : '=';
    }
    out[len] = '\0';
    explicit_bzero(bytes, sizeof bytes);
    return 0;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Write the secrets to a temporary file, then publish it at `path`: with
 * link() when `replace` is 0, so a reader never sees a half-written file and
 * two writers cannot both win, or with rename() when `replace` is 1 (the
 * caller then holds the lock of add_master_key).
 */
static int write_file(const char *path, const char *access, const char *refresh, const char *master, int replace,
                      znp_config_error_t *err)
{
    char tmp[4200];
    char content[3072]; /* two keys of at most 1024 bytes, the master key and the comments */
    int fd = -1, rc = 0, len;

    len = snprintf(content, sizeof content,
                   "# Generated by znp: the JWT signing keys used while auth.access_secret and\n"
                   "# auth.refresh_secret are not configured. Deleting this file signs every user out.\n"
                   "access_secret: \"%s\"\n"
                   "refresh_secret: \"%s\"\n"
                   "# The AES-256-GCM key for secrets stored in the database (TOTP seeds) while\n"
                   "# security.master_key is not configured. Losing it makes those secrets unreadable.\n"
                   "master_key: \"%s\"\n",
                   access, refresh, master);
    if (len < 0 || (size_t)len >= sizeof content)
        return config__fail_at(err, path, 0, 0, "the secrets are too long for the secrets file");
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());

    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = config__fail_at(err, tmp, 0, 0, "could not create the secrets file: %s", strerror(errno));
        goto cleanup;
    }
    if (write_all(fd, content, (size_t)len) != 0 || fsync(fd) != 0) {
        rc = config__fail_at(err, tmp, 0, 0, "could not write the secrets file: %s", strerror(errno));
        goto cleanup;
    }
    if (replace ? rename(tmp, path) != 0 : link(tmp, path) != 0 && errno != EEXIST) {
        rc = config__fail_at(err, path, 0, 0, "could not create the secrets file: %s", strerror(errno));
        goto cleanup;
    }

cleanup:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    explicit_bzero(content, sizeof content);
    return rc;
}

/* Create `path` with fresh secrets unless it exists. */
static int create_file(const char *path, znp_config_error_t *err)
{
    char access[SECRET_TEXT_MAX], refresh[SECRET_TEXT_MAX], master[SECRET_TEXT_MAX];
    int rc;

    if (random_secret(access, sizeof access) != 0 || random_secret(refresh, sizeof refresh) != 0 ||
        random_master_key(master) != 0)
        return config__fail_at(err, path, 0, 0, "could not generate random secrets: %s", strerror(errno));
    rc = write_file(path, access, refresh, master, 0, err);
    explicit_bzero(access, sizeof access);
    explicit_bzero(refresh, sizeof refresh);
    explicit_bzero(master, sizeof master);
    return rc;
}

/* Read `path`; *out NULL with rc 0 when the file does not exist. */
static int read_file(secrets_file_t **out, const char *path, znp_config_error_t *err)
{
    struct stat st;
    int fd;
    cyaml_err_t loaded;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT)
        return 0;
    if (fd < 0)
        return config__fail_at(err, path, 0, 0, "could not open the secrets file: %s", strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return config__fail_at(err, path, 0, 0, "the secrets file is not a regular file");
    }
    close(fd);
    if ((st.st_mode & 077) != 0)
        return config__fail_at(err, path, 0, 0,
                               "the secrets file is readable by other users (mode %04o); run chmod 600 on it",
                               (unsigned)(st.st_mode & 07777));

    loaded = cyaml_load_file(path, &secrets_cyaml, &secrets_schema, (cyaml_data_t **)out, NULL);
    if (loaded != CYAML_OK || *out == NULL)
        return config__fail_at(err, path, 0, 0,
                               "the secrets file is damaged (%s); delete it to generate new secrets, "
                               "which signs every user out",
                               cyaml_strerror(loaded));
    return 0;
}

static void free_file(secrets_file_t *file)
{
    if (file == NULL)
        return;
    if (file->access_secret != NULL)
        explicit_bzero(file->access_secret, strlen(file->access_secret));
    if (file->refresh_secret != NULL)
        explicit_bzero(file->refresh_secret, strlen(file->refresh_secret));
    if (file->master_key != NULL)
        explicit_bzero(file->master_key, strlen(file->master_key));
    cyaml_free(&secrets_cyaml, &secrets_schema, file, 0);
}

static int use_secret(znp_config_t *config, const char *key_path, const char *value, const char *path)
{
    const config__key_t *key = config__key_find(key_path);
    char **member = config__member(config, key);

    if (*member != NULL)
        return 0;
    znp_config_set_string(member, value);
    if (*member == NULL)
        return ZNP_E_INTERNAL;
    config__set_origin(config, key, CONFIG_FROM_OVERRIDE, path);
    return 0;
}

/*
 * Add a master key to a secrets file written before it existed, keeping its
 * JWT keys. An exclusive lock on "<path>.lock" makes concurrent callers
 * agree on one key: each re-reads the file under the lock. On success *file
 * is replaced by the new content.
 */
static int add_master_key(secrets_file_t **file, const char *path, znp_config_error_t *err)
{
    char lock_path[4200], master[SECRET_TEXT_MAX];
    secrets_file_t *current = NULL;
    int fd, rc;

    snprintf(lock_path, sizeof lock_path, "%s.lock", path);
    fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return config__fail_at(err, lock_path, 0, 0, "could not open the secrets lock file: %s", strerror(errno));
    while ((rc = flock(fd, LOCK_EX)) != 0 && errno == EINTR)
        ;
    if (rc != 0) {
        rc = config__fail_at(err, lock_path, 0, 0, "could not lock the secrets file: %s", strerror(errno));
        goto cleanup;
    }

    rc = read_file(&current, path, err);
    if (rc == 0 && current == NULL)
        rc = config__fail_at(err, path, 0, 0, "the secrets file disappeared while a master key was being added");
    if (rc != 0 || current->master_key != NULL)
        goto cleanup;
    if (random_master_key(master) != 0) {
        rc = config__fail_at(err, path, 0, 0, "could not generate a random master key: %s", strerror(errno));
        goto cleanup;
    }
    rc = write_file(path, current->access_secret, current->refresh_secret, master, 1, err);
    explicit_bzero(master, sizeof master);
    free_file(current);
    current = NULL;
    if (rc == 0)
        rc = read_file(&current, path, err);

cleanup:
    close(fd); /* releases the lock */
    if (rc == 0 && current != NULL && current->master_key != NULL) {
        free_file(*file);
        *file = current;
        return 0;
    }
    free_file(current);
    if (rc == 0)
        rc = config__fail_at(err, path, 0, 0, "could not add a master key to the secrets file");
    return rc;
}

int znp_config_ensure_secrets(znp_config_t *config, znp_config_error_t *err)
{
    secrets_file_t *file = NULL;
    char path[4096];
    int rc = 0;

    memset(err, 0, sizeof *err);
    if (config->auth.access_secret != NULL && config->auth.refresh_secret != NULL &&
        config->security.master_key != NULL)
        return 0;

    if (snprintf(path, sizeof path, "%s/secrets.yaml", config->database.data_dir) >= (int)sizeof path)
        return config__fail_at(err, NULL, 0, 0, "database.data_dir is too long");
    if (make_dirs(config->database.data_dir, 0700) != 0)
        return config__fail_at(err, config->database.data_dir, 0, 0, "could not create the data directory: %s",
                               strerror(errno));

    rc = read_file(&file, path, err);
    if (rc == 0 && file == NULL) {
        rc = create_file(path, err);
        if (rc == 0)
            rc = read_file(&file, path, err);
        if (rc == 0 && file == NULL)
            rc = config__fail_at(err, path, 0, 0, "the secrets file disappeared while it was being created");
    }
    if (rc == 0 && file->master_key == NULL)
        rc = add_master_key(&file, path, err);
    if (rc != 0)
        goto cleanup;

    rc = use_secret(config, "auth.access_secret", file->access_secret, path);
    if (rc == 0)
        rc = use_secret(config, "auth.refresh_secret", file->refresh_secret, path);
    if (rc == 0)
        rc = use_secret(config, "security.master_key", file->master_key, path);
    if (rc != 0) {
        config__fail_at(err, path, 0, 0, "out of memory");
        goto cleanup;
    }
    rc = znp_config_validate(config, err);

cleanup:
    free_file(file);
    return rc;
}

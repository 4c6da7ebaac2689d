/*
 * The embedded PostgreSQL cluster: initdb on first use under
 * <database.data_dir>/pg, then pg_ctl start with a Unix socket only.
 *
 * Layout:
 *   <data_dir>/pg/data            the cluster (PGDATA)
 *   <data_dir>/pg/run             socket directory, mode 0700, owned by the cluster user
 *   <data_dir>/pg/postgresql.log  server log (pg_ctl -l)
 *   <data_dir>/pg/tools.log        output of initdb and pg_ctl
 *   <data_dir>/pg/start.lock      serializes concurrent starts (flock)
 *   <data_dir>/pg/serve.lock      held by the znp serve that owns the cluster
 *
 * When znp runs as root the cluster runs as database.run_as: PostgreSQL
 * refuses to run as root. The programs are started with fork + setgroups,
 * setgid, setuid + execve, never through a shell. Root still reaches the
 * 0700 socket directory because root passes directory permission checks
 * (CAP_DAC_OVERRIDE), so the socket stays closed to every other local user
 * even though local connections use trust authentication.
 */
#include "db/db.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/log.h"

#define LOG_TAG         "db"
#define PG_PORT         "5432"
#define PG_GROUPS_MAX   64
#define PG_WAIT_SECONDS "120"

struct znp_embedded_pg {
    char *bin_dir;
    char *root; /* <data_dir>/pg */
    char *data;
    char *run;
    char *server_log;
    char *tool_log;
    char *home;
    char user[64];
    uid_t uid;
    gid_t gid;
    gid_t groups[PG_GROUPS_MAX];
    int group_count;
    int switch_user; /* znp runs as root: programs run as `user` */
    int started;     /* this process started the cluster */
    int owner_fd;    /* serve.lock held after znp_db_embedded_claim, else -1 */
};

static char *join(const char *a, const char *b)
{
    char *out = NULL;

    if (asprintf(&out, "%s/%s", a, b) < 0)
        return NULL;
    return out;
}

static int path_exists(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0;
}

static int make_dirs(const char *path, mode_t mode)
{
    char buffer[PATH_MAX];
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

/* The newest /usr/lib/postgresql/<N>/bin that has pg_ctl and initdb. */
static char *find_bin_dir(const znp_config_t *config)
{
    DIR *dir;
    struct dirent *entry;
    long best = -1;
    char path[PATH_MAX];

    if (config->database.pg_bin_dir != NULL) {
        snprintf(path, sizeof path, "%s/pg_ctl", config->database.pg_bin_dir);
        if (access(path, X_OK) != 0) {
            ZNP_ERROR(LOG_TAG, NULL, "database.pg_bin_dir %s has no executable pg_ctl", config->database.pg_bin_dir);
            return NULL;
        }
        return strdup(config->database.pg_bin_dir);
    }
    dir = opendir("/usr/lib/postgresql");
    if (dir == NULL)
        return NULL;
    while ((entry = readdir(dir)) != NULL) {
        char *end = NULL;
        long version = strtol(entry->d_name, &end, 10);

        if (end == entry->d_name || *end != '\0' || version <= best)
            continue;
        snprintf(path, sizeof path, "/usr/lib/postgresql/%ld/bin/pg_ctl", version);
        if (access(path, X_OK) != 0)
            continue;
        snprintf(path, sizeof path, "/usr/lib/postgresql/%ld/bin/initdb", version);
        if (access(path, X_OK) != 0)
            continue;
        best = version;
    }
    closedir(dir);
    if (best < 0)
        return NULL;
    snprintf(path, sizeof path, "/usr/lib/postgresql/%ld/bin", best);
    return strdup(path);
}

/* Pick the cluster account: database.run_as under root, else the current user. */
static int resolve_user(znp_embedded_pg_t *pg, const znp_config_t *config)
{
    struct passwd *pw;

    if (geteuid() == 0) {
        pw = getpwnam(config->database.run_as);
        if (pw == NULL) {
            ZNP_ERROR(LOG_TAG, NULL,
                      "user \"%s\" from database.run_as does not exist; install PostgreSQL (it creates "
                      "\"postgres\") or set database.run_as",
                      config->database.run_as);
            return ZNP_E_DATABASE_UNAVAILABLE;
        }
        if (pw->pw_uid == 0) {
            ZNP_ERROR(LOG_TAG, NULL, "database.run_as must not be root: PostgreSQL refuses to run as root");
            return ZNP_E_DATABASE_UNAVAILABLE;
        }
        pg->switch_user = 1;
    } else {
        pw = getpwuid(geteuid());
        if (pw == NULL) {
            ZNP_ERROR(LOG_TAG, NULL, "the current user id %ld has no passwd entry", (long)geteuid());
            return ZNP_E_DATABASE_UNAVAILABLE;
        }
    }
    if (strlen(pw->pw_name) >= sizeof pg->user) {
        ZNP_ERROR(LOG_TAG, NULL, "user name \"%s\" is too long", pw->pw_name);
        return ZNP_E_DATABASE_UNAVAILABLE;
    }
    snprintf(pg->user, sizeof pg->user, "%s", pw->pw_name);
    pg->uid = pw->pw_uid;
    pg->gid = pw->pw_gid;
    pg->home = strdup(pw->pw_dir && pw->pw_dir[0] ? pw->pw_dir : "/");
    if (pg->home == NULL)
        return ZNP_E_INTERNAL;

    /* the group list is read here because NSS lookups are not safe between fork and exec */
    pg->group_count = PG_GROUPS_MAX;
    if (pg->switch_user && getgrouplist(pg->user, pg->gid, pg->groups, &pg->group_count) < 0) {
        pg->group_count = 1;
        pg->groups[0] = pg->gid;
    }
    return 0;
}

/* write(2) a message in the child between fork and exec, where stdio is not safe */
static void child_fail(const char *action, const char *path, int error)
{
    char digits[16];
    int n = (int)sizeof digits;

    digits[--n] = '\0';
    do {
        digits[--n] = (char)('0' + error % 10);
        error /= 10;
    } while (error > 0 && n > 0);
    if (write(STDERR_FILENO, "znp: could not ", 15) < 0 || write(STDERR_FILENO, action, strlen(action)) < 0 ||
        write(STDERR_FILENO, " ", 1) < 0 || write(STDERR_FILENO, path, strlen(path)) < 0 ||
        write(STDERR_FILENO, " (errno ", 8) < 0 || write(STDERR_FILENO, digits + n, strlen(digits + n)) < 0 ||
        write(STDERR_FILENO, ")\n", 2) < 0)
        _exit(126);
    _exit(126);
}

/*
 * Run argv (argv[0] an absolute path) as the cluster user with its output
 * appended to pg->tool_log, and return its exit status, or -1 when it could
 * not be started or was killed.
 */
static int run_tool(const znp_embedded_pg_t *pg, char *const argv[])
{
    char path_env[] = "PATH=/usr/local/bin:/usr/bin:/bin";
    char lang_env[] = "LANG=C.UTF-8";
    char *home_env = NULL;
    char *tz_env = NULL;
    char *envp[5];
    int envc = 0;
    sigset_t none;
    pid_t pid;
    int status = 0;

    if (asprintf(&home_env, "HOME=%s", pg->home) < 0)
        return -1;
    envp[envc++] = path_env;
    envp[envc++] = lang_env;
    envp[envc++] = home_env;
    if (getenv("TZ") != NULL && asprintf(&tz_env, "TZ=%s", getenv("TZ")) >= 0)
        envp[envc++] = tz_env;
    envp[envc] = NULL;
    sigemptyset(&none);

    pid = fork();
    if (pid < 0) {
        ZNP_ERROR(LOG_TAG, NULL, "could not start %s: fork failed: %s", argv[0], strerror(errno));
        free(home_env);
        free(tz_env);
        return -1;
    }
    if (pid == 0) {
        int fd;

        /* serve blocks these signals for sigwait; PostgreSQL must see them */
        signal(SIGPIPE, SIG_DFL);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (pg->switch_user) {
            if (setgroups((size_t)pg->group_count, pg->groups) != 0)
                child_fail("set the groups of", pg->user, errno);
            if (setgid(pg->gid) != 0)
                child_fail("switch to the group of", pg->user, errno);
            if (setuid(pg->uid) != 0)
                child_fail("switch to user", pg->user, errno);
        }
        fd = open("/dev/null", O_RDONLY);
        if (fd >= 0 && fd != STDIN_FILENO) {
            dup2(fd, STDIN_FILENO);
            close(fd);
        }
        fd = open(pg->tool_log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd < 0)
            child_fail("open", pg->tool_log, errno);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        if (fd > STDERR_FILENO)
            close(fd);
        if (chdir(pg->root) != 0)
            child_fail("enter (every parent directory needs search permission for the cluster user)", pg->root, errno);
        closefrom(STDERR_FILENO + 1);
        execve(argv[0], argv, envp);
        child_fail("run", argv[0], errno);
    }

    free(home_env);
    free(tz_env);
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    if (!WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

/* Log the last lines of `path`, which usually hold the reason of a failure. */
static void log_tail(const char *path)
{
    char buffer[2048];
    FILE *f = fopen(path, "r");
    long size;
    size_t n;
    char *line, *next;

    if (f == NULL)
        return;
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, size > (long)sizeof buffer - 1 ? size - (long)sizeof buffer + 1 : 0, SEEK_SET);
    n = fread(buffer, 1, sizeof buffer - 1, f);
    fclose(f);
    buffer[n] = '\0';
    line = strchr(buffer, '\n') && size > (long)sizeof buffer - 1 ? strchr(buffer, '\n') + 1 : buffer;
    for (; line != NULL && *line != '\0'; line = next) {
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        if (*line != '\0')
            ZNP_ERROR(LOG_TAG, NULL, "%s: %s", path, line);
    }
}

static char *tool_path(const znp_embedded_pg_t *pg, const char *name)
{
    return join(pg->bin_dir, name);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Append a line to a file in the cluster directory, keeping it owned by the cluster user. */
static int write_cluster_file(const znp_embedded_pg_t *pg, const char *path, const char *text, int append)
{
    FILE *f = fopen(path, append ? "a" : "w");
    int rc = 0;

    if (f == NULL)
        return -1;
    if (fputs(text, f) < 0)
        rc = -1;
    if (fclose(f) != 0)
        rc = -1;
    if (rc == 0 && pg->switch_user && chown(path, pg->uid, pg->gid) != 0)
        rc = -1;
    if (rc == 0 && chmod(path, 0600) != 0)
        rc = -1;
    return rc;
}

/*
 * initdb into data.init and rename it to data when done, so an interrupted
 * initdb never leaves a half-made cluster where the next start would use it.
 */
static int init_cluster(znp_embedded_pg_t *pg)
{
    char *initdb = tool_path(pg, "initdb");
    char *staging = join(pg->root, "data.init");
    char *conf = NULL;
    char user_arg[80];
    int rc = ZNP_E_DATABASE_UNAVAILABLE;

    if (initdb == NULL || staging == NULL || (conf = join(staging, "postgresql.conf")) == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    if (path_exists(staging))
        nftw(staging, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    snprintf(user_arg, sizeof user_arg, "--username=%s", pg->user);

    ZNP_INFO(LOG_TAG, NULL, "creating the embedded PostgreSQL cluster in %s", pg->data);
    char *argv[] = {initdb,
                    "-D",
                    staging,
                    user_arg,
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--auth-local=trust",
                    "--auth-host=reject",
                    NULL};
    if (run_tool(pg, argv) != 0) {
        ZNP_ERROR(LOG_TAG, NULL, "initdb failed; see %s", pg->tool_log);
        log_tail(pg->tool_log);
        goto cleanup;
    }
    if (write_cluster_file(pg, conf,
                           "\n# Settings that znp rewrites at every start of the embedded cluster.\n"
                           "include_if_exists = 'znp.conf'\n",
                           1) != 0) {
        ZNP_ERROR(LOG_TAG, NULL, "could not update %s: %s", conf, strerror(errno));
        goto cleanup;
    }
    if (rename(staging, pg->data) != 0) {
        ZNP_ERROR(LOG_TAG, NULL, "could not rename %s to %s: %s", staging, pg->data, strerror(errno));
        goto cleanup;
    }
    rc = 0;

cleanup:
    free(conf);
    free(staging);
    free(initdb);
    return rc;
}

/* A postgresql.conf string literal: quotes doubled. */
static void conf_quote(char *out, size_t out_size, const char *text)
{
    size_t len = 0;

    for (const char *p = text; *p != '\0' && len + 3 < out_size; p++) {
        if (*p == '\'')
            out[len++] = '\'';
        out[len++] = *p;
    }
    out[len] = '\0';
}

static int write_settings(const znp_embedded_pg_t *pg, const znp_config_t *config)
{
    char quoted[PATH_MAX * 2];
    char text[PATH_MAX * 2 + 512];
    char *path = join(pg->data, "znp.conf");
    unsigned workers = config->server.workers;
    unsigned max_connections;
    int rc;

    if (path == NULL)
        return ZNP_E_INTERNAL;
    /* each worker uses one connection; leave room for the watcher, CLI commands and psql */
    if (workers == 0)
        workers = 2 * (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
    max_connections = workers + 20 > 100 ? workers + 20 : 100;
    conf_quote(quoted, sizeof quoted, pg->run);
    snprintf(text, sizeof text,
             "# Written by znp at every start of the embedded cluster; edits here are lost.\n"
             "listen_addresses = ''\n"
             "unix_socket_directories = '%s'\n"
             "unix_socket_permissions = 0700\n"
             "port = " PG_PORT "\n"
             "max_connections = %u\n",
             quoted, max_connections);
    rc = write_cluster_file(pg, path, text, 0);
    if (rc != 0)
        ZNP_ERROR(LOG_TAG, NULL, "could not write %s: %s", path, strerror(errno));
    free(path);
    return rc == 0 ? 0 : ZNP_E_DATABASE_UNAVAILABLE;
}

/* libpq keyword value in single quotes with ' and \ escaped. */
static void conninfo_quote(char *out, size_t out_size, const char *text)
{
    size_t len = 0;

    out[len++] = '\'';
    for (const char *p = text; *p != '\0' && len + 4 < out_size; p++) {
        if (*p == '\'' || *p == '\\')
            out[len++] = '\\';
        out[len++] = *p;
    }
    out[len++] = '\'';
    out[len] = '\0';
}

static char *make_dsn(const znp_embedded_pg_t *pg, const char *dbname)
{
    char host[PATH_MAX * 2 + 3];
    char user[sizeof pg->user * 2 + 3];
    char *dsn = NULL;

    conninfo_quote(host, sizeof host, pg->run);
    conninfo_quote(user, sizeof user, pg->user);
    if (asprintf(&dsn, "host=%s port=" PG_PORT " dbname=%s user=%s", host, dbname, user) < 0)
        return NULL;
    return dsn;
}

static int create_database(const znp_embedded_pg_t *pg, const znp_config_t *config)
{
    char *dsn = make_dsn(pg, "postgres");
    PGconn *db = NULL;
    PGresult *res = NULL;
    int rc;

    if (dsn == NULL)
        return ZNP_E_INTERNAL;
    rc = znp_db_connect(&db, dsn, config);
    if (rc != 0)
        goto cleanup;
    res = PQexec(db, "SELECT 1 FROM pg_database WHERE datname = 'znp'");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        ZNP_ERROR(LOG_TAG, NULL, "could not list databases: %s", PQerrorMessage(db));
        rc = ZNP_E_DATABASE_UNAVAILABLE;
        goto cleanup;
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        res = PQexec(db, "CREATE DATABASE znp ENCODING 'UTF8' TEMPLATE template0");
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            ZNP_ERROR(LOG_TAG, NULL, "could not create database znp: %s", PQerrorMessage(db));
            rc = ZNP_E_DATABASE_UNAVAILABLE;
            goto cleanup;
        }
        ZNP_INFO(LOG_TAG, NULL, "created database znp");
    }

cleanup:
    PQclear(res);
    PQfinish(db);
    free(dsn);
    return rc;
}

/* 1 when the cluster in pg->data is running, 0 when not, -1 when pg_ctl failed. */
static int cluster_running(const znp_embedded_pg_t *pg)
{
    char *pg_ctl = tool_path(pg, "pg_ctl");
    int status;

    if (pg_ctl == NULL)
        return -1;
    char *argv[] = {pg_ctl, "status", "-D", pg->data, NULL};
    status = run_tool(pg, argv);
    free(pg_ctl);
    /* pg_ctl status: 0 running, 3 not running, 4 no accessible data directory */
    if (status == 0)
        return 1;
    if (status == 3)
        return 0;
    return -1;
}

/*
 * Return 1 when a running cluster accepts connections, 0 when none is
 * running, -1 on error. postmaster.pid can name a server that is starting,
 * stopping, or that died and is not yet reaped, so a running one must also
 * pass PQping before it is reused. The wait is bounded by FIND_RUNNING_TRIES.
 */
#define FIND_RUNNING_TRIES    40
#define FIND_RUNNING_PAUSE_US 250000

static int find_running(const znp_embedded_pg_t *pg)
{
    char *dsn = make_dsn(pg, "postgres");
    int result = -1;

    if (dsn == NULL)
        return -1;
    for (int attempt = 0; attempt < FIND_RUNNING_TRIES; attempt++) {
        int running = cluster_running(pg);

        if (running < 0) {
            ZNP_ERROR(LOG_TAG, NULL, "pg_ctl status failed for %s; see %s", pg->data, pg->tool_log);
            log_tail(pg->tool_log);
            goto cleanup;
        }
        if (running == 0 || PQping(dsn) == PQPING_OK) {
            result = running;
            goto cleanup;
        }
        usleep(FIND_RUNNING_PAUSE_US);
    }
    ZNP_ERROR(LOG_TAG, NULL,
              "the embedded cluster in %s is running (postmaster.pid) but does not accept connections in %s; "
              "see %s",
              pg->data, pg->run, pg->server_log);

cleanup:
    free(dsn);
    return result;
}

static int start_cluster(znp_embedded_pg_t *pg)
{
    char *pg_ctl = tool_path(pg, "pg_ctl");
    int status;

    if (pg_ctl == NULL)
        return ZNP_E_INTERNAL;
    char *argv[] = {pg_ctl, "start", "-w", "-t", PG_WAIT_SECONDS, "-s", "-D", pg->data, "-l", pg->server_log, NULL};
    status = run_tool(pg, argv);
    free(pg_ctl);
    if (status != 0) {
        ZNP_ERROR(LOG_TAG, NULL, "could not start the embedded PostgreSQL cluster; see %s and %s", pg->server_log,
                  pg->tool_log);
        log_tail(pg->server_log);
        return ZNP_E_DATABASE_UNAVAILABLE;
    }
    return 0;
}

/* Create <data_dir>/pg and pg/run, owned by the cluster user with mode 0700. */
static int prepare_dirs(znp_embedded_pg_t *pg, const char *data_dir)
{
    struct stat st;

    if (make_dirs(data_dir, 0700) != 0 || stat(data_dir, &st) != 0) {
        ZNP_ERROR(LOG_TAG, NULL, "could not create database.data_dir %s: %s", data_dir, strerror(errno));
        return ZNP_E_DATABASE_UNAVAILABLE;
    }
    /* the cluster user must be able to pass through data_dir; x without r does not list it */
    if (pg->switch_user && (st.st_mode & S_IXOTH) == 0 && st.st_uid == 0 &&
        chmod(data_dir, (st.st_mode & 07777) | S_IXOTH) != 0) {
        ZNP_ERROR(LOG_TAG, NULL, "could not make %s searchable for user %s: %s", data_dir, pg->user, strerror(errno));
        return ZNP_E_DATABASE_UNAVAILABLE;
    }

    const char *dirs[] = {pg->root, pg->run};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        if (mkdir(dirs[i], 0700) != 0 && errno != EEXIST) {
            ZNP_ERROR(LOG_TAG, NULL, "could not create %s: %s", dirs[i], strerror(errno));
            return ZNP_E_DATABASE_UNAVAILABLE;
        }
        if ((pg->switch_user && chown(dirs[i], pg->uid, pg->gid) != 0) || chmod(dirs[i], 0700) != 0) {
            ZNP_ERROR(LOG_TAG, NULL, "could not set the owner and mode of %s: %s", dirs[i], strerror(errno));
            return ZNP_E_DATABASE_UNAVAILABLE;
        }
    }
    return 0;
}

static int open_lock(const znp_embedded_pg_t *pg, const char *name, int flags)
{
    char *path = join(pg->root, name);
    int fd;

    if (path == NULL)
        return -1;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0 && flock(fd, flags) != 0) {
        int saved = errno;

        close(fd);
        fd = -1;
        errno = saved;
    }
    free(path);
    return fd;
}

static int set_paths(znp_embedded_pg_t *pg, const char *data_dir)
{
    char socket_path[PATH_MAX];
    struct sockaddr_un addr;

    pg->root = join(data_dir, "pg");
    pg->data = pg->root ? join(pg->root, "data") : NULL;
    pg->run = pg->root ? join(pg->root, "run") : NULL;
    pg->server_log = pg->root ? join(pg->root, "postgresql.log") : NULL;
    pg->tool_log = pg->root ? join(pg->root, "tools.log") : NULL;
    if (pg->data == NULL || pg->run == NULL || pg->server_log == NULL || pg->tool_log == NULL)
        return ZNP_E_INTERNAL;
    snprintf(socket_path, sizeof socket_path, "%s/.s.PGSQL." PG_PORT, pg->run);
    if (strlen(socket_path) >= sizeof addr.sun_path) {
        ZNP_ERROR(LOG_TAG, NULL, "socket path %s is longer than %zu bytes; choose a shorter database.data_dir",
                  socket_path, sizeof addr.sun_path - 1);
        return ZNP_E_DATABASE_UNAVAILABLE;
    }
    return 0;
}

int znp_db_embedded_start(znp_embedded_pg_t **out, char **dsn_out, const znp_config_t *config)
{
    znp_embedded_pg_t *pg = NULL;
    char data_dir[PATH_MAX];
    int lock_fd = -1;
    int running;
    int rc;

    *out = NULL;
    *dsn_out = NULL;
    pg = calloc(1, sizeof *pg);
    if (pg == NULL)
        return ZNP_E_INTERNAL;
    pg->owner_fd = -1;

    /* find binaries and the cluster user */
    pg->bin_dir = find_bin_dir(config);
    if (pg->bin_dir == NULL) {
        if (config->database.pg_bin_dir == NULL)
            ZNP_ERROR(LOG_TAG, NULL,
                      "no PostgreSQL server binaries found under /usr/lib/postgresql; install the postgresql "
                      "package, set database.pg_bin_dir, or set database.dsn");
        rc = ZNP_E_DATABASE_UNAVAILABLE;
        goto cleanup;
    }
    rc = resolve_user(pg, config);
    if (rc != 0)
        goto cleanup;

    /* directories, with an absolute path for the socket */
    if (make_dirs(config->database.data_dir, 0700) != 0 || realpath(config->database.data_dir, data_dir) == NULL) {
        ZNP_ERROR(LOG_TAG, NULL, "could not create database.data_dir %s: %s", config->database.data_dir,
                  strerror(errno));
        rc = ZNP_E_DATABASE_UNAVAILABLE;
        goto cleanup;
    }
    rc = set_paths(pg, data_dir);
    if (rc == 0)
        rc = prepare_dirs(pg, data_dir);
    if (rc != 0)
        goto cleanup;

    /* one starter at a time: concurrent CLI commands must not both run initdb */
    lock_fd = open_lock(pg, "start.lock", LOCK_EX);
    if (lock_fd < 0) {
        ZNP_ERROR(LOG_TAG, NULL, "could not lock %s/start.lock: %s", pg->root, strerror(errno));
        rc = ZNP_E_DATABASE_UNAVAILABLE;
        goto cleanup;
    }
    if (!path_exists(pg->data)) {
        rc = init_cluster(pg);
        if (rc != 0)
            goto cleanup;
    }

    /* start, or reuse a cluster left running by an earlier znp */
    running = find_running(pg);
    if (running < 0) {
        rc = ZNP_E_DATABASE_UNAVAILABLE;
        goto cleanup;
    }
    if (running) {
        ZNP_INFO(LOG_TAG, NULL, "reusing the embedded PostgreSQL cluster already running in %s", pg->data);
    } else {
        rc = write_settings(pg, config);
        if (rc == 0)
            rc = start_cluster(pg);
        if (rc != 0)
            goto cleanup;
        pg->started = 1;
        ZNP_INFO(LOG_TAG, NULL, "started the embedded PostgreSQL cluster in %s (socket in %s)", pg->data, pg->run);
    }

    rc = create_database(pg, config);
    if (rc != 0)
        goto cleanup;
    *dsn_out = make_dsn(pg, "znp");
    if (*dsn_out == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    *out = pg;
    pg = NULL;

cleanup:
    if (lock_fd >= 0)
        close(lock_fd);
    znp_db_embedded_stop(pg);
    return rc;
}

int znp_db_embedded_claim(znp_embedded_pg_t *pg)
{
    if (pg->owner_fd >= 0)
        return 0;
    pg->owner_fd = open_lock(pg, "serve.lock", LOCK_EX | LOCK_NB);
    if (pg->owner_fd < 0) {
        if (errno == EWOULDBLOCK)
            ZNP_ERROR(LOG_TAG, NULL, "another znp serve is using the embedded cluster in %s", pg->data);
        else
            ZNP_ERROR(LOG_TAG, NULL, "could not lock %s/serve.lock: %s", pg->root, strerror(errno));
        return ZNP_E_CONFLICT;
    }
    return 0;
}

void znp_db_embedded_stop(znp_embedded_pg_t *pg)
{
    if (pg == NULL)
        return;
    if (pg->started || pg->owner_fd >= 0) {
        char *pg_ctl = tool_path(pg, "pg_ctl");

        if (pg_ctl != NULL) {
            char *argv[] = {pg_ctl, "stop", "-m", "fast", "-w", "-t", PG_WAIT_SECONDS, "-s", "-D", pg->data, NULL};

            if (run_tool(pg, argv) != 0) {
                ZNP_ERROR(LOG_TAG, NULL, "could not stop the embedded PostgreSQL cluster in %s; see %s", pg->data,
                          pg->tool_log);
            } else {
                ZNP_INFO(LOG_TAG, NULL, "stopped the embedded PostgreSQL cluster in %s", pg->data);
            }
            free(pg_ctl);
        }
    }
    if (pg->owner_fd >= 0)
        close(pg->owner_fd);
    free(pg->bin_dir);
    free(pg->root);
    free(pg->data);
    free(pg->run);
    free(pg->server_log);
    free(pg->tool_log);
    free(pg->home);
    free(pg);
}

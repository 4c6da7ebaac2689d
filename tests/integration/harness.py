"""Start, probe and stop a real `znp serve` for the integration tests.

Each test module starts its own server with its own temporary data directory,
config file and embedded PostgreSQL cluster, talks to it over real HTTP/1.1,
h2c, TLS h2 and gRPC, and stops it with SIGTERM, expecting exit status 0.

Environment:
  ZNP_BIN                 znp binary to test (default: build/znp in the repository)
  ZNP_TEST_VALGRIND=1     run every server under valgrind memcheck
  ZNP_TEST_TIMEOUT_SCALE  multiply every timeout (default 1, or 8 under valgrind)
  ZNP_TEST_KEEP=1         keep the temporary directories (their paths are printed)
  ZNP_TEST_RECORD=0       do not record the traffic for the secret sweep (see TRAFFIC)
"""

import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZNP_BIN = os.path.abspath(os.environ.get("ZNP_BIN") or os.path.join(REPO, "build", "znp"))
VALGRIND = os.environ.get("ZNP_TEST_VALGRIND") == "1"
TIMEOUT_SCALE = float(os.environ.get("ZNP_TEST_TIMEOUT_SCALE") or (8 if VALGRIND else 1))
KEEP = os.environ.get("ZNP_TEST_KEEP") == "1"
GRPC_CLIENT = os.path.join(REPO, "tests", "integration", "grpc", "client.js")
DOCS_DIR = os.path.join(REPO, "third_party", "swagger-ui")
PG_BIN_ROOT = "/usr/lib/postgresql"

# Small argon2id costs keep logins fast (and bearable under valgrind); the
# drain test raises them on purpose.
FAST_ARGON2 = {"argon2_t_cost": 1, "argon2_m_cost_kib": 256, "argon2_parallelism": 1}

RECORD = os.environ.get("ZNP_TEST_RECORD", "1") != "0"

LISTENING_LINE = re.compile(r"znp: listening http=(?P<http>\S+) grpc=(?P<grpc>\S+)")


def scaled(seconds):
    """Return a timeout in seconds, stretched for slow runs (valgrind)."""
    return seconds * TIMEOUT_SCALE


# ports this process has handed out: two binds to port 0 in a row can get the
# same port from the kernel once the first socket is closed
_HANDED_OUT = set()


def free_port():
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The kernel picks it (bind to port 0); Server.start later checks that the
    port is really held by the znp process it started. A port this process
    already handed out is never returned again.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free port found: 100 binds to port 0 returned only ports handed out before")


def make_workdir(name):
    """Create a scratch directory that the PostgreSQL account can traverse.

    mkdtemp makes it 0700; the embedded cluster runs as another account when
    the tests run as root, and it must reach <data-dir>/pg below this folder.
    """
    path = tempfile.mkdtemp(prefix="znp-it-%s-" % name)
    os.chmod(path, 0o755)
    return path


def yaml_dump(value, indent=0):
    """Render nested dicts of str/int/bool/None as block YAML (strings JSON-quoted)."""
    lines = []
    pad = "  " * indent
    for key, item in value.items():
        if isinstance(item, dict):
            lines.append("%s%s:" % (pad, key))
            lines.append(yaml_dump(item, indent + 1))
        else:
            lines.append("%s%s: %s" % (pad, key, yaml_scalar(item)))
    return "\n".join(line for line in lines if line)


def yaml_scalar(item):
    if item is None:
        return "null"
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int):
        return str(item)
    return json.dumps(str(item))


def deep_merge(base, extra):
    out = dict(base)
    for key, item in (extra or {}).items():
        if isinstance(item, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], item)
        else:
            out[key] = item
    return out


def make_self_signed_cert(directory):
    """Write cert.pem and key.pem for localhost / 127.0.0.1 with openssl; return their paths."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
         "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return cert, key


# --------------------------------------------------------------------------
# HTTP clients
# --------------------------------------------------------------------------

class Response:
    """One HTTP response: status, lower-cased headers (name -> list), raw body."""

    def __init__(self, status, headers, body, http_version=None):
        self.status = status
        self.headers = headers
        self.body = body
        self.http_version = http_version

    def header(self, name):
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        text = self.body[:400].decode("utf-8", "replace")
        return "Response(status=%s, version=%s, body=%r)" % (self.status, self.http_version, text)


def http_request(port, method, path, body=None, headers=None, timeout=10.0, host="127.0.0.1"):
    """Send one HTTP/1.1 request on a new connection (http.client) and return a Response.

    `body` may be bytes, str or a JSON-able object (sent as application/json
    unless headers set a content-type).
    """
    headers = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        headers.setdefault("Content-Type", "application/json")
    if isinstance(body, str):
        body = body.encode("utf-8")
    conn = http.client.HTTPConnection(host, port, timeout=scaled(timeout))
    try:
        conn.request(method, path, body=body, headers=headers)
        res = conn.getresponse()
        data = res.read()
        out = {}
        for name, value in res.getheaders():
            out.setdefault(name.lower(), []).append(value)
        return Response(res.status, out, data, "1.1")
    finally:
        conn.close()


def parse_header_block(text):
    """Parse the last response header block of a curl -D dump."""
    blocks = [b for b in re.split(r"\r?\n\r?\n", text) if b.strip()]
    if not blocks:
        return None, None, {}
    lines = blocks[-1].splitlines()
    status_line = lines[0]
    match = re.match(r"HTTP/(\S+)\s+(\d{3})", status_line)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers.setdefault(name.strip().lower(), []).append(value.strip())
    if not match:
        return None, None, headers
    return match.group(1), int(match.group(2)), headers


def curl(url, mode, method="GET", body_file=None, headers=None, cacert=None, timeout=20.0):
    """Run one curl request and return a Response with http_version set ("1.1" or "2").

    mode: "http1.1", "h2c" (--http2-prior-knowledge) or "h2" (TLS + ALPN).
    Each call is a new curl process: Debian's curl 7.88.1 fails on a reused
    h2c prior-knowledge connection, so one request per run.
    """
    flags = {"http1.1": ["--http1.1"], "h2c": ["--http2-prior-knowledge"], "h2": ["--http2"]}[mode]
    with tempfile.TemporaryDirectory(prefix="znp-it-curl-") as tmp:
        header_file = os.path.join(tmp, "headers")
        body_out = os.path.join(tmp, "body")
        cmd = ["curl", "-sS", "--max-time", str(int(scaled(timeout))), "-X", method, "-D", header_file,
               "-o", body_out, "-w", "%{http_code} %{http_version}"] + flags
        for name, value in (headers or {}).items():
            cmd += ["-H", "%s: %s" % (name, value)]
        if body_file is not None:
            cmd += ["--data-binary", "@" + body_file]
        if cacert is not None:
            cmd += ["--cacert", cacert]
        cmd.append(url)
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise AssertionError("curl failed (exit %d): %s\n%s" % (proc.returncode, " ".join(cmd), proc.stderr))
        code, version = proc.stdout.split()
        with open(header_file, encoding="latin-1") as f:
            _, _, parsed_headers = parse_header_block(f.read())
        with open(body_out, "rb") as f:
            data = f.read()
        if RECORD:
            sent = None
            if body_file is not None:
                with open(body_file, "rb") as f:
                    sent = f.read()
            TRAFFIC.add_exchange(method, url, sent, int(code), json.dumps(parsed_headers), data)
        return Response(int(code), parsed_headers, data, version)


# --------------------------------------------------------------------------
# /proc helpers: which process owns a listening socket
# --------------------------------------------------------------------------

def listening_socket_inodes(port):
    """Return the inodes of TCP sockets in LISTEN state on `port` (IPv4 and IPv6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local_port = int(fields[1].rsplit(":", 1)[1], 16)
                    if local_port == port and fields[3] == "0A":
                        inodes.add(fields[9])
        except FileNotFoundError:
            continue
    return inodes


def socket_inodes_of(pid):
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for name in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue
        match = re.match(r"socket:\[(\d+)\]", target)
        if match:
            inodes.add(match.group(1))
    return inodes


# --------------------------------------------------------------------------
# PostgreSQL helpers
# --------------------------------------------------------------------------

def pg_bin_dir():
    versions = sorted((d for d in os.listdir(PG_BIN_ROOT) if d.isdigit()), key=int)
    if not versions:
        raise RuntimeError("no PostgreSQL under %s: run scripts/setup.sh" % PG_BIN_ROOT)
    return os.path.join(PG_BIN_ROOT, versions[-1], "bin")


def as_owner_of(path, argv):
    """Prefix `argv` so it runs as the owner of `path` when we are root and do not own it."""
    owner = os.stat(path).st_uid
    if os.geteuid() == 0 and owner != 0:
        import pwd
        return ["runuser", "-u", pwd.getpwuid(owner).pw_name, "--"] + argv
    return argv


class PostmasterInfo:
    """The fields of a running cluster's postmaster.pid."""

    def __init__(self, data_dir):
        with open(os.path.join(data_dir, "postmaster.pid")) as f:
            lines = f.read().splitlines()
        self.pid = int(lines[0])
        self.data_dir = lines[1]
        self.port = int(lines[3])
        self.socket_dir = lines[4].split()[0] if len(lines) > 4 and lines[4] else None


class EmbeddedCluster:
    """Control the embedded PostgreSQL cluster znp runs under <data-dir>/pg/data."""

    def __init__(self, data_dir):
        self.data_dir = os.path.join(data_dir, "pg", "data")
        self.bin = pg_bin_dir()
        self.saved_options = None

    def is_running(self):
        return os.path.exists(os.path.join(self.data_dir, "postmaster.pid"))

    def info(self):
        return PostmasterInfo(self.data_dir)

    def _pg_ctl(self, *args, timeout=60):
        argv = as_owner_of(self.data_dir, [os.path.join(self.bin, "pg_ctl"), "-D", self.data_dir] + list(args))
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=scaled(timeout), cwd="/")

    def postmaster_options(self):
        """Return the server options (after -D DIR) from postmaster.opts, as one string for pg_ctl -o."""
        with open(os.path.join(self.data_dir, "postmaster.opts")) as f:
            argv = shlex.split(f.read())
        options = []
        skip = False
        for i, arg in enumerate(argv[1:], start=1):
            if skip:
                skip = False
                continue
            if arg == "-D":
                skip = True
                continue
            options.append(arg)
        return " ".join(shlex.quote(o) for o in options)

    def stop(self):
        """pg_ctl stop -m fast, keeping the start options for start()."""
        self.saved_options = self.postmaster_options()
        proc = self._pg_ctl("stop", "-m", "fast", "-w")
        if proc.returncode != 0:
            raise AssertionError("pg_ctl stop failed: %s" % proc.stdout)

    def start(self):
        """Start the cluster again with the options znp had used."""
        options = self.saved_options if self.saved_options is not None else self.postmaster_options()
        log = os.path.join(os.path.dirname(self.data_dir), "restart.log")
        proc = self._pg_ctl("start", "-w", "-l", log, "-o", options)
        if proc.returncode != 0:
            raise AssertionError("pg_ctl start failed: %s" % proc.stdout)

    def psql_argv(self, database=None, user=None):
        info = self.info()
        argv = [os.path.join(self.bin, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At",
                "-h", info.socket_dir, "-p", str(info.port)]
        if user:
            argv += ["-U", user]
        if database:
            argv += ["-d", database]
        return as_owner_of(self.data_dir, argv)

    def psql(self, sql, database=None, user=None):
        """Run SQL through psql on the cluster's Unix socket as the cluster owner; return stdout."""
        proc = subprocess.run(self.psql_argv(database, user) + ["-c", sql], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=scaled(30), cwd="/")
        if proc.returncode != 0:
            raise AssertionError("psql failed: %s\n%s" % (sql, proc.stderr))
        return proc.stdout


# --------------------------------------------------------------------------
# The znp server
# --------------------------------------------------------------------------

class ServerError(AssertionError):
    pass


class Server:
    """One `znp serve` process with its own work directory.

    name: short label for the work directory.
    demo: pass --demo (seeds the admin account and prints its password).
    tls: also listen on a TLS port with a fresh self-signed certificate.
    config: nested dict merged over the default test config.
    """

    def __init__(self, name, demo=False, tls=False, config=None):
        self.name = name
        self.demo = demo
        self.workdir = make_workdir(name)
        self.data_dir = os.path.join(self.workdir, "data")
        self.config_path = os.path.join(self.workdir, "znp.yaml")
        self.stdout_path = os.path.join(self.workdir, "stdout.log")
        self.stderr_path = os.path.join(self.workdir, "stderr.log")
        self.log_path = os.path.join(self.workdir, "znp.log")
        self.valgrind_log = os.path.join(self.workdir, "valgrind.log")
        self.proc = None
        self.starts = 0
        self.http_port = self.grpc_port = self.tls_port = None
        self.cert = self.key = None
        if tls:
            self.cert, self.key = make_self_signed_cert(self.workdir)
        self.access_secret = "it-access-" + uuid.uuid4().hex + uuid.uuid4().hex
        self.refresh_secret = "it-refresh-" + uuid.uuid4().hex + uuid.uuid4().hex
        self.extra_config = config or {}
        self.tls = tls
        if KEEP:
            print("harness: %s work directory %s" % (name, self.workdir), file=sys.stderr)

    # -- configuration ------------------------------------------------------

    def config_dict(self):
        server = {
            "listen": "127.0.0.1:%d" % self.http_port,
            "grpc_listen": "127.0.0.1:%d" % self.grpc_port,
            "threads": 2,
            "workers": 4,
            "shutdown_timeout_ms": int(scaled(10) * 1000),
        }
        if os.path.isdir(DOCS_DIR):
            server["docs_dir"] = DOCS_DIR
        if self.tls:
            server["tls_listen"] = "127.0.0.1:%d" % self.tls_port
            server["tls_cert"] = self.cert
            server["tls_key"] = self.key
        config = {
            "server": server,
            "database": {"data_dir": self.data_dir, "reconnect_max_ms": 500},
            "auth": dict(FAST_ARGON2, access_secret=self.access_secret, refresh_secret=self.refresh_secret),
            "log": {"file": self.log_path, "level": "info"},
        }
        return deep_merge(config, self.extra_config)

    def write_config(self):
        with open(self.config_path, "w") as f:
            f.write(yaml_dump(self.config_dict()) + "\n")

    def env(self, extra=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZNP_")}
        env.update(extra or {})
        return env

    # -- the CLI ------------------------------------------------------------

    def cli(self, *args, input=None, env=None, timeout=120, check=True):
        """Run `znp ARGS --config <this config>` and return the CompletedProcess (text)."""
        if self.http_port is None:
            self.pick_ports()
        self.write_config()
        argv = [ZNP_BIN] + list(args) + ["--config", self.config_path]
        proc = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=self.env(env), timeout=scaled(timeout), cwd=self.workdir)
        if check and proc.returncode != 0:
            raise ServerError("%s exited %d\nstdout:\n%s\nstderr:\n%s" % (
                " ".join(argv), proc.returncode, proc.stdout, proc.stderr))
        return proc

    def create_admin(self, email, password, env=None):
        """`znp admin create --email E --password-stdin` (needs the embedded cluster free or a DSN)."""
        return self.cli("admin", "create", "--email", email, "--password-stdin", input=password + "\n", env=env)

    def dsn(self):
        """A libpq DSN for the running embedded cluster, as its owner would connect."""
        info = EmbeddedCluster(self.data_dir).info()
        return "host=%s port=%d dbname=%s" % (info.socket_dir, info.port, self.database_name())

    def database_name(self):
        return "znp"

    def shared_dsn(self):
        """A DSN another znp process can use to share this server's embedded cluster.

        Unlike dsn() it names the cluster owner as the role, as znp itself
        does (the embedded cluster trusts local connections).
        """
        import pwd
        info = EmbeddedCluster(self.data_dir).info()
        owner = pwd.getpwuid(os.stat(EmbeddedCluster(self.data_dir).data_dir).st_uid).pw_name
        return "host=%s port=%d dbname=%s user=%s" % (info.socket_dir, info.port, self.database_name(), owner)

    def record_stored_secrets(self):
        """Read the secrets at rest (refresh-token row ids, password hashes) into TRAFFIC.

        Token family ids are left out: the audit log names a revoked family on
        purpose, and the id alone opens nothing.

        Best effort: a server on an external DSN or with its cluster down adds nothing.
        """
        cluster = EmbeddedCluster(self.data_dir)
        if not RECORD or not os.path.isdir(cluster.data_dir) or not cluster.is_running():
            return
        try:
            out = cluster.psql("SELECT jti::text FROM refresh_tokens"
                               " UNION ALL SELECT password_hash FROM users WHERE password_hash IS NOT NULL",
                               database=self.database_name())
        except (AssertionError, OSError, subprocess.SubprocessError):
            return
        TRAFFIC.add_stored(line.strip() for line in out.splitlines())

    # -- process control ----------------------------------------------------

    def pick_ports(self):
        self.http_port = free_port()
        self.grpc_port = free_port()
        if self.tls:
            self.tls_port = free_port()

    def start(self, timeout=90, extra_args=(), env=None):
        """Start znp serve, wait for its listening line and check the ports are ours."""
        if self.proc is not None:
            raise ServerError("server %s is already running" % self.name)
        last_error = None
        for _ in range(3):  # a port picked by free_port() can be taken before znp binds it
            if self.http_port is None or last_error is not None:
                self.pick_ports()
            self.write_config()
            try:
                self._spawn(timeout, extra_args, env)
                return
            except ServerError as e:
                last_error = e
                text = str(e).lower()
                if "address already in use" not in text and "could not listen" not in text:
                    raise
        raise last_error

    def _spawn(self, timeout, extra_args, env):
        argv = [ZNP_BIN, "serve", "--config", self.config_path, "--data-dir", self.data_dir]
        if self.demo:
            argv.append("--demo")
        argv += list(extra_args)
        if VALGRIND:
            argv = ["valgrind", "--error-exitcode=99", "--leak-check=full",
                    "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect",
                    "--num-callers=40", "--suppressions=" + os.path.join(REPO, "tests", "valgrind.supp"),
                    "--log-file=" + self.valgrind_log] + argv
        self.starts += 1
        stdout = open(self.stdout_path, "ab")
        stderr = open(self.stderr_path, "ab")
        self.stderr_offset = os.path.getsize(self.stderr_path)
        self.stdout_offset = os.path.getsize(self.stdout_path)
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                         env=self.env(env), cwd=self.workdir)
        finally:
            stdout.close()
            stderr.close()
        self._wait_listening(scaled(timeout))
        self._verify_ownership()

    def new_stderr(self):
        with open(self.stderr_path, "rb") as f:
            f.seek(self.stderr_offset)
            return f.read().decode("utf-8", "replace")

    def new_stdout(self):
        with open(self.stdout_path, "rb") as f:
            f.seek(self.stdout_offset)
            return f.read().decode("utf-8", "replace")

    def _wait_listening(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = LISTENING_LINE.search(self.new_stderr())
            if match:
                http_addr = match.group("http")
                grpc_addr = match.group("grpc")
                if http_addr != "127.0.0.1:%d" % self.http_port or grpc_addr != "127.0.0.1:%d" % self.grpc_port:
                    self.kill()
                    raise ServerError("znp listens on http=%s grpc=%s, expected ports %d and %d" % (
                        http_addr, grpc_addr, self.http_port, self.grpc_port))
                return
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise ServerError("znp serve exited with %d before listening\n%s" % (code, self.diagnostics()))
            time.sleep(0.05)
        self.kill()
        raise ServerError("znp serve did not print its listening line within %.0f s\n%s" % (
            timeout, self.diagnostics()))

    def _verify_ownership(self):
        """Check the listening sockets belong to our process and the HTTP port echoes our request id."""
        ours = socket_inodes_of(self.proc.pid)
        ports = [self.http_port, self.grpc_port] + ([self.tls_port] if self.tls else [])
        for port in ports:
            listening = listening_socket_inodes(port)
            if not listening or not (listening & ours):
                self.kill()
                raise ServerError("port %d is not held by znp (pid %d)" % (port, self.proc.pid))
        marker = "harness-" + uuid.uuid4().hex
        res = http_request(self.http_port, "GET", "/api/v1/ping", headers={"x-request-id": marker})
        if res.status != 200 or res.header("x-request-id") != marker:
            self.kill()
            raise ServerError("ping on port %d did not come from this znp: %r" % (self.http_port, res))

    def send_signal(self, signum):
        self.proc.send_signal(signum)

    def stop(self, timeout=30, signum=signal.SIGTERM):
        """Send SIGTERM, wait for the exit and return the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.record_stored_secrets()
        self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            self.kill()
            raise ServerError("znp did not exit within %.0f s of SIGTERM\n%s" % (scaled(timeout), self.diagnostics()))
        self.proc = None
        return code

    def stop_expect_clean(self):
        """Stop and raise unless the exit status is 0."""
        code = self.stop()
        if code != 0:
            raise ServerError("znp exited with %s after SIGTERM, expected 0\n%s" % (code, self.diagnostics()))

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def diagnostics(self):
        parts = ["--- stderr (%s) ---" % self.stderr_path, tail(self.stderr_path)]
        if os.path.exists(self.log_path):
            parts += ["--- log (%s) ---" % self.log_path, tail(self.log_path)]
        if VALGRIND and os.path.exists(self.valgrind_log):
            parts += ["--- valgrind (%s) ---" % self.valgrind_log, tail(self.valgrind_log, 200)]
        return "\n".join(parts)

    def cleanup(self):
        """Kill the server if still running, stop a leftover embedded cluster, remove the work directory."""
        self.kill()
        cluster = EmbeddedCluster(self.data_dir)
        if os.path.isdir(cluster.data_dir) and cluster.is_running():
            try:
                cluster._pg_ctl("stop", "-m", "immediate", "-w")
            except Exception as e:  # leave the folder for inspection
                print("harness: could not stop the embedded cluster in %s: %s" % (cluster.data_dir, e),
                      file=sys.stderr)
                return
        if not KEEP:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- conveniences -------------------------------------------------------

    def request(self, method, path, body=None, headers=None, timeout=10.0):
        return http_request(self.http_port, method, path, body=body, headers=headers, timeout=timeout)

    def url(self, path, scheme="http"):
        if scheme == "https":
            return "https://127.0.0.1:%d%s" % (self.tls_port, path)
        return "http://127.0.0.1:%d%s" % (self.http_port, path)

    @property
    def grpc_addr(self):
        return "127.0.0.1:%d" % self.grpc_port

    def login(self, email, password, headers=None):
        return self.request("POST", "/api/v1/auth/login", {"email": email, "password": password}, headers=headers)

    def access_token(self, email, password):
        res = self.login(email, password)
        if res.status != 200:
            raise AssertionError("login as %s failed: %r" % (email, res))
        return res.json()["access_token"]


def seed_bindings(server, ids):
    """Insert protocol bindings with the given ids (on one node made for them) straight into the database.

    For tests of modules that only need bindings to exist, such as plan links.
    The identity sequence is moved past the largest id so later inserts do not collide.
    """
    values = ", ".join("(%d, 'seed-%d')" % (i, i) for i in ids)
    sql = ("WITH n AS (INSERT INTO nodes (name, control_endpoint) VALUES ('seed-node-%d', 'http://127.0.0.1:9')"
           " ON CONFLICT (name) DO UPDATE SET updated_at = now() RETURNING id)"
           " INSERT INTO protocol_bindings (id, node_id, protocol, role, kernel_id) OVERRIDING SYSTEM VALUE"
           " SELECT v.id, n.id, 'vmess', 'listener', v.kernel_id FROM n, (VALUES %s) AS v(id, kernel_id)"
           " ON CONFLICT (id) DO NOTHING;"
           " SELECT setval(pg_get_serial_sequence('protocol_bindings', 'id'),"
           " (SELECT max(id) FROM protocol_bindings));") % (min(ids), values)
    EmbeddedCluster(server.data_dir).psql(sql, database=server.database_name())


def tail(path, lines=60):
    try:
        with open(path, "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return "(missing)"
    return "\n".join(data.splitlines()[-lines:])


# --------------------------------------------------------------------------
# gRPC through the Node client (tests/integration/grpc/client.js)
# --------------------------------------------------------------------------

def grpc_client_available():
    return (shutil.which("node") is not None and os.path.exists(GRPC_CLIENT)
            and os.path.isdir(os.path.join(REPO, "tests", "integration", "node_modules")))


def grpc_run(*args, timeout=30):
    """Run `node client.js ARGS` and return the CompletedProcess (text)."""
    return subprocess.run(["node", GRPC_CLIENT] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=scaled(timeout), cwd=os.path.dirname(GRPC_CLIENT))


def grpc_check(addr, service=""):
    """Return the status string of grpc.health.v1.Health/Check (e.g. "SERVING")."""
    proc = grpc_run("check", addr, service)
    if proc.returncode != 0:
        raise AssertionError("grpc check %s %r failed (exit %d): %s%s" % (
            addr, service, proc.returncode, proc.stdout, proc.stderr))
    return parse_grpc_status(proc.stdout)


def parse_grpc_status(text):
    text = text.strip()
    try:
        data = json.loads(text.splitlines()[-1])
    except (ValueError, IndexError):
        return text
    if isinstance(data, dict):
        return data.get("status", data)
    return data


class GrpcWatch:
    """A running `node client.js watch ADDR SERVICE`; collects one JSON message per line."""

    def __init__(self, addr, service=""):
        self.proc = subprocess.Popen(["node", GRPC_CLIENT, "watch", addr, service], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=os.path.dirname(GRPC_CLIENT))
        self.messages = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                message = json.loads(line)
            except ValueError:
                message = {"raw": line}
            with self.cond:
                self.messages.append(message)
                self.cond.notify_all()

    def statuses(self):
        with self.cond:
            return self._statuses_locked()

    def wait_for(self, status, timeout=20):
        """Block until a message with `status` arrived; return True if it did."""
        return self.wait_for_sequence([status], timeout)

    def wait_for_sequence(self, expected, timeout=20):
        """Block until the statuses seen contain `expected` in order (other messages may sit between)."""
        deadline = time.monotonic() + scaled(timeout)
        with self.cond:
            while not is_subsequence(expected, self._statuses_locked()):
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    return False
                self.cond.wait(min(left, 0.2))
            return True

    def _statuses_locked(self):
        return [m.get("status") for m in self.messages if isinstance(m, dict)]

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=5)
        return self.proc.stderr.read() if self.proc.stderr else ""


def is_subsequence(expected, seen):
    """True when the items of `expected` occur in `seen` in the same order."""
    position = 0
    for item in seen:
        if position < len(expected) and item == expected[position]:
            position += 1
    return position == len(expected)


def wait_until(predicate, timeout=20, interval=0.1):
    """Poll `predicate` until it returns a true value; return that value or None on timeout."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)



# --------------------------------------------------------------------------
# Traffic record for the secret sweep (tests/integration/test_zz_secret_sweep.py)
# --------------------------------------------------------------------------

class Traffic:
    """Every HTTP exchange, mail and server-side secret the suite records in this process.

    Filled without the test modules' help: http.client connections to
    127.0.0.1 (which http_request and the modules' own helpers use), curl(),
    aiosmtpd Controllers started in this process, and Server.stop(), which
    reads the secrets at rest (refresh-token ids, password hashes) from the
    database before the server goes down. Recording is on unless
    ZNP_TEST_RECORD=0.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.exchanges = []   # dicts: module, method, path, request (bytes), status, headers (str), body (bytes)
        self.mails = []       # raw messages (bytes)
        self.stored = set()   # strings read from the databases that no response may contain

    def add_exchange(self, method, path, request, status, headers, body):
        module = current_test_module()
        if isinstance(request, str):
            request = request.encode("utf-8")
        with self.lock:
            self.exchanges.append({"module": module, "method": method, "path": path, "request": request or b"",
                                   "status": status, "headers": headers, "body": body})

    def add_mail(self, raw):
        with self.lock:
            self.mails.append(bytes(raw))

    def add_stored(self, values):
        with self.lock:
            self.stored.update(v for v in values if v)


TRAFFIC = Traffic()


def current_test_module():
    """The tests.integration.test_* module on the call stack, or "?"."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name.startswith("tests.integration.test_") or name.startswith("test_"):
            return name.rsplit(".", 1)[-1]
        frame = frame.f_back
    return "?"


class _RecordingResponse(http.client.HTTPResponse):
    """An HTTPResponse that keeps what its reader read and records it once the body ends."""

    def begin(self):
        super().begin()
        self._znp_parts = []
        self._znp_done = False

    def read(self, amt=None):
        data = super().read(amt)
        parts = getattr(self, "_znp_parts", None)
        if parts is not None:
            parts.append(data)
            if amt is None or not data or self.isclosed():
                self._znp_finish()
        return data

    def close(self):
        super().close()
        self._znp_finish()

    def _znp_finish(self):
        if getattr(self, "_znp_done", True) or getattr(self, "_znp_request", None) is None:
            return
        self._znp_done = True
        method, path, body = self._znp_request
        headers = json.dumps(self.getheaders())
        TRAFFIC.add_exchange(method, path, body, self.status, headers, b"".join(self._znp_parts))


class _RecordingConnection(http.client.HTTPConnection):
    response_class = _RecordingResponse

    def request(self, method, url, body=None, headers={}, **kwargs):
        self._znp_request = (method, url, body if isinstance(body, (bytes, str)) else None)
        return super().request(method, url, body=body, headers=headers, **kwargs)

    def getresponse(self):
        res = super().getresponse()
        if self.host in ("127.0.0.1", "localhost"):
            res._znp_request = getattr(self, "_znp_request", None)
        return res


def _record_smtp_handlers():
    """Wrap handle_DATA of every aiosmtpd Controller's handler so the mails land in TRAFFIC too."""
    try:
        from aiosmtpd.controller import Controller
    except ImportError:
        return
    original = Controller.__init__

    def init(self, handler, *args, **kwargs):
        inner = getattr(handler, "handle_DATA", None)
        if inner is not None and not getattr(inner, "_znp_recording", False):
            async def handle_data(server, session, envelope):
                TRAFFIC.add_mail(envelope.original_content or envelope.content or b"")
                return await inner(server, session, envelope)
            handle_data._znp_recording = True
            try:
                handler.handle_DATA = handle_data
            except AttributeError:
                pass
        original(self, handler, *args, **kwargs)

    Controller.__init__ = init


if RECORD:
    http.client.HTTPConnection = _RecordingConnection
    _record_smtp_handlers()

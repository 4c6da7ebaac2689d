#!/usr/bin/python3
"""A node kernel for the end-to-end test, built on Debian's real proxy servers.

The adapter serves the kernel control API that znp calls (HTTP Basic auth on
every /v1 path; GET /v1/status, GET/POST /v1/protocols, DELETE
/v1/protocols/{id}, GET /v1/protocols/{id}/users, event and service-event
registrations) and carries the traffic with:

  v2ray 4.34 (Debian package v2ray): one process serves every VMess, VLESS and
      Trojan-over-TLS protocol as one inbound each, with the stats API on.
  shadowsocks-libev 3.3 (package shadowsocks-libev): one ss-manager, which
      runs one ss-server per shadowsocks protocol.

How users reach the servers:

  v2ray: every POST or DELETE that changes the v2ray config writes the
      whole config and restarts v2ray (about 60 ms on loopback). A POST may add, move or drop whole
      inbounds, and the live HandlerService API can do that only with the
      full inbound protobuf, so the adapter restarts instead. A restart also
      applies a user list atomically. Before each restart the per-user
      counters are read and zeroed (QueryStats with reset), because v2ray
      keeps them in memory only.
  shadowsocks: ss-manager `add`/`remove` on the protocol's port. ss-libev
      accepts one password per port, so a shadowsocks protocol carries at
      most one user; a POST with more users is rejected with 400.

Which identity value a server gets: the user's `username` (a UUID) for VMess
and VLESS, the user's `password` for Trojan and shadowsocks.

Traffic: every --report-interval seconds (and on POST /v1/traffic/flush,
an adapter extension for tests) the adapter reads the counters and posts the
bytes used since the last report to the panel's /api/v1/kernel/traffic. The
URL comes from the registered `user.traffic.reported` (or
`user_traffic_reported`) service-event callback: the same origin, the path
ending in /traffic instead of /service-events, the callback's `node_id`
query value as the body's node_id, and the registration's secret as the
X-ZNP-Webhook-Token header. Each report has a fresh report_id. A report that
failed is sent again with the same id before any new one, so the panel
counts it once, unless the panel rejected the report itself (400, 404, 413
or 422), which drops it. Records carry subscription_id from the user's
metadata, and binding_id only when --binding-ids maps the protocol id,
because the control API does not send the panel's binding id.

v2ray counts plaintext payload bytes per user and direction. ss-manager has
one counter per port (encrypted bytes in both directions added together,
refreshed by ss-server about every 10 s), which is reported as bytes_down
with bytes_up 0.

Node events: after each POST the adapter sends node_added (for a new
protocol) and node_healthy or node_unhealthy, and after a DELETE
node_removed, to the callbacks registered for them, with the
registration's secret as X-ZNP-Webhook-Token, and appends each delivery to
DIR/events.jsonl.

Only 127.0.0.1 is used. A protocol whose `listen` names a loopback or
wildcard host listens on 127.0.0.1, any other host is rejected with 400, and
callbacks go only to loopback URLs. Every file lives in --workdir, and SIGTERM stops
every process the adapter started.

Usage:
  /usr/bin/python3 tests/e2e/kernel_adapter.py --workdir DIR --access-key AK --secret-key SK
The first stdout line is "kernel-adapter: listening http://127.0.0.1:PORT cert=PATH".
Each accepted report is appended to DIR/reports.jsonl as one JSON line:
{"report_id", "records" (as sent), "status" (HTTP), "answer" (the panel's body)}.
"""

import argparse
import base64
import hmac
import http.client
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

V2RAY = "/usr/bin/v2ray"
V2CTL = "/usr/bin/v2ctl"
SS_MANAGER = "/usr/bin/ss-manager"
SS_SERVER = "/usr/bin/ss-server"

V2RAY_PROTOCOLS = ("vmess", "vless", "trojan")
SS_PROTOCOLS = ("ss", "shadowsocks")
# AEAD methods of shadowsocks-libev 3.3.5, which has no 2022-blake3 methods.
SS_METHODS = ("aes-128-gcm", "aes-192-gcm", "aes-256-gcm", "chacha20-ietf-poly1305", "xchacha20-ietf-poly1305")
SS_DEFAULT_METHOD = "aes-256-gcm"
TRAFFIC_EVENTS = ("user.traffic.reported", "user_traffic_reported")
NODE_EVENTS = ("node_added", "node_removed", "node_healthy", "node_degraded", "node_unhealthy")
SERVICE_EVENTS = ("user.quota.changed",) + TRAFFIC_EVENTS
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
LISTEN_HOSTS = ("", "127.0.0.1", "localhost", "0.0.0.0", "::", "::1")
UUID_SHAPE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
TLS_NAME = "proxy.test"
# HTTP statuses that reject the report itself; sending it again cannot succeed, so it is dropped
PERMANENT_REJECTIONS = (400, 404, 413, 422)

log = logging.getLogger("kernel-adapter")


class KernelError(Exception):
    """A failed control call, sent as {"code", "message"} with `status`."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def bad_request(message):
    return KernelError(400, "BAD_REQUEST", message)


# --------------------------------------------------------------------------
# sockets and processes
# --------------------------------------------------------------------------

# ports this process has handed out: two binds to port 0 in a row can get the
# same port from the kernel once the first socket is closed
_HANDED_OUT = set()


def free_port():
    """Return a TCP port on 127.0.0.1 that was free a moment ago and that this
    process has not handed out before."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free port found: 100 binds to port 0 returned only ports handed out before")


def listening_inodes(port):
    """Return the inodes of the TCP sockets listening on `port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                        inodes.add(fields[9])
        except FileNotFoundError:
            continue
    return inodes


def socket_inodes_of(pid):
    inodes = set()
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, name))
        except OSError:
            continue
        match = re.match(r"socket:\[(\d+)\]", target)
        if match:
            inodes.add(match.group(1))
    return inodes


def pid_alive(pid):
    """True when `pid` runs and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_listening(port, pid, timeout):
    """Wait until process `pid` listens on `port`, and return whether it does within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening_inodes(port) & socket_inodes_of(pid):
            return True
        if not pid_alive(pid):
            return False
        time.sleep(0.02)
    return False


def wait_closed(port, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not listening_inodes(port):
            return True
        time.sleep(0.02)
    return False


def tail(path, limit=2000):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace").strip()


def write_private(path, text):
    """Write a file readable by its owner only (the configs contain passwords)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def make_certificate(directory):
    """Write a self-signed P-256 certificate for proxy.test and 127.0.0.1, and return (cert path, key path)."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=" + TLS_NAME,
                    "-addext", "subjectAltName=DNS:%s,IP:127.0.0.1" % TLS_NAME],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return cert, key


def post_json(url, body, token):
    """POST `body` as JSON with the webhook token header, and return (HTTP status or 0, response text)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS:
        return 0, "not sent: this test kernel calls back over http on loopback only, not %s" % url
    path = parts.path + ("?" + parts.query if parts.query else "")
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=10)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json",
                                                                   "X-ZNP-Webhook-Token": token})
        res = conn.getresponse()
        return res.status, res.read().decode("utf-8", "replace")
    except OSError as e:
        return 0, "POST %s failed: %s" % (url, e)
    finally:
        conn.close()


# --------------------------------------------------------------------------
# protocols
# --------------------------------------------------------------------------

class User:
    """One user of a protocol as the panel sent it."""

    def __init__(self, raw, protocol, position):
        if not isinstance(raw, dict):
            raise bad_request("users[%d]: expected an object" % position)
        for field in ("id", "username", "password"):
            if not isinstance(raw.get(field), str) or raw[field] == "":
                raise bad_request("users[%d].%s: missing or not a non-empty string" % (position, field))
        self.id = raw["id"]
        self.username = raw["username"]
        self.password = raw["password"]
        metadata = raw.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise bad_request("users[%d].metadata: expected an object" % position)
        self.metadata = metadata
        if protocol in ("vmess", "vless") and not UUID_SHAPE.match(self.username):
            raise bad_request("users[%d].username: %s needs a UUID as the user id" % (position, protocol))

    def credential(self, protocol):
        return self.username.lower() if protocol in ("vmess", "vless") else self.password

    def as_json(self):
        return {"id": self.id, "username": self.username, "metadata": self.metadata}


class Protocol:
    """One protocol instance (a panel binding) on this kernel."""

    def __init__(self, body):
        if not isinstance(body, dict):
            raise bad_request("body: expected a JSON object")
        profile = body.get("profile")
        if not isinstance(profile, dict):
            raise bad_request("profile: missing or not an object")

        self.id = profile.get("id")
        if not isinstance(self.id, str) or not re.match(r"^[A-Za-z0-9._:-]{1,128}$", self.id):
            raise bad_request("profile.id: missing or not 1-128 characters of [A-Za-z0-9._:-]")
        self.protocol = str(profile.get("protocol") or "").lower()
        if self.protocol not in V2RAY_PROTOCOLS + SS_PROTOCOLS:
            raise bad_request("profile.protocol %r is not served here; expected one of %s"
                              % (self.protocol, ", ".join(V2RAY_PROTOCOLS + SS_PROTOCOLS)))
        self.role = profile.get("role") or "listener"
        if self.role != "listener":
            raise bad_request("profile.role %r is not served here; only listener" % self.role)
        self.tags = profile.get("tags") or []
        self.description = profile.get("description") or ""
        self.settings = profile.get("profile") or {}
        if not isinstance(self.settings, dict):
            raise bad_request("profile.profile: expected an object")

        self.listen = body.get("listen") or ""
        self.connect = body.get("connect") or ""
        self.port = parse_listen(self.listen)

        raw_users = body.get("users") or []
        if not isinstance(raw_users, list):
            raise bad_request("users: expected an array")
        self.users = [User(raw, self.protocol, i) for i, raw in enumerate(raw_users)]
        seen = set()
        for user in self.users:
            if user.id in seen:
                raise bad_request("users: user id %s appears twice" % user.id)
            seen.add(user.id)

        self.method = None
        if self.protocol in SS_PROTOCOLS:
            self.method = str(self.settings.get("method") or self.settings.get("cipher") or SS_DEFAULT_METHOD)
            if self.method not in SS_METHODS:
                raise bad_request("profile.profile.method %r is not a shadowsocks-libev AEAD method; expected one of %s"
                                  % (self.method, ", ".join(SS_METHODS)))
            if len(self.users) > 1:
                raise bad_request("shadowsocks-libev serves one password per port, but %d users were sent for %s"
                                  % (len(self.users), self.id))

    @property
    def on_v2ray(self):
        return self.protocol in V2RAY_PROTOCOLS

    def summary(self):
        return {"id": self.id, "role": self.role, "protocol": self.protocol, "tags": self.tags,
                "description": self.description, "listen": "127.0.0.1:%d" % self.port,
                "connect": self.connect, "user_count": len(self.users)}


def same_ss_service(old, new):
    """True when shadowsocks protocol `new` needs the same ss-server as `old` (port, method and password)."""
    if new.on_v2ray or old.port != new.port or old.method != new.method or not old.users or not new.users:
        return False
    return old.users[0].password == new.users[0].password


def parse_listen(listen):
    """Return the port of a listen address "HOST:PORT", "[V6]:PORT" or ":PORT" (loopback or wildcard hosts only)."""
    if not isinstance(listen, str) or listen == "":
        raise bad_request("listen: missing; expected HOST:PORT")
    match = re.match(r"^(?:\[([^\]]*)\]|([^:\[\]]*)):(\d{1,5})$", listen)
    if not match:
        raise bad_request("listen %r: expected HOST:PORT" % listen)
    host = match.group(1) if match.group(1) is not None else match.group(2)
    port = int(match.group(3))
    if host not in LISTEN_HOSTS:
        raise bad_request("listen %r: this test kernel listens on 127.0.0.1 only" % listen)
    if not 1 <= port <= 65535:
        raise bad_request("listen %r: port out of range" % listen)
    return port


# --------------------------------------------------------------------------
# v2ray
# --------------------------------------------------------------------------

class V2ray:
    """The one v2ray process serving every VMess, VLESS and Trojan protocol."""

    def __init__(self, workdir, cert, key):
        self.workdir = workdir
        self.cert = cert
        self.key = key
        self.config_path = os.path.join(workdir, "v2ray.json")
        self.log_path = os.path.join(workdir, "v2ray.log")
        self.proc = None
        self.api_port = None
        self.emails = {}  # email -> (protocol id, user id, protocol name, subscription id)

    def email_of(self, protocol, user):
        """Stats key of one user on one protocol; v2ray sums stats per email across inbounds."""
        email = "u%s@%s" % (re.sub(r"[^0-9A-Za-z_-]", "_", user.id), protocol.id)
        self.emails[email] = (protocol.id, user.id, protocol.protocol, user.metadata.get("subscription_id"))
        return email

    def inbound(self, protocol):
        inbound = {"tag": "p-" + protocol.id, "listen": "127.0.0.1", "port": protocol.port,
                   "protocol": protocol.protocol}
        clients = []
        for user in protocol.users:
            email = self.email_of(protocol, user)
            if protocol.protocol == "vmess":
                clients.append({"id": user.credential("vmess"), "alterId": 0, "email": email})
            elif protocol.protocol == "vless":
                clients.append({"id": user.credential("vless"), "email": email})
            else:
                clients.append({"password": user.credential("trojan"), "email": email})
        if protocol.protocol == "vless":
            inbound["settings"] = {"decryption": "none", "clients": clients}
        else:
            inbound["settings"] = {"clients": clients}
        if protocol.protocol == "trojan":
            inbound["streamSettings"] = {"security": "tls", "tlsSettings": {
                "alpn": ["http/1.1"], "certificates": [{"certificateFile": self.cert, "keyFile": self.key}]}}
        return inbound

    def config(self, protocols):
        inbounds = [self.inbound(p) for p in protocols]
        inbounds.append({"tag": "api", "listen": "127.0.0.1", "port": self.api_port, "protocol": "dokodemo-door",
                         "settings": {"address": "127.0.0.1"}})
        return {"log": {"loglevel": "warning", "access": "none"},
                "stats": {},
                "api": {"tag": "api", "services": ["StatsService"]},
                "policy": {"levels": {"0": {"statsUserUplink": True, "statsUserDownlink": True}}},
                "inbounds": inbounds,
                "outbounds": [{"protocol": "freedom"}],
                "routing": {"rules": [{"type": "field", "inboundTag": ["api"], "outboundTag": "api"}]}}

    def apply(self, protocols, collect):
        """Restart v2ray with exactly `protocols` (none: v2ray stops), passing the counters it had to `collect`.

        Raises KernelError when the new config fails `v2ray -test` or does not
        come up. In the second case the previous config is started again.
        """
        if self.api_port is None:
            self.api_port = free_port()
        text = json.dumps(self.config(protocols), indent=1)
        if self.running() and protocols and text == self.current_config():
            return  # same config: a restart would only drop connections
        candidate = self.config_path + ".new"
        write_private(candidate, text)
        if protocols:
            check = subprocess.run([V2RAY, "-test", "-config", candidate], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, timeout=20)
            if check.returncode != 0:
                os.unlink(candidate)
                raise KernelError(400, "BAD_REQUEST", "v2ray rejected the config: %s" % check.stdout.strip()[-600:])
        collect(self.harvest())
        had_previous = os.path.exists(self.config_path)
        if had_previous:
            os.replace(self.config_path, self.config_path + ".old")
        os.replace(candidate, self.config_path)
        self.stop()
        if not protocols:
            return
        failure = self.start([p.port for p in protocols])
        if failure is not None:
            self.stop()
            if had_previous:
                os.replace(self.config_path + ".old", self.config_path)
                if self.start(None) is not None:
                    log.error("the previous v2ray config did not start again either")
            raise KernelError(500, "INTERNAL", "v2ray did not start: %s" % failure)

    def current_config(self):
        try:
            with open(self.config_path) as f:
                return f.read()
        except OSError:
            return None

    def start(self, ports):
        """Start v2ray on the current config and wait for `ports` (None: the api port only).

        Returns None, or the reason v2ray did not come up.
        """
        env = dict(os.environ, V2RAY_VMESS_AEAD_FORCED="true")
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([V2RAY, "-config", self.config_path], stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        log.info("v2ray started, pid %d", self.proc.pid)
        for port in [self.api_port] + list(ports or []):
            if not wait_listening(port, self.proc.pid, 10):
                return "port %d is not held by v2ray pid %d: %s" % (port, self.proc.pid, tail(self.log_path, 600))
        return None

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        log.info("v2ray stopped, pid %d, exit status %s", self.proc.pid, self.proc.returncode)
        self.proc = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def harvest(self):
        """Read and zero the per-user counters, and return them as {email: [up, down]}."""
        if not self.running():
            return {}
        proc = subprocess.run([V2CTL, "api", "--server=127.0.0.1:%d" % self.api_port, "StatsService.QueryStats",
                               'pattern: "user>>>" reset: true'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=10)
        if proc.returncode != 0:
            log.error("v2ctl QueryStats failed (exit %d): %s", proc.returncode, proc.stderr.strip()[-300:])
            return {}
        return parse_v2ray_stats(proc.stdout)


def parse_v2ray_stats(text):
    """Parse v2ctl's text output of QueryStats into {email: [up, down]}. A stat without `value:` is 0.

    The output is a list of `stat: < name: "..." value: N >` blocks with one
    field per line. Names contain ">>>", so the blocks are read line by line.
    """
    stats = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("stat:"):
            stats.append({"name": None, "value": 0})
        elif line.startswith("name:") and stats:
            stats[-1]["name"] = json.loads(line[len("name:"):].strip())
        elif line.startswith("value:") and stats:
            stats[-1]["value"] = int(line[len("value:"):].strip())
    counters = {}
    for stat in stats:
        parts = (stat["name"] or "").split(">>>")
        if len(parts) != 4 or parts[0] != "user" or parts[2] != "traffic":
            continue
        entry = counters.setdefault(parts[1], [0, 0])
        if parts[3] == "uplink":
            entry[0] += stat["value"]
        elif parts[3] == "downlink":
            entry[1] += stat["value"]
    return counters


# --------------------------------------------------------------------------
# shadowsocks-libev
# --------------------------------------------------------------------------

class SsManager:
    """The one ss-manager, which runs one ss-server per shadowsocks protocol (port)."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.state_dir = os.path.join(workdir, "ss-manager")
        self.config_path = os.path.join(workdir, "ss-manager.json")
        self.log_path = os.path.join(workdir, "ss-manager.log")
        self.proc = None
        self.address = None
        self.ports = {}     # port -> (protocol id, user id, protocol name, subscription id)
        self.last_seen = {}  # port -> last cumulative counter

    def start(self):
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        write_private(self.config_path, json.dumps({"server": "127.0.0.1", "method": SS_DEFAULT_METHOD,
                                                    "timeout": 60, "port_password": {}}))
        self.address = ("127.0.0.1", free_port())
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([SS_MANAGER, "-c", self.config_path, "--manager-address",
                                          "%s:%d" % self.address, "-D", self.state_dir, "--executable", SS_SERVER],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=self.workdir)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.command("ping", timeout=0.5).startswith("stat:"):
                    log.info("ss-manager started, pid %d", self.proc.pid)
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("ss-manager did not answer ping: %s" % tail(self.log_path, 600))

    def command(self, text, timeout=3.0):
        """Send one UDP command to ss-manager and return its reply."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(text.encode("utf-8"), self.address)
            return s.recv(65536).decode("utf-8", "replace")

    def pid_of(self, port):
        try:
            with open(os.path.join(self.state_dir, ".shadowsocks_%d.pid" % port)) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def add(self, protocol):
        user = protocol.users[0]
        request = {"server_port": protocol.port, "password": user.credential("ss"), "method": protocol.method}
        reply = self.command("add: " + json.dumps(request))
        if reply.strip() != "ok":
            raise KernelError(500, "INTERNAL", "ss-manager add port %d failed: %s" % (protocol.port, reply[:200]))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pid = self.pid_of(protocol.port)
            if pid is not None and wait_listening(protocol.port, pid, 0.2):
                break
            time.sleep(0.02)
        else:
            self.remove(protocol.port)
            raise KernelError(500, "INTERNAL", "ss-server on port %d did not start: %s"
                              % (protocol.port, tail(self.log_path, 600)))
        self.ports[protocol.port] = (protocol.id, user.id, protocol.protocol, user.metadata.get("subscription_id"))
        self.last_seen[protocol.port] = 0

    def remove(self, port):
        pid = self.pid_of(port)
        reply = self.command("remove: " + json.dumps({"server_port": port}))
        if reply.strip() != "ok":
            log.error("ss-manager remove port %d returned %r", port, reply[:200])
        if not wait_closed(port, 5) and pid is not None and pid_alive(pid):
            log.error("ss-server pid %d still listens on port %d after remove; sending SIGTERM", pid, port)
            os.kill(pid, signal.SIGTERM)
        self.ports.pop(port, None)
        self.last_seen.pop(port, None)

    def harvest(self):
        """Return {port: bytes since the last harvest} from ss-manager's cumulative per-port counters."""
        if self.proc is None or self.proc.poll() is not None:
            return {}
        try:
            reply = self.command("ping")
        except OSError as e:
            log.error("ss-manager ping failed: %s", e)
            return {}
        if not reply.startswith("stat:"):
            return {}
        deltas = {}
        for key, value in json.loads(reply[len("stat:"):]).items():
            port = int(key)
            if port not in self.ports:
                continue
            last = self.last_seen.get(port, 0)
            # a restarted ss-server counts from 0 again
            delta = value - last if value >= last else value
            self.last_seen[port] = value
            if delta > 0:
                deltas[port] = delta
        return deltas

    def stop(self):
        if self.proc is None:
            return
        children = [self.pid_of(port) for port in list(self.ports)]
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        log.info("ss-manager stopped, pid %d", self.proc.pid)
        # ss-manager sends SIGTERM to its ss-servers as it exits, so they get a moment before the check.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(pid is not None and pid_alive(pid) for pid in children):
            time.sleep(0.05)
        for pid in children:
            if pid is not None and pid_alive(pid):
                log.error("ss-server pid %d outlived ss-manager; sending SIGTERM", pid)
                os.kill(pid, signal.SIGTERM)
        self.proc = None


# --------------------------------------------------------------------------
# traffic reports
# --------------------------------------------------------------------------

class Reporter:
    """Counters not yet reported, and the one report in flight (resent with the same id until accepted)."""

    def __init__(self, workdir):
        self.lock = threading.Lock()
        self.pending = {}   # (protocol id, user id) -> record
        self.in_flight = None
        self.journal = os.path.join(workdir, "reports.jsonl")

    def add(self, protocol_id, user_id, protocol_name, subscription_id, up, down):
        if up <= 0 and down <= 0:
            return
        with self.lock:
            record = self.pending.setdefault((protocol_id, user_id), {
                "kernel_id": protocol_id, "user_id": user_id, "protocol": protocol_name,
                "subscription_id": subscription_id, "bytes_up": 0, "bytes_down": 0})
            record["bytes_up"] += up
            record["bytes_down"] += down

    def next_report(self):
        """Return the report to send: the one in flight, else a new one from the pending counters, else None."""
        with self.lock:
            if self.in_flight is None and self.pending:
                self.in_flight = {"report_id": str(uuid.uuid4()), "records": list(self.pending.values())}
                self.pending = {}
            return self.in_flight

    def dropped(self, report):
        with self.lock:
            if self.in_flight is report:
                self.in_flight = None

    def accepted(self, report, answer):
        with self.lock:
            if self.in_flight is report:
                self.in_flight = None
            with open(self.journal, "a") as f:
                f.write(json.dumps({"report_id": report["report_id"], "records": answer["records"],
                                    "status": answer["status"], "answer": answer["body"]}) + "\n")


# --------------------------------------------------------------------------
# the kernel
# --------------------------------------------------------------------------

class Kernel:
    """The state behind the control API: protocols, registrations, servers and counters."""

    def __init__(self, workdir, binding_ids=None):
        self.workdir = workdir
        self.lock = threading.RLock()
        self.protocols = {}  # id -> Protocol, in insertion order
        self.registrations = {"node": {}, "service": {}}
        self.cert, self.key = make_certificate(workdir)
        self.v2ray = V2ray(workdir, self.cert, self.key)
        self.ss = SsManager(workdir)
        self.reporter = Reporter(workdir)
        self.binding_ids = binding_ids or {}
        self.report_lock = threading.Lock()  # one report round at a time (timer and flush)
        self.events_journal = os.path.join(workdir, "events.jsonl")

    def start(self):
        self.ss.start()

    def stop(self):
        with self.lock:
            self.v2ray.stop()
            self.ss.stop()

    # -- protocols -----------------------------------------------------------

    def upsert(self, body):
        protocol = Protocol(body)
        with self.lock:
            for other in self.protocols.values():
                if other.id != protocol.id and other.port == protocol.port:
                    raise bad_request("listen port %d is already used by protocol %s" % (protocol.port, other.id))
            old = self.protocols.get(protocol.id)
            # the old ss-server goes first, so v2ray can take over its port
            if old is not None and not old.on_v2ray and not same_ss_service(old, protocol):
                self.drop_ss(old)
            if protocol.on_v2ray or (old is not None and old.on_v2ray):
                remaining = [p for p in self.protocols.values() if p.on_v2ray and p.id != protocol.id]
                if protocol.on_v2ray:
                    remaining.append(protocol)
                self.v2ray.apply(remaining, self.collect_v2ray)
            if not protocol.on_v2ray and protocol.users and protocol.port not in self.ss.ports:
                try:
                    self.ss.add(protocol)
                except KernelError:
                    self.protocols.pop(protocol.id, None)  # the old port is gone too
                    raise
            self.protocols[protocol.id] = protocol
            log.info("protocol %s (%s on port %d) now has %d users", protocol.id, protocol.protocol, protocol.port,
                     len(protocol.users))
            health = self.health_of(protocol)
        if old is None:
            self.notify("node_added", protocol, health)
        self.notify("node_healthy" if health == "healthy" else "node_unhealthy", protocol, health)
        return protocol.summary()

    def delete(self, protocol_id):
        with self.lock:
            protocol = self.protocols.get(protocol_id)
            if protocol is None:
                raise KernelError(404, "NOT_FOUND", "protocol %s not found" % protocol_id)
            if protocol.on_v2ray:
                remaining = [p for p in self.protocols.values() if p.on_v2ray and p.id != protocol_id]
                self.v2ray.apply(remaining, self.collect_v2ray)
            else:
                self.drop_ss(protocol)
            del self.protocols[protocol_id]
            log.info("protocol %s deleted", protocol_id)
        self.notify("node_removed", protocol, "offline")
        return {"id": protocol_id, "deleted": True}

    def drop_ss(self, protocol):
        if protocol.port in self.ss.ports:
            self.collect_ss(self.ss.harvest())
            self.ss.remove(protocol.port)

    def users_of(self, protocol_id):
        with self.lock:
            protocol = self.protocols.get(protocol_id)
            if protocol is None:
                raise KernelError(404, "NOT_FOUND", "protocol %s not found" % protocol_id)
            return [u.as_json() for u in protocol.users]

    def summaries(self):
        with self.lock:
            return [p.summary() for p in self.protocols.values()]

    def health_of(self, protocol):
        if protocol.on_v2ray:
            serving = (self.v2ray.running()
                       and bool(listening_inodes(protocol.port) & socket_inodes_of(self.v2ray.proc.pid)))
        elif not protocol.users:
            serving = True  # nothing to serve: ss-libev opens a port per user only
        else:
            pid = self.ss.pid_of(protocol.port)
            serving = pid is not None and bool(listening_inodes(protocol.port) & socket_inodes_of(pid))
        return "healthy" if serving else "unhealthy"

    def status(self, include_nodes):
        with self.lock:
            protocols = list(self.protocols.values())
            snapshot = {"generated_at": int(time.time() * 1000),
                        "users": {"total": len({u.id for p in protocols for u in p.users})}}
            if include_nodes:
                snapshot["nodes"] = [{"id": p.id, "role": p.role, "protocol": p.protocol, "tags": p.tags,
                                      "description": p.description,
                                      "health": {"status": self.health_of(p), "consecutive_failures": 0,
                                                 "last_failure_elapsed_ms": None},
                                      "interfaces": []} for p in protocols]
            return {"snapshot": snapshot}

    # -- registrations ---------------------------------------------------------

    def register(self, kind, body):
        allowed = NODE_EVENTS if kind == "node" else SERVICE_EVENTS
        if not isinstance(body, dict):
            raise bad_request("body: expected a JSON object")
        event = body.get("event")
        callback = body.get("callback")
        if event not in allowed:
            raise bad_request("event %r: expected one of %s" % (event, ", ".join(allowed)))
        if not isinstance(callback, str) or not callback.startswith(("http://", "https://")):
            raise bad_request("callback: missing or not an http(s) URL")
        secret = body.get("secret")
        if secret is not None and not isinstance(secret, str):
            raise bad_request("secret: expected a string")
        record = {"id": str(uuid.uuid4()), "event": event, "callback": callback,
                  "created_at_ms": int(time.time() * 1000)}
        with self.lock:
            self.registrations[kind][record["id"]] = dict(record, secret=secret or "")
        log.info("%s event %s registered, id %s", kind, event, record["id"])
        return record

    def registration_list(self, kind):
        with self.lock:
            return [{k: v for k, v in r.items() if k != "secret"} for r in self.registrations[kind].values()]

    def unregister(self, kind, registration_id):
        with self.lock:
            if self.registrations[kind].pop(registration_id, None) is None:
                raise KernelError(404, "NOT_FOUND", "registration %s not found" % registration_id)
        return {"id": registration_id, "deleted": True}

    def traffic_target(self):
        """Return (url, token, node id) for the last traffic service-event registration, or None."""
        with self.lock:
            targets = [r for r in self.registrations["service"].values() if r["event"] in TRAFFIC_EVENTS]
        if not targets:
            return None
        target = targets[-1]
        parts = urllib.parse.urlsplit(target["callback"])
        path = parts.path
        if path.endswith("/service-events"):
            path = path[: -len("/service-events")] + "/traffic"
        query = urllib.parse.parse_qs(parts.query)
        node_id = int(query["node_id"][0]) if query.get("node_id", [""])[0].isdigit() else 0
        url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        return url, target["secret"], node_id

    # -- counters and reports --------------------------------------------------

    def collect_v2ray(self, counters):
        for email, (up, down) in counters.items():
            owner = self.v2ray.emails.get(email)
            if owner is None:
                log.error("v2ray counted bytes for unknown email %s", email)
                continue
            self.reporter.add(owner[0], owner[1], owner[2], owner[3], up, down)

    def collect_ss(self, deltas):
        for port, amount in deltas.items():
            owner = self.ss.ports.get(port)
            if owner is not None:
                self.reporter.add(owner[0], owner[1], owner[2], owner[3], 0, amount)

    def harvest(self):
        with self.lock:
            self.collect_v2ray(self.v2ray.harvest())
            self.collect_ss(self.ss.harvest())

    def report(self):
        """Harvest the counters, send what is pending, and return the panel's responses (one per report sent)."""
        with self.report_lock:
            return self.report_locked()

    def report_locked(self):
        self.harvest()
        answers = []
        target = self.traffic_target()
        while True:
            report = self.reporter.next_report()
            if report is None:
                return answers
            if target is None:
                log.warning("traffic is pending but no traffic callback is registered")
                return answers
            answer = self.send(target, report)
            answers.append(answer)
            if answer["status"] in PERMANENT_REJECTIONS:
                log.error("traffic report %s dropped: the panel rejected it with %d", report["report_id"],
                          answer["status"])
                self.reporter.dropped(report)
                continue
            if answer["status"] // 100 != 2:
                return answers
            self.reporter.accepted(report, answer)

    def send(self, target, report):
        url, token, node_id = target
        records = []
        for record in report["records"]:
            item = {"user_id": int(record["user_id"]), "node_id": node_id, "protocol": record["protocol"],
                    "bytes_up": record["bytes_up"], "bytes_down": record["bytes_down"]}
            subscription_id = str(record["subscription_id"] or "")
            if subscription_id.isdigit():
                item["subscription_id"] = int(subscription_id)
            # the control API does not carry the panel's binding id, so --binding-ids supplies it
            binding_id = self.binding_ids.get(record["kernel_id"])
            if binding_id:
                item["binding_id"] = int(binding_id)
            records.append(item)
        # the traffic route takes the node in the body, not in the query
        status, text = post_json(url, {"report_id": report["report_id"], "node_id": node_id, "records": records},
                                 token)
        if status // 100 != 2:
            log.error("traffic report %s to %s: status %d: %s", report["report_id"], url, status, text[:300])
        else:
            log.info("traffic report %s with %d records: panel returned %d", report["report_id"], len(records), status)
        return {"status": status, "body": text, "records": records}

    # -- node events -------------------------------------------------------------

    def notify(self, event, protocol, health):
        """Send node event `event` about `protocol` to its registered callbacks from a background thread.

        znp calls the kernel from a request worker. A callback sent before that
        call returns could wait for a free worker, so a thread sends it later.
        """
        with self.lock:
            targets = [dict(r) for r in self.registrations["node"].values() if r["event"] == event]
        if not targets:
            return
        body = {"event": event, "id": protocol.id, "protocol": protocol.protocol, "status": health,
                "message": "%d users" % len(protocol.users), "observed_at": int(time.time())}
        threading.Thread(target=self.deliver, args=(targets, body), daemon=True).start()

    def deliver(self, targets, body):
        for target in targets:
            status, text = post_json(target["callback"], body, target["secret"])
            if status // 100 != 2:
                log.error("node event %s for %s to %s: status %d: %s", body["event"], body["id"], target["callback"],
                          status, text[:300])
            with self.lock:
                with open(self.events_journal, "a") as f:
                    f.write(json.dumps({"event": body, "callback": target["callback"], "status": status,
                                        "answer": text}) + "\n")


# --------------------------------------------------------------------------
# HTTP control API
# --------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    server_version = "znp-e2e-kernel/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)

    def send_json(self, status, value):
        data = json.dumps(value).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_json(self):
        """Read the request body and return it parsed, None when empty, or a JSONDecodeError when invalid."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError as e:
            return e

    def authorized(self):
        expected = self.server.authorization
        received = self.headers.get("Authorization") or ""
        return hmac.compare_digest(received.encode("utf-8"), expected.encode("utf-8"))

    def handle_any(self, method):
        parts = urllib.parse.urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = urllib.parse.parse_qs(parts.query)
        try:
            # the body is read in every case, so the next request on a kept-alive connection starts clean
            body = self.read_json()
            if method == "GET" and path == "/healthz":
                self.send_json(200, {"status": "ok"})
                return
            if not self.authorized():
                self.send_json(401, {"code": "UNAUTHORIZED", "message": "missing or wrong Basic credentials"})
                return
            if isinstance(body, ValueError):
                raise bad_request("body is not valid JSON: %s" % body)
            status, value = self.route(method, path, query, body)
            self.send_json(status, value)
        except KernelError as e:
            log.warning("%s %s: %d %s", method, path, e.status, e.message)
            self.send_json(e.status, {"code": e.code, "message": e.message})
        except Exception as e:  # a bug in the adapter must reach the panel as a 500, not a dropped connection
            log.exception("%s %s failed", method, path)
            self.send_json(500, {"code": "INTERNAL", "message": str(e)})

    def route(self, method, path, query, body):
        kernel = self.server.kernel
        segments = path.split("/")[1:]
        if segments[:1] != ["v1"]:
            raise KernelError(404, "NOT_FOUND", "no route %s" % path)
        rest = segments[1:]
        if method == "GET" and rest == ["status"]:
            include = ",".join(query.get("include", []))
            return 200, kernel.status("nodes" in include.split(","))
        if rest == ["protocols"]:
            if method == "GET":
                return 200, kernel.summaries()
            if method == "POST":
                return 200, kernel.upsert(body)
        if len(rest) == 2 and rest[0] == "protocols" and method == "DELETE":
            return 200, kernel.delete(urllib.parse.unquote(rest[1]))
        if len(rest) == 3 and rest[0] == "protocols" and rest[2] == "users" and method == "GET":
            return 200, kernel.users_of(urllib.parse.unquote(rest[1]))
        for prefix, kind in (("events", "node"), ("service-events", "service")):
            if rest == [prefix, "registrations"]:
                if method == "GET":
                    return 200, kernel.registration_list(kind)
                if method == "POST":
                    return 200, kernel.register(kind, body)
            if len(rest) == 3 and rest[:2] == [prefix, "registrations"] and method == "DELETE":
                return 200, kernel.unregister(kind, urllib.parse.unquote(rest[2]))
        if rest == ["traffic", "flush"] and method == "POST":
            return 200, {"reports": kernel.report()}
        raise KernelError(404, "NOT_FOUND", "no route %s %s" % (method, path))

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_DELETE(self):
        self.handle_any("DELETE")

    def do_PUT(self):
        self.handle_any("PUT")


class ControlServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port, kernel, access_key, secret_key):
        super().__init__(("127.0.0.1", port), Handler)
        self.kernel = kernel
        token = base64.b64encode(("%s:%s" % (access_key, secret_key)).encode("utf-8")).decode("ascii")
        self.authorization = "Basic " + token


def report_loop(kernel, interval, stopping):
    while not stopping.wait(interval):
        try:
            kernel.report()
        except Exception:  # keep reporting after a failed round, which retries the report with its id
            log.exception("traffic report round failed")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="directory for configs, logs, cert and reports (created)")
    parser.add_argument("--port", type=int, default=0, help="control API port on 127.0.0.1 (0: pick a free one)")
    parser.add_argument("--access-key", required=True, help="Basic auth user the panel must send")
    parser.add_argument("--secret-key", required=True, help="Basic auth password the panel must send")
    parser.add_argument("--report-interval", type=float, default=2.0, help="seconds between traffic reports")
    parser.add_argument("--binding-ids", default="{}",
                        help='JSON object {"<kernel protocol id>": <panel binding id>} for the binding_id of records')
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)

    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s kernel-adapter %(levelname)s %(message)s")
    os.makedirs(args.workdir, mode=0o700, exist_ok=True)
    kernel = Kernel(os.path.abspath(args.workdir), json.loads(args.binding_ids))
    stopping = threading.Event()
    server = None
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    try:
        kernel.start()
        server = ControlServer(args.port, kernel, args.access_key, args.secret_key)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        threading.Thread(target=report_loop, args=(kernel, args.report_interval, stopping), daemon=True).start()
        print("kernel-adapter: listening http://127.0.0.1:%d cert=%s" % (server.server_address[1], kernel.cert),
              flush=True)
        stopping.wait()
        log.info("stopping")
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        kernel.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

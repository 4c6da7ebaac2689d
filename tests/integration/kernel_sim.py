"""A kernel control API simulator on 127.0.0.1 for the integration tests.

It serves the control API of a node kernel ("Zero Core": status, protocols, event registrations,
node config) the way a kernel does, stores what it receives in memory, records every call, and can
be switched into failure modes at run time.

Usage:

    from tests.integration.kernel_sim import KernelSim

    sim = KernelSim(auth=("ak", "sk"))      # Basic auth; KernelSim(token="t") for Bearer,
    sim.start()                             # KernelSim() for no auth at all
    sim.url                                 # "http://127.0.0.1:<port>" (control_endpoint)
    sim.calls()                             # list of Call(method, path, query, headers, body)
    sim.calls(method="POST", path="/v1/protocols")   # filtered
    sim.clear_calls()
    sim.wait_for(lambda s: len(s.calls(path="/v1/status")) >= 2, timeout=5.0)
    sim.protocols                           # {kernel id: ProtocolUpsertRequest body}, a copy
    sim.event_registrations                 # {registration id: {"id", "event", "callback", ...}}
    sim.service_event_registrations         # same for service events
    sim.set_mode("500")                     # every /v1 call returns 500
    sim.set_mode("hang", delay=3.0)         # every /v1 call waits 3 s, then returns 200
    sim.set_mode("malformed")               # every /v1 call returns 200 with a broken JSON body
    sim.set_mode("401")                     # every /v1 call returns 401 whatever the credentials
    sim.set_mode("down")                    # the connection is closed without a response
    sim.set_mode("ok")                      # back to normal
    sim.set_health("node-a", "Healthy")     # a snapshot node; status in string form
    sim.set_health("node-b", {"Degraded": {"consecutive_failures": 2}})  # object form
    sim.remove_health("node-a")
    sim.set_node_config("name", {...})      # GET /v1/nodes/name/config returns this (404 otherwise)
    sim.set_node_config("name", {...}, headers={"ETag": '"r9"'})  # with extra response headers
    sim.set_clock_offset(120)               # Date headers run 120 s ahead of the real clock
    sim.stop()

Modes apply to the /v1 paths only; /healthz always returns {"status": "ok"} without auth, so a
test can check the simulator itself is alive. With `paths` given to set_mode (a tuple of path
prefixes such as ("/v1/status",)), the mode applies to those paths only.

Snapshot nodes: protocols upserted with POST /v1/protocols appear in `snapshot.nodes` with
health "Healthy" unless set_health sets another; set_health entries appear whether or not a
protocol exists.

Auth: with `auth=(ak, sk)` a request must carry "Authorization: Basic base64(ak:sk)"; with
`token=t` it must carry "Authorization: Bearer t" (both given: either is accepted). A wrong or
missing header gets 401 {"code": "UNAUTHORIZED", "message": ...}.

The class is used by several test modules: keep these names and their meaning, only add.
"""

import base64
import copy
import json
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("ok", "500", "hang", "malformed", "401", "down")


class Call:
    """One recorded request.

    `body` is the parsed JSON body, the raw text when it is not JSON, or None without a body.
    `headers` is a dict with lower-case names.
    """

    __slots__ = ("method", "path", "query", "headers", "body", "at")

    def __init__(self, method, path, query, headers, body, at):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.at = at

    def __repr__(self):
        return "Call(%s %s%s)" % (self.method, self.path, "?" + self.query if self.query else "")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # a client that timed out during a hang is expected


def _handler_class(sim):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # keep test output quiet
            pass

        def date_time_string(self, timestamp=None):
            return super().date_time_string(time.time() + sim._clock_offset if timestamp is None else timestamp)

        def _answer(self, status, value=None, raw=None, headers=None):
            if raw is not None:
                data = raw
            elif value is None:
                data = b""
            else:
                data = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, text in (headers or {}).items():
                self.send_header(name, text)
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method):
            parsed = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length > 0 else b""
            body = None
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode("utf-8", "replace")
            headers = {k.lower(): v for k, v in self.headers.items()}
            sim._record(Call(method, parsed.path, parsed.query, headers, body, time.monotonic()))

            if parsed.path == "/healthz":
                return self._answer(200, {"status": "ok"})
            mode, delay = sim._mode_for(parsed.path)
            if mode == "down":
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return None
            if mode == "hang":
                sim._stopping.wait(delay)

            if mode == "500":
                return self._answer(500, {"code": "INTERNAL", "message": "simulated failure"})
            if mode == "malformed":
                return self._answer(200, raw=b'{"snapshot": {"nodes": [')
            if mode == "401" or not sim._authorized(headers.get("authorization")):
                return self._answer(401, {"code": "UNAUTHORIZED", "message": "invalid credentials"})
            status, value, extra = sim._route(method, parsed.path, parsed.query, body)
            return self._answer(status, value, headers=extra)

        def do_GET(self):
            self._handle("GET")

        def do_POST(self):
            self._handle("POST")

        def do_DELETE(self):
            self._handle("DELETE")

        def do_PUT(self):
            self._handle("PUT")

        def do_PATCH(self):
            self._handle("PATCH")

    return Handler


class KernelSim:
    """The simulator. Thread-safe: tests may read and change it while the server handles requests."""

    def __init__(self, auth=None, token=None):
        self.auth = auth
        self.token = token
        self._lock = threading.Lock()
        self._calls = []
        self._mode = "ok"
        self._mode_delay = 0.0
        self._mode_paths = None
        self._protocols = {}
        self._health = {}
        self._events = {}
        self._service_events = {}
        self._node_configs = {}
        self._clock_offset = 0.0
        self._next_id = 1
        self._stopping = threading.Event()
        self._server = None
        self._thread = None
        self.port = None

    # life cycle

    def start(self):
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), _handler_class(self))
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="kernel-sim",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    # recorded calls

    def _record(self, call):
        with self._lock:
            self._calls.append(call)

    def calls(self, method=None, path=None):
        """Recorded calls in arrival order; `path` matches exactly, or as a prefix when it ends
        with '/'."""
        with self._lock:
            out = list(self._calls)
        if method is not None:
            out = [c for c in out if c.method == method]
        if path is not None:
            if path.endswith("/"):
                out = [c for c in out if c.path.startswith(path)]
            else:
                out = [c for c in out if c.path == path]
        return out

    def clear_calls(self):
        with self._lock:
            self._calls.clear()

    def wait_for(self, predicate, timeout=5.0, interval=0.02):
        """Poll predicate(self) until it is true; returns its last value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value or time.monotonic() >= deadline:
                return value
            time.sleep(interval)

    # state

    @property
    def protocols(self):
        with self._lock:
            return copy.deepcopy(self._protocols)

    @property
    def event_registrations(self):
        with self._lock:
            return copy.deepcopy(self._events)

    @property
    def service_event_registrations(self):
        with self._lock:
            return copy.deepcopy(self._service_events)

    def set_mode(self, mode, delay=0.0, paths=None):
        if mode not in MODES:
            raise ValueError("unknown mode %r (one of %s)" % (mode, ", ".join(MODES)))
        with self._lock:
            self._mode = mode
            self._mode_delay = float(delay)
            self._mode_paths = tuple(paths) if paths else None

    def set_health(self, node_id, status):
        with self._lock:
            self._health[node_id] = status

    def remove_health(self, node_id):
        with self._lock:
            self._health.pop(node_id, None)

    def set_node_config(self, name, value, headers=None):
        with self._lock:
            self._node_configs[str(name)] = (value, dict(headers or {}))

    def set_clock_offset(self, seconds):
        with self._lock:
            self._clock_offset = float(seconds)

    def _mode_for(self, path):
        with self._lock:
            if not path.startswith("/v1"):
                return "ok", 0.0
            if self._mode_paths and not any(path.startswith(p) for p in self._mode_paths):
                return "ok", 0.0
            return self._mode, self._mode_delay

    def _authorized(self, header):
        if self.auth is None and self.token is None:
            return True
        if header is None:
            return False
        if self.auth is not None:
            expected = "Basic " + base64.b64encode(("%s:%s" % self.auth).encode()).decode()
            if header == expected:
                return True
        if self.token is not None and header == "Bearer " + self.token:
            return True
        return False

    # routes

    def _take_id(self):
        value = self._next_id
        self._next_id += 1
        return str(value)

    def _summary(self, request):
        profile = request.get("profile") or {}
        return {
            "id": profile.get("id"),
            "role": profile.get("role"),
            "protocol": profile.get("protocol"),
            "tags": profile.get("tags") or [],
            "description": profile.get("description") or "",
            "listen": request.get("listen") or "",
            "connect": request.get("connect") or "",
            "user_count": len(request.get("users") or []),
        }

    def _snapshot(self):
        nodes = {}
        for kid, request in self._protocols.items():
            profile = request.get("profile") or {}
            nodes[kid] = {"id": kid, "role": profile.get("role"), "protocol": profile.get("protocol"),
                          "tags": profile.get("tags") or [], "description": "",
                          "health": {"status": "Healthy", "consecutive_failures": 0,
                                     "last_failure_elapsed_ms": None},
                          "interfaces": []}
        for kid, status in self._health.items():
            entry = nodes.setdefault(kid, {"id": kid, "role": "listener", "protocol": "http",
                                           "tags": [], "description": "", "interfaces": [],
                                           "health": {}})
            entry["health"] = {"status": copy.deepcopy(status), "consecutive_failures": 0,
                               "last_failure_elapsed_ms": None}
        return {"snapshot": {"generated_at": int(time.time() * 1000), "nodes": list(nodes.values())},
                "rate_limit_summary": {}}

    def _registrations(self, table, method, rest, body):
        if method == "GET" and rest == "":
            return 200, list(table.values()), None
        if method == "POST" and rest == "":
            if not isinstance(body, dict) or not body.get("event") or not body.get("callback"):
                return 400, {"code": "BAD_REQUEST", "message": "event and callback are required"}, None
            rid = self._take_id()
            record = {"id": rid, "event": body["event"], "callback": body["callback"],
                      "created_at_ms": int(time.time() * 1000)}
            if body.get("secret") is not None:
                record["secret"] = body["secret"]
            table[rid] = record
            return 200, {k: v for k, v in record.items() if k != "secret"}, None
        if method == "DELETE" and rest.startswith("/"):
            rid = urllib.parse.unquote(rest[1:])
            if table.pop(rid, None) is None:
                return 404, {"code": "NOT_FOUND", "message": "registration not found"}, None
            return 200, {"status": "deleted"}, None
        return 405, {"code": "METHOD_NOT_ALLOWED", "message": "not supported"}, None

    def _route(self, method, path, query, body):
        with self._lock:
            if path == "/v1/status" and method == "GET":
                return 200, self._snapshot(), None
            if path == "/v1/protocols" or path.startswith("/v1/protocols/"):
                rest = path[len("/v1/protocols"):]
                if method == "GET" and rest == "":
                    return 200, [self._summary(r) for r in self._protocols.values()], None
                if method == "POST" and rest == "":
                    profile = body.get("profile") if isinstance(body, dict) else None
                    if not isinstance(profile, dict) or not profile.get("id"):
                        return 400, {"code": "BAD_REQUEST", "message": "profile.id is required"}, None
                    self._protocols[profile["id"]] = copy.deepcopy(body)
                    return 200, self._summary(body), None
                if method == "DELETE" and rest.startswith("/"):
                    kid = urllib.parse.unquote(rest[1:])
                    if self._protocols.pop(kid, None) is None:
                        return 404, {"code": "NOT_FOUND", "message": "protocol not found"}, None
                    return 200, {"status": "deleted"}, None
            if path.startswith("/v1/events/registrations"):
                return self._registrations(self._events, method,
                                           path[len("/v1/events/registrations"):], body)
            if path.startswith("/v1/service-events/registrations"):
                return self._registrations(self._service_events, method,
                                           path[len("/v1/service-events/registrations"):], body)
            if path.startswith("/v1/nodes/") and path.endswith("/config") and method == "GET":
                name = urllib.parse.unquote(path[len("/v1/nodes/"):-len("/config")])
                if name in self._node_configs:
                    value, headers = copy.deepcopy(self._node_configs[name])
                    return 200, value, headers
                return 404, {"code": "NOT_FOUND", "message": "node not found"}, None
            return 404, {"code": "NOT_FOUND", "message": "no such path"}, None


if __name__ == "__main__":  # manual run: python3 -m tests.integration.kernel_sim
    sim = KernelSim(auth=("ak", "sk")).start()
    print(sim.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sim.stop()

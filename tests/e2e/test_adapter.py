"""The e2e kernel adapter alone, against the real v2ray and shadowsocks-libev servers and real clients.

Each test posts its own protocols (fresh ports, ids unique to the test) to one
adapter process, connects through the real servers with the real clients, and
checks who gets through. A small receiver in this process plays the panel's
traffic callback. Run from the repository root:
  /usr/bin/python3 -m unittest tests.e2e.test_adapter
"""

import base64
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.e2e import clients, kernel_adapter

HERE = os.path.dirname(os.path.abspath(__file__))
ACCESS_KEY = "e2e-ak-" + uuid.uuid4().hex[:8]
SECRET_KEY = "e2e-sk-" + uuid.uuid4().hex
WEBHOOK_TOKEN = "e2e-webhook-" + uuid.uuid4().hex
NODE_ID = 41
BINDING_IDS = {"traffic-vmess": 77}

adapter = None
page = None
panel = None
workdir = None


class Adapter:
    """The adapter as a subprocess, as the e2e test runs it."""

    def __init__(self, directory, report_interval=60.0):
        self.workdir = directory
        self.stderr_path = os.path.join(directory, "adapter.stderr")
        self.stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "kernel_adapter.py"), "--workdir", os.path.join(directory, "kernel"),
             "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, "--report-interval", str(report_interval),
             "--binding-ids", json.dumps(BINDING_IDS)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("kernel-adapter: listening "):
            self.proc.kill()
            raise AssertionError("adapter did not start: %r\n%s" % (line, kernel_adapter.tail(self.stderr_path)))
        fields = dict(part.split("=", 1) for part in line.split()[3:])
        self.url = line.split()[2]
        self.port = int(self.url.rsplit(":", 1)[1])
        self.cert = fields["cert"]

    def call(self, method, path, body=None, auth=True):
        headers = {}
        if auth:
            token = base64.b64encode(("%s:%s" % (ACCESS_KEY, SECRET_KEY)).encode()).decode()
            headers["Authorization"] = "Basic " + token
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=data, headers=headers)
            res = conn.getresponse()
            text = res.read().decode("utf-8")
            return res.status, (json.loads(text) if text else None)
        finally:
            conn.close()

    def children(self, marker=""):
        """Return the PIDs of the adapter's servers whose command line contains `marker`.

        They are found by the adapter's folder in their command line, because
        ss-manager's ss-servers run as daemons outside the process tree.
        """
        pids = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % name, "rb") as f:
                    cmdline = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            if (self.workdir in cmdline and marker in cmdline and int(name) != self.proc.pid
                    and kernel_adapter.pid_alive(int(name))):
                pids.append(int(name))
        return pids

    def stop(self):
        code = self.proc.poll()
        if code is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        return code


class Panel:
    """A stand-in for the panel's kernel callbacks.

    Traffic reports go to `reports`, and each gets the next queued status
    from `statuses` (200 when none is queued). Node events go to `events`.
    """

    def __init__(self):
        self.reports = []
        self.events = []
        self.statuses = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    record = {"path": self.path, "token": self.headers.get("X-ZNP-Webhook-Token"),
                              "body": json.loads(body), "status": 200}
                    if self.path.startswith("/api/v1/kernel/events"):
                        outer.events.append(record)
                    else:
                        record["status"] = outer.statuses.pop(0) if outer.statuses else 200
                        outer.reports.append(record)
                    status = record["status"]
                data = b'{"accepted": 1}'
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, fmt, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def setUpModule():
    global adapter, page, panel, workdir
    workdir = tempfile.mkdtemp(prefix="e2e-adapter-")
    try:
        page = clients.PageServer()
        panel = Panel()
        adapter = Adapter(workdir)
        status, _ = adapter.call("POST", "/v1/service-events/registrations", {
            "event": "user.traffic.reported", "secret": WEBHOOK_TOKEN,
            "callback": "http://127.0.0.1:%d/api/v1/kernel/service-events?node_id=%d" % (panel.port, NODE_ID)})
        if status != 200:
            raise AssertionError("registration failed: %s" % status)
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    if adapter is not None:
        adapter.stop()
    if page is not None:
        page.close()
    if panel is not None:
        panel.close()
    if workdir is not None and os.environ.get("ZNP_TEST_KEEP") != "1":
        shutil.rmtree(workdir, ignore_errors=True)


_sequence = [0]


def unique(prefix):
    _sequence[0] += 1
    return "%s-%d" % (prefix, _sequence[0])


def make_user(user_id):
    return {"id": str(user_id), "username": str(uuid.uuid4()), "password": os.urandom(32).hex(),
            "metadata": {"subscription_id": str(user_id * 10)}}


def protocol_body(kernel_id, protocol, port, users, settings=None):
    return {"listen": "127.0.0.1:%d" % port, "users": users,
            "profile": {"id": kernel_id, "role": "listener", "protocol": protocol, "profile": settings or {}}}


def node_for(protocol, port, user, method="aes-256-gcm"):
    """The node a parsed download would give for `user` on this protocol."""
    node = {"protocol": protocol, "name": "n", "host": "127.0.0.1", "port": port, "network": "tcp", "extra": {}}
    if protocol == "vmess":
        node.update(uuid=user["username"], alter_id=0, security="auto", header="none", tls=False)
    elif protocol == "vless":
        node.update(uuid=user["username"], encryption="none", flow="", tls=False)
    elif protocol == "trojan":
        node.update(password=user["password"], tls=True, sni=kernel_adapter.TLS_NAME, allow_insecure=False)
    else:
        node.update(protocol="ss", method=method, password=user["password"], plugin="", tls=False)
    return node


def fetch_as(protocol, port, user, label):
    client = clients.Client(node_for(protocol, port, user), workdir, adapter.cert, label)
    try:
        return client.fetch(page.url)
    finally:
        client.stop()


class AdapterTest(unittest.TestCase):
    def post(self, body):
        status, answer = adapter.call("POST", "/v1/protocols", body)
        self.assertEqual(status, 200, answer)
        return answer

    def assert_served(self, protocol, port, user):
        rc, status, body = fetch_as(protocol, port, user, unique(protocol))
        self.assertEqual((rc, status), (0, 200), "%s user %s was not served" % (protocol, user["id"]))
        self.assertEqual(body, page.page)

    def assert_rejected(self, protocol, port, user):
        rc, status, _ = fetch_as(protocol, port, user, unique(protocol))
        self.assertNotEqual(status, 200, "%s user %s got through (curl exit %d)" % (protocol, user["id"], rc))
        self.assertNotEqual(rc, 0)

    def test_auth_required(self):
        status, answer = adapter.call("GET", "/v1/protocols", auth=False)
        self.assertEqual(status, 401)
        self.assertEqual(answer["code"], "UNAUTHORIZED")
        status, _ = adapter.call("GET", "/healthz", auth=False)
        self.assertEqual(status, 200)

    def test_v2ray_serves_exactly_the_posted_users(self):
        alice, bob = make_user(101), make_user(102)
        ports = {p: kernel_adapter.free_port() for p in ("vmess", "vless", "trojan")}
        ids = {p: unique("v2-" + p) for p in ports}
        for protocol, port in ports.items():
            summary = self.post(protocol_body(ids[protocol], protocol, port, [alice, bob]))
            self.assertEqual(summary["user_count"], 2)
            self.assertEqual(summary["protocol"], protocol)
        for protocol, port in ports.items():
            self.assert_served(protocol, port, alice)
            self.assert_served(protocol, port, bob)

        for protocol, port in ports.items():
            self.post(protocol_body(ids[protocol], protocol, port, [alice]))
        for protocol, port in ports.items():
            self.assert_served(protocol, port, alice)
            self.assert_rejected(protocol, port, bob)
        status, users = adapter.call("GET", "/v1/protocols/%s/users" % ids["vless"])
        self.assertEqual(status, 200)
        self.assertEqual([u["id"] for u in users], [alice["id"]])

        for protocol in ports:
            status, _ = adapter.call("DELETE", "/v1/protocols/%s" % ids[protocol])
            self.assertEqual(status, 200)
        self.assertFalse(kernel_adapter.listening_inodes(ports["vmess"]))
        status, _ = adapter.call("DELETE", "/v1/protocols/%s" % ids["vmess"])
        self.assertEqual(status, 404)

    def test_shadowsocks_serves_the_posted_user(self):
        alice, bob = make_user(201), make_user(202)
        port = kernel_adapter.free_port()
        kernel_id = unique("ss")
        self.post(protocol_body(kernel_id, "shadowsocks", port, [alice], {"method": "chacha20-ietf-poly1305"}))
        client = clients.Client(node_for("ss", port, alice, "chacha20-ietf-poly1305"), workdir, None, unique("ss"))
        try:
            rc, status, body = client.fetch(page.url)
            self.assertEqual((rc, status), (0, 200))
            self.assertEqual(body, page.page)
        finally:
            client.stop()

        self.post(protocol_body(kernel_id, "shadowsocks", port, [bob], {"method": "chacha20-ietf-poly1305"}))
        client = clients.Client(node_for("ss", port, bob, "chacha20-ietf-poly1305"), workdir, None, unique("ss"))
        try:
            self.assertEqual(client.fetch(page.url)[:2], (0, 200))
        finally:
            client.stop()
        client = clients.Client(node_for("ss", port, alice, "chacha20-ietf-poly1305"), workdir, None, unique("ss"))
        try:
            rc, status, _ = client.fetch(page.url, timeout=3)
            self.assertNotEqual(status, 200)
            self.assertNotEqual(rc, 0)
        finally:
            client.stop()

        self.post(protocol_body(kernel_id, "shadowsocks", port, []))
        self.assertTrue(kernel_adapter.wait_closed(port, 5), "port %d still open without users" % port)
        adapter.call("DELETE", "/v1/protocols/%s" % kernel_id)

    def test_status_lists_protocol_health(self):
        port = kernel_adapter.free_port()
        kernel_id = unique("status")
        self.post(protocol_body(kernel_id, "vless", port, [make_user(301)]))
        status, answer = adapter.call("GET", "/v1/status?include=nodes")
        self.assertEqual(status, 200)
        nodes = {n["id"]: n for n in answer["snapshot"]["nodes"]}
        self.assertEqual(nodes[kernel_id]["health"]["status"], "healthy")
        self.assertEqual(nodes[kernel_id]["protocol"], "vless")
        status, summaries = adapter.call("GET", "/v1/protocols")
        self.assertIn(kernel_id, [s["id"] for s in summaries])
        adapter.call("DELETE", "/v1/protocols/%s" % kernel_id)

    def test_rejects_what_the_servers_cannot_serve(self):
        port = kernel_adapter.free_port()
        cases = [
            ("two users on one ss port", protocol_body(unique("bad"), "ss", port, [make_user(1), make_user(2)])),
            ("ss 2022 method", protocol_body(unique("bad"), "ss", port, [make_user(1)],
                                             {"method": "2022-blake3-aes-256-gcm"})),
            ("unknown protocol", protocol_body(unique("bad"), "hysteria2", port, [make_user(1)])),
            ("vmess id not a UUID", protocol_body(unique("bad"), "vmess", port,
                                                  [dict(make_user(1), username="not-a-uuid")])),
            ("public listen host", dict(protocol_body(unique("bad"), "vless", port, []), listen="192.0.2.1:443")),
            ("missing profile", {"listen": "127.0.0.1:%d" % port}),
            ("user without password", protocol_body(unique("bad"), "trojan", port, [{"id": "1", "username": "u"}])),
        ]
        for name, body in cases:
            with self.subTest(name):
                status, answer = adapter.call("POST", "/v1/protocols", body)
                self.assertEqual(status, 400, answer)
                self.assertEqual(answer["code"], "BAD_REQUEST")

    def test_registrations_list_and_delete(self):
        status, record = adapter.call("POST", "/v1/events/registrations", {
            "event": "node_healthy", "callback": "http://127.0.0.1:9/api/v1/kernel/events?node_id=1"})
        self.assertEqual(status, 200)
        self.assertEqual(record["event"], "node_healthy")
        status, records = adapter.call("GET", "/v1/events/registrations")
        self.assertIn(record["id"], [r["id"] for r in records])
        self.assertNotIn("secret", records[0])
        status, _ = adapter.call("DELETE", "/v1/events/registrations/%s" % record["id"])
        self.assertEqual(status, 200)
        status, _ = adapter.call("DELETE", "/v1/events/registrations/%s" % record["id"])
        self.assertEqual(status, 404)
        status, _ = adapter.call("POST", "/v1/events/registrations", {"event": "bogus", "callback": "http://x"})
        self.assertEqual(status, 400)

    def test_node_events_sent_to_registered_callbacks(self):
        callback = "http://127.0.0.1:%d/api/v1/kernel/events?node_id=%d" % (panel.port, NODE_ID)
        registrations = []
        for event in ("node_added", "node_healthy", "node_removed"):
            status, record = adapter.call("POST", "/v1/events/registrations",
                                          {"event": event, "callback": callback, "secret": WEBHOOK_TOKEN})
            self.assertEqual(status, 200)
            registrations.append(record["id"])
        kernel_id = unique("events")
        try:
            self.post(protocol_body(kernel_id, "vless", kernel_adapter.free_port(), [make_user(601)]))
            adapter.call("DELETE", "/v1/protocols/%s" % kernel_id)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with panel.lock:
                    events = [e for e in panel.events if e["body"]["id"] == kernel_id]
                if len(events) >= 3:
                    break
                time.sleep(0.05)
        finally:
            for registration in registrations:
                adapter.call("DELETE", "/v1/events/registrations/%s" % registration)
        by_event = {e["body"]["event"]: e for e in events}
        self.assertEqual(sorted(by_event), ["node_added", "node_healthy", "node_removed"])
        self.assertEqual(by_event["node_healthy"]["body"]["status"], "healthy")
        self.assertEqual(by_event["node_healthy"]["body"]["protocol"], "vless")
        self.assertEqual(by_event["node_removed"]["body"]["status"], "offline")
        self.assertEqual(by_event["node_added"]["token"], WEBHOOK_TOKEN)
        self.assertEqual(by_event["node_added"]["path"], "/api/v1/kernel/events?node_id=%d" % NODE_ID)

    def test_traffic_reported_once_per_report_id(self):
        alice = make_user(401)
        v2_port, ss_port = kernel_adapter.free_port(), kernel_adapter.free_port()
        v2_id, ss_id = "traffic-vmess", unique("traffic-ss")
        self.post(protocol_body(v2_id, "vmess", v2_port, [alice]))
        self.post(protocol_body(ss_id, "ss", ss_port, [alice]))
        adapter.call("POST", "/v1/traffic/flush")  # start from zero
        with panel.lock:
            panel.reports.clear()
            panel.statuses[:] = [500]
        self.assert_served("vmess", v2_port, alice)
        self.assert_served("ss", ss_port, alice)

        status, answer = adapter.call("POST", "/v1/traffic/flush")
        self.assertEqual(status, 200)
        self.assertEqual([a["status"] for a in answer["reports"]], [500])
        status, answer = adapter.call("POST", "/v1/traffic/flush")
        self.assertEqual([a["status"] for a in answer["reports"]], [200])
        self.assertEqual(panel.reports[0]["body"]["report_id"], panel.reports[1]["body"]["report_id"])
        self.assertEqual(panel.reports[1]["token"], WEBHOOK_TOKEN)
        self.assertEqual(panel.reports[1]["path"], "/api/v1/kernel/traffic")
        self.assertEqual(panel.reports[1]["body"]["node_id"], NODE_ID)
        records = [r for r in panel.reports[1]["body"]["records"] if r["protocol"] == "vmess"]
        self.assertEqual(len(records), 1)
        self.assertEqual(records[0]["user_id"], 401)
        self.assertEqual(records[0]["node_id"], NODE_ID)
        self.assertEqual(records[0]["subscription_id"], 4010)
        self.assertEqual(records[0]["binding_id"], 77)
        # v2ray counts plaintext payload: the page plus the HTTP headers
        self.assertGreater(records[0]["bytes_down"], len(page.page))
        self.assertLess(records[0]["bytes_down"], len(page.page) + 1000)
        self.assertGreater(records[0]["bytes_up"], 50)

        # ss-server sends its counters to ss-manager about every 10 s
        deadline = time.monotonic() + 25
        ss_records = [r for r in panel.reports[1]["body"]["records"] if r["protocol"] == "ss"]
        while not ss_records and time.monotonic() < deadline:
            time.sleep(1)
            _, answer = adapter.call("POST", "/v1/traffic/flush")
            for report in answer["reports"]:
                ss_records += [r for r in report.get("records", []) if r["protocol"] == "ss"]
        self.assertEqual(len(ss_records), 1, "no shadowsocks bytes reported within 25 s")
        self.assertEqual(ss_records[0]["user_id"], 401)
        self.assertNotIn("binding_id", ss_records[0])
        self.assertGreater(ss_records[0]["bytes_down"], len(page.page))
        ids = [r["body"]["report_id"] for r in panel.reports if r["status"] == 200]
        self.assertEqual(len(ids), len(set(ids)))
        adapter.call("DELETE", "/v1/protocols/%s" % v2_id)
        adapter.call("DELETE", "/v1/protocols/%s" % ss_id)

    def test_unchanged_push_keeps_servers_running(self):
        alice, bob = make_user(701), make_user(702)
        vless = protocol_body(unique("same-vless"), "vless", kernel_adapter.free_port(), [alice])
        ss = protocol_body(unique("same-ss"), "ss", kernel_adapter.free_port(), [alice])
        self.post(vless)
        self.post(ss)
        v2ray_pids = adapter.children("v2ray.json")
        ss_pids = adapter.children(".shadowsocks_%d." % int(ss["listen"].rsplit(":", 1)[1]))
        self.assertEqual(len(v2ray_pids), 1)
        self.assertEqual(len(ss_pids), 1)

        self.post(vless)
        self.post(ss)
        self.assertEqual(adapter.children("v2ray.json"), v2ray_pids)
        self.assertEqual(adapter.children(".shadowsocks_%d." % int(ss["listen"].rsplit(":", 1)[1])), ss_pids)

        self.post(dict(vless, users=[alice, bob]))
        self.assertNotEqual(adapter.children("v2ray.json"), v2ray_pids)
        adapter.call("DELETE", "/v1/protocols/%s" % vless["profile"]["id"])
        adapter.call("DELETE", "/v1/protocols/%s" % ss["profile"]["id"])

    def test_rejected_report_is_dropped(self):
        alice = make_user(801)
        port, kernel_id = kernel_adapter.free_port(), unique("dropped")
        self.post(protocol_body(kernel_id, "vless", port, [alice]))
        adapter.call("POST", "/v1/traffic/flush")  # start from zero
        with panel.lock:
            panel.statuses[:] = [400]
        self.assert_served("vless", port, alice)
        status, answer = adapter.call("POST", "/v1/traffic/flush")
        self.assertEqual([a["status"] for a in answer["reports"]], [400])
        status, answer = adapter.call("POST", "/v1/traffic/flush")
        self.assertEqual(answer["reports"], [], "a report the panel rejected as invalid was sent again")
        adapter.call("DELETE", "/v1/protocols/%s" % kernel_id)

    def test_zz_sigterm_stops_every_process(self):
        port = kernel_adapter.free_port()
        self.post(protocol_body(unique("last-ss"), "ss", port, [make_user(501)]))
        self.post(protocol_body(unique("last-vless"), "vless", kernel_adapter.free_port(), [make_user(501)]))
        children = adapter.children()
        self.assertGreaterEqual(len(children), 3, children)  # v2ray, ss-manager, ss-server
        self.assertEqual(adapter.stop(), 0, kernel_adapter.tail(adapter.stderr_path))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(kernel_adapter.pid_alive(p) for p in children):
            time.sleep(0.05)
        self.assertEqual([p for p in children if kernel_adapter.pid_alive(p)], [])


if __name__ == "__main__":
    unittest.main()

"""End to end with real proxy software: znp, the kernel adapter, v2ray, trojan-gfw and shadowsocks-libev.

The steps run in order and share what they create. A step whose input an
earlier step did not produce fails with "not run" and the missing input, so
a broken piece shows up as failures, never as a pass or a skip.

  1. the admin creates a user, a node pointing at the kernel adapter, VMess,
     VLESS, Trojan and shadowsocks bindings with one entry each, a plan
     mapped to them with traffic multipliers, and a subscription. A second
     user gets a plan that maps to the VLESS binding only.
  2. binding sync pushes each user to exactly the bindings their plan maps,
     on the adapter's real servers, and the health sync marks the bindings
     healthy (2b: the node status and kernel config syncs read the adapter)
  3. the user downloads the subscription as base64 share links and as
     Clash.Meta YAML
  4. the real clients (v2ray, trojan, ss-local), configured only from the
     parsed downloads, fetch a page from a local HTTP server
  5. the bytes the adapter read from the servers and reported appear in the
     user's traffic view, charged with the plan's multipliers
  6. the admin disables the subscription, the next sync removes the user,
     every server rejects the old credentials while the second user still
     gets through, and the download holds only the disabled notice
  7. the second user's reported traffic uses up a small quota, the next sync
     removes them from VLESS, the server rejects them, and their download
     holds only the quota notice

Run from the repository root (scripts/e2e-proxy.sh does):
  ZNP_BIN=build/znp /usr/bin/python3 -m unittest -v tests.e2e.test_proxy
"""

import base64
import json
import math
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

os.environ.setdefault("ZNP_TEST_RECORD", "0")  # the secret sweep of the integration suite does not run here

from tests.e2e import clients, kernel_adapter  # noqa: E402
from tests.integration import harness  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ADMIN = ("e2e-admin@example.com", "admin-pass-8Hq2")
USER = ("e2e-user@example.com", "member-pass-5Tk9")
# a second user whose plan maps to the VLESS binding only
OTHER = ("e2e-other@example.com", "member-pass-3Wd7")
WEBHOOK_TOKEN = "e2e-webhook-" + uuid.uuid4().hex
ACCESS_KEY = "e2e-ak-" + uuid.uuid4().hex[:12]
SECRET_KEY = "e2e-sk-" + uuid.uuid4().hex
# protocol -> traffic multiplier of the plan (the fractional one checks the rounding)
MULTIPLIERS = {"vmess": 2, "vless": 3, "trojan": 4, "ss": 1.5}
PROTOCOLS = ("vmess", "vless", "trojan", "ss")
DISABLED_NOTICES = ("Subscription disabled", "订阅已停用")
QUOTA_NOTICES = ("Traffic quota used up", "流量已用尽")

server = None
adapter = None
page = None
workdir = None
state = {}


class E2eServer(harness.Server):
    """znp with the webhook token set and kernel callbacks pointing at its own HTTP port."""

    def config_dict(self):
        config = super().config_dict()
        config["webhook"] = {"shared_token": WEBHOOK_TOKEN}
        config["kernel"] = {"callback_base_url": "http://127.0.0.1:%d" % self.http_port}
        return config


class AdapterProcess:
    """tests/e2e/kernel_adapter.py as a subprocess on a given port."""

    def __init__(self, directory, port, binding_ids):
        self.stderr_path = os.path.join(directory, "adapter.stderr")
        self.journal = os.path.join(directory, "kernel", "reports.jsonl")
        self.events_journal = os.path.join(directory, "kernel", "events.jsonl")
        with open(self.stderr_path, "ab") as err:
            # reports go out only on /v1/traffic/flush, so the journal lists every report the panel received
            self.proc = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "kernel_adapter.py"), "--workdir",
                 os.path.join(directory, "kernel"), "--port", str(port), "--access-key", ACCESS_KEY,
                 "--secret-key", SECRET_KEY, "--report-interval", "3600", "--binding-ids", json.dumps(binding_ids)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("kernel-adapter: listening http://127.0.0.1:%d " % port):
            self.stop()
            raise AssertionError("kernel adapter did not start on port %d: %r\n%s" % (
                port, line, kernel_adapter.tail(self.stderr_path)))
        self.port = port
        self.cert = line.split("cert=", 1)[1].strip()

    def call(self, method, path, body=None):
        token = base64.b64encode(("%s:%s" % (ACCESS_KEY, SECRET_KEY)).encode()).decode()
        res = harness.http_request(self.port, method, path, body=body, headers={"Authorization": "Basic " + token},
                                   timeout=30)
        return res.status, (res.json() if res.body else None)

    def reports(self):
        return read_journal(self.journal)

    def events(self):
        return read_journal(self.events_journal)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def read_journal(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def setUpModule():
    global server, page, workdir
    workdir = tempfile.mkdtemp(prefix="e2e-proxy-")
    page = clients.PageServer()
    server = E2eServer("e2e-proxy")
    try:
        server.create_admin(*ADMIN)
        server.start()
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    try:
        if adapter is not None:
            code = adapter.stop()
            if code != 0:
                print("e2e: kernel adapter exited with %s\n%s" % (code, kernel_adapter.tail(adapter.stderr_path)),
                      file=sys.stderr)
        if server is not None and server.proc is not None:
            server.stop_expect_clean()
    finally:
        if server is not None:
            server.cleanup()
        if page is not None:
            page.close()
        if workdir is not None and not harness.KEEP:
            shutil.rmtree(workdir, ignore_errors=True)


_tokens = {}


def token_of(address, password):
    if address not in _tokens:
        _tokens[address] = server.access_token(address, password)
    return _tokens[address]


def call(method, path, account=ADMIN, body=None):
    return server.request(method, path, body=body, headers={"Authorization": "Bearer " + token_of(*account)},
                          timeout=30)


def charged(raw, multiplier):
    """round(raw x multiplier), halves away from zero, as the traffic spec states."""
    return int(math.floor(raw * multiplier + 0.5))


class ProxyEndToEndTest(unittest.TestCase):
    maxDiff = None

    def need(self, *keys):
        missing = [k for k in keys if k not in state]
        if missing:
            self.fail("not run: %s missing because an earlier step failed (see its failure above)"
                      % ", ".join(missing))

    def expect(self, res, status, action):
        if res.status != status:
            self.fail("%s: expected HTTP %d, got %r" % (action, status, res))
        return res.json()

    # ------------------------------------------------------------------
    def test_1_admin_creates_node_bindings_plan_subscription(self):
        global adapter
        user = self.expect(call("POST", "/api/v1/admin/users", body={"email": USER[0], "password": USER[1]}),
                           201, "create user")["user"]
        adapter_port = kernel_adapter.free_port()
        node = self.expect(call("POST", "/api/v1/admin/nodes", body={
            "name": "e2e-node", "control_endpoint": "http://127.0.0.1:%d" % adapter_port,
            "control_access_key": ACCESS_KEY, "control_secret_key": SECRET_KEY, "access_address": "127.0.0.1",
            "status": 1}), 201, "create node")["node"]

        ports = {p: kernel_adapter.free_port() for p in PROTOCOLS}
        binding_profiles = {"vmess": {}, "vless": {}, "trojan": {}, "ss": {"method": "aes-256-gcm"}}
        entry_profiles = {"vmess": {}, "vless": {}, "trojan": {"sni": kernel_adapter.TLS_NAME}, "ss": {}}
        bindings, entries = {}, {}
        for protocol in PROTOCOLS:
            binding = self.expect(call("POST", "/api/v1/admin/protocol-bindings", body={
                "node_id": node["id"], "name": "e2e " + protocol, "protocol": protocol, "role": "listener",
                "kernel_id": "e2e-" + protocol, "listen": "127.0.0.1:%d" % ports[protocol],
                "access_port": ports[protocol], "profile": binding_profiles[protocol]}),
                201, "create %s binding" % protocol)["binding"]
            bindings[protocol] = binding
            entries[protocol] = self.expect(call("POST", "/api/v1/admin/protocol-entries", body={
                "binding_id": binding["id"], "name": "E2E %s 测试" % protocol.upper(), "entry_address": "127.0.0.1",
                "entry_port": ports[protocol], "profile": entry_profiles[protocol]}),
                201, "create %s entry" % protocol)["entry"]

        plan = self.expect(call("POST", "/api/v1/admin/plans", body={
            "name": "E2E plan", "binding_ids": [bindings[p]["id"] for p in PROTOCOLS],
            "traffic_multipliers": MULTIPLIERS, "duration_days": 30, "status": 1}), 201, "create plan")["plan"]
        self.assertEqual(sorted(plan["binding_ids"]), sorted(bindings[p]["id"] for p in PROTOCOLS))
        subscription = self.expect(call("POST", "/api/v1/admin/subscriptions", body={
            "user_id": user["id"], "plan_id": plan["id"]}), 201, "create subscription")["subscription"]

        other = self.expect(call("POST", "/api/v1/admin/users", body={"email": OTHER[0], "password": OTHER[1]}),
                            201, "create second user")["user"]
        vless_plan = self.expect(call("POST", "/api/v1/admin/plans", body={
            "name": "E2E VLESS only", "binding_ids": [bindings["vless"]["id"]], "duration_days": 30, "status": 1}),
            201, "create VLESS-only plan")["plan"]
        other_subscription = self.expect(call("POST", "/api/v1/admin/subscriptions", body={
            "user_id": other["id"], "plan_id": vless_plan["id"]}), 201, "create second subscription")["subscription"]

        adapter = AdapterProcess(workdir, adapter_port, {b["kernel_id"]: b["id"] for b in bindings.values()})
        state.update(user=user, node=node, ports=ports, bindings=bindings, entries=entries, plan=plan,
                     subscription=subscription, other=other, other_subscription=other_subscription)

    # ------------------------------------------------------------------
    def test_2_binding_sync_pushes_the_user(self):
        self.need("node", "bindings", "subscription")
        node_id = state["node"]["id"]
        answer = self.expect(call("POST", "/api/v1/admin/protocol-bindings/sync", body={"node_ids": [node_id]}),
                             200, "binding sync")
        outcomes = {r["binding_id"]: (r["status"], r["message"]) for r in answer["results"]}
        for protocol, binding in state["bindings"].items():
            self.assertEqual(outcomes.get(binding["id"], (None, "no result"))[0], 1,
                             "%s binding sync: %r" % (protocol, outcomes.get(binding["id"])))

        status, summaries = adapter.call("GET", "/v1/protocols")
        self.assertEqual(status, 200)
        counts = {s["id"]: s["user_count"] for s in summaries}
        self.assertEqual(counts, {"e2e-vmess": 1, "e2e-vless": 2, "e2e-trojan": 1, "e2e-ss": 1})
        user_id, other_id = str(state["user"]["id"]), str(state["other"]["id"])
        for protocol in PROTOCOLS:
            status, users = adapter.call("GET", "/v1/protocols/e2e-%s/users" % protocol)
            self.assertEqual(status, 200)
            expected = sorted([user_id, other_id]) if protocol == "vless" else [user_id]
            self.assertEqual(sorted(u["id"] for u in users), expected, protocol)
        status, users = adapter.call("GET", "/v1/protocols/e2e-vmess/users")
        self.assertEqual(users[0]["metadata"].get("subscription_id"), str(state["subscription"]["id"]))

        status, registrations = adapter.call("GET", "/v1/service-events/registrations")
        callbacks = [r["callback"] for r in registrations]
        self.assertIn("http://127.0.0.1:%d/api/v1/kernel/service-events?node_id=%d" % (server.http_port, node_id),
                      callbacks)

        # the adapter also sends each protocol's health as a node event; znp matches it to the binding
        expected = {b["kernel_id"]: b["id"] for b in state["bindings"].values()}
        matched = harness.wait_until(lambda: self.bindings_from_events(expected), timeout=10)
        self.assertEqual(matched, expected, "node events: %r" % adapter.events())

        answer = self.expect(call("POST", "/api/v1/admin/protocol-bindings/status/sync",
                                  body={"node_ids": [node_id]}), 200, "binding health sync")
        self.assertEqual(answer["results"][0]["status"], 1, answer)
        for protocol, binding in state["bindings"].items():
            fresh = self.expect(call("GET", "/api/v1/admin/protocol-bindings/%d" % binding["id"]), 200,
                                "read %s binding" % protocol)["binding"]
            self.assertEqual(fresh["sync_status"], 2, fresh)
            self.assertEqual(fresh["health_status"], 1, fresh)
        state["kernel_uuid"] = users[0]["username"]
        state["synced"] = True

    def test_2b_node_status_and_kernel_sync(self):
        self.need("synced")
        node_id = state["node"]["id"]
        answer = self.expect(call("POST", "/api/v1/admin/nodes/status/sync", body={"node_ids": [node_id]}), 200,
                             "node status sync")
        self.assertEqual((answer["results"][0]["status"], answer["results"][0]["node_status"]), (1, 1), answer)
        answer = self.expect(call("POST", "/api/v1/admin/nodes/%d/kernels/sync" % node_id, body={}), 200,
                             "node kernel sync")
        self.assertEqual(answer["node_id"], node_id)
        self.assertEqual(answer["message"], "sync complete")
        # the adapter has no per-node config (it returns 404), so znp matches its protocol list to the bindings
        self.assertIn(answer["kernel"]["config"]["id"], ["e2e-" + p for p in PROTOCOLS])

    def bindings_from_events(self, expected):
        """Map kernel id -> binding id from the node_healthy events znp accepted (None until all `expected` are in)."""
        matched = {}
        for delivery in adapter.events():
            if delivery["event"]["event"] != "node_healthy" or delivery["status"] != 200:
                continue
            answer = json.loads(delivery["answer"])
            if answer["status"] == "accepted" and answer["health_status"] == 1:
                matched[delivery["event"]["id"]] = answer["binding_id"]
        return matched if set(matched) >= set(expected) else None

    # ------------------------------------------------------------------
    def download(self, flag, account=USER, subscription_key="subscription"):
        token_key = "token-" + subscription_key
        if token_key not in state:
            # the user's list shows active subscriptions only, so the token is read while it is active
            listing = self.expect(call("GET", "/api/v1/user/subscriptions", account), 200, "list subscriptions")
            ours = [s for s in listing["subscriptions"] if s["id"] == state[subscription_key]["id"]]
            self.assertEqual(len(ours), 1, listing)
            state[token_key] = ours[0]["token"]
        res = server.request("GET", "/api/v1/subscriptions/%s?flag=%s" % (state[token_key], flag),
                             headers={"User-Agent": "e2e-test"})
        self.assertEqual(res.status, 200, res)
        return res

    def test_3_download_links_and_clash(self):
        self.need("synced")
        links = self.download("v2rayn")
        self.assertIsNotNone(links.header("subscription-userinfo"))
        link_nodes = clients.parse_share_links(links.body)
        clash = self.download("clash-meta")
        clash_nodes, _ = clients.parse_clash(clash.body)

        for label, nodes in (("links", link_nodes), ("clash", clash_nodes)):
            by_protocol = {}
            for node in nodes:
                by_protocol.setdefault(node["protocol"], []).append(node)
            self.assertEqual(sorted(by_protocol), sorted(PROTOCOLS), "%s: %r" % (label, nodes))
            for protocol in PROTOCOLS:
                self.assertEqual(len(by_protocol[protocol]), 1, "%s %s" % (label, protocol))
                node = by_protocol[protocol][0]
                self.assertEqual(node["name"], state["entries"][protocol]["name"], label)
                self.assertEqual((node["host"], node["port"]), ("127.0.0.1", state["ports"][protocol]), label)
            state[label] = {p: by_protocol[p][0] for p in PROTOCOLS}

        links_by, clash_by = state["links"], state["clash"]
        self.assertEqual(links_by["vmess"]["uuid"], state["kernel_uuid"])
        self.assertEqual(links_by["vless"]["uuid"], state["kernel_uuid"])
        self.assertEqual(links_by["trojan"]["sni"], kernel_adapter.TLS_NAME)
        self.assertEqual(links_by["ss"]["method"], "aes-256-gcm")
        for key, protocols in (("uuid", ("vmess", "vless")), ("password", ("trojan", "ss")),
                               ("method", ("ss",)), ("sni", ("trojan",))):
            for protocol in protocols:
                self.assertEqual(links_by[protocol][key], clash_by[protocol][key], "%s %s" % (protocol, key))

        other_nodes = clients.parse_share_links(self.download("v2rayn", OTHER, "other_subscription").body)
        self.assertEqual([n["protocol"] for n in other_nodes], ["vless"], other_nodes)
        self.assertNotEqual(other_nodes[0]["uuid"], links_by["vless"]["uuid"])
        state["other_vless"] = other_nodes[0]

    # ------------------------------------------------------------------
    def test_4_real_clients_fetch_through_each_proxy(self):
        self.need("links", "clash")
        for source in ("links", "clash"):
            for protocol in PROTOCOLS:
                with self.subTest(source=source, protocol=protocol):
                    client = clients.Client(state[source][protocol], workdir, adapter.cert,
                                            "%s-%s" % (source, protocol))
                    try:
                        rc, status, body = client.fetch(page.url)
                    finally:
                        client.stop()
                    self.assertEqual((rc, status), (0, 200), "%s %s: curl exit %d" % (source, protocol, rc))
                    self.assertEqual(body, page.page)
        state["fetched"] = True

    def test_4b_second_user_only_on_vless(self):
        self.need("other_vless", "links")
        rc, status, body = self.fetch_once(state["other_vless"], "other-vless")
        self.assertEqual((rc, status), (0, 200), "second user on VLESS: curl exit %d" % rc)
        self.assertEqual(body, page.page)
        # the second user's UUID on the VMess binding, which their plan does not map
        rc, status, _ = self.fetch_once(dict(state["links"]["vmess"], uuid=state["other_vless"]["uuid"]),
                                        "other-vmess")
        self.assertNotEqual(status, 200, "VMess served a user whose plan does not map it")
        self.assertNotEqual(rc, 0)

    def fetch_once(self, node, label):
        client = clients.Client(node, workdir, adapter.cert, label)
        try:
            return client.fetch(page.url)
        finally:
            client.stop()

    # ------------------------------------------------------------------
    def test_5_reported_bytes_in_traffic_view(self):
        self.need("fetched")
        # two fetches per protocol, and ss-server hands its counters to ss-manager about every 10 s
        deadline = time.monotonic() + 30
        while True:
            status, answer = adapter.call("POST", "/v1/traffic/flush")
            self.assertEqual(status, 200)
            for report in answer["reports"]:
                self.assertEqual(report["status"], 200, "panel rejected a traffic report: %r" % report)
            raw = self.raw_by_protocol()
            if raw.get("ss", 0) >= 2 * len(page.page) or time.monotonic() > deadline:
                break
            time.sleep(1)
        # each fetch moves the page plus headers (and for shadowsocks the AEAD overhead, about 100 bytes)
        for protocol in PROTOCOLS:
            self.assertGreaterEqual(raw.get(protocol, 0), 2 * len(page.page), "%s bytes reported: %r" % (protocol, raw))
            self.assertLessEqual(raw.get(protocol, 0), 2 * (len(page.page) + 2000), "%s bytes reported: %r"
                                 % (protocol, raw))

        expected_charged = {}
        for report in adapter.reports():
            for record in report["records"]:
                if record["user_id"] != state["user"]["id"]:
                    continue
                amount = record["bytes_up"] + record["bytes_down"]
                expected_charged[record["protocol"]] = (expected_charged.get(record["protocol"], 0)
                                                        + charged(amount, MULTIPLIERS[record["protocol"]]))
            self.assertEqual(report["status"], 200)
            self.assertEqual(json.loads(report["answer"])["failed"], 0, report["answer"])

        view = self.expect(call("GET", "/api/v1/user/subscriptions/%d/traffic" % state["subscription"]["id"],
                                USER), 200, "traffic view")
        seen_raw, seen_charged = {}, {}
        for item in view["items"]:
            seen_raw[item["protocol"]] = seen_raw.get(item["protocol"], 0) + item["raw_bytes"]
            seen_charged[item["protocol"]] = seen_charged.get(item["protocol"], 0) + item["charged_bytes"]
        self.assertEqual(seen_raw, raw)
        self.assertEqual(seen_charged, expected_charged)
        self.assertEqual(view["total_raw_bytes"], sum(raw.values()))
        self.assertEqual(view["total_charged_bytes"], sum(expected_charged.values()))

        subscription = self.expect(call("GET", "/api/v1/admin/subscriptions/%d" % state["subscription"]["id"]),
                                   200, "read subscription")["subscription"]
        self.assertEqual(subscription["traffic_used_bytes"], sum(expected_charged.values()))

    def raw_by_protocol(self):
        """Raw bytes per protocol that the adapter reported (and the panel accepted) for the first user."""
        raw = {}
        for report in adapter.reports():
            for record in report["records"]:
                if record["user_id"] != state["user"]["id"]:
                    continue
                raw[record["protocol"]] = raw.get(record["protocol"], 0) + record["bytes_up"] + record["bytes_down"]
        return raw

    # ------------------------------------------------------------------
    def test_6_disabled_subscription_is_rejected_everywhere(self):
        self.need("links", "subscription", "synced")
        subscription_id = state["subscription"]["id"]
        self.expect(call("POST", "/api/v1/admin/subscriptions/%d/disable" % subscription_id,
                         body={"reason": "end-to-end test"}), 200, "disable subscription")
        answer = self.expect(call("POST", "/api/v1/admin/protocol-bindings/sync",
                                  body={"node_ids": [state["node"]["id"]]}), 200, "binding sync after disable")
        self.assertEqual(sorted(r["status"] for r in answer["results"]), [1, 1, 1, 1], answer)
        status, summaries = adapter.call("GET", "/v1/protocols")
        self.assertEqual({s["id"]: s["user_count"] for s in summaries},
                         {"e2e-vmess": 0, "e2e-vless": 1, "e2e-trojan": 0, "e2e-ss": 0})

        outcomes = {}

        def attempt(protocol):
            client = clients.Client(state["links"][protocol], workdir, adapter.cert, "old-" + protocol)
            try:
                outcomes[protocol] = client.fetch(page.url, timeout=4)
            finally:
                client.stop()

        threads = [threading.Thread(target=attempt, args=(p,)) for p in PROTOCOLS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for protocol in PROTOCOLS:
            with self.subTest(protocol=protocol):
                self.assertIn(protocol, outcomes, "the %s client did not start" % protocol)
                rc, status, body = outcomes[protocol]
                self.assertNotEqual(status, 200, "%s still served the old credentials" % protocol)
                self.assertNotEqual(rc, 0)
                self.assertNotEqual(body, page.page)
        rc, status, _ = self.fetch_once(state["other_vless"], "other-vless-after")
        self.assertEqual((rc, status), (0, 200), "second user lost VLESS when the first was disabled")

        nodes = clients.parse_share_links(self.download("v2rayn").body)
        self.assertEqual(len(nodes), 1, nodes)
        self.assertTrue(any(n in nodes[0].get("name", "") for n in DISABLED_NOTICES), nodes)
        clash_nodes, _ = clients.parse_clash(self.download("clash-meta").body)
        self.assertEqual(len(clash_nodes), 1, clash_nodes)
        self.assertTrue(any(n in clash_nodes[0].get("name", "") for n in DISABLED_NOTICES), clash_nodes)


    # ------------------------------------------------------------------
    def test_7_used_up_quota_removes_user(self):
        self.need("other_vless", "other_subscription", "synced")
        subscription_id = state["other_subscription"]["id"]
        used = self.expect(call("GET", "/api/v1/admin/subscriptions/%d" % subscription_id), 200,
                           "read second subscription")["subscription"]["traffic_used_bytes"]
        # room for less than one more page
        quota = used + len(page.page) // 2
        self.expect(call("PATCH", "/api/v1/admin/subscriptions/%d" % subscription_id,
                         body={"traffic_total_bytes": quota}), 200, "lower the second user's quota")
        rc, status, _ = self.fetch_once(state["other_vless"], "other-vless-quota")
        self.assertEqual((rc, status), (0, 200), "second user on VLESS before the report: curl exit %d" % rc)
        status, answer = adapter.call("POST", "/v1/traffic/flush")
        self.assertEqual([r["status"] for r in answer["reports"]], [200], answer)
        self.assertIn(state["other"]["id"], [r["user_id"] for r in answer["reports"][0]["records"]])

        subscription = self.expect(call("GET", "/api/v1/admin/subscriptions/%d" % subscription_id), 200,
                                   "read second subscription")["subscription"]
        self.assertGreaterEqual(subscription["traffic_used_bytes"], quota)
        answer = self.expect(call("POST", "/api/v1/admin/protocol-bindings/sync",
                                  body={"node_ids": [state["node"]["id"]]}), 200, "binding sync after quota")
        self.assertEqual(sorted(r["status"] for r in answer["results"]), [1, 1, 1, 1], answer)
        status, users = adapter.call("GET", "/v1/protocols/e2e-vless/users")
        self.assertEqual(users, [])

        rc, status, body = self.fetch_once(state["other_vless"], "other-vless-used-up")
        self.assertNotEqual(status, 200, "VLESS still served a user whose quota is used up")
        self.assertNotEqual(rc, 0)
        nodes = clients.parse_share_links(self.download("v2rayn", OTHER, "other_subscription").body)
        self.assertEqual(len(nodes), 1, nodes)
        self.assertTrue(any(n in nodes[0].get("name", "") for n in QUOTA_NOTICES), nodes)


if __name__ == "__main__":
    unittest.main()

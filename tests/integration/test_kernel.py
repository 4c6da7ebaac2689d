"""Kernel control: the status poller, node status sync and node kernel config sync.

One server for the module and kernel simulators (tests/integration/kernel_sim.py)
on 127.0.0.1. Polled nodes use a 1 s interval and a 1 s timeout so the module
stays short. Nodes that a test does not want polled get interval 0 (with
backoff off, which the node API requires for interval 0).
Run alone: /usr/bin/python3 tests/integration/run.py test_kernel
"""

import base64
import json
import os
import time
import unittest
import urllib.request

from tests.integration import harness
from tests.integration.kernel_sim import KernelSim

server = None
ADMIN = ("kernel-admin@example.com", "admin-pass-8Kq3")
NODES = "/api/v1/admin/nodes"
_tokens = {}
_counter = [0]
_sims = []


def setUpModule():
    global server
    server = harness.Server("kernel")
    try:
        server.create_admin(*ADMIN)
        server.start()
    except BaseException:
        server.cleanup()
        raise


def tearDownModule():
    try:
        for sim in _sims:
            sim.stop()
        server.stop_expect_clean()
    finally:
        server.cleanup()


def sim_started(**kwargs):
    sim = KernelSim(**kwargs).start()
    _sims.append(sim)
    return sim


def call(method, path, body=None, token=True, timeout=10.0):
    headers = {}
    if token:
        if "admin" not in _tokens:
            _tokens["admin"] = server.access_token(*ADMIN)
        headers["Authorization"] = "Bearer " + _tokens["admin"]
    return server.request(method, path, body=body, headers=headers, timeout=harness.scaled(timeout))


def psql(sql):
    return harness.EmbeddedCluster(server.data_dir).psql(sql, database=server.database_name()).strip()


def unique(prefix="kn"):
    _counter[0] += 1
    return "%s-%d-%d" % (prefix, os.getpid(), _counter[0])


def make_node(sim, polled=True, **fields):
    body = {"name": unique(), "control_endpoint": sim.url, "kernel_http_timeout_seconds": 1}
    if polled:
        body.update(kernel_status_poll_interval_seconds=1, kernel_status_poll_backoff_max_interval_seconds=2,
                    kernel_offline_probe_max_interval_seconds=1)
    else:
        body.update(kernel_status_poll_interval_seconds=0, kernel_status_poll_backoff_enabled=False)
    body.update(fields)
    res = call("POST", NODES, body)
    if res.status != 201:
        raise AssertionError("create node failed: %r" % res)
    return res.json()["node"]


def node_status(node_id):
    return int(psql("SELECT status FROM nodes WHERE id = %d" % node_id))


def wait_status(node_id, status, timeout=8.0):
    deadline = time.monotonic() + harness.scaled(timeout)
    while time.monotonic() < deadline:
        if node_status(node_id) == status:
            return True
        time.sleep(0.1)
    return node_status(node_id) == status


def status_calls(sim):
    return sim.calls(method="GET", path="/v1/status")


class PollerTest(unittest.TestCase):
    def test_basic_auth_sent_and_node_online(self):
        sim = sim_started(auth=("ak-one", "sk-one"))
        node = make_node(sim, control_access_key="ak-one", control_secret_key="sk-one",
                         control_token="ignored-when-keys-set")
        self.assertEqual(node["status"], 2)
        self.assertTrue(wait_status(node["id"], 1), "node never came online")
        expected = "Basic " + base64.b64encode(b"ak-one:sk-one").decode()
        self.assertTrue(status_calls(sim))
        self.assertTrue(all(c.headers.get("authorization") == expected for c in status_calls(sim)))

    def test_bearer_token_sent(self):
        sim = sim_started(token="tok-two")
        node = make_node(sim, control_token="tok-two")
        self.assertTrue(wait_status(node["id"], 1), "node never came online")
        self.assertEqual(status_calls(sim)[0].headers.get("authorization"), "Bearer tok-two")

    def test_wrong_credentials_offline(self):
        sim = sim_started(auth=("ak-9c1e", "right"))
        node = make_node(sim, control_access_key="ak-9c1e", control_secret_key="sk-wrong-6f1d2a", status=1)
        self.assertTrue(wait_status(node["id"], 2), "node stayed online with rejected credentials")
        with open(server.log_path, encoding="utf-8", errors="replace") as f:
            log = f.read()
        self.assertNotIn("sk-wrong-6f1d2a", log)
        self.assertIn("access_key=ak***1e", log)

    def _check_failure_mode(self, mode, delay=0.0):
        sim = sim_started()
        node = make_node(sim)
        self.assertTrue(wait_status(node["id"], 1), "node never came online")
        sim.set_mode(mode, delay=delay)
        self.assertTrue(wait_status(node["id"], 2), "node not offline after %s" % mode)
        row = psql("SELECT failures > 0, last_error <> '' FROM node_poll_state WHERE node_id = %d" % node["id"])
        self.assertEqual(row, "t|t")
        sim.set_mode("ok")
        self.assertTrue(wait_status(node["id"], 1), "node did not come back after %s" % mode)
        return sim, node

    def test_answer_500_offline_then_back(self):
        self._check_failure_mode("500")

    def test_malformed_json_offline_then_back(self):
        self._check_failure_mode("malformed")

    def test_hang_offline_without_blocking_requests(self):
        hanging = sim_started()
        healthy = sim_started()
        node = make_node(hanging)
        other = make_node(healthy)
        self.assertTrue(wait_status(node["id"], 1) and wait_status(other["id"], 1))
        hanging.set_mode("hang", delay=30)
        # while the kernel hangs, requests return at once and the healthy node keeps being polled
        before = len(status_calls(healthy))
        deadline = time.monotonic() + harness.scaled(6)
        slowest = 0.0
        pings = 0
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            res = call("GET", "/api/v1/ping", token=False)
            slowest = max(slowest, time.monotonic() - t0)
            pings += 1
            self.assertEqual(res.status, 200)
            if len(status_calls(healthy)) - before >= 2 and node_status(node["id"]) == 2:
                break
            time.sleep(0.1)
        self.assertGreater(pings, 3)
        self.assertLess(slowest, harness.scaled(0.5))
        self.assertGreaterEqual(len(status_calls(healthy)) - before, 2)
        self.assertEqual(node_status(node["id"]), 2, "hanging kernel did not mark the node offline")
        self.assertEqual(node_status(other["id"]), 1)
        hanging.set_mode("ok")
        self.assertTrue(wait_status(node["id"], 1))

    def test_recovery_pushes_bindings(self):
        sim = sim_started()
        sim.set_mode("500")
        node = make_node(sim)
        kernel_id = unique("kid")
        psql("INSERT INTO protocol_bindings (node_id, protocol, role, kernel_id, listen)"
             " VALUES (%d, 'http', 'listener', '%s', '0.0.0.0:18080')" % (node["id"], kernel_id))
        self.assertTrue(sim.wait_for(lambda s: len(status_calls(s)) >= 2, timeout=harness.scaled(6)))
        self.assertEqual(node_status(node["id"]), 2)
        sim.set_mode("ok")
        self.assertTrue(wait_status(node["id"], 1))
        pushed = sim.wait_for(lambda s: kernel_id in s.protocols, timeout=harness.scaled(8))
        self.assertTrue(pushed, "no POST /v1/protocols after the node came back: %r" % sim.calls())

    def test_disabled_and_maintenance_untouched(self):
        sim = sim_started()
        sim.set_mode("500")
        maintenance = make_node(sim, status=3, kernel_status_poll_backoff_enabled=False)
        disabled_sim = sim_started()
        disabled = make_node(disabled_sim, status=4)
        off_sim = sim_started()
        sync_off = make_node(off_sim, status=1, status_sync_enabled=False)
        # a third poll starts only after the results of the first two were applied
        self.assertTrue(sim.wait_for(lambda s: len(status_calls(s)) >= 3, timeout=harness.scaled(10)))
        self.assertEqual(node_status(maintenance["id"]), 3)
        self.assertEqual(node_status(disabled["id"]), 4)
        self.assertEqual(node_status(sync_off["id"]), 1)
        self.assertEqual(status_calls(disabled_sim), [])
        self.assertEqual(status_calls(off_sim), [])

    def test_settings_change_resets_state(self):
        sim = sim_started()
        sim.set_mode("500")
        node = make_node(sim)
        self.assertTrue(sim.wait_for(lambda s: len(status_calls(s)) >= 2, timeout=harness.scaled(6)))
        self.assertGreater(int(psql("SELECT failures FROM node_poll_state WHERE node_id = %d" % node["id"])), 0)
        other = sim_started()
        res = call("PATCH", "%s/%d" % (NODES, node["id"]), {"control_endpoint": other.url})
        self.assertEqual(res.status, 200, res)
        self.assertTrue(wait_status(node["id"], 1))
        self.assertTrue(status_calls(other))
        self.assertEqual(psql("SELECT failures FROM node_poll_state WHERE node_id = %d" % node["id"]), "0")

    def test_metrics_count_calls(self):
        res = call("GET", "/metrics", token=False)
        self.assertEqual(res.status, 200)
        text = res.body.decode()
        self.assertIn('znp_node_sync_calls_total{call="status",result="ok"}', text)
        self.assertIn("znp_node_sync_call_duration_seconds_bucket", text)


class StatusSyncTest(unittest.TestCase):
    def test_results_per_node(self):
        good = sim_started()
        bad = sim_started()
        bad.set_mode("500")
        a = make_node(good, polled=False)
        b = make_node(bad, polled=False, status=1)
        c = make_node(good, polled=False, status=4)
        m = make_node(good, polled=False, status=3)
        started = time.monotonic()
        res = call("POST", NODES + "/status/sync", {"node_ids": [a["id"], b["id"], c["id"], 987654321, m["id"],
                                                                 a["id"]]})
        self.assertEqual(res.status, 200, res)
        self.assertLess(time.monotonic() - started, harness.scaled(5))
        results = res.json()["results"]
        self.assertEqual([r["node_id"] for r in results], [a["id"], b["id"], c["id"], 987654321, m["id"]])
        self.assertEqual([r["status"] for r in results], [1, 2, 3, 2, 1])
        self.assertEqual([r["node_status"] for r in results], [1, 2, 4, 0, 3])
        self.assertEqual(results[0]["message"], "ok")
        self.assertTrue(results[1]["message"].startswith("kernel control: 500: "), results[1])
        self.assertEqual(results[2]["message"], "node disabled")
        self.assertEqual(results[3]["message"], "node not found")
        self.assertEqual(node_status(a["id"]), 1)
        self.assertEqual(node_status(b["id"]), 2)
        # one status call per distinct kernel for a, m (same endpoint and settings) and none for the disabled node
        self.assertEqual(len(good.calls(path="/v1/status")), 1)
        self.assertEqual(good.calls(path="/v1/status")[0].query, "include=nodes")

    def test_messages_follow_accept_language(self):
        disabled = make_node(sim_started(), polled=False, status=4)
        headers = {"Authorization": "Bearer " + server.access_token(*ADMIN), "Accept-Language": "zh-CN"}
        res = server.request("POST", NODES + "/status/sync", body={"node_ids": [disabled["id"], 987654322]},
                             headers=headers)
        self.assertEqual(res.status, 200, res)
        self.assertEqual([r["message"] for r in res.json()["results"]], ["节点已停用", "节点不存在"])

    def test_empty_and_unauthenticated_rejected(self):
        self.assertEqual(call("POST", NODES + "/status/sync", {"node_ids": []}).status, 400)
        self.assertEqual(call("POST", NODES + "/status/sync", {"node_ids": [1]}, token=False).status, 401)


class KernelSyncTest(unittest.TestCase):
    def path(self, node, query=""):
        return "%s/%d/kernels/sync%s" % (NODES, node["id"], query)

    def test_config_by_name_stored_and_node_online(self):
        sim = sim_started(auth=("a", "b"))
        node = make_node(sim, polled=False, control_access_key="a", control_secret_key="b")
        sim.set_node_config(node["name"], {"node_id": node["name"], "protocol": "http", "endpoint": "http://k:1",
                                           "revision": "r7", "payload": {"listen": ":443"}, "metadata": {}})
        res = call("POST", self.path(node))
        self.assertEqual(res.status, 200, res)
        body = res.json()
        self.assertEqual((body["node_id"], body["protocol"], body["revision"]), (node["id"], "http", "r7"))
        self.assertEqual(body["message"], "sync complete")
        self.assertEqual(body["kernel"]["config"], {"listen": ":443"})
        self.assertEqual(body["kernel"]["status"], 2)
        self.assertEqual(node_status(node["id"]), 1)
        kernels = call("GET", "%s/%d/kernels" % (NODES, node["id"])).json()["kernels"]
        self.assertEqual([(k["protocol"], k["revision"]) for k in kernels], [("http", "r7")])

    def test_etag_revision_and_clock_skew(self):
        sim = sim_started()
        node = make_node(sim, polled=False)
        sim.set_node_config(node["name"], {"payload": {"a": 1}}, headers={"ETag": '"rev-e1"'})
        sim.set_clock_offset(300)
        res = call("POST", self.path(node))
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["revision"], '"rev-e1"')
        self.assertTrue(res.json()["message"].startswith("sync complete, but the kernel clock is"), res.json())

    def test_fallback_to_protocol_list(self):
        sim = sim_started()
        node = make_node(sim, polled=False)
        kernel_id = unique("kid")
        psql("INSERT INTO protocol_bindings (node_id, protocol, role, kernel_id) VALUES (%d, 'http', 'listener', '%s')"
             % (node["id"], kernel_id))
        res = call("POST", self.path(node))
        self.assertEqual(res.status, 404, res)
        req = urllib.request.Request(sim.url + "/v1/protocols", method="POST", data=json.dumps(
            {"profile": {"id": kernel_id, "role": "listener", "protocol": "http", "profile": {}}}).encode())
        urllib.request.urlopen(req, timeout=5).read()
        res = call("POST", self.path(node))
        self.assertEqual(res.status, 200, res)
        self.assertEqual(len(res.json()["revision"]), 64)
        paths = [c.path for c in sim.calls(method="GET")]
        self.assertIn("/v1/nodes/%s/config" % node["name"], paths)
        self.assertIn("/v1/nodes/%d/config" % node["id"], paths)

    def test_disabled_and_maintenance_keep_status(self):
        sim = sim_started()
        for status in (3, 4):
            node = make_node(sim, polled=False, status=status)
            sim.set_node_config(node["name"], {"revision": "r1", "payload": {}})
            res = call("POST", self.path(node))
            self.assertEqual(res.status, 200, res)
            self.assertEqual(node_status(node["id"]), status)

    def test_errors(self):
        sim = sim_started()
        node = make_node(sim, polled=False)
        res = call("POST", self.path(node, "?protocol=vless"))
        self.assertEqual(res.status, 400, res)
        self.assertEqual(res.json()["error"], "kernel_provider_not_found")
        sim.set_mode("500")
        res = call("POST", self.path(node))
        self.assertEqual(res.status, 502, res)
        self.assertEqual(res.json()["error"], "kernel_unavailable")
        self.assertEqual(call("POST", "%s/%d/kernels/sync" % (NODES, 987654321)).status, 404)


if __name__ == "__main__":
    unittest.main()

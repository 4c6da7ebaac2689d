"""Protocol bindings, entries and binding sync (/api/v1/admin/protocol-bindings, /protocol-entries).

One server for the module and kernel simulators on 127.0.0.1 (tests/integration/kernel_sim.py).
Each test makes its own nodes, bindings, plans and users with unique names, so tests do not depend
on order. The test that restarts the server with a new webhook secret runs last by its class name.
Run alone: /usr/bin/python3 tests/integration/run.py test_bindings
"""

import base64
import os
import re
import threading
import unittest

from tests.integration import harness
from tests.integration.kernel_sim import KernelSim

server = None
sim = None
ADMIN = ("bindings-admin@example.com", "admin-pass-7Hq2")
PASSWORD = "member-pass-3Kd9"
BINDINGS = "/api/v1/admin/protocol-bindings"
ENTRIES = "/api/v1/admin/protocol-entries"
CALLBACK_BASE = "https://panel.example.com"
SECRET = "hook-secret-1f9a"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
_tokens = {}
_counter = [0]


def setUpModule():
    global server, sim
    sim = KernelSim(auth=("ak-b", "sk-b")).start()
    server = harness.Server("bindings", config={"webhook": {"shared_token": SECRET},
                                                 "kernel": {"callback_base_url": CALLBACK_BASE}})
    try:
        server.create_admin(*ADMIN)
        server.start()
    except BaseException:
        server.cleanup()
        sim.stop()
        raise


def tearDownModule():
    try:
        server.stop_expect_clean()
    finally:
        server.cleanup()
        sim.stop()


def call(method, path, body=None, timeout=10.0):
    headers = {"Authorization": "Bearer " + admin()}
    return server.request(method, path, body=body, headers=headers, timeout=timeout)


def admin():
    if ADMIN[0] not in _tokens:
        _tokens[ADMIN[0]] = server.access_token(*ADMIN)
    return _tokens[ADMIN[0]]


def psql(sql):
    return harness.EmbeddedCluster(server.data_dir).psql(sql, database=server.database_name()).strip()


def unique(prefix):
    _counter[0] += 1
    return "%s-%d-%d" % (prefix, os.getpid(), _counter[0])


def make_node(kernel=None, **fields):
    kernel = kernel or sim
    body = {"name": unique("node"), "control_endpoint": kernel.url, "control_access_key": kernel.auth[0],
            "control_secret_key": kernel.auth[1], "status": 1}
    body.update(fields)
    res = call("POST", "/api/v1/admin/nodes", body)
    if res.status != 201:
        raise AssertionError("create node failed: %r" % res)
    return res.json()["node"]


def make_binding(node_id, **fields):
    body = {"node_id": node_id, "name": unique("binding"), "protocol": "vless", "role": "listener",
            "kernel_id": unique("kid"), "access_port": 443}
    body.update(fields)
    res = call("POST", BINDINGS, body)
    if res.status != 201:
        raise AssertionError("create binding failed: %r" % res)
    return res.json()["binding"]


def new_user():
    address = "%s@example.com" % unique("bind-user")
    res = call("POST", "/api/v1/admin/users", {"email": address, "password": PASSWORD})
    if res.status != 201:
        raise AssertionError("create user failed: %r" % res)
    return res.json()["user"]["id"]


def make_plan(binding_ids):
    body = {"name": unique("plan"), "traffic_limit_bytes": 1000, "devices_limit": 3, "binding_ids": binding_ids,
            "status": 2, "visible": True}
    res = call("POST", "/api/v1/admin/plans", body)
    if res.status != 201:
        raise AssertionError("create plan failed: %r" % res)
    return res.json()["plan"]


def subscribe(user_id, plan_id):
    res = call("POST", "/api/v1/admin/subscriptions", {"user_id": user_id, "plan_id": plan_id})
    if res.status != 201:
        raise AssertionError("create subscription failed: %r" % res)
    return res.json()["subscription"]


def sync(binding_id):
    res = call("POST", "%s/%d/sync" % (BINDINGS, binding_id), timeout=30.0)
    if res.status != 200:
        raise AssertionError("sync failed: %r" % res)
    return res.json()


def pushed_user_ids(kernel, kernel_id):
    request = kernel.protocols.get(kernel_id)
    if request is None:
        return None
    return sorted(int(u["id"]) for u in request.get("users") or [])


def audit_count(action, resource_id):
    return int(psql("SELECT count(*) FROM audit_logs WHERE action = '%s' AND resource_id = '%d'"
                    % (action, resource_id)))


class BindingCrudTest(unittest.TestCase):
    def test_create_get_update_delete(self):
        node = make_node()
        res = call("POST", BINDINGS, {"node_id": node["id"], "name": " HK vless ", "protocol": "VLESS",
                                      "role": "listener", "kernel_id": "crud-" + unique("k"), "access_port": 8443,
                                      "tags": [" b ", "a", "b", ""], "profile": {"flow": "x"},
                                      "metadata": {"owner": "ops"}})
        self.assertEqual(res.status, 201, res)
        binding = res.json()["binding"]
        self.assertEqual(binding["name"], "HK vless")
        self.assertEqual(binding["protocol"], "vless")
        self.assertEqual(binding["node_name"], node["name"])
        self.assertEqual(binding["tags"], ["a", "b"])
        self.assertEqual(binding["sync_status"], 1)
        self.assertEqual(binding["health_status"], 0)
        self.assertEqual(binding["status"], 1)
        self.assertEqual(binding["profile"], {"flow": "x"})
        self.assertEqual(binding["last_synced_at"], 0)
        self.assertEqual(audit_count("admin.protocol_binding.create", binding["id"]), 1)

        res = call("GET", "%s/%d" % (BINDINGS, binding["id"]))
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["binding"], binding)

        res = call("PATCH", "%s/%d" % (BINDINGS, binding["id"]), {"name": None, "description": "edge",
                                                                   "sync_status": 2})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["binding"]["name"], "")
        self.assertEqual(res.json()["binding"]["description"], "edge")
        self.assertEqual(res.json()["binding"]["sync_status"], 2)
        # a change of what the kernel receives makes the binding pending again
        res = call("PATCH", "%s/%d" % (BINDINGS, binding["id"]), {"access_port": 9443})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["binding"]["sync_status"], 1)
        self.assertEqual(res.json()["binding"]["tags"], ["a", "b"])
        self.assertEqual(audit_count("admin.protocol_binding.update", binding["id"]), 2)

        res = call("PATCH", "%s/%d" % (BINDINGS, binding["id"]), {})
        self.assertEqual(res.status, 400, res)

        res = call("GET", "/api/v1/admin/protocols")
        self.assertEqual(res.status, 200, res)
        protocols = res.json()["protocols"]
        self.assertIn("vless", protocols)
        self.assertEqual(protocols, sorted(protocols))

        res = call("DELETE", "%s/%d" % (BINDINGS, binding["id"]))
        self.assertEqual(res.status, 204, res)
        self.assertEqual(call("GET", "%s/%d" % (BINDINGS, binding["id"])).status, 404)
        self.assertEqual(call("DELETE", "%s/%d" % (BINDINGS, binding["id"])).status, 404)
        self.assertEqual(audit_count("admin.protocol_binding.delete", binding["id"]), 1)

    def test_list_filters_and_pagination(self):
        node = make_node()
        made = [make_binding(node["id"], protocol="ss") for _ in range(3)]
        make_binding(node["id"], protocol="vless")
        res = call("GET", "%s?node_id=%d&protocol=SS&per_page=2&sort=id&direction=asc" % (BINDINGS, node["id"]))
        self.assertEqual(res.status, 200, res)
        body = res.json()
        self.assertEqual([b["id"] for b in body["bindings"]], [made[0]["id"], made[1]["id"]])
        self.assertEqual(body["pagination"], {"page": 1, "per_page": 2, "total_count": 3, "has_next": True,
                                              "has_prev": False})
        res = call("GET", "%s?node_id=%d&protocol=ss&per_page=2&page=2&sort=id&direction=asc"
                   % (BINDINGS, node["id"]))
        self.assertEqual([b["id"] for b in res.json()["bindings"]], [made[2]["id"]])
        self.assertFalse(res.json()["pagination"]["has_next"])
        self.assertTrue(res.json()["pagination"]["has_prev"])
        res = call("GET", "%s?per_page=101" % BINDINGS)
        self.assertEqual(res.status, 400, res)

    def test_create_validation(self):
        node = make_node()
        other = make_node()
        taken = make_binding(node["id"])
        base = {"node_id": node["id"], "protocol": "vless", "role": "listener", "kernel_id": "v-" + unique("k")}

        cases = [
            ("missing node_id", {"node_id": None}, 400),
            ("unknown node", {"node_id": 99999999}, 404),
            ("bad role", {"role": "both"}, 400),
            ("bad protocol", {"protocol": "bad proto"}, 400),
            ("blank kernel_id", {"kernel_id": ""}, 400),
            ("kernel_id with a slash", {"kernel_id": "a/b"}, 400),
            ("port out of range", {"access_port": 70000}, 400),
            ("listen not a port", {"listen": "http"}, 400),
            ("listen port zero", {"listen": "0.0.0.0:0"}, 400),
            ("profile not an object", {"profile": [1]}, 400),
            ("status 3", {"status": 3}, 400),
            ("kernel_id taken on the node", {"kernel_id": taken["kernel_id"]}, 409),
        ]
        for label, change, expected in cases:
            with self.subTest(label):
                body = dict(base)
                body.update(change)
                body = {k: v for k, v in body.items() if v is not None}
                res = call("POST", BINDINGS, body)
                self.assertEqual(res.status, expected, res)

        # the same kernel id on another node is fine
        res = call("POST", BINDINGS, dict(base, node_id=other["id"], kernel_id=taken["kernel_id"]))
        self.assertEqual(res.status, 201, res)
        res = call("PATCH", "%s/%d" % (BINDINGS, res.json()["binding"]["id"]), {"node_id": node["id"]})
        self.assertEqual(res.status, 409, res)
        self.assertEqual(res.json()["error"], "binding_kernel_id_taken", res)
        self.assertEqual([d["field"] for d in res.json()["details"]], ["$.kernel_id"], res)
        res = call("PATCH", "%s/%d" % (BINDINGS, taken["id"]), {"health_status": 0})
        self.assertEqual(res.status, 400, res)
        res = call("PATCH", "%s/%d" % (BINDINGS, taken["id"]), {"role": None})
        self.assertEqual(res.status, 400, res)
        res = call("PATCH", "%s/999999" % BINDINGS, {"name": "x"})
        self.assertEqual(res.status, 404, res)


class EntryTest(unittest.TestCase):
    def test_entry_crud_and_hosts(self):
        node = make_node()
        binding = make_binding(node["id"], name="edge hk", protocol="vless")
        other = make_binding(node["id"], protocol="ss")
        res = call("POST", ENTRIES, {"binding_id": binding["id"], "entry_address": "[2001:DB8::1]",
                                     "entry_port": 443, "tags": ["x", " x "]})
        self.assertEqual(res.status, 201, res)
        entry = res.json()["entry"]
        self.assertEqual(entry["entry_address"], "2001:db8::1")
        self.assertEqual(entry["name"], "edge hk")
        self.assertEqual(entry["protocol"], "vless")
        self.assertEqual(entry["tags"], ["x"])
        self.assertEqual(entry["node_id"], node["id"])
        self.assertEqual(entry["binding_status"], 1)
        self.assertEqual(audit_count("admin.protocol_entry.create", entry["id"]), 1)

        res = call("GET", "%s/%d" % (ENTRIES, entry["id"]))
        self.assertEqual(res.json()["entry"], entry)

        res = call("PATCH", "%s/%d" % (ENTRIES, entry["id"]), {"entry_address": "Edge.Example.COM", "tags": None})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["entry"]["entry_address"], "edge.example.com")
        self.assertEqual(res.json()["entry"]["tags"], [])

        # moving to another binding takes its protocol; a different requested protocol is rejected
        res = call("PATCH", "%s/%d" % (ENTRIES, entry["id"]), {"binding_id": other["id"], "protocol": "vless"})
        self.assertEqual(res.status, 400, res)
        res = call("PATCH", "%s/%d" % (ENTRIES, entry["id"]), {"binding_id": other["id"]})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["entry"]["protocol"], "ss")
        self.assertEqual(res.json()["entry"]["binding_id"], other["id"])

        res = call("GET", "%s?binding_id=%d" % (ENTRIES, other["id"]))
        self.assertEqual([e["id"] for e in res.json()["entries"]], [entry["id"]])
        self.assertEqual(res.json()["pagination"]["total_count"], 1)

        res = call("DELETE", "%s/%d" % (ENTRIES, entry["id"]))
        self.assertEqual(res.status, 204, res)
        self.assertEqual(call("GET", "%s/%d" % (ENTRIES, entry["id"])).status, 404)
        self.assertEqual(audit_count("admin.protocol_entry.delete", entry["id"]), 1)

    def test_entry_validation(self):
        node = make_node()
        binding = make_binding(node["id"], protocol="vless")
        unnamed = make_binding(node["id"], name="")
        base = {"binding_id": binding["id"], "entry_address": "1.2.3.4", "entry_port": 443}
        cases = [
            ("zone id", {"entry_address": "fe80::1%eth0"}, 400),
            ("bracketed zone id", {"entry_address": "[fe80::1%25eth0]"}, 400),
            ("blank address", {"entry_address": "   "}, 400),
            ("bad address", {"entry_address": "2001:db8::g"}, 400),
            ("port zero", {"entry_port": 0}, 400),
            ("port too big", {"entry_port": 65536}, 400),
            ("protocol differs", {"protocol": "ss"}, 400),
            ("unknown binding", {"binding_id": 99999999}, 404),
            ("no name to take", {"binding_id": unnamed["id"]}, 400),
        ]
        for label, change, expected in cases:
            with self.subTest(label):
                res = call("POST", ENTRIES, dict(base, **change))
                self.assertEqual(res.status, expected, res)
        res = call("POST", ENTRIES, dict(base, protocol="VLESS", name="named"))
        self.assertEqual(res.status, 201, res)
        entry = res.json()["entry"]
        res = call("PATCH", "%s/%d" % (ENTRIES, entry["id"]), {})
        self.assertEqual(res.status, 400, res)
        res = call("PATCH", "%s/%d" % (ENTRIES, entry["id"]), {"name": None})
        self.assertEqual(res.status, 400, res)

    def test_binding_protocol_change_reaches_entries(self):
        node = make_node()
        binding = make_binding(node["id"], protocol="vless")
        res = call("POST", ENTRIES, {"binding_id": binding["id"], "entry_address": "h.example.com", "entry_port": 1})
        entry = res.json()["entry"]
        res = call("PATCH", "%s/%d" % (BINDINGS, binding["id"]), {"protocol": "ss"})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(call("GET", "%s/%d" % (ENTRIES, entry["id"])).json()["entry"]["protocol"], "ss")


class SyncTest(unittest.TestCase):
    def test_sync_pushes_exactly_eligible_users(self):
        node = make_node()
        binding = make_binding(node["id"], tags=[" premium ", "asia"], description="hk edge",
                               profile={"flow": "xtls"}, access_port=8443)
        other_binding = make_binding(node["id"])
        plan = make_plan([binding["id"]])
        other_plan = make_plan([other_binding["id"]])
        eligible = new_user()
        sub = subscribe(eligible, plan["id"])
        cases = {}
        for label in ("disabled", "expired", "quota", "other plan", "user disabled"):
            cases[label] = new_user()
            s = subscribe(cases[label], other_plan["id"] if label == "other plan" else plan["id"])
            if label == "disabled":
                self.assertEqual(call("POST", "/api/v1/admin/subscriptions/%d/disable" % s["id"]).status, 200)
            elif label == "expired":
                psql("UPDATE subscriptions SET expires_at = now() - interval '1 minute' WHERE id = %d" % s["id"])
            elif label == "quota":
                psql("UPDATE subscriptions SET traffic_used_bytes = traffic_total_bytes WHERE id = %d" % s["id"])
            elif label == "user disabled":
                psql("UPDATE users SET status = 3 WHERE id = %d" % cases[label])

        result = sync(binding["id"])
        self.assertEqual(result["status"], 1, result)
        self.assertEqual(result["message"], "ok")
        self.assertEqual(pushed_user_ids(sim, binding["kernel_id"]), [eligible])
        request = sim.protocols[binding["kernel_id"]]
        user = request["users"][0]
        self.assertEqual(user["id"], str(eligible))
        self.assertRegex(user["username"], UUID_RE)
        self.assertRegex(user["password"], HEX64_RE)
        self.assertEqual(user["metadata"], {"subscription_id": str(sub["id"])})
        self.assertEqual(request["listen"], "0.0.0.0:8443")
        self.assertNotIn("connect", request)
        self.assertEqual(request["profile"], {"id": binding["kernel_id"], "role": "listener", "protocol": "vless",
                                              "tags": ["asia", "premium"], "description": "hk edge",
                                              "profile": {"flow": "xtls"}})
        stored = call("GET", "%s/%d" % (BINDINGS, binding["id"])).json()["binding"]
        self.assertEqual(stored["sync_status"], 2)
        self.assertGreater(stored["last_synced_at"], 0)
        self.assertEqual(stored["last_sync_error"], "")
        self.assertEqual(audit_count("admin.protocol_binding.sync", binding["id"]), 1)

        # the same identity on the next sync
        sync(binding["id"])
        self.assertEqual(sim.protocols[binding["kernel_id"]]["users"][0]["password"], user["password"])

        # disabling the subscription removes the user at the next sync
        self.assertEqual(call("POST", "/api/v1/admin/subscriptions/%d/disable" % sub["id"]).status, 200)
        self.assertEqual(sync(binding["id"])["status"], 1)
        self.assertEqual(pushed_user_ids(sim, binding["kernel_id"]), [])

    def test_shadowsocks_2022_users_get_their_2022_key(self):
        node = make_node()
        ss = make_binding(node["id"], protocol="ss", profile={"cipher": "2022-blake3-aes-128-gcm"})
        plain = make_binding(node["id"], protocol="ss", profile={"method": "aes-256-gcm"})
        user = new_user()
        subscribe(user, make_plan([ss["id"], plain["id"]])["id"])
        self.assertEqual(sync(ss["id"])["status"], 1)
        self.assertEqual(sync(plain["id"])["status"], 1)
        hex_password = sim.protocols[plain["kernel_id"]]["users"][0]["password"]
        self.assertRegex(hex_password, HEX64_RE)
        # the 2022 key is the first 16 bytes of the identity password, as padded base64
        expected = base64.b64encode(bytes.fromhex(hex_password)[:16]).decode()
        self.assertEqual(sim.protocols[ss["kernel_id"]]["users"][0]["password"], expected)

    def test_disabled_binding_is_removed_from_the_kernel(self):
        node = make_node()
        binding = make_binding(node["id"])
        self.assertEqual(sync(binding["id"])["status"], 1)
        self.assertIn(binding["kernel_id"], sim.protocols)
        res = call("PATCH", "%s/%d" % (BINDINGS, binding["id"]), {"status": 2})
        self.assertEqual(res.status, 200, res)
        sim.clear_calls()
        result = sync(binding["id"])
        self.assertEqual(result["status"], 3, result)
        self.assertNotIn(binding["kernel_id"], sim.protocols)
        self.assertEqual(len(sim.calls(method="DELETE", path="/v1/protocols/" + binding["kernel_id"])), 1)
        self.assertEqual(sim.calls(method="POST", path="/v1/protocols"), [])

    def test_disabled_node_is_not_pushed(self):
        node = make_node()
        binding = make_binding(node["id"])
        self.assertEqual(call("POST", "/api/v1/admin/nodes/%d/disable" % node["id"]).status, 200)
        sim.clear_calls()
        result = sync(binding["id"])
        self.assertEqual(result["status"], 3, result)
        self.assertEqual(result["message"], "node is disabled")
        self.assertEqual(sim.calls(method="POST"), [])
        self.assertNotIn(binding["kernel_id"], sim.protocols)

    def test_kernel_error_is_recorded(self):
        node = make_node()
        binding = make_binding(node["id"])
        sim.set_mode("500", paths=("/v1/protocols",))
        try:
            result = sync(binding["id"])
        finally:
            sim.set_mode("ok")
        self.assertEqual(result["status"], 2, result)
        self.assertIn("500", result["message"])
        stored = call("GET", "%s/%d" % (BINDINGS, binding["id"])).json()["binding"]
        self.assertEqual(stored["sync_status"], 3)
        self.assertIn("500", stored["last_sync_error"])
        self.assertEqual(stored["last_synced_at"], 0)
        # the next good sync clears the error
        self.assertEqual(sync(binding["id"])["status"], 1)
        stored = call("GET", "%s/%d" % (BINDINGS, binding["id"])).json()["binding"]
        self.assertEqual((stored["sync_status"], stored["last_sync_error"]), (2, ""))

    def test_batch_sync(self):
        node = make_node()
        first = make_binding(node["id"])
        second = make_binding(node["id"])
        other_node = make_node()
        third = make_binding(other_node["id"])
        res = call("POST", BINDINGS + "/sync", {"binding_ids": [third["id"]], "node_ids": [node["id"]]},
                   timeout=30.0)
        self.assertEqual(res.status, 200, res)
        results = res.json()["results"]
        self.assertEqual([r["binding_id"] for r in results], sorted([first["id"], second["id"], third["id"]]))
        self.assertTrue(all(r["status"] == 1 for r in results), results)
        for b in (first, second, third):
            self.assertIn(b["kernel_id"], sim.protocols)
        self.assertEqual(call("POST", BINDINGS + "/sync", {}).status, 400)
        self.assertEqual(call("POST", BINDINGS + "/sync", {"binding_ids": [99999999]}).status, 404)
        self.assertEqual(call("POST", BINDINGS + "/sync", {"node_ids": [99999999]}).status, 404)
        self.assertEqual(call("POST", BINDINGS + "/999999/sync").status, 404)

    def test_delete_removes_links_entries_and_kernel_protocol(self):
        node = make_node()
        binding = make_binding(node["id"])
        plan = make_plan([binding["id"]])
        res = call("POST", ENTRIES, {"binding_id": binding["id"], "entry_address": "1.2.3.4", "entry_port": 443})
        self.assertEqual(res.status, 201, res)
        self.assertEqual(sync(binding["id"])["status"], 1)
        sim.clear_calls()
        self.assertEqual(call("DELETE", "%s/%d" % (BINDINGS, binding["id"])).status, 204)
        self.assertEqual(psql("SELECT count(*) FROM protocol_entries WHERE binding_id = %d" % binding["id"]), "0")
        self.assertEqual(psql("SELECT count(*) FROM plan_bindings WHERE binding_id = %d" % binding["id"]), "0")
        self.assertEqual(call("GET", "/api/v1/admin/plans/%d" % plan["id"]).json()["plan"]["binding_ids"], [])
        self.assertEqual(len(sim.calls(method="DELETE", path="/v1/protocols/" + binding["kernel_id"])), 1)
        self.assertNotIn(binding["kernel_id"], sim.protocols)

    def test_node_delete_removes_its_bindings(self):
        node = make_node()
        binding = make_binding(node["id"])
        res = call("POST", ENTRIES, {"binding_id": binding["id"], "entry_address": "1.2.3.4", "entry_port": 443})
        self.assertEqual(res.status, 201, res)
        self.assertEqual(sync(binding["id"])["status"], 1)
        self.assertEqual(call("DELETE", "/api/v1/admin/nodes/%d" % node["id"]).status, 204)
        self.assertEqual(call("GET", "%s/%d" % (BINDINGS, binding["id"])).status, 404)
        self.assertEqual(psql("SELECT count(*) FROM protocol_entries WHERE binding_id = %d" % binding["id"]), "0")
        self.assertNotIn(binding["kernel_id"], sim.protocols)
        diff = psql("SELECT diff::text FROM audit_logs WHERE action = 'admin.node.delete' AND resource_id = '%d'"
                    % node["id"])
        self.assertIn(str(binding["id"]), diff)


    def test_moved_binding_leaves_the_old_kernel(self):
        node = make_node()
        binding = make_binding(node["id"])
        self.assertEqual(sync(binding["id"])["status"], 1)
        old_kernel_id = binding["kernel_id"]
        res = call("PATCH", "%s/%d" % (BINDINGS, binding["id"]), {"kernel_id": unique("kid-moved")})
        self.assertEqual(res.status, 200, res)
        self.assertNotIn(old_kernel_id, sim.protocols)
        self.assertEqual(sync(binding["id"])["status"], 1)
        self.assertIn(res.json()["binding"]["kernel_id"], sim.protocols)

    def test_parallel_syncs_of_one_binding_all_succeed(self):
        node = make_node()
        binding = make_binding(node["id"])
        plan = make_plan([binding["id"]])
        user_id = new_user()
        subscribe(user_id, plan["id"])
        results = []

        def one():
            results.append(sync(binding["id"])["status"])

        threads = [threading.Thread(target=one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(results, [1] * 6)
        self.assertEqual(pushed_user_ids(sim, binding["kernel_id"]), [user_id])

    def test_user_job_pushes_the_users_bindings(self):
        node = make_node()
        binding = make_binding(node["id"])
        unrelated = make_binding(node["id"])
        plan = make_plan([binding["id"]])
        user_id = new_user()
        subscribe(user_id, plan["id"])
        job_id = int(psql("INSERT INTO jobs (kind, payload) VALUES ('bindings.sync_user', '{\"user_id\": %d}')"
                          " RETURNING id" % user_id).split()[0])
        pushed = sim.wait_for(lambda s: pushed_user_ids(s, binding["kernel_id"]) == [user_id],
                              timeout=harness.scaled(15))
        self.assertTrue(pushed, sim.protocols.get(binding["kernel_id"]))
        self.assertNotIn(unrelated["kernel_id"], sim.protocols)
        query = "SELECT status || ' ' || coalesce(last_error, '') FROM jobs WHERE id = %d" % job_id
        done = harness.wait_until(lambda: psql(query).startswith("done"), timeout=15)
        self.assertTrue(done, psql(query))


class HealthSyncTest(unittest.TestCase):
    def test_health_forms_and_absent_binding(self):
        kernel = KernelSim(auth=("ak-h", "sk-h")).start()
        try:
            node = make_node(kernel)
            ids = {}
            for label in ("healthy", "degraded", "unhealthy", "offline-string", "absent", "disabled"):
                ids[label] = make_binding(node["id"], kernel_id="h-%s-%s" % (label, unique("k")))
            kernel.set_health(ids["healthy"]["kernel_id"], "Healthy")
            kernel.set_health(ids["degraded"]["kernel_id"], {"Degraded": {"consecutive_failures": 2}})
            kernel.set_health(ids["unhealthy"]["kernel_id"], "unhealthy")
            kernel.set_health(ids["offline-string"]["kernel_id"], "offline")
            kernel.set_health(ids["disabled"]["kernel_id"], "Healthy")
            call("PATCH", "%s/%d" % (BINDINGS, ids["disabled"]["id"]), {"status": 2})
            disabled_node = make_node(kernel)
            call("POST", "/api/v1/admin/nodes/%d/disable" % disabled_node["id"])

            res = call("POST", BINDINGS + "/status/sync",
                       {"node_ids": [node["id"], disabled_node["id"], 99999999, node["id"]]}, timeout=30.0)
            self.assertEqual(res.status, 200, res)
            results = res.json()["results"]
            self.assertEqual([r["node_id"] for r in results], [node["id"], disabled_node["id"], 99999999])
            self.assertEqual([r["status"] for r in results], [1, 3, 2])
            self.assertEqual(results[0]["updated"], 5)
            expected = {"healthy": 1, "degraded": 2, "unhealthy": 3, "offline-string": 4, "absent": 4,
                        "disabled": 0}
            for label, health in expected.items():
                with self.subTest(label):
                    stored = call("GET", "%s/%d" % (BINDINGS, ids[label]["id"])).json()["binding"]
                    self.assertEqual(stored["health_status"], health)
                    self.assertEqual(stored["last_heartbeat_at"] > 0, label != "disabled")
            # the status poller may also have polled the node (GET /v1/status without a query)
            health_calls = [c for c in kernel.calls(method="GET", path="/v1/status") if c.query == "include=nodes"]
            self.assertEqual(len(health_calls), 1)

            kernel.set_mode("500")
            res = call("POST", BINDINGS + "/status/sync", {"node_ids": [node["id"]]}, timeout=30.0)
            self.assertEqual(res.json()["results"][0]["status"], 2, res)
            self.assertIn("500", res.json()["results"][0]["message"])
            self.assertEqual(call("POST", BINDINGS + "/status/sync", {"node_ids": []}).status, 400)
        finally:
            kernel.stop()


class ZzRegistrationTest(unittest.TestCase):
    """Runs last: it restarts the server with another webhook secret."""

    def test_registrations_made_once_and_after_secret_change(self):
        kernel = KernelSim(auth=("ak-r", "sk-r")).start()
        try:
            node = make_node(kernel)
            first = make_binding(node["id"])
            second = make_binding(node["id"])
            self.assertEqual(sync(first["id"])["status"], 1)
            events = kernel.event_registrations
            services = kernel.service_event_registrations
            self.assertEqual(sorted(r["event"] for r in events.values()),
                             ["node_added", "node_degraded", "node_healthy", "node_removed", "node_unhealthy"])
            self.assertEqual([r["event"] for r in services.values()], ["user.traffic.reported"])
            for record in events.values():
                self.assertEqual(record["callback"], "%s/api/v1/kernel/events?node_id=%d" % (CALLBACK_BASE,
                                                                                              node["id"]))
                self.assertEqual(record["secret"], SECRET)
            self.assertEqual(list(services.values())[0]["callback"],
                             "%s/api/v1/kernel/service-events?node_id=%d" % (CALLBACK_BASE, node["id"]))

            # neither another sync nor another binding of the node registers again
            kernel.clear_calls()
            self.assertEqual(sync(first["id"])["status"], 1)
            self.assertEqual(sync(second["id"])["status"], 1)
            self.assertEqual(kernel.calls(method="POST", path="/v1/events/registrations"), [])
            self.assertEqual(kernel.calls(method="POST", path="/v1/service-events/registrations"), [])

            server.stop()
            server.extra_config["webhook"]["shared_token"] = SECRET + "-new"
            server.start()
            _tokens.clear()
            kernel.clear_calls()
            self.assertEqual(sync(first["id"])["status"], 1)
            self.assertEqual(len(kernel.calls(method="POST", path="/v1/events/registrations")), 5)
            self.assertEqual(len(kernel.calls(method="POST", path="/v1/service-events/registrations")), 1)
            self.assertEqual(len(kernel.calls(method="DELETE", path="/v1/events/registrations/")), 5)
            self.assertEqual(len(kernel.calls(method="DELETE", path="/v1/service-events/registrations/")), 1)
            events = kernel.event_registrations
            self.assertEqual(len(events), 5)
            self.assertTrue(all(r["secret"] == SECRET + "-new" for r in events.values()), events)
            self.assertEqual(len(kernel.service_event_registrations), 1)
        finally:
            kernel.stop()


if __name__ == "__main__":
    unittest.main()

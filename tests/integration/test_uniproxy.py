"""The node-backend API (/api/v1/server/UniProxy/*) as XrayR and V2bX use it.

One server for the module. Two nodes are seeded with SQL: node A carries
bindings 101 (vmess) and 102 (trojan), node B carries binding 201 (vmess).
One plan links 101 and 201. Each node gets its backend token through the
admin API, and a small node-backend client below speaks the wire format.
Run alone: /usr/bin/python3 tests/integration/run.py test_uniproxy
"""

import base64
import concurrent.futures
import json
import os
import re
import unittest
import urllib.parse

from tests.integration import harness

server = None
ADMIN = ("uniproxy-admin@example.com", "admin-pass-3Vw8")
PASSWORD = "member-pass-6Rz1"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
BASE = "/api/v1/server/UniProxy/"
_state = {"counter": 0}


def setUpModule():
    global server
    master_key = base64.b64encode(os.urandom(32)).decode()
    server = harness.Server("uniproxy", config={"security": {"master_key": master_key}})
    try:
        server.create_admin(*ADMIN)
        server.start()
        harness.seed_bindings(server, [101, 102])
        harness.seed_bindings(server, [201])
        psql("UPDATE protocol_bindings SET protocol = 'trojan', access_port = 8443 WHERE id = 102;"
             " UPDATE protocol_bindings SET access_port = 443,"
             " profile = '{\"network\": \"ws\", \"network_settings\": {\"path\": \"/v\"}}' WHERE id = 101;")
        _state["node_a"] = int(psql("SELECT node_id FROM protocol_bindings WHERE id = 101"))
        _state["node_b"] = int(psql("SELECT node_id FROM protocol_bindings WHERE id = 201"))
        _state["token_a"] = rotate(_state["node_a"])["token"]
        _state["token_b"] = rotate(_state["node_b"])["token"]
        res = call("POST", "/api/v1/admin/plans", {
            "name": "Node plan", "traffic_limit_bytes": 10 ** 15, "devices_limit": 3,
            "binding_ids": [101, 201], "status": 1, "visible": True})
        if res.status != 201:
            raise AssertionError("create plan failed: %r" % res)
        _state["plan"] = res.json()["plan"]["id"]
    except BaseException:
        server.cleanup()
        raise


def tearDownModule():
    try:
        server.stop_expect_clean()
    finally:
        server.cleanup()


def psql(sql):
    return harness.EmbeddedCluster(server.data_dir).psql(sql, database=server.database_name()).strip()


def admin_token():
    if "admin" not in _state:
        _state["admin"] = server.access_token(*ADMIN)
    return _state["admin"]


def call(method, path, body=None):
    return server.request(method, path, body=body, headers={"Authorization": "Bearer " + admin_token()})


def rotate(node_id):
    res = call("POST", "/api/v1/admin/nodes/%d/backend-token" % node_id)
    if res.status != 200:
        raise AssertionError("token rotation failed: %r" % res)
    return res.json()


def new_subscriber():
    """An active user with an active subscription on the node plan; returns (user id, subscription id)."""
    _state["counter"] += 1
    address = "node%d-%d@example.com" % (_state["counter"], os.getpid())
    res = call("POST", "/api/v1/admin/users", {"email": address, "password": PASSWORD})
    if res.status != 201:
        raise AssertionError("create user failed: %r" % res)
    user_id = res.json()["user"]["id"]
    res = call("POST", "/api/v1/admin/subscriptions", {"user_id": user_id, "plan_id": _state["plan"]})
    if res.status != 201:
        raise AssertionError("create subscription failed: %r" % res)
    return user_id, res.json()["subscription"]["id"]


def used_bytes(sub_id):
    return int(psql("SELECT traffic_used_bytes FROM subscriptions WHERE id = %d" % sub_id))


class NodeBackend:
    """What XrayR or V2bX sends: token, node_id and node_type in the query, JSON bodies."""

    def __init__(self, token, node_id, node_type="vmess"):
        self.token = token
        self.node_id = node_id
        self.node_type = node_type

    def path(self, action, **extra):
        query = {"node_id": self.node_id, "node_type": self.node_type}
        if self.token is not None:
            query["token"] = self.token
        query.update(extra)
        return BASE + action + "?" + urllib.parse.urlencode(query)

    def get(self, action, if_none_match=None):
        headers = {"If-None-Match": if_none_match} if if_none_match is not None else {}
        return server.request("GET", self.path(action), headers=headers)

    def push(self, body, report_id=None, in_query=False):
        headers = {"Content-Type": "application/json"}
        extra = {}
        if report_id is not None and in_query:
            extra["report_id"] = report_id
        elif report_id is not None:
            headers["X-Report-Id"] = report_id
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return server.request("POST", self.path("push", **extra), body=data, headers=headers)

    def alive(self, body):
        return server.request("POST", self.path("alive"), body=json.dumps(body),
                              headers={"Content-Type": "application/json"})


def node_a(node_type="vmess", binding=101):
    return NodeBackend(_state["token_a"], binding, node_type)


def node_b():
    return NodeBackend(_state["token_b"], 201)


def users_of(res):
    return {u["id"]: u for u in res.json()["users"]}


class Authentication(unittest.TestCase):
    def test_missing_token_is_401(self):
        res = NodeBackend(None, 101).get("user")
        self.assertEqual(res.status, 401, res)
        self.assertEqual(res.json()["code"], 401160)

    def test_wrong_token_is_403(self):
        res = NodeBackend("znpn_" + "x" * 43, 101).get("config")
        self.assertEqual(res.status, 403, res)
        self.assertEqual(res.json()["code"], 403160)

    def test_binding_of_other_node_is_403(self):
        res = NodeBackend(_state["token_a"], 201).get("user")
        self.assertEqual(res.status, 403, res)
        self.assertEqual(res.json()["code"], 403161)

    def test_wrong_node_type_is_400(self):
        res = node_a("trojan").get("config")
        self.assertEqual(res.status, 400, res)
        self.assertEqual(res.json()["code"], 400160)

    def test_v2ray_alias_means_vmess(self):
        self.assertEqual(node_a("v2ray").get("config").status, 200)

    def test_unknown_binding_is_404(self):
        res = node_a(binding=999999).get("user")
        self.assertEqual(res.status, 404, res)

    def test_rotation_ends_old_token(self):
        _state["counter"] += 1
        name = "rotating-%d" % os.getpid()
        node_id = int(psql("INSERT INTO nodes (name, control_endpoint) VALUES ('%s', 'http://127.0.0.1:9')"
                           " RETURNING id" % name).splitlines()[0])
        psql("INSERT INTO protocol_bindings (node_id, protocol, role, kernel_id) VALUES (%d, 'vless', 'listener',"
             " 'rot')" % node_id)
        binding = int(psql("SELECT id FROM protocol_bindings WHERE node_id = %d" % node_id))
        first = rotate(node_id)["token"]
        self.assertEqual(NodeBackend(first, binding, "vless").get("user").status, 200)
        second = rotate(node_id)
        self.assertNotEqual(second["token"], first)
        self.assertEqual(NodeBackend(first, binding, "vless").get("user").status, 403)
        self.assertEqual(NodeBackend(second["token"], binding, "vless").get("user").status, 200)
        stored = psql("SELECT token_hash FROM node_backend_tokens WHERE node_id = %d" % node_id)
        self.assertNotIn(second["token"], stored)
        self.assertEqual(psql("SELECT count(*) FROM audit_logs WHERE action = 'admin.node.backend_token.rotate'"
                              " AND resource_id = '%d'" % node_id), "2")

    def test_rotation_of_unknown_node_is_404(self):
        res = call("POST", "/api/v1/admin/nodes/987654/backend-token")
        self.assertEqual(res.status, 404, res)


class Config(unittest.TestCase):
    def test_vmess_shape(self):
        res = node_a().get("config")
        self.assertEqual(res.status, 200, res)
        doc = res.json()
        self.assertEqual(doc["server_port"], 443)
        self.assertEqual(doc["network"], "ws")
        self.assertEqual(doc["network_settings"], {"path": "/v"})
        self.assertEqual(doc["networkSettings"], {"path": "/v"})
        self.assertEqual(doc["base_config"], {"push_interval": 60, "pull_interval": 60})
        self.assertRegex(res.header("etag"), r'^"[0-9a-f]{64}"$')

    def test_trojan_shape(self):
        doc = node_a("trojan", 102).get("config").json()
        self.assertEqual(doc["server_port"], 8443)
        self.assertEqual(doc["network"], "tcp")
        self.assertIn("server_name", doc)

    def test_config_etag_304(self):
        etag = node_a().get("config").header("etag")
        res = node_a().get("config", if_none_match=etag)
        self.assertEqual(res.status, 304)
        self.assertEqual(res.body, b"")


class UserList(unittest.TestCase):
    def test_lists_eligible_user_with_identity(self):
        user_id, _ = new_subscriber()
        res = node_a().get("user")
        self.assertEqual(res.status, 200, res)
        user = users_of(res)[user_id]
        self.assertRegex(user["uuid"], UUID_RE)
        self.assertEqual(user["device_limit"], 3)
        self.assertEqual(user["speed_limit"], 0)
        self.assertEqual(sorted(user), ["device_limit", "id", "speed_limit", "uuid"])
        # the same identity on every node
        self.assertEqual(users_of(node_b().get("user"))[user_id]["uuid"], user["uuid"])

    def test_unlinked_binding_has_no_users(self):
        new_subscriber()
        res = node_a("trojan", 102).get("user")
        self.assertEqual(res.json(), {"users": []})

    def test_etag_forms_answer_304(self):
        new_subscriber()
        etag = node_a().get("user").header("etag")
        self.assertRegex(etag, r'^"[0-9a-f]{64}"$')
        for form in (etag, "W/" + etag, '"other", ' + etag, "W/\"x\", W/" + etag, "*"):
            res = node_a().get("user", if_none_match=form)
            self.assertEqual(res.status, 304, form)
            self.assertEqual(res.body, b"", form)
            self.assertEqual(res.header("etag"), etag, form)

    def test_other_etag_answers_200(self):
        new_subscriber()
        res = node_a().get("user", if_none_match='"0000"')
        self.assertEqual(res.status, 200)
        self.assertIn("users", res.json())

    def test_disabled_subscription_leaves_next_pull(self):
        user_id, sub_id = new_subscriber()
        first = node_a().get("user")
        self.assertIn(user_id, users_of(first))
        etag = first.header("etag")
        self.assertEqual(node_a().get("user", if_none_match=etag).status, 304)
        res = call("POST", "/api/v1/admin/subscriptions/%d/disable" % sub_id, {})
        self.assertEqual(res.status, 200, res)
        after = node_a().get("user", if_none_match=etag)
        self.assertEqual(after.status, 200, "stale 304 after disabling")
        self.assertNotIn(user_id, users_of(after))
        self.assertNotEqual(after.header("etag"), etag)

    def test_database_write_reaches_list_through_notify(self):
        user_id, sub_id = new_subscriber()
        etag = node_a().get("user").header("etag")
        psql("UPDATE subscriptions SET expires_at = now() - interval '1 minute' WHERE id = %d" % sub_id)

        def gone():
            res = node_a().get("user", if_none_match=etag)
            return res.status == 200 and user_id not in users_of(res)

        self.assertTrue(harness.wait_until(gone, timeout=10))

    def test_disabled_user_leaves_list(self):
        user_id, _ = new_subscriber()
        self.assertIn(user_id, users_of(node_a().get("user")))
        res = call("PATCH", "/api/v1/admin/users/%d/status" % user_id, {"status": 3})
        self.assertEqual(res.status, 200, res)
        self.assertNotIn(user_id, users_of(node_a().get("user")))


class Push(unittest.TestCase):
    def test_fc08_replay(self):
        user_id, sub_id = new_subscriber()
        before = used_bytes(sub_id)
        body = {str(user_id): [1000, 2000]}
        # R1 sent four times: the retransmissions of a node whose first attempts timed out
        for attempt in range(4):
            res = node_a().push(body, "fc08-R1-%d" % user_id)
            self.assertEqual(res.status, 200, res)
            self.assertEqual(res.json()["data"], True)
            self.assertEqual(res.json()["duplicate"], attempt > 0)
        self.assertEqual(used_bytes(sub_id), before + 3000)
        res = node_a().push(body, "fc08-R2-%d" % user_id, in_query=True)
        self.assertEqual(res.status, 200, res)
        self.assertEqual(used_bytes(sub_id), before + 6000)

        bad = ['[-5,10]', '[1e30,0]', '["12abc",0]', '[9223372036854775807,1]']
        for index, pair in enumerate(bad):
            res = node_a().push('{"%d": %s}' % (user_id, pair), "fc08-bad-%d-%d" % (index, user_id))
            self.assertEqual(res.status, 422, pair)
            envelope = res.json()
            self.assertEqual(envelope["code"], 422160, pair)
            self.assertEqual(len(envelope["details"]), 1, pair)
            self.assertEqual(envelope["details"][0]["field"], "$.%d" % user_id, pair)
        self.assertEqual(used_bytes(sub_id), before + 6000)
        # a rejected report id was not used up
        res = node_a().push(body, "fc08-bad-0-%d" % user_id)
        self.assertEqual(res.json()["duplicate"], False)
        self.assertEqual(used_bytes(sub_id), before + 9000)

    def test_bad_values_rejected_as_whole(self):
        user_id, sub_id = new_subscriber()
        before = used_bytes(sub_id)
        # keys 900001.. name no user of this test run, so they cannot repeat the first key
        body = ('{"%d": [5, 5], "900001": [-5, 10], "900002": [1e30, 0], "900003": ["12abc", 0],'
                ' "900004": [9223372036854775807, 1], "x": [1, 1], "900005": [1, 99999999999999999999]}' % user_id)
        res = node_a().push(body, "whole-%d" % user_id)
        self.assertEqual(res.status, 422, res)
        fields = sorted(d["field"] for d in res.json()["details"])
        self.assertEqual(fields, ["$.900001", "$.900002", "$.900003", "$.900004", "$.900005", "$.x"])
        self.assertEqual(used_bytes(sub_id), before)

    def test_invalid_json_is_400(self):
        res = node_a().push("{not json", "broken")
        self.assertEqual(res.status, 400, res)

    def test_without_report_id_counts_each_delivery(self):
        user_id, sub_id = new_subscriber()
        before = used_bytes(sub_id)
        for _ in range(2):
            self.assertEqual(node_a().push({str(user_id): [10, 20]}).status, 200)
        self.assertEqual(used_bytes(sub_id), before + 60)

    def test_parallel_identical_reports_count_once(self):
        user_id, sub_id = new_subscriber()
        before = used_bytes(sub_id)
        body = {str(user_id): [100, 200]}
        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            results = list(pool.map(lambda _: node_a().push(body, "same-%d" % user_id), range(20)))
        self.assertEqual([r.status for r in results], [200] * 20)
        self.assertEqual(sum(1 for r in results if not r.json()["duplicate"]), 1)
        self.assertEqual(used_bytes(sub_id), before + 300)

    def test_parallel_different_reports_sum_exactly(self):
        user_id, sub_id = new_subscriber()
        before = used_bytes(sub_id)

        def send(i):
            return node_a().push({str(user_id): [i, 1000 + i]}, "diff-%d-%d" % (user_id, i))

        with concurrent.futures.ThreadPoolExecutor(max_workers=25) as pool:
            results = list(pool.map(send, range(50)))
        self.assertEqual([r.status for r in results], [200] * 50)
        self.assertEqual(used_bytes(sub_id), before + sum(i + 1000 + i for i in range(50)))


class Alive(unittest.TestCase):
    def test_distinct_ips_across_nodes(self):
        user_id, _ = new_subscriber()
        other_id, _ = new_subscriber()
        key = str(user_id)
        self.assertEqual(node_a().alive({key: ["10.0.0.1", "10.0.0.2"], str(other_id): ["10.9.9.9"]}).status, 200)
        self.assertEqual(node_b().alive({key: ["10.0.0.2", "2001:db8::7"]}).status, 200)
        alive = node_a().get("alivelist").json()["alive"]
        self.assertEqual(alive[key], 3)
        self.assertEqual(alive[str(other_id)], 1)
        self.assertEqual(node_b().get("alivelist").json()["alive"][key], 3)

    def test_expired_ips_do_not_count(self):
        user_id, _ = new_subscriber()
        node_a().alive({str(user_id): ["10.1.0.1", "10.1.0.2"]})
        psql("UPDATE node_online_ips SET seen_at = now() - interval '1 hour' WHERE user_id = %d AND ip = '10.1.0.1'"
             % user_id)
        self.assertEqual(node_a().get("alivelist").json()["alive"][str(user_id)], 1)

    def test_bad_alive_body_is_422(self):
        res = node_a().alive({"1": ["10.0.0.1", "bad ip with spaces"], "x": []})
        self.assertEqual(res.status, 422, res)
        self.assertEqual(len(res.json()["details"]), 2)


if __name__ == "__main__":
    unittest.main()

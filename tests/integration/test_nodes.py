"""Admin nodes and their kernel records (/api/v1/admin/nodes).

One server for the module. The admin is made with `znp admin create` before
the server starts; a plain user is created through the admin API. Each test
makes its own nodes with unique names so the tests do not depend on order.
Run alone: /usr/bin/python3 tests/integration/run.py test_nodes
"""

import json
import os
import unittest

from tests.integration import harness

server = None
ADMIN = ("nodes-admin@example.com", "admin-pass-4Rt8")
USER = ("nodes-user@example.com", "member-pass-2Zx6")
NODES = "/api/v1/admin/nodes"
SECRETS = ("ak-plain-5b1f0c77", "sk-plain-93ad21e4", "tok-plain-7e64c0d2")
_tokens = {}
_counter = [0]


def setUpModule():
    global server
    server = harness.Server("nodes")
    try:
        server.create_admin(*ADMIN)
        server.start()
        res = call("POST", "/api/v1/admin/users", admin(), {"email": USER[0], "password": USER[1]})
        if res.status != 201:
            raise AssertionError("create user failed: %r" % res)
    except BaseException:
        server.cleanup()
        raise


def tearDownModule():
    try:
        server.stop_expect_clean()
    finally:
        server.cleanup()


def call(method, path, token=None, body=None, headers=None):
    all_headers = dict(headers or {})
    if token:
        all_headers["Authorization"] = "Bearer " + token
    return server.request(method, path, body=body, headers=all_headers)


def token_of(address, password):
    if address not in _tokens:
        res = server.login(address, password)
        if res.status != 200:
            raise AssertionError("login as %s failed: %r" % (address, res))
        _tokens[address] = res.json()["access_token"]
    return _tokens[address]


def admin():
    return token_of(*ADMIN)


def user():
    return token_of(*USER)


def psql(sql):
    return harness.EmbeddedCluster(server.data_dir).psql(sql, database=server.database_name()).strip()


def unique(prefix="node"):
    _counter[0] += 1
    return "%s-%d-%d" % (prefix, os.getpid(), _counter[0])


def make_node(**fields):
    body = {"name": unique(), "control_endpoint": "http://127.0.0.1:23860"}
    body.update(fields)
    res = call("POST", NODES, admin(), body)
    if res.status != 201:
        raise AssertionError("create node failed: %r" % res)
    return res.json()["node"]


class NodeCrudTest(unittest.TestCase):
    def test_create_get_round_trip(self):
        name = unique("edge")
        node = make_node(name=name, region=" Hong Kong ", country="HK", isp="HKIX", capacity_mbps=1000,
                         tags=[" premium", "asia", "premium", "", "Asia"], access_address="HK.Example.COM",
                         control_endpoint="HTTPS://Kernel.Example.com:8443/api")
        self.assertEqual(node["name"], name)
        self.assertEqual(node["region"], "Hong Kong")
        self.assertEqual(node["status"], 2)
        self.assertEqual(node["tags"], ["Asia", "asia", "premium"])
        self.assertEqual(node["access_address"], "hk.example.com")
        self.assertEqual(node["control_endpoint"], "https://kernel.example.com:8443/api")
        self.assertEqual(node["kernel_default_protocol"], "http")
        self.assertEqual(node["kernel_http_timeout_seconds"], 5)
        self.assertEqual(node["kernel_status_poll_interval_seconds"], 30)
        self.assertTrue(node["kernel_status_poll_backoff_enabled"])
        self.assertEqual(node["kernel_status_poll_backoff_multiplier"], 2)
        self.assertAlmostEqual(node["kernel_status_poll_backoff_jitter"], 0.2)
        self.assertFalse(node["has_control_token"])
        self.assertEqual(node["last_synced_at"], 0)
        res = call("GET", "%s/%d" % (NODES, node["id"]), admin())
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["node"], node)

    def test_duplicate_name_conflicts(self):
        node = make_node()
        res = call("POST", NODES, admin(), {"name": node["name"], "control_endpoint": "http://127.0.0.1:1"})
        self.assertEqual(res.status, 409, res)
        self.assertEqual(res.json()["error"], "node_name_taken")
        self.assertEqual([d["field"] for d in res.json()["details"]], ["$.name"], res)

    def test_required_and_invalid_fields(self):
        cases = [
            {"control_endpoint": "http://127.0.0.1:1"},
            {"name": "   ", "control_endpoint": "http://127.0.0.1:1"},
            {"name": unique()},
            {"name": unique(), "control_endpoint": "ftp://host"},
            {"name": unique(), "control_endpoint": "http://host:0"},
            {"name": unique(), "control_endpoint": "http://host:65536"},
            {"name": unique(), "control_endpoint": "http://127.0.0.1:1", "status": 5},
            {"name": unique(), "control_endpoint": "http://127.0.0.1:1", "kernel_status_poll_interval_seconds": 0},
            {"name": unique(), "control_endpoint": "http://127.0.0.1:1",
             "kernel_status_poll_interval_seconds": 60, "kernel_status_poll_backoff_max_interval_seconds": 30},
            {"name": unique(), "control_endpoint": "http://127.0.0.1:1", "kernel_status_poll_backoff_multiplier": 1},
            {"name": unique(), "control_endpoint": "http://127.0.0.1:1", "kernel_status_poll_backoff_jitter": 1.5},
        ]
        for body in cases:
            with self.subTest(body=body):
                res = call("POST", NODES, admin(), body)
                self.assertEqual(res.status, 400, res)

    def test_patch_absent_null_value(self):
        node = make_node(region="Tokyo", description="first", tags=["a", "b"], control_token=SECRETS[2])
        path = "%s/%d" % (NODES, node["id"])
        # absent keeps everything
        res = call("PATCH", path, admin(), {})
        self.assertEqual(res.status, 200, res)
        kept = res.json()["node"]
        self.assertEqual((kept["region"], kept["description"], kept["tags"]), ("Tokyo", "first", ["a", "b"]))
        self.assertTrue(kept["has_control_token"])
        # a value replaces
        res = call("PATCH", path, admin(), {"region": "Osaka", "tags": ["z", " y "], "capacity_mbps": 10})
        self.assertEqual(res.status, 200, res)
        changed = res.json()["node"]
        self.assertEqual((changed["region"], changed["tags"], changed["capacity_mbps"]), ("Osaka", ["y", "z"], 10))
        self.assertEqual(changed["description"], "first")
        # null clears the optional texts, the tags and the credential
        res = call("PATCH", path, admin(), {"region": None, "description": None, "tags": None, "control_token": None})
        self.assertEqual(res.status, 200, res)
        cleared = res.json()["node"]
        self.assertEqual((cleared["region"], cleared["description"], cleared["tags"]), ("", "", []))
        self.assertFalse(cleared["has_control_token"])
        self.assertEqual(psql("SELECT control_token_sealed IS NULL FROM nodes WHERE id = %d" % node["id"]), "t")
        # null is rejected where a value is required
        for body in ({"name": None}, {"control_endpoint": None}, {"status": None}, {"name": " "}):
            with self.subTest(body=body):
                self.assertEqual(call("PATCH", path, admin(), body).status, 400)
        # polling settings are checked against the stored ones
        res = call("PATCH", path, admin(), {"kernel_status_poll_backoff_max_interval_seconds": 10})
        self.assertEqual(res.status, 400, res)
        res = call("PATCH", path, admin(), {"kernel_status_poll_backoff_enabled": False,
                                            "kernel_status_poll_interval_seconds": 0})
        self.assertEqual(res.status, 200, res)

    def test_soft_delete_hides_the_node(self):
        node = make_node(tags=["gone"])
        path = "%s/%d" % (NODES, node["id"])
        res = call("POST", path + "/kernels", admin(), {"protocol": "HTTP", "endpoint": "http://127.0.0.1:9"})
        self.assertEqual(res.status, 200, res)
        res = call("DELETE", path, admin())
        self.assertEqual(res.status, 204, res)
        for method, suffix, body in (("GET", "", None), ("PATCH", "", {"region": "x"}), ("DELETE", "", None),
                                     ("POST", "/disable", None), ("GET", "/kernels", None),
                                     ("POST", "/kernels", {"protocol": "http", "endpoint": "http://a"})):
            with self.subTest(method=method, suffix=suffix):
                self.assertEqual(call(method, path + suffix, admin(), body).status, 404)
        res = call("GET", NODES + "?tags=gone&per_page=100", admin())
        self.assertEqual(res.status, 200, res)
        self.assertNotIn(node["id"], [n["id"] for n in res.json()["nodes"]])
        self.assertEqual(psql("SELECT count(*) FROM node_kernels WHERE node_id = %d" % node["id"]), "0")
        self.assertEqual(psql("SELECT deleted_at IS NOT NULL FROM nodes WHERE id = %d" % node["id"]), "t")
        # the name of a deleted node stays taken
        res = call("POST", NODES, admin(), {"name": node["name"], "control_endpoint": "http://127.0.0.1:1"})
        self.assertEqual(res.status, 409, res)

    def test_disable_keeps_status(self):
        node = make_node(status=1)
        res = call("POST", "%s/%d/disable" % (NODES, node["id"]), admin())
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["node"]["status"], 4)
        res = call("PATCH", "%s/%d" % (NODES, node["id"]), admin(), {"description": "still off"})
        self.assertEqual(res.json()["node"]["status"], 4)
        self.assertEqual(call("POST", "%s/999999999/disable" % NODES, admin()).status, 404)


class NodeListTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tag = unique("lt")
        cls.nodes = [
            make_node(name=unique("list-a"), region="Europe", capacity_mbps=300, status=1, tags=[cls.tag, "x"]),
            make_node(name=unique("list-b"), region="Asia", capacity_mbps=100, status=3, tags=[cls.tag],
                      description="needle inside"),
            make_node(name=unique("list-c"), region="asia", capacity_mbps=200, status=1, tags=[cls.tag, "x"]),
        ]

    def ids(self, query):
        res = call("GET", NODES + "?tags=" + self.tag + query, admin())
        self.assertEqual(res.status, 200, res)
        return res.json(), [n["id"] for n in res.json()["nodes"]]

    def test_filters(self):
        a, b, c = (n["id"] for n in self.nodes)
        self.assertEqual(sorted(self.ids("")[1]), [a, b, c])
        self.assertEqual(sorted(self.ids("&status=1")[1]), [a, c])
        self.assertEqual(sorted(self.ids("&region=ASIA")[1]), [b, c])
        self.assertEqual(self.ids("&q=NEEDLE")[1], [b])
        self.assertEqual(sorted(self.ids(",x")[1]), [a, c])
        res = call("POST", "%s/%d/kernels" % (NODES, c), admin(), {"protocol": "vless", "endpoint": "http://a"})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(self.ids("&protocol=VLESS")[1], [c])

    def test_sort_and_pagination(self):
        a, b, c = (n["id"] for n in self.nodes)
        self.assertEqual(self.ids("&sort=capacity_mbps&direction=asc")[1], [b, c, a])
        self.assertEqual(self.ids("&sort=capacity_mbps")[1], [a, c, b])
        body, ids = self.ids("&sort=name&direction=asc&per_page=2&page=2")
        self.assertEqual(ids, [c])
        self.assertEqual(body["pagination"], {"page": 2, "per_page": 2, "total_count": 3, "has_next": False,
                                              "has_prev": True})
        body, ids = self.ids("&sort=name&direction=asc&per_page=2")
        self.assertEqual(ids, [a, b])
        self.assertTrue(body["pagination"]["has_next"])
        for query in ("&per_page=101", "&per_page=0", "&page=0", "&sort=password", "&direction=up", "&status=9"):
            with self.subTest(query=query):
                self.assertEqual(call("GET", NODES + "?" + query[1:], admin()).status, 400)
        body, _ = self.ids("&per_page=100")
        self.assertEqual(body["pagination"]["per_page"], 100)


class NodeHostTest(unittest.TestCase):
    def test_access_address_normalization(self):
        table = [
            ("[2001:DB8::1]", "2001:db8::1"),
            ("2001:db8:0:0:0:0:0:1", "2001:db8::1"),
            ("  Edge.Example.NET ", "edge.example.net"),
            ("192.0.2.10", "192.0.2.10"),
            ("", ""),
        ]
        for given, stored in table:
            with self.subTest(given=given):
                node = make_node(access_address=given)
                self.assertEqual(node["access_address"], stored)
        for bad in ("fe80::1%eth0", "[fe80::1%25eth0]", "[2001:db8::1", "2001:db8::zz", "300.1.1.1", "a b",
                    "ex\u00e4mple.com"):
            with self.subTest(bad=bad):
                res = call("POST", NODES, admin(), {"name": unique(), "control_endpoint": "http://a",
                                                    "access_address": bad})
                self.assertEqual(res.status, 400, res)

    def test_control_endpoint_normalization(self):
        table = [
            ("http://[2001:DB8::2]:8080/v1", "http://[2001:db8::2]:8080/v1"),
            ("HTTP://Kernel.EXAMPLE.com", "http://kernel.example.com"),
            ("https://127.0.0.1:65535/api?x=1", "https://127.0.0.1:65535/api?x=1"),
        ]
        for given, stored in table:
            with self.subTest(given=given):
                self.assertEqual(make_node(control_endpoint=given)["control_endpoint"], stored)
        for bad in ("http://[fe80::1%eth0]:80", "http://fe80::1", "http://host:abc", "http://:80", "http://u:p@host",
                    "http://[::1]x"):
            with self.subTest(bad=bad):
                res = call("POST", NODES, admin(), {"name": unique(), "control_endpoint": bad})
                self.assertEqual(res.status, 400, res)


class NodeNameTest(unittest.TestCase):
    def test_emoji_and_cjk_name_byte_for_byte(self):
        name = "\U0001F1F8\U0001F1EC SG-01 \u2708 \u9999\u6e2f \"x\" " + unique("fc01")
        node = make_node(name=name)
        self.assertEqual(node["name"], name)
        res = call("GET", "%s/%d" % (NODES, node["id"]), admin())
        self.assertEqual(res.json()["node"]["name"].encode("utf-8"), name.encode("utf-8"))
        self.assertIn(json.dumps(name, ensure_ascii=False).encode("utf-8")[1:-1].replace(b'\\"', b'\\"'),
                      res.body)
        stored = psql("SELECT encode(convert_to(name, 'UTF8'), 'hex') FROM nodes WHERE id = %d" % node["id"])
        self.assertEqual(bytes.fromhex(stored), name.encode("utf-8"))

    def test_invalid_utf8_name_rejected(self):
        raw = b'{"name": "bad \xff\xfe name", "control_endpoint": "http://a"}'
        res = call("POST", NODES, admin(), raw, headers={"Content-Type": "application/json"})
        self.assertEqual(res.status, 400, res)
        self.assertEqual(psql("SELECT count(*) FROM nodes WHERE name LIKE 'bad %'"), "0")


class NodeSecretTest(unittest.TestCase):
    def test_secrets_sealed_and_never_returned(self):
        name = unique("secret")
        res = call("POST", NODES, admin(), {"name": name, "control_endpoint": "http://127.0.0.1:2",
                                            "control_access_key": SECRETS[0], "control_secret_key": SECRETS[1],
                                            "control_token": SECRETS[2]})
        self.assertEqual(res.status, 201, res)
        node = res.json()["node"]
        self.assertTrue(node["has_control_access_key"] and node["has_control_secret_key"] and
                        node["has_control_token"])
        path = "%s/%d" % (NODES, node["id"])

        bodies = [res.body]
        bodies.append(call("GET", path, admin()).body)
        bodies.append(call("GET", NODES + "?per_page=100&q=" + name, admin()).body)
        bodies.append(call("PATCH", path, admin(), {"control_token": SECRETS[2] + "-2"}).body)
        bodies.append(call("POST", path + "/disable", admin()).body)
        bodies.append(call("GET", "/api/v1/admin/audit-logs?per_page=100", admin()).body)
        for body in bodies:
            for secret in SECRETS:
                self.assertNotIn(secret.encode(), body)
        for key in ("control_access_key", "control_secret_key", "control_token"):
            self.assertNotIn(key.encode() + b'":"', res.body)

        row = psql("SELECT control_access_key_sealed || ' ' || control_secret_key_sealed || ' ' ||"
                   " control_token_sealed FROM nodes WHERE id = %d" % node["id"])
        sealed = row.split(" ")
        self.assertEqual(len(sealed), 3)
        for value in sealed:
            self.assertGreater(len(value), 30)
        for secret in SECRETS:
            self.assertNotIn(secret, row)
        self.assertEqual(psql("SELECT count(*) FROM audit_logs WHERE diff::text LIKE '%%plain%%'"), "0")

        log = server.new_stderr() + server.new_stdout()
        if os.path.exists(server.log_path):
            with open(server.log_path, "rb") as f:
                log += f.read().decode("utf-8", "replace")
        for secret in SECRETS:
            self.assertNotIn(secret, log)

    def test_ak_sk_aliases(self):
        node = make_node(ak=SECRETS[0], sk=SECRETS[1])
        self.assertTrue(node["has_control_access_key"])
        self.assertTrue(node["has_control_secret_key"])
        self.assertFalse(node["has_control_token"])
        path = "%s/%d" % (NODES, node["id"])
        res = call("PATCH", path, admin(), {"control_access_key": None, "sk": SECRETS[1] + "-2"})
        self.assertEqual(res.status, 200, res)
        self.assertFalse(res.json()["node"]["has_control_access_key"])
        self.assertTrue(res.json()["node"]["has_control_secret_key"])
        row = psql("SELECT coalesce(control_access_key_sealed, 'none') || ' ' || control_secret_key_sealed"
                   " FROM nodes WHERE id = %d" % node["id"])
        self.assertTrue(row.startswith("none "))
        for secret in SECRETS:
            self.assertNotIn(secret, row)
            self.assertNotIn(secret.encode(), res.body)

    def test_spec_marks_secrets_write_only(self):
        spec = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "generated", "openapi.json")
        with open(spec, encoding="utf-8") as f:
            schemas = json.load(f)["components"]["schemas"]
        for schema in ("NodeCreate", "NodeUpdate"):
            for key in ("control_access_key", "control_secret_key", "control_token", "ak", "sk"):
                with self.subTest(schema=schema, key=key):
                    prop = schemas[schema]["properties"][key]
                    self.assertTrue(prop.get("writeOnly"))
                    self.assertTrue(prop.get("x-znp-secret"))
                    self.assertNotIn(key, schemas["Node"]["properties"])


class NodeKernelTest(unittest.TestCase):
    def test_upsert_per_protocol(self):
        node = make_node()
        path = "%s/%d/kernels" % (NODES, node["id"])
        res = call("GET", path, admin())
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json(), {"node_id": node["id"], "kernels": []})
        res = call("POST", path, admin(), {"protocol": "HTTP", "endpoint": "http://[::1]:23860", "revision": "r1",
                                           "config": {"a": 1}})
        self.assertEqual(res.status, 200, res)
        kernel = res.json()["kernel"]
        self.assertEqual((kernel["protocol"], kernel["endpoint"], kernel["revision"], kernel["status"]),
                         ("http", "http://[::1]:23860", "r1", 1))
        self.assertEqual(kernel["config"], {"a": 1})
        self.assertEqual(kernel["last_synced_at"], 0)

        # the same protocol replaces the record; a blank revision keeps the stored one
        res = call("POST", path, admin(), {"protocol": "http", "endpoint": "http://127.0.0.1:9", "revision": "",
                                           "status": 2, "last_synced_at": 1700000000})
        self.assertEqual(res.status, 200, res)
        kernel = res.json()["kernel"]
        self.assertEqual((kernel["endpoint"], kernel["revision"], kernel["status"], kernel["last_synced_at"]),
                         ("http://127.0.0.1:9", "r1", 2, 1700000000))
        self.assertEqual(kernel["config"], {"a": 1})

        res = call("POST", path, admin(), {"protocol": "grpc", "endpoint": "http://127.0.0.1:10"})
        self.assertEqual(res.status, 200, res)
        res = call("GET", path, admin())
        self.assertEqual([k["protocol"] for k in res.json()["kernels"]], ["grpc", "http"])
        for body in ({"protocol": "http"}, {"endpoint": "http://a"}, {"protocol": "a b", "endpoint": "http://a"},
                     {"protocol": "http", "endpoint": "http://a", "status": 3},
                     {"protocol": "http", "endpoint": "http://a", "config": []}):
            with self.subTest(body=body):
                self.assertEqual(call("POST", path, admin(), body).status, 400)
        self.assertEqual(call("GET", "%s/999999999/kernels" % NODES, admin()).status, 404)


class NodeAccessTest(unittest.TestCase):
    def test_non_admin_forbidden(self):
        node = make_node()
        path = "%s/%d" % (NODES, node["id"])
        for method, suffix, body in (("GET", "", None), ("POST", "", {"name": unique(), "control_endpoint": "http://a"}),
                                     ("PATCH", "/%d" % node["id"], {"region": "x"}),
                                     ("DELETE", "/%d" % node["id"], None), ("POST", "/%d/disable" % node["id"], None),
                                     ("GET", "/%d/kernels" % node["id"], None)):
            with self.subTest(method=method, suffix=suffix):
                self.assertEqual(call(method, NODES + suffix, user(), body).status, 403)
                self.assertEqual(call(method, NODES + suffix, None, body).status, 401)
        self.assertEqual(call("GET", path, admin()).json()["node"]["region"], "")


class NodeAuditTest(unittest.TestCase):
    def test_every_write_is_audited(self):
        node = make_node(control_token=SECRETS[2])
        path = "%s/%d" % (NODES, node["id"])
        self.assertEqual(call("PATCH", path, admin(), {"region": "R", "control_secret_key": SECRETS[1]}).status, 200)
        self.assertEqual(call("PATCH", path, admin(), {}).status, 200)
        self.assertEqual(call("POST", path + "/kernels", admin(), {"protocol": "http", "endpoint": "http://a"}).status,
                         200)
        self.assertEqual(call("POST", path + "/disable", admin()).status, 200)
        self.assertEqual(call("DELETE", path, admin()).status, 204)
        rows = psql("SELECT action || '|' || coalesce(actor_email, '') || '|' || coalesce(diff::text, '')"
                    " FROM audit_logs WHERE resource_type = 'node' AND resource_id = '%d' ORDER BY id" % node["id"])
        lines = rows.splitlines()
        self.assertEqual([line.split("|")[0] for line in lines],
                         ["admin.node.create", "admin.node.update", "admin.node.kernel.upsert", "admin.node.disable",
                          "admin.node.delete"])
        for line in lines:
            self.assertEqual(line.split("|")[1], ADMIN[0])
            for secret in SECRETS:
                self.assertNotIn(secret, line)
        self.assertIn("control_secret_key", lines[1])


if __name__ == "__main__":
    unittest.main()

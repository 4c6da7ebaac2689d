"""The audit log: rows written by sign-in and site-settings changes, the admin
list with its filters and pagination, and the JSON and CSV exports.

The non-admin account is an admin demoted by SQL through psql; the 10,000
rows of the export test are inserted with one generate_series statement.
Run alone: /usr/bin/python3 tests/integration/run.py test_audit
"""

import csv
import http.client
import io
import json
import socket
import time
import unittest

from tests.integration import harness

server = None
ADMIN = ("auditor@example.com", "audit-pass-4Fj9")
USER = ("plain@example.com", "plain-pass-8Lw2")
LIST = "/api/v1/admin/audit-logs"
EXPORT = "/api/v1/admin/audit-logs/export"
BULK_ROWS = 10000
CSV_HEADER = ["id", "actor_id", "actor_email", "actor_roles", "action", "resource_type", "resource_id",
              "source_ip", "metadata", "created_at"]


def setUpModule():
    global server
    # a short idle timeout, which is also how long a streamed export waits for a client that reads nothing
    server = harness.Server("audit", config={"auth": {"lockout_max_attempts": 0},
                                             "server": {"idle_timeout_ms": int(harness.scaled(3) * 1000)}})
    try:
        for account in (ADMIN, USER):
            server.create_admin(*account)
        server.start()
        psql("UPDATE users SET roles = ARRAY['user'] WHERE email = '%s'" % USER[0])
    except BaseException:
        server.cleanup()
        raise


def tearDownModule():
    try:
        server.stop_expect_clean()
    finally:
        server.cleanup()


def psql(sql):
    return harness.EmbeddedCluster(server.data_dir).psql(sql, database=server.database_name())


def bearer(token):
    return {"Authorization": "Bearer " + token}


def admin_get(path, token=None):
    token = token or server.access_token(*ADMIN)
    return server.request("GET", path, headers=bearer(token))


class Events(unittest.TestCase):
    """Rows written by the code paths under test, read back through the API."""

    def test_login_failure_and_success(self):
        bad = server.login(ADMIN[0], "wrong-password-1", headers={"X-Request-Id": "audit-fail-1",
                                                                 "User-Agent": "audit-test/1.0"})
        self.assertEqual(bad.status, 401, bad)
        good = server.login(*ADMIN, headers={"X-Request-Id": "audit-ok-1"})
        self.assertEqual(good.status, 200, good)
        token = good.json()["access_token"]
        admin_id = good.json()["user"]["id"]

        res = admin_get(LIST + "?action=auth.login.failed&per_page=100", token)
        self.assertEqual(res.status, 200, res)
        rows = [r for r in res.json()["logs"] if r["request_id"] == "audit-fail-1"]
        self.assertEqual(len(rows), 1, res.json())
        row = rows[0]
        self.assertEqual(row["actor_id"], admin_id)
        self.assertEqual(row["actor_email"], ADMIN[0])
        self.assertEqual(row["source_ip"], "127.0.0.1")
        self.assertEqual(row["user_agent"], "audit-test/1.0")
        self.assertEqual(row["resource_type"], "user")
        self.assertEqual(row["resource_id"], str(admin_id))
        self.assertEqual(row["metadata"], {"reason": "invalid_credentials"})
        self.assertNotIn("wrong-password-1", res.body.decode())

        res = admin_get(LIST + "?action=AUTH.LOGIN.SUCCEEDED&per_page=100", token)
        rows = [r for r in res.json()["logs"] if r["request_id"] == "audit-ok-1"]
        self.assertEqual(len(rows), 1, res.json())
        self.assertEqual(rows[0]["actor_id"], admin_id)
        self.assertNotIn(ADMIN[1], res.body.decode())

    def test_unknown_email_failure(self):
        bad = server.login("nobody@example.com", "whatever-pass-1", headers={"X-Request-Id": "audit-unknown-1"})
        self.assertEqual(bad.status, 401, bad)
        res = admin_get(LIST + "?action=auth.login.failed&per_page=100")
        rows = [r for r in res.json()["logs"] if r["request_id"] == "audit-unknown-1"]
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0]["actor_id"], 0)
        self.assertEqual(rows[0]["actor_email"], "nobody@example.com")
        self.assertEqual(rows[0]["metadata"], {"reason": "unknown_email"})

    def test_refresh_token_reuse_revokes_family(self):
        login = server.login(*USER).json()
        first = login["refresh_token"]
        res = server.request("POST", "/api/v1/auth/refresh", {"refresh_token": first})
        self.assertEqual(res.status, 200, res)
        reuse = server.request("POST", "/api/v1/auth/refresh", {"refresh_token": first},
                               headers={"X-Request-Id": "audit-reuse-1"})
        self.assertEqual(reuse.status, 401, reuse)

        res = admin_get(LIST + "?action=auth.token.family_revoked&per_page=100")
        rows = [r for r in res.json()["logs"] if r["request_id"] == "audit-reuse-1"]
        self.assertEqual(len(rows), 1, res.json())
        self.assertEqual(rows[0]["actor_id"], login["user"]["id"])
        self.assertEqual(rows[0]["metadata"]["reason"], "refresh_token_reused")
        self.assertNotIn(first, res.body.decode())

    def test_site_settings_update_has_diff(self):
        token = server.access_token(*ADMIN)
        before = server.request("GET", "/api/v1/admin/site-settings", headers=bearer(token)).json()["setting"]
        res = server.request("PATCH", "/api/v1/admin/site-settings",
                             {"name": "Audited Panel", "logo_url": before["logo_url"]},
                             headers=dict(bearer(token), **{"X-Request-Id": "audit-site-1"}))
        self.assertEqual(res.status, 200, res)

        res = admin_get(LIST + "?action=admin.site_settings.update&resource_type=site_settings&resource_id=1",
                        token)
        rows = [r for r in res.json()["logs"] if r["request_id"] == "audit-site-1"]
        self.assertEqual(len(rows), 1, res.json())
        row = rows[0]
        self.assertEqual(row["actor_email"], ADMIN[0])
        self.assertIn("admin", row["actor_roles"])
        self.assertEqual(row["source_ip"], "127.0.0.1")
        # only the key that changed
        self.assertEqual(row["metadata"], {"name": {"from": before["name"], "to": "Audited Panel"}})
        self.assertNotIn(token, res.body.decode())


class Listing(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # 25 rows of one action, one second apart, for the filter and page tests
        psql("INSERT INTO audit_logs (actor_id, actor_email, action, resource_type, resource_id, source_ip, diff,"
             " created_at) SELECT 4242, 'pager@example.com', 'test.pager', 'widget', i::text, '10.0.0.1',"
             " jsonb_build_object('n', i), to_timestamp(1700000000 + i) FROM generate_series(1, 25) AS i")

    def test_pagination_newest_first(self):
        token = server.access_token(*ADMIN)
        seen = []
        for page in (1, 2, 3):
            res = admin_get(LIST + "?action=test.pager&per_page=10&page=%d" % page, token)
            self.assertEqual(res.status, 200, res)
            body = res.json()
            self.assertEqual(body["pagination"], {"page": page, "per_page": 10, "total_count": 25,
                                                  "has_next": page < 3, "has_prev": page > 1})
            seen += [r["metadata"]["n"] for r in body["logs"]]
        self.assertEqual(seen, list(range(25, 0, -1)))

    def test_page_beyond_maximum_rejected(self):
        # (page - 1) * per_page must never overflow int64, so the spec bounds page
        for page in ("1000001", "9223372036854775807"):
            res = admin_get(LIST + "?per_page=100&page=" + page)
            self.assertEqual(res.status, 400, res)
            self.assertEqual(res.json()["error"], "validation_failed")
        res = admin_get(LIST + "?per_page=100&page=1000000")
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["logs"], [])

    def test_filters(self):
        token = server.access_token(*ADMIN)
        res = admin_get(LIST + "?actor_id=4242&resource_id=7", token)
        self.assertEqual([r["metadata"]["n"] for r in res.json()["logs"]], [7])
        res = admin_get(LIST + "?action=test.pager&since=1700000010&until=1700000012", token)
        self.assertEqual([r["metadata"]["n"] for r in res.json()["logs"]], [12, 11, 10])
        res = admin_get(LIST + "?resource_type=WIDGET&per_page=1", token)
        self.assertEqual(res.json()["pagination"]["total_count"], 25)
        res = admin_get(LIST + "?action=no.such.action", token)
        self.assertEqual(res.json()["logs"], [])
        self.assertEqual(res.json()["pagination"]["total_count"], 0)

    def test_since_after_until_rejected(self):
        for path in (LIST, EXPORT):
            res = admin_get(path + "?since=1700000100&until=1700000000")
            self.assertEqual(res.status, 400, res)
            self.assertEqual(res.json()["error"], "validation_failed")

    def test_bad_format_rejected(self):
        res = admin_get(EXPORT + "?format=xml")
        self.assertEqual(res.status, 400, res)

    def test_non_admin_forbidden(self):
        token = server.access_token(*USER)
        for path in (LIST, EXPORT, EXPORT + "?format=csv"):
            res = server.request("GET", path, headers=bearer(token))
            self.assertEqual(res.status, 403, res)
        self.assertEqual(server.request("GET", LIST).status, 401)

    def test_export_json_filtered(self):
        res = admin_get(EXPORT + "?action=test.pager")
        self.assertEqual(res.status, 200, res)
        body = res.json()
        self.assertEqual(body["total_count"], 25)
        self.assertEqual(len(body["logs"]), 25)
        self.assertGreater(body["exported_at"], 1700000000)


class BulkExport(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # hostile cells: a formula, a comma, quotes and a line break
        psql("INSERT INTO audit_logs (actor_id, actor_email, actor_roles, action, resource_type, resource_id,"
             " source_ip, diff) SELECT 77, '=cmd@example.com', ARRAY['admin','user'], 'test.bulk', 'row',"
             " 'id,' || i, '192.0.2.1', jsonb_build_object('note', 'line' || chr(10) || '\"q\"', 'i', i)"
             " FROM generate_series(1, %d) AS i" % BULK_ROWS)

    def test_csv_export_is_complete(self):
        started = time.monotonic()
        res = admin_get(EXPORT + "?format=csv&action=test.bulk")
        self.assertEqual(res.status, 200, res)
        self.assertTrue(res.header("content-type").startswith("text/csv"), res.headers)
        self.assertEqual(res.header("content-disposition"), 'attachment; filename="audit-logs.csv"')
        rows = list(csv.reader(io.StringIO(res.body.decode("utf-8"), newline="")))
        self.assertEqual(rows[0], CSV_HEADER)
        data = rows[1:]
        self.assertEqual(len(data), BULK_ROWS)
        numbers = set()
        for row in data:
            self.assertEqual(len(row), len(CSV_HEADER))
            self.assertEqual(row[1], "77")
            self.assertEqual(row[2], "'=cmd@example.com")
            self.assertEqual(row[3], "admin|user")
            self.assertEqual(row[4], "test.bulk")
            metadata = json.loads(row[8])
            self.assertEqual(metadata["note"], 'line\n"q"')
            self.assertEqual(row[6], "id,%d" % metadata["i"])
            numbers.add(metadata["i"])
        self.assertEqual(numbers, set(range(1, BULK_ROWS + 1)))
        self.assertLess(time.monotonic() - started, harness.scaled(30))

    def test_csv_export_streams_in_chunks(self):
        # over 1 MiB of CSV leaves the server in pieces: chunked on HTTP/1.1, DATA frames on h2c
        res = admin_get(EXPORT + "?format=csv&action=test.bulk")
        self.assertEqual(res.status, 200, res)
        self.assertGreater(len(res.body), 1024 * 1024)
        self.assertEqual(res.header("transfer-encoding"), "chunked")
        self.assertIsNone(res.header("content-length"))

        token = server.access_token(*ADMIN)
        res2 = harness.curl(server.url(EXPORT + "?format=csv&action=test.bulk"), "h2c", headers=bearer(token))
        self.assertEqual(res2.status, 200, res2)
        self.assertEqual(res2.http_version, "2")
        rows = list(csv.reader(io.StringIO(res2.body.decode("utf-8"), newline="")))
        self.assertEqual(len(rows), BULK_ROWS + 1)

    def test_abandoned_csv_export_leaves_server_healthy(self):
        token = server.access_token(*ADMIN)
        for _ in range(3):
            conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=harness.scaled(10))
            conn.request("GET", EXPORT + "?format=csv&action=test.bulk", headers=bearer(token))
            res = conn.getresponse()
            self.assertEqual(res.status, 200)
            self.assertEqual(len(res.read(1000)), 1000)
            conn.close()
        res = admin_get(EXPORT + "?format=csv&action=test.bulk", token)
        self.assertEqual(res.status, 200, res)
        rows = list(csv.reader(io.StringIO(res.body.decode("utf-8"), newline="")))
        self.assertEqual(len(rows), BULK_ROWS + 1)
        self.assertEqual(server.request("GET", "/api/v1/ping").status, 200)
        with open(server.log_path, errors="replace") as f:
            self.assertIn("streamed response stopped", f.read())

    def test_csv_export_of_nothing_is_header_only(self):
        res = admin_get(EXPORT + "?format=csv&action=no.such.action")
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.body.decode(), ",".join(CSV_HEADER) + "\r\n")

    def test_json_export_is_complete(self):
        res = admin_get(EXPORT + "?format=json&action=test.bulk")
        self.assertEqual(res.status, 200, res)
        body = res.json()
        self.assertEqual(body["total_count"], BULK_ROWS)
        self.assertEqual(len(body["logs"]), BULK_ROWS)
        self.assertEqual({r["metadata"]["i"] for r in body["logs"]}, set(range(1, BULK_ROWS + 1)))

    def test_json_export_of_many_rows_streams(self):
        # 60,000 rows make a 20 MB document: more than the request memory of a JSON response, so it is streamed.
        # Under valgrind a third of them keeps the run short; the plain and ASan runs cover the 20 MB.
        rows = 20000 if harness.VALGRIND else 60000
        psql("INSERT INTO audit_logs (actor_id, actor_email, actor_roles, action, resource_type, resource_id,"
             " source_ip, diff) SELECT 78, 'many@example.com', ARRAY['admin'], 'test.many', 'row', i::text,"
             " '192.0.2.2', jsonb_build_object('i', i, 'pad', repeat('pad-', 25)) FROM generate_series(1, %d) AS i"
             % rows)
        res = server.request("GET", EXPORT + "?format=json&action=test.many",
                             headers=bearer(server.access_token(*ADMIN)), timeout=60)
        self.assertEqual(res.status, 200, res)
        self.assertTrue(res.header("content-type").startswith("application/json"), res.headers)
        if not harness.VALGRIND:
            self.assertGreater(len(res.body), 16 * 1024 * 1024)
        body = res.json()
        self.assertEqual(body["total_count"], rows)
        self.assertEqual(len(body["logs"]), rows)
        self.assertEqual([r["metadata"]["i"] for r in body["logs"][:2]], [rows, rows - 1])
        self.assertEqual({r["metadata"]["i"] for r in body["logs"]}, set(range(1, rows + 1)))
        self.assertEqual(server.request("GET", "/api/v1/ping").status, 200)

    def test_stalled_clients_free_workers(self):
        # every worker (4) streams an export to a client that reads nothing: after the stall timeout
        # (server.idle_timeout_ms) the workers give up, and a request that needs one gets its response
        psql("INSERT INTO audit_logs (actor_id, actor_email, actor_roles, action, resource_type, resource_id,"
             " source_ip, diff) SELECT 79, 'stall@example.com', ARRAY['admin'], 'test.stall', 'row', i::text,"
             " '192.0.2.3', jsonb_build_object('i', i, 'pad', repeat('pad-', 50)) FROM generate_series(1, 40000) AS i")
        token = server.access_token(*ADMIN)
        request = ("GET %s?format=csv&action=test.stall HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Authorization: Bearer %s\r\n\r\n" % (EXPORT, token)).encode()
        sockets = []
        try:
            for _ in range(4):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(("127.0.0.1", server.http_port))
                sock.sendall(request)
                sockets.append(sock)
            time.sleep(harness.scaled(0.5))
            started = time.monotonic()
            res = server.request("GET", LIST + "?per_page=1", headers=bearer(token), timeout=30)
            self.assertEqual(res.status, 200, res)
            self.assertLess(time.monotonic() - started, harness.scaled(3) + harness.scaled(10))
        finally:
            for sock in sockets:
                sock.close()
        with open(server.log_path, errors="replace") as f:
            self.assertIn("the client read nothing for", f.read())

    def test_unreadable_metadata_keeps_list_working(self):
        # an array, and an integer over 64 bits that jansson cannot read, written around the API
        psql("INSERT INTO audit_logs (actor_id, actor_email, actor_roles, action, resource_type, resource_id,"
             " source_ip, diff) VALUES (80, 'odd@example.com', ARRAY['admin'], 'test.odd', 'row', '1',"
             " '192.0.2.4', '[1, 2]'::jsonb), (80, 'odd@example.com', ARRAY['admin'], 'test.odd', 'row', '2',"
             " '192.0.2.4', '{\"n\": 123456789012345678901234567890}'::jsonb)")
        for path in (LIST + "?action=test.odd", EXPORT + "?format=json&action=test.odd"):
            with self.subTest(path=path):
                res = admin_get(path)
                self.assertEqual(res.status, 200, res)
                metadata = {r["resource_id"]: r["metadata"] for r in res.json()["logs"]}
                self.assertEqual(metadata, {"1": {"value": [1, 2]}, "2": {"unreadable": True}})
        with open(server.log_path, errors="replace") as f:
            self.assertIn("has metadata that cannot be read", f.read())

    def test_csp_on_json_not_csv(self):
        # a CSV file is for programs and goes without Content-Security-Policy, while a JSON response keeps it
        csv_res = admin_get(EXPORT + "?format=csv&action=no.such.action")
        json_res = admin_get(EXPORT + "?format=json&action=no.such.action")
        self.assertEqual((csv_res.status, json_res.status), (200, 200))
        self.assertIsNone(csv_res.header("content-security-policy"))
        self.assertIn("frame-ancestors 'none'", json_res.header("content-security-policy") or "")
        for res in (csv_res, json_res):
            self.assertEqual(res.header("x-content-type-options"), "nosniff")

    def test_json_export_of_nothing(self):
        res = admin_get(EXPORT + "?format=json&action=no.such.action")
        self.assertEqual(res.status, 200, res)
        body = res.json()
        self.assertEqual((body["logs"], body["total_count"]), ([], 0))
        self.assertGreater(body["exported_at"], 1700000000)


if __name__ == "__main__":
    unittest.main()

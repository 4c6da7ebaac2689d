"""HTTP face of `znp serve`: protocols, error envelopes, limits, request ids, OpenAPI, docs, metrics.

One server (with --demo and a TLS listener) serves every test in this module.
Run alone: /usr/bin/python3 -m unittest tests.integration.test_http -v
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from tests.integration import harness

server = None
DEMO_EMAIL = "admin@example.com"


def setUpModule():
    global server
    server = harness.Server("http", demo=True, tls=True)
    try:
        server.start()
    except BaseException:
        server.cleanup()
        raise


def tearDownModule():
    try:
        server.stop_expect_clean()
    finally:
        server.cleanup()


def assert_envelope(test, res, status, key, code=None):
    """Check an error response: status, JSON content type, envelope fields and request id."""
    test.assertEqual(res.status, status, res)
    test.assertTrue((res.header("content-type") or "").startswith("application/json"), res.headers)
    body = res.json()
    for field in ("code", "error", "message", "details", "request_id"):
        test.assertIn(field, body, body)
    test.assertEqual(body["error"], key, body)
    test.assertIsInstance(body["code"], int)
    test.assertEqual(body["code"] // 1000, status, body)
    if code is not None:
        test.assertEqual(body["code"], code, body)
    test.assertIsInstance(body["details"], list)
    test.assertTrue(body["request_id"], body)
    test.assertEqual(body["request_id"], res.header("x-request-id"))
    return body


def demo_password():
    """The admin password that --demo printed on stdout the first time."""
    out = server.new_stdout()
    match = re.search(r"password\W+(\S+)", out, re.IGNORECASE)
    if not match:
        raise AssertionError("no password in the --demo output:\n%s" % out)
    return match.group(1)


class PingProtocols(unittest.TestCase):
    def check_ping(self, res, version):
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.http_version, version)
        body = res.json()
        self.assertEqual(body["status"], "ok")
        self.assertEqual(body["service"], "znp")
        self.assertIsInstance(body["timestamp"], int)
        self.assertTrue(res.header("x-request-id"))

    def test_ping_http11(self):
        self.check_ping(harness.curl(server.url("/api/v1/ping"), "http1.1"), "1.1")

    def test_ping_h2c_prior_knowledge(self):
        self.check_ping(harness.curl(server.url("/api/v1/ping"), "h2c"), "2")

    def test_ping_tls_h2(self):
        res = harness.curl(server.url("/api/v1/ping", "https"), "h2", cacert=server.cert)
        self.check_ping(res, "2")

    def test_cached_ping_keeps_the_current_second(self):
        # ping's encoded answer is reused within one wall-clock second (x-znp-cache-seconds: 1)
        seen = set()
        deadline = time.time() + 2.5
        while time.time() < deadline:
            before = int(time.time())
            res = server.request("GET", "/api/v1/ping")
            after = int(time.time())
            self.assertEqual(res.status, 200, res)
            stamp = res.json()["timestamp"]
            self.assertTrue(before <= stamp <= after, (before, stamp, after))
            self.assertTrue(res.header("x-request-id"))
            seen.add(stamp)
            time.sleep(0.05)
        self.assertGreaterEqual(len(seen), 2, "the timestamp never advanced: %r" % seen)

    def test_tls_rejects_unknown_ca(self):
        proc = subprocess.run(["curl", "-sS", "--max-time", "10", server.url("/api/v1/ping", "https")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.assertEqual(proc.returncode, 60, proc.stderr)  # CURLE_PEER_FAILED_VERIFICATION

    def test_banner(self):
        res = server.request("GET", "/")
        self.assertEqual(res.status, 200, res)
        self.assertIn("znp", res.json()["message"])


class DemoLogin(unittest.TestCase):
    def test_demo_admin_can_log_in(self):
        res = server.login(DEMO_EMAIL, demo_password())
        self.assertEqual(res.status, 200, res)
        body = res.json()
        self.assertEqual(body["token_type"], "Bearer")
        self.assertEqual(body["user"]["email"], DEMO_EMAIL)
        self.assertIn("admin", body["user"]["roles"])

    def test_demo_admin_reads_site_settings(self):
        token = server.access_token(DEMO_EMAIL, demo_password())
        res = server.request("GET", "/api/v1/admin/site-settings", headers={"Authorization": "Bearer " + token})
        self.assertEqual(res.status, 200, res)
        self.assertIn("setting", res.json())


class Routing(unittest.TestCase):
    def test_unknown_path_404(self):
        res = server.request("GET", "/api/v1/no-such-thing")
        assert_envelope(self, res, 404, "route_not_found", 404001)

    def test_wrong_method_405_with_allow(self):
        res = server.request("DELETE", "/api/v1/ping")
        assert_envelope(self, res, 405, "method_not_allowed", 405001)
        allow = [m.strip() for m in (res.header("allow") or "").split(",")]
        self.assertIn("GET", allow)
        self.assertNotIn("DELETE", allow)

    def test_post_only_route_allows_post(self):
        res = server.request("GET", "/api/v1/auth/login")
        assert_envelope(self, res, 405, "method_not_allowed")
        self.assertIn("POST", res.header("allow") or "")

    def test_404_over_h2c(self):
        res = harness.curl(server.url("/api/v1/nope"), "h2c")
        self.assertEqual(res.http_version, "2")
        assert_envelope(self, res, 404, "route_not_found")


class RequestIds(unittest.TestCase):
    def test_incoming_id_is_echoed(self):
        res = server.request("GET", "/api/v1/ping", headers={"X-Request-Id": "it-echo-4f2a"})
        self.assertEqual(res.header("x-request-id"), "it-echo-4f2a")

    def test_id_is_generated_and_unique(self):
        first = server.request("GET", "/api/v1/ping").header("x-request-id")
        second = server.request("GET", "/api/v1/ping").header("x-request-id")
        self.assertTrue(first)
        self.assertTrue(second)
        self.assertNotEqual(first, second)

    def test_error_envelope_carries_the_id(self):
        res = server.request("GET", "/api/v1/nope", headers={"x-request-id": "it-env-77"})
        body = assert_envelope(self, res, 404, "route_not_found")
        self.assertEqual(body["request_id"], "it-env-77")

    def test_hostile_id_is_replaced(self):
        res = server.request("GET", "/api/v1/ping", headers={"x-request-id": "bad id\twith controls"})
        rid = res.header("x-request-id")
        self.assertTrue(rid)
        self.assertNotIn("\t", rid)


class Validation(unittest.TestCase):
    def post_login(self, body, headers=None):
        headers = dict(headers or {})
        headers.setdefault("Content-Type", "application/json")
        return server.request("POST", "/api/v1/auth/login", body, headers=headers)

    def fields(self, body):
        return [d.get("field") for d in body["details"]]

    def test_wrong_type_names_field(self):
        body = assert_envelope(self, self.post_login(json.dumps({"email": 5, "password": "x"})),
                               400, "validation_failed", 400002)
        self.assertIn("$.email", self.fields(body))

    def test_too_long_names_field(self):
        long_email = "a" * 300 + "@example.com"
        body = assert_envelope(self, self.post_login(json.dumps({"email": long_email, "password": "x"})),
                               400, "validation_failed")
        self.assertIn("$.email", self.fields(body))

    def test_missing_required_field(self):
        body = assert_envelope(self, self.post_login(json.dumps({"email": "a@example.com"})),
                               400, "validation_failed")
        self.assertIn("$.password", self.fields(body))

    def test_invalid_json(self):
        assert_envelope(self, self.post_login('{"email": "a@example.com", "password": '), 400, "invalid_json", 400001)

    def test_invalid_utf8(self):
        raw = b'{"email": "a\xff\xfe@example.com", "password": "x"}'
        assert_envelope(self, self.post_login(raw), 400, "invalid_utf8", 400003)

    def test_wrong_content_type(self):
        res = self.post_login(json.dumps({"email": "a@example.com", "password": "x"}),
                              headers={"Content-Type": "text/plain"})
        assert_envelope(self, res, 415, "unsupported_media_type", 415001)

    def test_missing_body(self):
        res = server.request("POST", "/api/v1/auth/login", b"", headers={"Content-Type": "application/json"})
        self.assertEqual(res.status, 400, res)
        self.assertIn(res.json()["error"], ("body_required", "invalid_json"))

    def test_chinese_message(self):
        res = self.post_login("{", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"})
        body = assert_envelope(self, res, 400, "invalid_json")
        self.assertEqual(body["message"], "请求体不是有效的 JSON")

    def test_english_message_by_default(self):
        body = assert_envelope(self, self.post_login("{"), 400, "invalid_json")
        self.assertEqual(body["message"], "request body is not valid JSON")

    def test_english_when_asked(self):
        body = assert_envelope(self, self.post_login("{", headers={"Accept-Language": "en-US"}), 400,
                               "invalid_json")
        self.assertEqual(body["message"], "request body is not valid JSON")


class BodyLimit(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="znp-it-body-")
        cls.big = os.path.join(cls.tmp, "big.json")
        with open(cls.big, "wb") as f:
            f.write(b'{"email": "' + b"a" * (2 * 1024 * 1024) + b'", "password": "x"}')

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def post_big(self, mode, scheme="http"):
        return harness.curl(server.url("/api/v1/auth/login", scheme), mode, method="POST", body_file=self.big,
                            headers={"Content-Type": "application/json"},
                            cacert=server.cert if scheme == "https" else None)

    def test_413_http11(self):
        res = self.post_big("http1.1")
        self.assertEqual(res.http_version, "1.1")
        assert_envelope(self, res, 413, "body_too_large", 413001)

    def test_413_h2c(self):
        res = self.post_big("h2c")
        self.assertEqual(res.http_version, "2")
        assert_envelope(self, res, 413, "body_too_large", 413001)

    def test_413_tls_h2(self):
        res = self.post_big("h2", "https")
        self.assertEqual(res.http_version, "2")
        assert_envelope(self, res, 413, "body_too_large", 413001)

    def test_server_still_answers_after_413(self):
        self.post_big("h2c")
        self.assertEqual(server.request("GET", "/api/v1/ping").status, 200)


class OpenApiAndDocs(unittest.TestCase):
    def test_openapi_json_lists_paths(self):
        res = server.request("GET", "/openapi.json")
        self.assertEqual(res.status, 200, res)
        doc = res.json()
        self.assertTrue(doc["openapi"].startswith("3.1"))
        for path in ("/api/v1/ping", "/api/v1/auth/login", "/api/v1/auth/refresh",
                     "/api/v1/{admin}/site-settings"):
            self.assertIn(path, doc["paths"])
        self.assertIn("post", doc["paths"]["/api/v1/auth/login"])

    @unittest.skipUnless(os.path.isdir(harness.DOCS_DIR), "third_party/swagger-ui missing: run scripts/setup.sh")
    def test_docs_page(self):
        res = server.request("GET", "/docs/")
        self.assertEqual(res.status, 200, res)
        self.assertIn(b"swagger-ui", res.body)
        script = server.request("GET", "/docs/swagger-initializer.js")
        self.assertEqual(script.status, 200, script)
        self.assertIn(b"/openapi.json", script.body)


class Metrics(unittest.TestCase):
    def scrape(self):
        res = server.request("GET", "/metrics")
        self.assertEqual(res.status, 200, res)
        return res.body

    def ping_count(self, text):
        """Sum of the request counters for GET /api/v1/ping with status 200."""
        total = 0.0
        for line in text.decode().splitlines():
            if line.startswith("#") or "_requests_total{" not in line:
                continue
            if 'route="/api/v1/ping"' in line and 'method="GET"' in line and re.search(r'(status|code)="200"', line):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def test_promtool_accepts_exposition(self):
        if shutil.which("promtool") is None:
            self.skipTest("promtool missing: run scripts/setup.sh --test")
        body = self.scrape()
        proc = subprocess.run(["promtool", "check", "metrics"], input=body, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
        self.assertEqual(proc.returncode, 0, proc.stderr.decode())

    def test_counts_requests(self):
        before = self.ping_count(self.scrape())
        for _ in range(5):
            self.assertEqual(server.request("GET", "/api/v1/ping").status, 200)
        # A request is counted when it ends, which may be just after its response was read.
        harness.wait_until(lambda: self.ping_count(self.scrape()) >= before + 5, timeout=5)
        self.assertEqual(self.ping_count(self.scrape()) - before, 5)


if __name__ == "__main__":
    unittest.main()

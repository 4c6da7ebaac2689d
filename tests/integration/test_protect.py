"""Client IP behind trusted proxies, CORS, rate limits, the admin allow-list and security headers.

One server covers every case. Its peers differ by loopback source address:
127.0.0.1 is an ordinary client, 127.0.0.2 is a trusted proxy whose
X-Forwarded-For is believed, and 127.0.0.3 is the only address the admin
allow-list admits. Buckets refill at 60 per minute (one token a second) with
a burst of 2, so a test waits about a second for a refill. Under valgrind
the rate is divided by the harness timeout scale, so that a few slow
requests do not see a refill in between.
Run alone: ZNP_BIN=build/znp /usr/bin/python3 tests/integration/run.py test_protect
"""

import http.client
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from tests.integration import harness

server = None
ADMIN = ("guard@example.com", "guard-pass-5Rt8")
CLIENT = "127.0.0.1"
PROXY = "127.0.0.2"
ADMIN_HOST = "127.0.0.3"
BURST = 2
RATE = max(1, int(60 / harness.TIMEOUT_SCALE))  # tokens per minute

CONFIG = {
    "server": {"trusted_proxies": PROXY + "/32, fd00::/8"},
    "admin": {"allow_cidrs": ADMIN_HOST + "/32, 2001:db8::/32"},
    "cors": {
        "enabled": True,
        "allow_origins": "https://app.example.com, https://*.example.org",
        "allow_credentials": True,
        "max_age_s": 120,
        "groups": {
            "public": {"allow_origins": "*", "allow_credentials": "false"},
            "admin": {"enabled": "false"},
        },
    },
    "rate_limits": {
        "groups": {
            "user": {
                "ip": {"rate_per_minute": RATE, "burst": BURST},
                "user": {"rate_per_minute": RATE, "burst": BURST},
            },
        },
    },
}


def setUpModule():
    global server
    server = harness.Server("protect", tls=True, config=CONFIG)
    try:
        server.create_admin(*ADMIN)
        server.start()
    except BaseException:
        server.cleanup()
        raise


def tearDownModule():
    try:
        server.stop_expect_clean()
    finally:
        server.cleanup()


def request(method, path, source=CLIENT, headers=None, body=None):
    """One HTTP/1.1 request from the loopback address `source`."""
    headers = dict(headers or {})
    if body is not None:
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=harness.scaled(10),
                                      source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers)
        res = conn.getresponse()
        data = res.read()
        out = {}
        for name, value in res.getheaders():
            out.setdefault(name.lower(), []).append(value)
        return harness.Response(res.status, out, data, "1.1")
    finally:
        conn.close()


def forwarded(client_ip):
    return {"X-Forwarded-For": "%s, %s" % ("192.0.2.99", client_ip)}


def wait_for_token():
    time.sleep(60.0 / RATE + 0.1)


class ClientAddress(unittest.TestCase):
    PATH = "/api/v1/user/no-such-route"

    def test_untrusted_peer_cannot_pick_its_bucket(self):
        for _ in range(BURST):
            self.assertNotEqual(request("GET", self.PATH).status, 429)
        # a fresh address in X-Forwarded-For would get a full bucket if it were believed
        res = request("GET", self.PATH, headers=forwarded("198.51.100.1"))
        self.assertEqual(res.status, 429, res)
        res = request("GET", self.PATH, headers={"Forwarded": "for=198.51.100.2"})
        self.assertEqual(res.status, 429, res)

    def test_trusted_proxy_forwards_client(self):
        headers = forwarded("198.51.100.10")
        for _ in range(BURST):
            self.assertNotEqual(request("GET", self.PATH, PROXY, headers).status, 429)
        self.assertEqual(request("GET", self.PATH, PROXY, headers).status, 429)
        # another client behind the same proxy has its own bucket
        res = request("GET", self.PATH, PROXY, forwarded("198.51.100.11"))
        self.assertEqual(res.status, 404, res)

    def test_forwarded_header_from_trusted_proxy(self):
        headers = {"Forwarded": 'for="[2001:db8::7]:4711";proto=https, for=198.51.100.20'}
        for _ in range(BURST):
            self.assertEqual(request("GET", self.PATH, PROXY, headers).status, 404)
        self.assertEqual(request("GET", self.PATH, PROXY, headers).status, 429)

    def test_access_log_names_forwarded_client(self):
        request("GET", "/api/v1/ping", PROXY, forwarded("198.51.100.30"))
        deadline = time.time() + harness.scaled(5)
        while time.time() < deadline:
            with open(server.log_path, encoding="utf-8", errors="replace") as f:
                if "client=198.51.100.30" in f.read():
                    return
            time.sleep(0.1)
        self.fail("access log has no line with client=198.51.100.30")


class RateLimits(unittest.TestCase):
    PATH = "/api/v1/user/no-such-route"

    def test_empty_bucket_answers_429_then_recovers(self):
        headers = forwarded("198.51.100.40")
        first = request("GET", self.PATH, PROXY, headers)
        self.assertEqual(first.status, 404, first)
        self.assertEqual(first.header("ratelimit-limit"), str(BURST))
        self.assertEqual(first.header("ratelimit-remaining"), str(BURST - 1))
        for _ in range(BURST - 1):
            request("GET", self.PATH, PROXY, headers)

        res = request("GET", self.PATH, PROXY, headers)
        self.assertEqual(res.status, 429, res)
        body = res.json()
        self.assertEqual(body["error"], "too_many_requests")
        self.assertEqual(body["code"], 429001)
        self.assertGreaterEqual(int(res.header("retry-after")), 1)
        self.assertLessEqual(int(res.header("retry-after")), math.ceil(60.0 / RATE))
        self.assertEqual(res.header("ratelimit-limit"), str(BURST))
        self.assertEqual(res.header("ratelimit-remaining"), "0")
        self.assertGreaterEqual(int(res.header("ratelimit-reset")), 1)

        wait_for_token()
        res = request("GET", self.PATH, PROXY, headers)
        self.assertEqual(res.status, 404, res)

    def test_zh_message_on_429(self):
        headers = dict(forwarded("198.51.100.41"), **{"Accept-Language": "zh-CN"})
        for _ in range(BURST):
            request("GET", self.PATH, PROXY, headers)
        res = request("GET", self.PATH, PROXY, headers)
        self.assertEqual(res.status, 429, res)
        self.assertIn("频繁", res.json()["message"])

    def test_public_group_is_not_limited(self):
        for _ in range(BURST + 2):
            res = request("GET", "/api/v1/ping")
            self.assertEqual(res.status, 200, res)
            self.assertIsNone(res.header("ratelimit-limit"))

    def test_user_bucket_after_authentication(self):
        path = user_get_route()
        if path is None:
            self.skipTest("the spec has no parameterless GET route under /api/v1/user")
        token = server.access_token(*ADMIN)
        statuses = []
        # a new forwarded address per request, so only the per-user bucket can run out
        for i in range(BURST + 1):
            headers = dict(forwarded("198.51.100.%d" % (50 + i)), Authorization="Bearer " + token)
            statuses.append(request("GET", path, PROXY, headers))
        self.assertNotIn(429, [r.status for r in statuses[:BURST]], statuses)
        self.assertEqual(statuses[-1].status, 429, statuses[-1])
        self.assertIsNotNone(statuses[-1].header("retry-after"))
        self.assertEqual(statuses[-1].header("ratelimit-remaining"), "0")

        # an anonymous caller is not counted against the user
        anonymous = request("GET", path, PROXY, forwarded("198.51.100.60"))
        self.assertEqual(anonymous.status, 401, anonymous)


def user_get_route():
    document = request("GET", "/openapi.json").json()
    for path, item in sorted(document["paths"].items()):
        if path.startswith("/api/v1/user/") and "{" not in path and "get" in item:
            return path
    return None


class AdminAllowList(unittest.TestCase):
    PATH = "/api/v1/admin/site-settings"

    def test_outside_address_is_denied_before_authentication(self):
        token = server.access_token(*ADMIN)
        res = request("GET", self.PATH, headers={"Authorization": "Bearer " + token})
        self.assertEqual(res.status, 403, res)
        body = res.json()
        self.assertEqual(body["error"], "access_denied")
        self.assertEqual(body["code"], 403040)

    def test_listed_address_reaches_authentication(self):
        res = request("GET", self.PATH, ADMIN_HOST)
        self.assertEqual(res.status, 401, res)

    def test_listed_address_behind_trusted_proxy(self):
        res = request("GET", self.PATH, PROXY, forwarded(ADMIN_HOST))
        self.assertEqual(res.status, 401, res)
        res = request("GET", self.PATH, PROXY, forwarded("198.51.100.70"))
        self.assertEqual(res.status, 403, res)

    def test_encoded_prefix_is_still_admin(self):
        res = request("GET", "/api/v1/%61dmin/site-settings")
        self.assertIn(res.status, (403, 404), res)
        self.assertNotEqual(res.status, 401, res)

    def test_unknown_admin_path_is_denied(self):
        res = request("GET", "/api/v1/admin/does-not-exist")
        self.assertEqual(res.status, 403, res)


class Cors(unittest.TestCase):
    USER_PATH = "/api/v1/user/account/profile"

    def preflight(self, origin, path=None, method="PATCH", headers="authorization, content-type", source=CLIENT):
        request_headers = {"Origin": origin, "Access-Control-Request-Method": method}
        if headers:
            request_headers["Access-Control-Request-Headers"] = headers
        return request("OPTIONS", path or self.USER_PATH, source, request_headers)

    def test_preflight_allowed_origin(self):
        res = self.preflight("https://app.example.com")
        self.assertEqual(res.status, 204, res)
        self.assertEqual(res.header("access-control-allow-origin"), "https://app.example.com")
        self.assertEqual(res.header("access-control-allow-credentials"), "true")
        self.assertIn("PATCH", res.header("access-control-allow-methods"))
        self.assertIn("Authorization", res.header("access-control-allow-headers"))
        self.assertEqual(res.header("access-control-max-age"), "120")
        self.assertIn("Origin", res.headers.get("vary", []))

    def test_preflight_wildcard_subdomain(self):
        for origin in ("https://shop.example.org", "https://a.b.example.org"):
            res = self.preflight(origin)
            self.assertEqual(res.status, 204, (origin, res))
            self.assertEqual(res.header("access-control-allow-origin"), origin)

    def test_preflight_disallowed_origins(self):
        for origin in ("https://evil-example.org", "https://example.org", "https://example.org.evil.test",
                       "http://shop.example.org", "https://app.example.com:8443", "null"):
            res = self.preflight(origin)
            self.assertEqual(res.status, 403, (origin, res))
            self.assertIsNone(res.header("access-control-allow-origin"), origin)
            self.assertIn("Origin", res.headers.get("vary", []), origin)

    def test_preflight_disallowed_method_or_header(self):
        self.assertEqual(self.preflight("https://app.example.com", method="TRACE").status, 403)
        self.assertEqual(self.preflight("https://app.example.com", headers="x-secret").status, 403)

    def test_simple_request_allowed_origin(self):
        res = request("GET", "/api/v1/user/no-such-route", PROXY,
                      dict(forwarded("198.51.100.80"), Origin="https://app.example.com"))
        self.assertEqual(res.header("access-control-allow-origin"), "https://app.example.com")
        self.assertIn("X-Request-Id", res.header("access-control-expose-headers"))
        self.assertIn("Retry-After", res.header("access-control-expose-headers"))
        self.assertIn("Origin", res.headers.get("vary", []))

    def test_simple_request_disallowed_origin(self):
        res = request("GET", "/api/v1/user/no-such-route", PROXY,
                      dict(forwarded("198.51.100.81"), Origin="https://evil.test"))
        self.assertIsNone(res.header("access-control-allow-origin"))
        self.assertIn("Origin", res.headers.get("vary", []))

    def test_public_group_wildcard(self):
        res = request("GET", "/openapi.json", headers={"Origin": "https://anyone.test"})
        self.assertEqual(res.status, 200)
        self.assertEqual(res.header("access-control-allow-origin"), "*")
        self.assertIsNone(res.header("access-control-allow-credentials"))
        res = self.preflight("https://anyone.test", path="/api/v1/auth/login", method="POST",
                             headers="content-type")
        self.assertEqual(res.status, 204, res)
        self.assertEqual(res.header("access-control-allow-origin"), "*")

    def test_group_with_cors_off_routes_options(self):
        res = self.preflight("https://app.example.com", path="/api/v1/admin/site-settings", source=ADMIN_HOST)
        self.assertEqual(res.status, 204, res)
        self.assertIsNone(res.header("access-control-allow-origin"))
        self.assertIsNone(res.header("vary"))
        self.assertIn("OPTIONS", res.header("allow"))

    def test_plain_options_lists_methods(self):
        res = request("OPTIONS", "/api/v1/ping")
        self.assertEqual(res.status, 204, res)
        self.assertEqual(res.header("allow"), "GET, HEAD, OPTIONS")


class SecurityHeaders(unittest.TestCase):
    def check_common(self, res):
        self.assertEqual(res.header("x-content-type-options"), "nosniff", res)
        self.assertEqual(res.header("referrer-policy"), "no-referrer", res)
        # frame-ancestors replaces X-Frame-Options, and no Server header names the software
        self.assertIn("frame-ancestors 'none'", res.header("content-security-policy") or "", res)
        self.assertIsNone(res.header("x-frame-options"), res)
        self.assertIsNone(res.header("server"), res)
        self.assertIsNone(res.header("strict-transport-security"), res)

    def test_json(self):
        res = request("GET", "/api/v1/ping")
        self.assertEqual(res.status, 200)
        self.check_common(res)
        self.assertIn("default-src 'none'", res.header("content-security-policy"))

    def test_error(self):
        res = request("GET", "/api/v1/nothing-here")
        self.assertEqual(res.status, 404)
        self.check_common(res)

    def test_openapi(self):
        res = request("GET", "/openapi.json")
        self.assertEqual(res.status, 200)
        self.check_common(res)

    def test_docs(self):
        res = request("GET", "/docs/")
        self.assertEqual(res.status, 200)
        self.check_common(res)
        csp = res.header("content-security-policy")
        self.assertIn("script-src 'self'", csp)
        self.assertIn("frame-ancestors 'none'", csp)
        self.assertNotIn("unsafe-eval", csp)

    def test_docs_assets(self):
        if not os.path.isdir(harness.DOCS_DIR):
            self.skipTest("swagger-ui-dist is not installed")
        res = request("GET", "/docs/swagger-ui.css")
        self.assertEqual(res.status, 200)
        self.check_common(res)

    def test_swagger_ui_renders_under_csp(self):
        chromium = shutil.which("chromium")
        if chromium is None or not os.path.isdir(harness.DOCS_DIR):
            self.skipTest("needs chromium and swagger-ui-dist")
        if harness.VALGRIND:
            self.skipTest("the page does not finish loading in time under valgrind")
        with tempfile.TemporaryDirectory(prefix="znp-it-chromium-") as home:
            proc = subprocess.run(
                [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--user-data-dir=" + os.path.join(home, "profile"), "--enable-logging=stderr", "--v=0",
                 "--virtual-time-budget=8000", "--dump-dom", server.url("/docs/")],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=harness.scaled(120),
                env=dict(os.environ, HOME=home, TMPDIR=home))
        violations = [line for line in proc.stderr.splitlines() if "Content Security Policy" in line]
        self.assertEqual(violations, [])
        # one section per tag of the spec means the UI loaded /openapi.json and rendered it
        self.assertIn("opblock-tag", proc.stdout)

    def test_hsts_on_tls(self):
        res = harness.curl(server.url("/api/v1/ping", "https"), "h2", cacert=server.cert)
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.header("strict-transport-security"), "max-age=15552000")
        self.assertEqual(res.header("x-content-type-options"), "nosniff")


if __name__ == "__main__":
    unittest.main()

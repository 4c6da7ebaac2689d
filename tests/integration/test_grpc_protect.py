"""The HTTP protection applied to znp's gRPC services: admin allow-list and rate limits.

One server, started twice with different configurations. First the admin
allow-list admits only 127.0.0.3, so admin methods called from the client's
127.0.0.1 must fail with PERMISSION_DENIED (access_denied) before
authentication, while public methods work. Then the allow-list is gone and
the admin group has a per-IP bucket of BURST tokens refilling at one per
minute: the call after the burst must fail with RESOURCE_EXHAUSTED
(too_many_requests) and a retry-after, and the HTTP admin API, which takes
from the same bucket, returns 429 as well.
Run alone: ZNP_BIN=build/znp /usr/bin/python3 tests/integration/run.py test_grpc_protect
"""

import json
import unittest

from tests.integration import harness

server = None
ADMIN = ("grpc-guard@example.com", "grpc-guard-pass-7Kq2")
ADMIN_METHOD = "/znp.v1.Admin/GetSiteSettings"
BURST = 2

ALLOW_LIST_CONFIG = {"admin": {"allow_cidrs": "127.0.0.3/32, 2001:db8::/32"}}
# one token a minute: no refill during the test, even under valgrind
RATE_CONFIG = {"rate_limits": {"groups": {"admin": {"ip": {"rate_per_minute": 1, "burst": BURST}}}}}


def setUpModule():
    global server
    if not harness.grpc_client_available():
        raise unittest.SkipTest("gRPC client missing: run scripts/setup.sh --test (needs tests/integration/grpc)")
    server = harness.Server("grpc_protect")
    try:
        server.create_admin(*ADMIN)
    except BaseException:
        server.cleanup()
        raise


def tearDownModule():
    if server is None:
        return
    try:
        if server.proc is not None:
            server.stop_expect_clean()
    finally:
        server.cleanup()


def use_config(config):
    """(Re)start the server with `config` unless it already runs with it."""
    if server.proc is not None and server.extra_config == config:
        return
    if server.proc is not None:
        server.stop_expect_clean()
    server.extra_config = config
    server.start()


def call(method, token=None):
    """Call `method` with an empty message; returns (exit code, the parsed output line)."""
    args = ["call", server.grpc_addr, method, "{}"]
    if token is not None:
        args += ["-H", "authorization:Bearer " + token]
    proc = harness.grpc_run(*args)
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise AssertionError("no output from the gRPC client: %s" % proc.stderr)
    return proc.returncode, json.loads(lines[-1])


class AllowList(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        use_config(ALLOW_LIST_CONFIG)

    def assert_access_denied(self, code, out):
        self.assertEqual(code, 1, out)
        self.assertEqual(out["error"]["name"], "PERMISSION_DENIED", out)
        self.assertEqual(out["error"]["znp_error"]["error"], "access_denied", out)
        self.assertEqual(out["error"]["znp_error"]["code"], 403040, out)

    def test_admin_method_denied_before_authentication(self):
        # without a token: not UNAUTHENTICATED, the address is refused first
        self.assert_access_denied(*call(ADMIN_METHOD))

    def test_admin_method_denied_with_valid_token(self):
        token = server.access_token(*ADMIN)
        self.assert_access_denied(*call(ADMIN_METHOD, token))

    def test_public_method_still_answers(self):
        code, out = call("/znp.v1.System/Ping")
        self.assertEqual(code, 0, out)
        self.assertEqual(out["status"], "ok")


class AdminRateLimit(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        use_config(RATE_CONFIG)

    def test_call_after_burst_is_exhausted(self):
        token = server.access_token(*ADMIN)  # login is public: it takes no admin token
        for i in range(BURST):
            code, out = call(ADMIN_METHOD, token)
            self.assertEqual(code, 0, "call %d: %r" % (i + 1, out))
        code, out = call(ADMIN_METHOD, token)
        self.assertEqual(code, 1, out)
        self.assertEqual(out["error"]["name"], "RESOURCE_EXHAUSTED", out)
        self.assertEqual(out["error"]["znp_error"]["error"], "too_many_requests", out)
        self.assertGreaterEqual(int(out["error"]["retry_after"]), 1, out)
        self.assertLessEqual(int(out["error"]["retry_after"]), 60, out)

        # HTTP takes from the same bucket of 127.0.0.1
        res = server.request("GET", "/api/v1/admin/site-settings", headers={"Authorization": "Bearer " + token})
        self.assertEqual(res.status, 429, res)
        # the public group has no limit
        code, out = call("/znp.v1.System/Ping")
        self.assertEqual(code, 0, out)


if __name__ == "__main__":
    unittest.main()

"""gRPC health (Check and Watch) following the database, and the HTTP 503 while it is down.

The embedded PostgreSQL is stopped and started again under a running znp
(pg_ctl as the cluster owner), so readiness must go SERVING -> NOT_SERVING ->
SERVING, both in Check responses and on an open Watch stream.
Run alone: /usr/bin/python3 -m unittest tests.integration.test_grpc -v
"""

import json
import unittest

from tests.integration import harness

server = None
ADMIN = ("grpc-admin@example.com", "grpc-pass-5Tn1")


def setUpModule():
    global server
    if not harness.grpc_client_available():
        raise unittest.SkipTest("gRPC client missing: run scripts/setup.sh --test (needs tests/integration/grpc)")
    server = harness.Server("grpc")
    try:
        server.create_admin(*ADMIN)
        server.start()
    except BaseException:
        server.cleanup()
        raise


def tearDownModule():
    if server is None:
        return
    try:
        server.stop_expect_clean()
    finally:
        server.cleanup()


class Health(unittest.TestCase):
    def test_check_serving(self):
        self.assertEqual(harness.grpc_check(server.grpc_addr, ""), "SERVING")
        self.assertEqual(harness.grpc_check(server.grpc_addr, "znp"), "SERVING")

    def test_check_unknown_service(self):
        proc = harness.grpc_run("check", server.grpc_addr, "no.such.Service")
        self.assertNotEqual(proc.returncode, 0, proc.stdout)
        self.assertIn("NOT_FOUND", proc.stdout + proc.stderr)

    def test_system_ping(self):
        proc = harness.grpc_run("call", server.grpc_addr, "/znp.v1.System/Ping", "{}")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        reply = json.loads(proc.stdout.strip().splitlines()[-1])
        self.assertEqual(reply["status"], "ok")
        self.assertEqual(reply["service"], "znp")


class DatabaseOutage(unittest.TestCase):
    """Stop PostgreSQL under the running server, then start it again."""

    def test_outage_and_recovery(self):
        cluster = harness.EmbeddedCluster(server.data_dir)
        token = server.access_token(*ADMIN)
        watch = harness.GrpcWatch(server.grpc_addr, "")
        try:
            self.assertTrue(watch.wait_for("SERVING"), "watch saw %r" % watch.statuses())

            cluster.stop()
            status = harness.wait_until(
                lambda: harness.grpc_check(server.grpc_addr, "") == "NOT_SERVING", timeout=30)
            self.assertTrue(status, "Check never answered NOT_SERVING after PostgreSQL stopped")
            self.assertTrue(watch.wait_for("NOT_SERVING"), "watch saw %r" % watch.statuses())

            res = server.request("GET", "/api/v1/admin/site-settings",
                                 headers={"Authorization": "Bearer " + token})
            self.assertEqual(res.status, 503, res)
            self.assertEqual(res.json()["error"], "database_unavailable")
            self.assertIsNotNone(res.header("retry-after"), res.headers)
            self.assertGreater(int(res.header("retry-after")), 0)
            # ping needs no database and keeps responding
            self.assertEqual(server.request("GET", "/api/v1/ping").status, 200)

            cluster.start()
            status = harness.wait_until(
                lambda: harness.grpc_check(server.grpc_addr, "") == "SERVING", timeout=30)
            self.assertTrue(status, "Check never answered SERVING after PostgreSQL came back")
            statuses = watch.statuses()
            self.assertTrue(watch.wait_for_sequence(["SERVING", "NOT_SERVING", "SERVING"]),
                            "watch saw %r" % statuses)

            res = harness.wait_until(lambda: (lambda r: r if r.status == 200 else None)(
                server.request("GET", "/api/v1/admin/site-settings",
                               headers={"Authorization": "Bearer " + token})), timeout=15)
            self.assertIsNotNone(res, "the HTTP API did not recover after PostgreSQL came back")
        finally:
            if not cluster.is_running():
                cluster.start()
            watch.close()


if __name__ == "__main__":
    unittest.main()

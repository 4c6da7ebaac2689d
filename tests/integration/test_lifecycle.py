"""Process life cycle: SIGTERM drains in-flight requests, SIGHUP reopens the log file.

Run alone: /usr/bin/python3 -m unittest tests.integration.test_lifecycle -v
"""

import os
import signal
import socket
import threading
import time
import unittest
import uuid

from tests.integration import harness

ADMIN = ("drain@example.com", "drain-pass-2Wc6")


class LogReopen(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = harness.Server("sighup")
        try:
            cls.server.start()
        except BaseException:
            cls.server.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.server.stop_expect_clean()
        finally:
            cls.server.cleanup()

    def file_contains(self, path, marker):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return marker in f.read()
        except FileNotFoundError:
            return False

    def test_sighup_reopens_log_file(self):
        server = self.server
        before = "it-before-" + uuid.uuid4().hex[:8]
        server.request("GET", "/api/v1/ping", headers={"x-request-id": before})
        self.assertTrue(harness.wait_until(lambda: self.file_contains(server.log_path, before), timeout=5),
                        "the access log line never reached %s" % server.log_path)

        rotated = server.log_path + ".1"
        os.rename(server.log_path, rotated)
        server.send_signal(signal.SIGHUP)
        self.assertTrue(harness.wait_until(lambda: os.path.exists(server.log_path), timeout=5),
                        "no new log file after SIGHUP")

        after = "it-after-" + uuid.uuid4().hex[:8]
        server.request("GET", "/api/v1/ping", headers={"x-request-id": after})
        self.assertTrue(harness.wait_until(lambda: self.file_contains(server.log_path, after), timeout=5),
                        "requests after SIGHUP are not logged to the new file")
        self.assertFalse(self.file_contains(rotated, after), "the rotated file still receives lines")
        self.assertIsNone(server.proc.poll(), "SIGHUP stopped the server")


class Drain(unittest.TestCase):
    """Slow logins (large argon2 cost) are in flight when SIGTERM arrives."""

    REQUESTS = 6 if harness.VALGRIND else 12
    # Costs that take very roughly 0.1-0.3 s per hash on a 2-core machine (valgrind slows
    # argon2 about 20 times), so the requests queue behind the 2 workers.
    ARGON2 = ({"argon2_t_cost": 1, "argon2_m_cost_kib": 16384} if harness.VALGRIND
              else {"argon2_t_cost": 3, "argon2_m_cost_kib": 65536})

    def setUp(self):
        self.server = harness.Server("drain", config={"server": {"workers": 2}, "auth": self.ARGON2})
        try:
            self.server.create_admin(*ADMIN)
            self.server.start()
        except BaseException:
            self.server.cleanup()
            raise

    def tearDown(self):
        self.server.cleanup()

    def test_sigterm_drains_in_flight_requests(self):
        server = self.server
        results = [None] * self.REQUESTS
        finished_at = [None] * self.REQUESTS
        start = threading.Barrier(self.REQUESTS + 1)
        first_answer = threading.Event()

        def login(i):
            start.wait()
            email, password = ADMIN if i % 2 == 0 else ("unknown-%d@example.com" % i, "whatever")
            try:
                results[i] = server.login(email, password).status
            except Exception as e:  # recorded, then asserted below
                results[i] = repr(e)
            finished_at[i] = time.monotonic()
            first_answer.set()

        threads = [threading.Thread(target=login, args=(i,)) for i in range(self.REQUESTS)]
        for t in threads:
            t.start()
        start.wait()
        # Once one sign-in has returned, the others are queued or running.
        self.assertTrue(first_answer.wait(harness.scaled(30)), "no sign-in was answered")
        sent_at = time.monotonic()
        server.send_signal(signal.SIGTERM)

        refused_while_alive = False
        deadline = time.monotonic() + harness.scaled(5)
        while time.monotonic() < deadline and server.proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", server.http_port), timeout=1):
                    pass
            except (ConnectionRefusedError, ConnectionResetError):
                # a reset means the connection reached a listener that was closing; either way it was not accepted
                refused_while_alive = server.proc.poll() is None
                break
            time.sleep(0.02)

        try:
            code = server.proc.wait(timeout=harness.scaled(30))
        except Exception:
            server.kill()
            raise
        server.proc = None
        for t in threads:
            t.join(timeout=harness.scaled(10))

        expected = [200 if i % 2 == 0 else 401 for i in range(self.REQUESTS)]
        self.assertEqual(results, expected)
        self.assertTrue(any(t > sent_at for t in finished_at),
                        "every request finished before SIGTERM; the drain was not exercised")
        self.assertTrue(refused_while_alive, "new connections were not refused while draining")
        self.assertEqual(code, 0, server.diagnostics())


if __name__ == "__main__":
    unittest.main()

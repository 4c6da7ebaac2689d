"""The per-client-IP limits of sign-ins and kernel callbacks, counted in PostgreSQL over two instances.

Instance A runs the embedded cluster; instance B is a second `znp serve` on
A's DSN with the same token keys. auth.ip_failure_limit is 4 per 60 s and the
per-account lockout is out of reach, so only the IP limit can return 429.
Each request leaves from a chosen loopback address (127.0.9.x): failures from
one address, split over A and B, limit that address on both instances, for
every account and for the MFA step, while another address still signs in.
Kernel callbacks with wrong webhook credentials are limited the same way
(webhook.ip_failure_limit 3 per 60 s), in their own scope.
Run alone: /usr/bin/python3 tests/integration/run.py test_login_limit
"""

import concurrent.futures
import http.client
import json
import subprocess
import threading
import unittest

from tests.integration import harness

LIMIT = 4
WINDOW_S = 60
USER = ("limited@example.test", "limit-pass-5Rw1")
OTHER = ("bystander@example.test", "limit-pass-8Tk3")
WRONG = "wrong-pass-0Xx0"
LIMITED_IP = "127.0.9.1"
FREE_IP = "127.0.9.2"
FRESH_IP = "127.0.9.3"
BURST_IP = "127.0.9.7"
MIXED_IP = "127.0.9.8"
HELD_IP = "127.0.9.9"
CALLBACK_LIMIT = 3
CALLBACK_TOKEN = "callback-limit-token-7c1d"
CALLBACK_IP = "127.0.9.4"
CALLBACK_FREE_IP = "127.0.9.5"
CALLBACK_BURST_IP = "127.0.9.6"

first = second = None


def post(srv, source_ip, path, raw, headers):
    """One HTTP/1.1 POST of the bytes `raw` to `srv` from `source_ip`; returns a harness.Response."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=harness.scaled(20),
                                      source_address=(source_ip, 0))
    try:
        conn.request("POST", path, body=raw, headers=dict(headers, **{"Content-Type": "application/json"}))
        res = conn.getresponse()
        raw_response = res.read()
        response_headers = {}
        for name, value in res.getheaders():
            response_headers.setdefault(name.lower(), []).append(value)
    finally:
        conn.close()
    return harness.Response(res.status, response_headers, raw_response, "1.1")


def call(srv, source_ip, path, body):
    return post(srv, source_ip, path, json.dumps(body).encode("utf-8"), {})


def login(srv, source_ip, email, password):
    return call(srv, source_ip, "/api/v1/auth/login", {"email": email, "password": password})


def callback(srv, source_ip, token):
    """POST an empty kernel event to `srv` from `source_ip` with webhook token `token` (None: no header)."""
    headers = {"X-ZNP-Webhook-Token": token} if token is not None else {}
    return post(srv, source_ip, "/api/v1/kernel/events", b"{}", headers)


def psql(sql):
    return harness.EmbeddedCluster(first.data_dir).psql(sql, database=first.database_name()).strip()


def setUpModule():
    global first, second
    common = {"auth": {"lockout_max_attempts": 1000, "lockout_minutes": 15,
                       "ip_failure_limit": LIMIT, "ip_failure_window_s": WINDOW_S},
              "webhook": {"shared_token": CALLBACK_TOKEN, "ip_failure_limit": CALLBACK_LIMIT,
                          "ip_failure_window_s": WINDOW_S}}
    first = harness.Server("login-limit-a", config=common)
    second = None
    try:
        for email, password in (USER, OTHER):
            first.create_admin(email, password)
        first.start()
        second = harness.Server("login-limit-b", config=harness.deep_merge(common, {
            "database": {"dsn": first.shared_dsn(), "auto_migrate": False}}))
        second.access_secret, second.refresh_secret = first.access_secret, first.refresh_secret
        second.start()
    except BaseException:
        for srv in (second, first):
            if srv is not None:
                srv.cleanup()
        raise


def tearDownModule():
    try:
        # B first: A owns the cluster B is connected to
        second.stop_expect_clean()
        first.stop_expect_clean()
    finally:
        for srv in (second, first):
            srv.cleanup()


class IpLimit(unittest.TestCase):
    def assert_limited(self, res):
        self.assertEqual(res.status, 429, res)
        self.assertEqual(res.json()["error"], "too_many_requests")
        retry = int(res.header("retry-after"))
        self.assertTrue(1 <= retry <= WINDOW_S, retry)

    def test_failures_over_two_instances_limit_the_address(self):
        # failures split over both instances, on two accounts and an unknown email
        emails = [USER[0], OTHER[0], "nobody@example.test", USER[0]]
        for i in range(LIMIT):
            res = login(first if i % 2 else second, LIMITED_IP, emails[i], WRONG)
            self.assertEqual(res.status, 401, res)
            self.assertEqual(res.json()["error"], "invalid_credentials")
        self.assertEqual(psql("SELECT failures FROM ip_failures WHERE scope = 'login' AND ip = '%s'" % LIMITED_IP), str(LIMIT))

        # both instances refuse the address, for every account, even with the right password
        for srv in (first, second):
            self.assert_limited(login(srv, LIMITED_IP, USER[0], WRONG))
            self.assert_limited(login(srv, LIMITED_IP, USER[0], USER[1]))
            self.assert_limited(login(srv, LIMITED_IP, OTHER[0], OTHER[1]))
            self.assert_limited(call(srv, LIMITED_IP, "/api/v1/auth/login/mfa",
                                     {"mfa_token": "not-a-token", "code": "123456"}))
        # refused attempts are not counted, and the per-account lockout saw only wrong passwords
        self.assertEqual(psql("SELECT failures FROM ip_failures WHERE scope = 'login' AND ip = '%s'" % LIMITED_IP), str(LIMIT))
        self.assertEqual(psql("SELECT failed_login_attempts FROM users WHERE email = '%s'" % USER[0]), "2")

        # another address signs in on both instances
        for srv in (first, second):
            res = login(srv, FREE_IP, USER[0], USER[1])
            self.assertEqual(res.status, 200, res)

        # one audit row, from the limited address
        self.assertEqual(psql("SELECT count(*) FROM audit_logs WHERE action = 'auth.login.ip_limited'"), "1")
        self.assertEqual(psql("SELECT source_ip FROM audit_logs WHERE action = 'auth.login.ip_limited'"),
                         LIMITED_IP)

        # once the window has ended the address signs in again
        psql("UPDATE ip_failures SET window_start = now() - interval '%d seconds'"
             " WHERE scope = 'login' AND ip = '%s'" % (WINDOW_S + 1, LIMITED_IP))
        res = login(second, LIMITED_IP, USER[0], USER[1])
        self.assertEqual(res.status, 200, res)
        # a right password gives back the attempt it was counted as
        self.assertEqual(psql("SELECT failures FROM ip_failures WHERE scope = 'login' AND ip = '%s'" % LIMITED_IP), "0")

        # a new window elsewhere deletes the rows of ended windows
        self.assertEqual(login(first, FRESH_IP, USER[0], WRONG).status, 401)
        self.assertEqual(psql("SELECT count(*) FROM ip_failures WHERE scope = 'login' AND ip = '%s'" % LIMITED_IP), "0")
        self.assertEqual(psql("SELECT failures FROM ip_failures WHERE scope = 'login' AND ip = '%s'" % FRESH_IP), "1")

    def test_parallel_failures_stop_at_limit(self):
        # 40 sign-ins for unknown emails at once over both instances: exactly the limit get 401, the rest 429
        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            statuses = list(pool.map(lambda i: login(first if i % 2 else second, BURST_IP,
                                                     "burst-%d@example.test" % i, WRONG).status, range(40)))
        self.assertEqual(statuses.count(401), LIMIT, statuses)
        self.assertEqual(statuses.count(429), 40 - LIMIT, statuses)
        self.assertEqual(psql("SELECT failures FROM ip_failures WHERE scope = 'login' AND ip = '%s'" % BURST_IP),
                         str(LIMIT))
        # the failure that reached the limit wrote the only audit row of the window
        self.assertEqual(psql("SELECT count(*) FROM audit_logs WHERE action = 'auth.login.ip_limited'"
                              " AND source_ip = '%s'" % BURST_IP), "1")

    def test_right_sign_ins_never_count(self):
        # one failure short of the limit, 10 parallel right sign-ins all succeed: the slots they take are given back
        for i in range(LIMIT - 1):
            self.assertEqual(login(first if i % 2 else second, MIXED_IP, "nobody-%d@example.test" % i, WRONG).status,
                             401)
        with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
            statuses = list(pool.map(lambda i: login(first if i % 2 else second, MIXED_IP, USER[0], USER[1]).status,
                                     range(10)))
        self.assertEqual(statuses, [200] * 10)
        self.assertEqual(psql("SELECT failures || '/' || pending FROM ip_failures WHERE scope = 'login'"
                              " AND ip = '%s'" % MIXED_IP), "%d/0" % (LIMIT - 1))
        # the last failure reaches the limit and audits it once, the next attempt is refused
        self.assertEqual(login(first, MIXED_IP, OTHER[0], WRONG).status, 401)
        self.assertEqual(login(second, MIXED_IP, OTHER[0], OTHER[1]).status, 429)
        self.assertEqual(psql("SELECT count(*) FROM audit_logs WHERE action = 'auth.login.ip_limited'"
                              " AND source_ip = '%s'" % MIXED_IP), "1")

    def test_attempt_settles_in_its_own_window(self):
        # a right sign-in waits on the account's row lock while its window ends and a new one counts a failure:
        # giving its slot back must not take that failure away
        cluster = harness.EmbeddedCluster(first.data_dir)
        locker = subprocess.Popen(cluster.psql_argv(first.database_name()), stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
        locker.stdin.write(("BEGIN;\nSELECT 1 FROM users WHERE email = '%s' FOR UPDATE;\n" % OTHER[0]).encode())
        locker.stdin.flush()
        blocked_sign_in = {}
        try:
            self.assertTrue(harness.wait_until(lambda: psql(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                " WHERE c.relname = 'users' AND l.mode = 'RowShareLock' AND l.granted") != "0", timeout=5))
            worker = threading.Thread(
                target=lambda: blocked_sign_in.update(res=login(first, HELD_IP, OTHER[0], OTHER[1])))
            worker.start()
            self.assertTrue(harness.wait_until(lambda: psql(
                "SELECT pending FROM ip_failures WHERE scope = 'login' AND ip = '%s'" % HELD_IP) == "1", timeout=10))
            psql("UPDATE ip_failures SET window_start = now() - interval '%d seconds'"
                 " WHERE scope = 'login' AND ip = '%s'" % (WINDOW_S + 1, HELD_IP))
            self.assertEqual(login(second, HELD_IP, "nobody@example.test", WRONG).status, 401)
        finally:
            locker.stdin.write(b"COMMIT;\n")
            locker.stdin.close()
            locker.wait(timeout=harness.scaled(30))
        worker.join(timeout=harness.scaled(30))
        self.assertEqual(blocked_sign_in["res"].status, 200, blocked_sign_in.get("res"))
        self.assertEqual(psql("SELECT failures || '/' || pending FROM ip_failures WHERE scope = 'login'"
                              " AND ip = '%s'" % HELD_IP), "1/0")


class CallbackLimit(unittest.TestCase):
    def test_bad_callbacks_over_two_instances_limit_the_address(self):
        # wrong and missing tokens, split over both instances
        for i in range(CALLBACK_LIMIT):
            res = callback(first if i % 2 else second, CALLBACK_IP, "wrong-token" if i % 2 else None)
            self.assertEqual(res.status, 401, res)
        self.assertEqual(psql("SELECT failures FROM ip_failures WHERE scope = 'callback' AND ip = '%s'"
                              % CALLBACK_IP), str(CALLBACK_LIMIT))

        # both instances refuse the address before checking the token, even the right one
        for srv in (first, second):
            for token in ("wrong-token", CALLBACK_TOKEN):
                res = callback(srv, CALLBACK_IP, token)
                self.assertEqual(res.status, 429, res)
                self.assertEqual(res.json()["error"], "too_many_requests")
                retry = int(res.header("retry-after"))
                self.assertTrue(1 <= retry <= WINDOW_S, retry)
        self.assertEqual(psql("SELECT failures FROM ip_failures WHERE scope = 'callback' AND ip = '%s'"
                              % CALLBACK_IP), str(CALLBACK_LIMIT))

        # another address passes the check with the right token on both instances
        for srv in (first, second):
            res = callback(srv, CALLBACK_FREE_IP, CALLBACK_TOKEN)
            self.assertNotIn(res.status, (401, 429), res)

        # the limited address can still sign in: the scopes are counted apart
        self.assertEqual(login(first, CALLBACK_IP, USER[0], USER[1]).status, 200)

        # once the window has ended the right token passes again, and gives its count back
        psql("UPDATE ip_failures SET window_start = now() - interval '%d seconds'"
             " WHERE scope = 'callback' AND ip = '%s'" % (WINDOW_S + 1, CALLBACK_IP))
        res = callback(second, CALLBACK_IP, CALLBACK_TOKEN)
        self.assertNotIn(res.status, (401, 429), res)
        self.assertEqual(psql("SELECT failures FROM ip_failures WHERE scope = 'callback' AND ip = '%s'"
                              % CALLBACK_IP), "0")

    def test_parallel_bad_callbacks_stop_at_the_limit(self):
        # 40 bad callbacks at once over both instances: exactly the limit get 401, the rest 429
        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            statuses = list(pool.map(lambda i: callback(first if i % 2 else second, CALLBACK_BURST_IP,
                                                        "wrong-token").status, range(40)))
        self.assertEqual(statuses.count(401), CALLBACK_LIMIT, statuses)
        self.assertEqual(statuses.count(429), 40 - CALLBACK_LIMIT, statuses)
        self.assertEqual(psql("SELECT failures FROM ip_failures WHERE scope = 'callback' AND ip = '%s'"
                              % CALLBACK_BURST_IP), str(CALLBACK_LIMIT))


if __name__ == "__main__":
    unittest.main()

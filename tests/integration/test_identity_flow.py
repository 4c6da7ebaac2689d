"""Identity end to end, over two znp instances that share one database.

Instance A runs the embedded cluster; instance B is a second `znp serve`
on A's DSN (harness.Server.shared_dsn). Both mail through one capturing SMTP
server that speaks implicit TLS (smtps://, tests/integration/_smtp_capture.py)
with a self-signed certificate that znp trusts through mail.ca_file.

- the whole life of an account. It registers, verifies with the mailed
  code, logs in, enrols and confirms TOTP (codes computed here, RFC 6238)
  and logs in in two steps. Then it resets the password with a mailed code,
  checks that every earlier access and refresh token is rejected and logs
  in again;
- lockout counted in PostgreSQL: failures split over A and B lock the
  account at auth.lockout_max_attempts and both instances refuse it;
- 20 parallel wrong passwords over both instances count exactly 20.

Every request leaves from its own loopback address (127.0.2.x and up) so the
per-IP login limit (30 a minute) never responds in place of the code under test.
Run alone: /usr/bin/python3 tests/integration/run.py test_identity_flow
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import shutil
import struct
import threading
import time
import unittest

from tests.integration import harness
from tests.integration._smtp_capture import SmtpCapture

LOCKOUT = 21          # above the 20 parallel failures, so that test never locks
PASSWORD = "flow-pass-7Hq2"
NEW_PASSWORD = "flow-pass-after-3Zc8"
WRONG = "wrong-pass-0Xx0"

first = second = None
smtp = None
cert_dir = None

_lock = threading.Lock()
_next_ip = [0]


def new_ip():
    """A loopback source address no other request of this module used."""
    with _lock:
        _next_ip[0] += 1
        n = _next_ip[0]
    return "127.0.%d.%d" % (2 + n // 250, 1 + n % 250)


def call(srv, method, path, body=None, token=None):
    """One HTTP/1.1 request to `srv` from a fresh loopback address; returns a harness.Response."""
    headers = {"Authorization": "Bearer " + token} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=harness.scaled(20),
                                      source_address=(new_ip(), 0))
    try:
        conn.request(method, path, body=data, headers=headers)
        res = conn.getresponse()
        raw = res.read()
        out = {}
        for name, value in res.getheaders():
            out.setdefault(name.lower(), []).append(value)
    finally:
        conn.close()
    return harness.Response(res.status, out, raw, "1.1")


def login(srv, email, password):
    return call(srv, "POST", "/api/v1/auth/login", {"email": email, "password": password})


def psql(sql):
    return harness.EmbeddedCluster(first.data_dir).psql(sql, database=first.database_name()).strip()


def totp(secret, step):
    """The 6-digit RFC 6238 code (HMAC-SHA1, 30 s) of base32 `secret` at time step `step`."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return "%06d" % (value % 1000000)


def current_step():
    return int(time.time()) // 30


def setUpModule():
    global first, second, smtp, cert_dir
    cert_dir = harness.make_workdir("identity-certs")
    cert, key = harness.make_self_signed_cert(cert_dir)
    smtp = SmtpCapture(cert=cert, key=key).start()
    common = {
        "auth": {"lockout_max_attempts": LOCKOUT, "lockout_minutes": 15},
        "registration": {"mode": "open", "require_email_verification": True},
        "codes": {"cooldown_s": 1},
        "mail": {"smtp_url": smtp.url, "ca_file": cert, "from": "noreply@example.test", "timeout_ms": 5000},
        "jobs": {"threads": 1, "poll_interval_ms": 50},
        # one key for both instances, or B cannot open the TOTP secrets A sealed
        "security": {"master_key": base64.b64encode(os.urandom(32)).decode()},
    }
    first = harness.Server("identity-a", config=common)
    second = None
    try:
        first.start()
        second = harness.Server("identity-b", config=harness.deep_merge(common, {
            "database": {"dsn": first.shared_dsn(), "auto_migrate": False}}))
        # instances of one deployment share their keys (tokens, code hashes)
        second.access_secret, second.refresh_secret = first.access_secret, first.refresh_secret
        second.start()
    except BaseException:
        for srv in (second, first):
            if srv is not None:
                srv.cleanup()
        smtp.stop()
        raise


def tearDownModule():
    try:
        # B first: A owns the cluster B is connected to
        second.stop_expect_clean()
        first.stop_expect_clean()
    finally:
        for srv in (second, first):
            srv.cleanup()
        smtp.stop()
        if not harness.KEEP:
            shutil.rmtree(cert_dir, ignore_errors=True)


def make_user(email, password=PASSWORD):
    """Register on A and verify with the mailed code; return the verify response's JSON."""
    res = call(first, "POST", "/api/v1/auth/register", {"email": email, "password": password})
    if res.status != 201:
        raise AssertionError("register %s: %r" % (email, res))
    code = smtp.wait_for(email).code()
    res = call(first, "POST", "/api/v1/auth/verify", {"email": email, "code": code})
    if res.status != 200:
        raise AssertionError("verify %s: %r" % (email, res))
    return res.json()


def failures(email):
    return int(psql("SELECT failed_login_attempts FROM users WHERE email = '%s'" % email))


class AccountLife(unittest.TestCase):
    def test_register_verify_mfa_reset_revokes_everything(self):
        email = "flow@example.test"
        res = call(first, "POST", "/api/v1/auth/register", {"email": email, "password": PASSWORD})
        self.assertEqual(res.status, 201, res)
        self.assertTrue(res.json()["requires_verification"])
        self.assertNotIn("access_token", res.json())
        # the status is checked after the password, so it reveals nothing to a guesser
        self.assertEqual(login(first, email, PASSWORD).json().get("error"), "account_disabled")
        self.assertEqual(login(first, email, WRONG).json().get("error"), "invalid_credentials")

        message = smtp.wait_for(email)
        self.assertTrue(message.tls, "the verification mail did not come over smtps")
        code = message.code()
        self.assertIsNotNone(code, message.body)
        self.assertNotIn(code, res.body.decode())
        res = call(second, "POST", "/api/v1/auth/verify", {"email": email, "code": code})
        self.assertEqual(res.status, 200, res)
        tokens = [res.json()]

        res = login(first, email, PASSWORD)
        self.assertEqual(res.status, 200, res)
        tokens.append(res.json())
        access = tokens[-1]["access_token"]

        # enrol and confirm TOTP
        res = call(first, "POST", "/api/v1/user/mfa/totp/enroll", token=access)
        self.assertEqual(res.status, 200, res)
        secret = res.json()["secret"]
        self.assertIn("secret=" + secret, res.json()["otpauth_uri"])
        step = current_step()
        res = call(first, "POST", "/api/v1/user/mfa/totp/confirm", {"code": totp(secret, step)}, token=access)
        self.assertEqual(res.status, 200, res)
        recovery = res.json()["recovery_codes"]
        self.assertEqual(len(recovery), 10)

        # the password alone now yields a challenge; a TOTP code of the next step ends it (on B)
        res = login(second, email, PASSWORD)
        self.assertEqual(res.status, 200, res)
        self.assertIs(res.json()["mfa_required"], True)
        self.assertNotIn("access_token", res.json())
        challenge = res.json()["mfa_token"]
        res = call(second, "POST", "/api/v1/auth/login/mfa", {"mfa_token": challenge, "code": totp(secret, step)})
        self.assertEqual(res.status, 400, res)  # the confirm step's code is spent
        next_step = max(step + 1, current_step() - 1)
        res = call(second, "POST", "/api/v1/auth/login/mfa",
                   {"mfa_token": challenge, "code": totp(secret, next_step)})
        self.assertEqual(res.status, 200, res)
        tokens.append(res.json())
        res = call(first, "POST", "/api/v1/auth/refresh", {"refresh_token": tokens[-1]["refresh_token"]})
        self.assertEqual(res.status, 200, res)
        tokens.append(res.json())
        for pair in tokens:
            self.assertEqual(call(first, "GET", "/api/v1/user/mfa", token=pair["access_token"]).status, 200)

        # forgot and reset with the mailed code (no pause: tokens of the same second must end too)
        res = call(second, "POST", "/api/v1/auth/forgot", {"email": email})
        self.assertEqual(res.status, 200, res)
        message = smtp.wait_for(email, count=2)
        self.assertTrue(message.tls)
        reset_code = message.code()
        self.assertIsNotNone(reset_code, message.body)
        self.assertNotIn(reset_code, res.body.decode())
        res = call(first, "POST", "/api/v1/auth/reset",
                   {"email": email, "code": reset_code, "password": NEW_PASSWORD})
        self.assertEqual(res.status, 200, res)

        # every earlier token is refused, on both instances; the newest refresh token first
        for pair in reversed(tokens):
            for srv in (first, second):
                res = call(srv, "GET", "/api/v1/user/mfa", token=pair["access_token"])
                self.assertEqual(res.status, 401, res)
            res = call(second, "POST", "/api/v1/auth/refresh", {"refresh_token": pair["refresh_token"]})
            self.assertEqual(res.status, 401, res)
        self.assertEqual(login(first, email, PASSWORD).status, 401)
        res = call(first, "POST", "/api/v1/auth/reset", {"email": email, "code": reset_code, "password": PASSWORD})
        self.assertEqual(res.json().get("error"), "invalid_code")

        # the new password works; MFA stays on and a recovery code completes the login
        res = login(first, email, NEW_PASSWORD)
        self.assertEqual(res.status, 200, res)
        self.assertIs(res.json()["mfa_required"], True)
        res = call(first, "POST", "/api/v1/auth/login/mfa", {"mfa_token": res.json()["mfa_token"],
                                                             "code": recovery[0]})
        self.assertEqual(res.status, 200, res)
        fresh = res.json()
        res = call(second, "GET", "/api/v1/user/mfa", token=fresh["access_token"])
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["recovery_codes_left"], 9)
        res = call(second, "POST", "/api/v1/auth/refresh", {"refresh_token": fresh["refresh_token"]})
        self.assertEqual(res.status, 200, res)

        # each security event of the account is in the audit log, whichever instance handled it
        actions = set(psql("SELECT DISTINCT action FROM audit_logs WHERE actor_id = %d OR actor_email = '%s'"
                           % (tokens[0]["user"]["id"], email)).split())
        expected = {"auth.register", "auth.verify", "auth.login.succeeded", "auth.login.failed", "mfa.enabled",
                    "auth.mfa.failed", "auth.forgot", "auth.reset", "mfa.recovery_used"}
        self.assertEqual(expected - actions, set())


class SharedLockout(unittest.TestCase):
    def test_failures_over_two_instances_lock_both(self):
        email = "lock@example.test"
        make_user(email)
        for i in range(LOCKOUT - 1):
            res = login(first if i % 2 else second, email, WRONG)
            self.assertEqual(res.status, 401, res)
            self.assertEqual(res.json()["error"], "invalid_credentials")
        self.assertEqual(failures(email), LOCKOUT - 1)
        # the failure that reaches the limit, on the instance that did not see the last one, locks
        res = login(second, email, WRONG)
        self.assertEqual(res.status, 403, res)
        self.assertEqual(res.json()["error"], "account_locked")
        self.assertEqual(failures(email), LOCKOUT)
        for srv in (first, second):
            res = login(srv, email, PASSWORD)
            self.assertEqual(res.status, 403, res)
            self.assertEqual(res.json()["error"], "account_locked")
        self.assertEqual(psql("SELECT locked_until > now() + interval '14 minutes' FROM users"
                              " WHERE email = '%s'" % email), "t")
        self.assertEqual(psql("SELECT count(*) FROM audit_logs WHERE action = 'auth.login.locked'"
                              " AND actor_email = '%s'" % email), "1")

        # once the lock has expired a failure starts a new count
        psql("UPDATE users SET locked_until = now() - interval '1 second' WHERE email = '%s'" % email)
        self.assertEqual(login(second, email, WRONG).status, 401)
        self.assertEqual(failures(email), 1)
        self.assertEqual(login(first, email, PASSWORD).status, 200)
        self.assertEqual(failures(email), 0)


class SharedCodeLimits(unittest.TestCase):
    """Code-sending limits are counted in PostgreSQL, so a second instance counts the first's sends."""

    def test_cooldown_holds_on_the_other_instance(self):
        email = "cooldown-shared@example.test"
        res = call(first, "POST", "/api/v1/auth/forgot", {"email": email})
        self.assertEqual(res.status, 200, res)
        res = call(second, "POST", "/api/v1/auth/forgot", {"email": email})
        self.assertEqual(res.status, 429, res)
        self.assertEqual(res.json()["error"], "too_many_requests")
        self.assertGreaterEqual(int(res.header("retry-after")), 1)

    def test_hourly_cap_counts_both_instances(self):
        email = "cap-shared@example.test"
        for i in range(5):  # codes.per_address_per_hour defaults to 5
            res = call(first if i % 2 else second, "POST", "/api/v1/auth/forgot", {"email": email})
            self.assertEqual(res.status, 200, (i, res))
            time.sleep(1.1)  # past codes.cooldown_s
        for srv in (first, second):
            res = call(srv, "POST", "/api/v1/auth/forgot", {"email": email})
            self.assertEqual(res.status, 429, res)
            self.assertGreater(int(res.header("retry-after")), 3000)


class ParallelFailures(unittest.TestCase):
    def test_twenty_parallel_wrong_passwords_count_twenty(self):
        email = "parallel@example.test"
        make_user(email)
        before = int(psql("SELECT count(*) FROM audit_logs WHERE action = 'auth.login.failed'"
                          " AND actor_email = '%s'" % email) or 0)
        results = [None] * 20

        def attempt(i):
            results[i] = login(first if i % 2 else second, email, WRONG)

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual([r.status for r in results], [401] * 20, results)
        self.assertEqual(failures(email), 20)
        after = int(psql("SELECT count(*) FROM audit_logs WHERE action = 'auth.login.failed'"
                         " AND actor_email = '%s'" % email))
        self.assertEqual(after - before, 20)


if __name__ == "__main__":
    unittest.main()

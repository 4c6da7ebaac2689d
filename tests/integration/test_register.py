"""Registration, email verification, password reset and invite codes.

Two servers: one in open mode that mails verification codes to a real SMTP
capture server (tests/integration/_smtp_capture.py), and one in invite_only
mode without verification. Requests leave from different loopback source
addresses (127.0.1.x) so the per-IP code cap can be tested without one test
spending another's budget.
Run alone: /usr/bin/python3 -m unittest tests.integration.test_register -v
"""

import http.client
import json
import re
import threading
import time
import unittest

from tests.integration import harness
from tests.integration._smtp_capture import SmtpCapture

server = None         # open mode, verification required
invite_server = None  # invite_only, no verification
smtp = None

PER_ADDRESS = 3
PER_IP = 6
COOLDOWN = 2 if harness.VALGRIND else 1  # seconds; under valgrind two requests can take longer than one second
ADMIN = ("inviter@example.test", "inviter-pass-5Tg8")
PASSWORD = "first-pass-4Wq9"
NEW_PASSWORD = "second-pass-8Rm2"

_lock = threading.Lock()
_next_ip = [0]
_bodies = []  # every response body of the suite, checked for secrets at the end


def new_ip():
    """A loopback source address no other test has used."""
    with _lock:
        _next_ip[0] += 1
        n = _next_ip[0]
    return "127.0.%d.%d" % (1 + n // 250, 1 + n % 250)


def call(srv, method, path, body=None, ip=None, headers=None):
    """One HTTP/1.1 request from source address `ip` (default: a fresh one); returns a harness.Response."""
    headers = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        headers.setdefault("Content-Type", "application/json")
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=harness.scaled(20),
                                      source_address=(ip or new_ip(), 0))
    try:
        conn.request(method, path, body=data, headers=headers)
        res = conn.getresponse()
        raw = res.read()
        out = {}
        for name, value in res.getheaders():
            out.setdefault(name.lower(), []).append(value)
    finally:
        conn.close()
    with _lock:
        _bodies.append((path, raw, json.dumps(out)))
    return harness.Response(res.status, out, raw, "1.1")


def post(srv, path, body, ip=None, headers=None):
    return call(srv, "POST", path, body, ip=ip, headers=headers)


def bearer(token):
    return {"Authorization": "Bearer " + token}


def wrong(code):
    return "%06d" % ((int(code) + 1) % 1000000)


def setUpModule():
    global server, invite_server, smtp
    smtp = SmtpCapture().start()
    mail = {"smtp_url": smtp.url, "starttls": "off", "from": "noreply@example.test", "timeout_ms": 5000}
    jobs = {"threads": 1, "poll_interval_ms": 50}
    server = harness.Server("register", config={
        "registration": {"mode": "open", "require_email_verification": True},
        "codes": {"cooldown_s": COOLDOWN, "per_address_per_hour": PER_ADDRESS, "per_ip_per_hour": PER_IP},
        "mail": mail, "jobs": jobs,
    })
    invite_server = harness.Server("register-invite", config={
        "registration": {"mode": "invite_only", "require_email_verification": False,
                         "default_roles": "user,trial"},
        "mail": mail, "jobs": jobs,
    })
    try:
        server.start()
        invite_server.create_admin(*ADMIN)
        invite_server.start()
    except BaseException:
        for srv in (server, invite_server):
            srv.cleanup()
        smtp.stop()
        raise


def tearDownModule():
    try:
        for srv in (server, invite_server):
            srv.stop_expect_clean()
    finally:
        for srv in (server, invite_server):
            srv.cleanup()
        smtp.stop()


def register(email, password=PASSWORD, srv=None, **extra):
    body = {"email": email, "password": password}
    body.update(extra)
    return post(srv or server, "/api/v1/auth/register", body)


def register_and_verify(testcase, email, password=PASSWORD):
    """Register on the open server, read the mailed code and verify it; return the verify response."""
    res = register(email, password)
    testcase.assertEqual(res.status, 201, res)
    code = smtp.wait_for(email).code()
    testcase.assertIsNotNone(code)
    res = post(server, "/api/v1/auth/verify", {"email": email, "code": code})
    testcase.assertEqual(res.status, 200, res)
    return res


class Register(unittest.TestCase):
    def test_register_mail_verify_login(self):
        email = "alice@example.test"
        res = register(email, display_name="  Alice  ", locale="zh-CN")
        self.assertEqual(res.status, 201, res)
        body = res.json()
        self.assertTrue(body["requires_verification"])
        for key in ("access_token", "refresh_token", "token_type", "expires_in"):
            self.assertNotIn(key, body)
        self.assertEqual(body["user"]["email"], email)
        self.assertEqual(body["user"]["display_name"], "Alice")
        self.assertEqual(body["user"]["roles"], ["user"])

        message = smtp.wait_for(email)
        code = message.code()
        self.assertIsNotNone(code, message.body)
        self.assertIn("验证码", message.body)  # the locale asked for
        self.assertNotIn(code, res.body.decode())

        # pending accounts cannot sign in yet
        res = server.login(email, PASSWORD)
        self.assertEqual(res.status, 403, res)
        self.assertEqual(res.json()["error"], "account_disabled")

        res = post(server, "/api/v1/auth/verify", {"email": "  ALICE@Example.test", "code": code})
        self.assertEqual(res.status, 200, res)
        body = res.json()
        self.assertEqual(body["token_type"], "Bearer")
        self.assertEqual(body["user"]["email"], email)

        res = server.login(email, PASSWORD)
        self.assertEqual(res.status, 200, res)

        # single use
        res = post(server, "/api/v1/auth/verify", {"email": email, "code": code})
        self.assertEqual(res.status, 400, res)
        self.assertEqual(res.json()["error"], "invalid_code")

        # stored as a keyed hash only, and both steps audited
        cluster = harness.EmbeddedCluster(server.data_dir)
        rows = cluster.psql("SELECT code_hash, consumed_at IS NOT NULL FROM auth_codes WHERE email = '%s'" % email,
                            database=server.database_name()).split()
        self.assertEqual(len(rows), 1, rows)
        self.assertRegex(rows[0], r"^[0-9a-f]{64}\|t$")
        self.assertNotIn(code, rows[0])
        actions = cluster.psql("SELECT action FROM audit_logs WHERE actor_email = '%s' AND action LIKE 'auth.%%' "
                               "AND action NOT LIKE 'auth.login%%' ORDER BY id" % email,
                               database=server.database_name()).split()
        self.assertEqual(actions, ["auth.register", "auth.verify"])

        # later mails use the language chosen at registration
        self.assertEqual(post(server, "/api/v1/auth/forgot", {"email": email}).status, 200)
        self.assertIn("重置", smtp.wait_for(email, count=2).body)

    def test_display_name_defaults_to_local_part(self):
        res = register("dora.d@example.test")
        self.assertEqual(res.status, 201, res)
        self.assertEqual(res.json()["user"]["display_name"], "dora.d")

    def test_case_variant_is_taken(self):
        """FC-10: one account per mailbox whatever the letter case; login and reset ignore the case."""
        register_and_verify(self, "carol@example.test")
        res = register("CAROL@Example.TEST")
        self.assertEqual(res.status, 409, res)
        self.assertEqual(res.json()["error"], "email_taken")
        self.assertEqual(res.json()["code"], 409010)
        rows = harness.EmbeddedCluster(server.data_dir).psql(
            "SELECT count(*) FROM users WHERE lower(email) = 'carol@example.test'",
            database=server.database_name())
        self.assertEqual(rows.strip(), "1")

        self.assertEqual(server.login("Carol@EXAMPLE.test", PASSWORD).status, 200)
        res = post(server, "/api/v1/auth/forgot", {"email": "CaRoL@example.TEST"})
        self.assertEqual(res.status, 200, res)
        code = smtp.wait_for("carol@example.test", count=2).code()
        res = post(server, "/api/v1/auth/reset",
                   {"email": "cAROL@Example.Test", "code": code, "password": NEW_PASSWORD})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(server.login("CAROL@example.test", NEW_PASSWORD).status, 200)

    def test_pending_account_gets_a_new_code(self):
        email = "erin@example.test"
        first = register(email)
        self.assertEqual(first.status, 201, first)
        old = smtp.wait_for(email).code()
        time.sleep(COOLDOWN + 0.2)
        again = register(email, password="some-other-pass-1")
        self.assertEqual(again.status, 201, again)
        self.assertEqual(again.json(), first.json())
        new = smtp.wait_for(email, count=2).code()
        if new != old:
            # only the newest code works
            res = post(server, "/api/v1/auth/verify", {"email": email, "code": old})
            self.assertEqual(res.status, 400, res)
        res = post(server, "/api/v1/auth/verify", {"email": email, "code": new})
        self.assertEqual(res.status, 200, res)
        # the first password stays: registering again changed nothing but the code
        self.assertEqual(server.login(email, PASSWORD).status, 200)

    def test_password_policy_names_the_rule(self):
        res = register("frank@example.test", password="short")
        self.assertEqual(res.status, 400, res)
        body = res.json()
        self.assertEqual(body["error"], "validation_failed")
        self.assertEqual(body["details"][0]["field"], "password")
        self.assertIn("at least 8 characters", body["details"][0]["message"])
        res = register("frank@example.test", password="frank@example.test")
        self.assertEqual(res.status, 400, res)
        self.assertIn("email", res.json()["details"][0]["message"])
        self.assertEqual(smtp.for_address("frank@example.test"), [])


class Verify(unittest.TestCase):
    def test_unknown_email_and_wrong_code_answer_alike(self):
        email = "gina@example.test"
        self.assertEqual(register(email).status, 201)
        code = smtp.wait_for(email).code()
        unknown = post(server, "/api/v1/auth/verify", {"email": "nobody-v@example.test", "code": code})
        bad = post(server, "/api/v1/auth/verify", {"email": email, "code": wrong(code)})
        self.assertEqual(unknown.status, 400, unknown)
        self.assertEqual(bad.status, 400, bad)
        strip = lambda r: {k: v for k, v in r.json().items() if k != "request_id"}
        self.assertEqual(strip(unknown), strip(bad))
        self.assertEqual(bad.json()["error"], "invalid_code")
        # one wrong try left the code usable
        self.assertEqual(post(server, "/api/v1/auth/verify", {"email": email, "code": code}).status, 200)

    def test_five_wrong_tries_burn_the_code(self):
        email = "hank@example.test"
        self.assertEqual(register(email).status, 201)
        code = smtp.wait_for(email).code()
        for _ in range(5):
            res = post(server, "/api/v1/auth/verify", {"email": email, "code": wrong(code)})
            self.assertEqual(res.status, 400, res)
        res = post(server, "/api/v1/auth/verify", {"email": email, "code": code})
        self.assertEqual(res.status, 400, res)
        self.assertEqual(res.json()["error"], "invalid_code")

    def test_expired_code_is_invalid(self):
        email = "hugo@example.test"
        self.assertEqual(register(email).status, 201)
        code = smtp.wait_for(email).code()
        harness.EmbeddedCluster(server.data_dir).psql(
            "UPDATE auth_codes SET expires_at = now() - interval '1 second' WHERE email = '%s'" % email,
            database=server.database_name())
        res = post(server, "/api/v1/auth/verify", {"email": email, "code": code})
        self.assertEqual(res.status, 400, res)
        self.assertEqual(res.json()["error"], "invalid_code")

    def test_resend_same_answer_for_unknown_address(self):
        email = "ivy@example.test"
        self.assertEqual(register(email).status, 201)
        smtp.wait_for(email)
        time.sleep(COOLDOWN + 0.2)
        known = post(server, "/api/v1/auth/verify/resend", {"email": email})
        unknown = post(server, "/api/v1/auth/verify/resend", {"email": "nobody-r@example.test"})
        self.assertEqual(known.status, 200, known)
        self.assertEqual(unknown.status, 200, unknown)
        self.assertEqual(known.body, unknown.body)
        code = smtp.wait_for(email, count=2).code()
        self.assertNotIn(code, known.body.decode())
        self.assertEqual(smtp.for_address("nobody-r@example.test"), [])


class Forgot(unittest.TestCase):
    """FC-09: the response never reveals whether an address exists and never contains a code."""

    def test_same_body_for_existing_and_unknown(self):
        email = "jack@example.test"
        register_and_verify(self, email)
        known = post(server, "/api/v1/auth/forgot", {"email": email})
        unknown = post(server, "/api/v1/auth/forgot", {"email": "nobody-f@example.test"})
        self.assertEqual(known.status, 200, known)
        self.assertEqual(unknown.status, 200, unknown)
        self.assertEqual(known.body, unknown.body)
        self.assertEqual(known.json(), {"message": "if the account exists, a reset code has been sent"})
        code = smtp.wait_for(email, count=2).code()
        for res in (known, unknown):
            self.assertNotIn(code, res.body.decode())
            self.assertNotIn(code, json.dumps(res.headers))
        self.assertEqual(smtp.for_address("nobody-f@example.test"), [])

    def test_cooldown_answers_429_for_any_address(self):
        for email in ("kate@example.test", "nobody-c@example.test"):
            if email.startswith("kate"):
                register_and_verify(self, email)
            first = post(server, "/api/v1/auth/forgot", {"email": email})
            self.assertEqual(first.status, 200, first)
            second = post(server, "/api/v1/auth/forgot", {"email": email})
            self.assertEqual(second.status, 429, second)
            self.assertEqual(second.json()["error"], "too_many_requests")
            self.assertGreaterEqual(int(second.header("retry-after")), 1)
            self.assertLessEqual(int(second.header("retry-after")), COOLDOWN)

    def test_hourly_cap_per_address(self):
        email = "nobody-h@example.test"
        for _ in range(PER_ADDRESS):
            res = post(server, "/api/v1/auth/forgot", {"email": email})
            self.assertEqual(res.status, 200, res)
            time.sleep(COOLDOWN + 0.1)
        res = post(server, "/api/v1/auth/forgot", {"email": email})
        self.assertEqual(res.status, 429, res)
        self.assertGreater(int(res.header("retry-after")), 3000)

    def test_hourly_cap_per_ip(self):
        ip = new_ip()
        for i in range(PER_IP):
            res = post(server, "/api/v1/auth/forgot", {"email": "nobody-ip%d@example.test" % i}, ip=ip)
            self.assertEqual(res.status, 200, res)
        res = post(server, "/api/v1/auth/forgot", {"email": "nobody-ipx@example.test"}, ip=ip)
        self.assertEqual(res.status, 429, res)
        self.assertGreater(int(res.header("retry-after")), 3000)
        # another address is not affected
        res = post(server, "/api/v1/auth/forgot", {"email": "nobody-ipx@example.test"})
        self.assertEqual(res.status, 200, res)


class Reset(unittest.TestCase):
    def test_reset_revokes_old_tokens(self):
        """A weak password keeps the code; the reset revokes access and refresh tokens."""
        email = "liam@example.test"
        tokens = register_and_verify(self, email).json()
        site = "/api/v1/admin/site-settings"
        # a valid token of a non-admin: authenticated, then forbidden
        self.assertEqual(call(server, "GET", site, headers=bearer(tokens["access_token"])).status, 403)
        time.sleep(1.1)  # token times have one-second resolution

        # five wrong passwords lock the account; the reset clears the lock
        for _ in range(5):
            server.login(email, "wrong-pass-0000")
        self.assertEqual(server.login(email, PASSWORD).json()["error"], "account_locked")

        self.assertEqual(post(server, "/api/v1/auth/forgot", {"email": email}).status, 200)
        code = smtp.wait_for(email, count=2).code()
        weak = post(server, "/api/v1/auth/reset", {"email": email, "code": code, "password": "short"})
        self.assertEqual(weak.status, 400, weak)
        self.assertEqual(weak.json()["error"], "validation_failed")

        res = post(server, "/api/v1/auth/reset", {"email": email, "code": code, "password": NEW_PASSWORD})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json(), {"message": "password reset successful"})

        res = call(server, "GET", site, headers=bearer(tokens["access_token"]))
        self.assertEqual(res.status, 401, res)
        res = post(server, "/api/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]})
        self.assertEqual(res.status, 401, res)
        self.assertEqual(server.login(email, PASSWORD).status, 401)
        self.assertEqual(server.login(email, NEW_PASSWORD).status, 200)

        again = post(server, "/api/v1/auth/reset", {"email": email, "code": code, "password": "third-pass-2Kx7"})
        self.assertEqual(again.status, 400, again)
        self.assertEqual(again.json()["error"], "invalid_code")

    def test_reset_for_unknown_email_is_invalid_code(self):
        res = post(server, "/api/v1/auth/reset",
                   {"email": "nobody-x@example.test", "code": "123456", "password": NEW_PASSWORD})
        self.assertEqual(res.status, 400, res)
        self.assertEqual(res.json()["error"], "invalid_code")


class Invites(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.token = invite_server.access_token(*ADMIN)

    def create(self, **body):
        res = post(invite_server, "/api/v1/admin/invite-codes", body, headers=bearer(self.token))
        self.assertEqual(res.status, 201, res)
        return res.json()

    def test_code_required_and_checked(self):
        res = register("mia@example.test", srv=invite_server)
        self.assertEqual(res.status, 400, res)
        self.assertEqual(res.json()["error"], "invite_code_required")
        res = register("mia@example.test", srv=invite_server, invite_code="NOT-A-CODE")
        self.assertEqual(res.status, 403, res)
        self.assertEqual(res.json()["error"], "invite_code_invalid")

    def test_one_use_code_with_ten_parallel_registrations(self):
        created = self.create(max_uses=1)
        code = created["code"]
        self.assertEqual(created["invite_code"]["code_hint"], code[-4:])
        self.assertEqual(created["invite_code"]["used_count"], 0)
        results = [None] * 10

        def attempt(i):
            results[i] = register("par%d@example.test" % i, srv=invite_server,
                                  invite_code=code.lower() if i % 2 else code)

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(r.status for r in results)
        self.assertEqual(statuses, [201] + [403] * 9, results)
        winner = next(r for r in results if r.status == 201).json()
        self.assertFalse(winner["requires_verification"])
        self.assertEqual(winner["token_type"], "Bearer")
        self.assertEqual(winner["user"]["roles"], ["user", "trial"])
        count = harness.EmbeddedCluster(invite_server.data_dir).psql(
            "SELECT count(*) FROM users WHERE email LIKE 'par%@example.test'", database="znp")
        self.assertEqual(count.strip(), "1")

        res = call(invite_server, "GET", "/api/v1/admin/invite-codes?per_page=100", headers=bearer(self.token))
        self.assertEqual(res.status, 200, res)
        row = next(c for c in res.json()["invite_codes"] if c["id"] == created["invite_code"]["id"])
        self.assertEqual(row["used_count"], 1)
        self.assertNotIn(code, res.body.decode())

    def test_disabled_and_expired_codes_are_refused(self):
        disabled = self.create(code="Disabled-Code-1", max_uses=5)
        res = call(invite_server, "PATCH", "/api/v1/admin/invite-codes/%d" % disabled["invite_code"]["id"],
                   {"disabled": True}, headers=bearer(self.token))
        self.assertEqual(res.status, 200, res)
        self.assertIsNotNone(res.json()["invite_code"]["disabled_at"])
        res = register("nina@example.test", srv=invite_server, invite_code="disabled-code-1")
        self.assertEqual(res.status, 403, res)

        lifetime = 4 if harness.VALGRIND else 2
        expiring = self.create(code="Expiring-Code-1", max_uses=5, expires_at=int(time.time()) + lifetime)
        self.assertIsNotNone(expiring["invite_code"]["expires_at"])
        time.sleep(lifetime + 0.5)
        res = register("nina@example.test", srv=invite_server, invite_code="Expiring-Code-1")
        self.assertEqual(res.status, 403, res)

        res = call(invite_server, "PATCH", "/api/v1/admin/invite-codes/999999", {"disabled": True},
                   headers=bearer(self.token))
        self.assertEqual(res.status, 404, res)
        res = post(invite_server, "/api/v1/admin/invite-codes", {"code": "Disabled-code-1"},
                   headers=bearer(self.token))
        self.assertEqual(res.status, 409, res)

    def test_list_paginates(self):
        for _ in range(3):
            self.create()
        res = call(invite_server, "GET", "/api/v1/admin/invite-codes?page=2&per_page=2", headers=bearer(self.token))
        self.assertEqual(res.status, 200, res)
        body = res.json()
        page = body["pagination"]
        self.assertEqual((page["page"], page["per_page"]), (2, 2))
        self.assertGreaterEqual(page["total_count"], 3)
        self.assertTrue(page["has_prev"])
        self.assertEqual(page["has_next"], page["total_count"] > 4)
        self.assertEqual(len(body["invite_codes"]), min(2, page["total_count"] - 2))
        res = call(invite_server, "GET", "/api/v1/admin/invite-codes?per_page=101", headers=bearer(self.token))
        self.assertEqual(res.status, 400, res)
        user = register("olga@example.test", srv=invite_server, invite_code=self.create()["code"]).json()
        res = call(invite_server, "GET", "/api/v1/admin/invite-codes", headers=bearer(user["access_token"]))
        self.assertEqual(res.status, 403, res)


class ZyClosedRegistration(unittest.TestCase):
    """Runs after the invite tests: the invite server restarts with registration closed."""

    def test_closed_mode_rejects_register(self):
        invite_server.stop_expect_clean()
        invite_server.extra_config = harness.deep_merge(invite_server.extra_config,
                                                        {"registration": {"mode": "closed"}})
        invite_server.start()
        res = register("pat@example.test", srv=invite_server, invite_code="whatever-code")
        self.assertEqual(res.status, 403, res)
        self.assertEqual(res.json()["error"], "registration_closed")
        self.assertEqual(res.json()["code"], 403010)
        # sign-in is not affected
        self.assertEqual(invite_server.login(*ADMIN).status, 200)


class ZzNoSecretsInBodies(unittest.TestCase):
    """Runs last (classes load in name order): no response of the suite contained a code or a hash."""

    def test_no_code_or_hash_in_any_response(self):
        codes = {m.code() for m in smtp.messages if m.code()}
        self.assertTrue(codes)
        with _lock:
            bodies = list(_bodies)
        self.assertGreater(len(bodies), 20)
        for path, raw, headers in bodies:
            text = raw.decode("utf-8", "replace")
            self.assertNotIn("$argon2", text, path)
            self.assertNotIn("password_hash", text, path)
            self.assertNotIn("code_hash", text, path)
            for code in codes:
                # a code on its own, not six digits inside a timestamp or a token
                alone = re.compile(r"(?<![0-9A-Za-z])%s(?![0-9A-Za-z])" % code)
                self.assertIsNone(alone.search(text), path)
                self.assertIsNone(alone.search(headers), path)


if __name__ == "__main__":
    unittest.main()

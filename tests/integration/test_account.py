"""The signed-in account (/api/v1/user/account/*) and user management (/api/v1/admin/users).

One server for the module. The admin is made with `znp admin create` before
the server starts; every other account is created through the admin API.
Mail goes to an in-process aiosmtpd capture so the email-change code can be
read from the message. Ledger rows are inserted with psql, since nothing
writes the ledger yet.
Run alone: /usr/bin/python3 tests/integration/run.py test_account
"""

import email
import os
import re
import tempfile
import threading
import time
import unittest

from tests.integration import harness

try:
    from aiosmtpd.controller import Controller
except ImportError:  # Debian's python3-aiosmtpd is missing
    Controller = None

server = None
smtp = None
ADMIN = ("root@example.com", "admin-pass-7Hq2")
PASSWORDS = {ADMIN[1]}  # every password sent, for the leak sweep
BODIES = []             # every response body, for the leak sweep
USER_PREFIX = "/api/v1/user/account"
ADMIN_PREFIX = "/api/v1/admin/users"


class MailCapture:
    """Keep every message delivered to an SMTP server on 127.0.0.1."""

    def __init__(self):
        self.messages = []
        self.lock = threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=harness.free_port())

    async def handle_DATA(self, server_, session, envelope):
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), envelope.original_content or envelope.content))
        return "250 OK"

    def start(self):
        self.controller.start()

    def stop(self):
        self.controller.stop()

    def code_for(self, address, timeout=20):
        """The newest six-digit code mailed to `address`."""
        deadline = time.time() + harness.scaled(timeout)
        while time.time() < deadline:
            with self.lock:
                found = [m for to, m in self.messages if address in to]
            if found:
                message = email.message_from_bytes(found[-1])
                parts = message.walk() if message.is_multipart() else [message]
                text = b"".join(p.get_payload(decode=True) or b"" for p in parts).decode("utf-8", "replace")
                match = re.search(r"\b(\d{6})\b", text)
                if match:
                    return match.group(1)
            time.sleep(0.1)
        raise AssertionError("no code mailed to %s" % address)


def setUpModule():
    global server, smtp
    config = {"auth": {"lockout_max_attempts": 5}}
    if Controller is not None:
        smtp = MailCapture()
        smtp.start()
        config["mail"] = {"smtp_url": "smtp://127.0.0.1:%d" % smtp.controller.port, "starttls": "off",
                          "from": "panel@example.com"}
    server = harness.Server("account", config=config)
    try:
        server.create_admin(*ADMIN)
        server.start()
    except BaseException:
        server.cleanup()
        if smtp is not None:
            smtp.stop()
        raise


def tearDownModule():
    try:
        server.stop_expect_clean()
    finally:
        server.cleanup()
        if smtp is not None:
            smtp.stop()


def call(method, path, token=None, body=None):
    headers = {"Authorization": "Bearer " + token} if token else {}
    if isinstance(body, dict):
        for key in ("password", "new_password", "current_password"):
            if isinstance(body.get(key), str):
                PASSWORDS.add(body[key])
    res = server.request(method, path, body=body, headers=headers)
    BODIES.append((method, path, res.body))
    return res


def psql(sql):
    return harness.EmbeddedCluster(server.data_dir).psql(sql, database=server.database_name()).strip()


_admin_token = None


def admin_token():
    global _admin_token
    if _admin_token is None or call("GET", ADMIN_PREFIX + "?per_page=1", _admin_token).status != 200:
        _admin_token = login(*ADMIN)["access_token"]
    return _admin_token


def login(address, password):
    PASSWORDS.add(password)
    res = server.login(address, password)
    BODIES.append(("POST", "/api/v1/auth/login", res.body))
    if res.status != 200:
        raise AssertionError("login as %s failed: %r" % (address, res))
    return res.json()


_counter = [0]


def new_user(password="member-pass-9Kd4", **extra):
    """Create an active user through the admin API; returns (id, email, password)."""
    _counter[0] += 1
    address = "member%d-%d@example.com" % (_counter[0], os.getpid())
    body = {"email": address, "password": password}
    body.update(extra)
    res = call("POST", ADMIN_PREFIX, admin_token(), body)
    if res.status != 201:
        raise AssertionError("create user failed: %r" % res)
    return res.json()["user"]["id"], address, password


def refresh(token):
    return call("POST", "/api/v1/auth/refresh", body={"refresh_token": token})


class Profile(unittest.TestCase):
    def test_get_profile(self):
        uid, address, password = new_user(display_name="Alice")
        res = call("GET", USER_PREFIX + "/profile", login(address, password)["access_token"])
        self.assertEqual(res.status, 200, res)
        profile = res.json()["profile"]
        self.assertEqual(profile["id"], uid)
        self.assertEqual(profile["email"], address)
        self.assertEqual(profile["display_name"], "Alice")
        self.assertEqual(profile["locale"], "en")
        self.assertEqual(profile["status"], 1)
        self.assertIsInstance(profile["email_verified_at"], int)

    def test_patch_absent_null_value(self):
        _, address, password = new_user(display_name="Before")
        token = login(address, password)["access_token"]
        path = USER_PREFIX + "/profile"
        # a value: trimmed and stored
        res = call("PATCH", path, token, {"display_name": "  Bob  ", "locale": "zh-CN"})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["profile"]["display_name"], "Bob")
        self.assertEqual(res.json()["profile"]["locale"], "zh-CN")
        # absent: both kept
        res = call("PATCH", path, token, {})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["profile"]["display_name"], "Bob")
        self.assertEqual(res.json()["profile"]["locale"], "zh-CN")
        # one absent, one null: the null one resets, the other stays
        res = call("PATCH", path, token, {"locale": None})
        self.assertEqual(res.json()["profile"]["locale"], "en")
        self.assertEqual(res.json()["profile"]["display_name"], "Bob")
        res = call("PATCH", path, token, {"display_name": None})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["profile"]["display_name"], address.split("@")[0])
        self.assertEqual(call("GET", path, token).json()["profile"]["display_name"], address.split("@")[0])

    def test_patch_rejects_bad_values(self):
        _, address, password = new_user()
        token = login(address, password)["access_token"]
        for body in ({"display_name": "   "}, {"locale": "fr"}, {"display_name": "x" * 129}, {"display_name": 5}):
            res = call("PATCH", USER_PREFIX + "/profile", token, body)
            self.assertEqual(res.status, 400, (body, res))

    def test_requires_token(self):
        self.assertEqual(call("GET", USER_PREFIX + "/profile").status, 401)


class PasswordChange(unittest.TestCase):
    def test_change_kills_old_tokens_and_new_pair_works(self):
        _, address, password = new_user()
        old = login(address, password)
        # no sleep: the change usually lands in the same second as the sign-in
        res = call("POST", USER_PREFIX + "/password", old["access_token"],
                   {"current_password": password, "new_password": "changed-pass-5Tg8"})
        self.assertEqual(res.status, 200, res)
        body = res.json()
        self.assertEqual(body["message"], "password updated")
        fresh = body["tokens"]
        self.assertEqual(fresh["token_type"], "Bearer")
        # the old pair is dead, the new one works, within the same second
        res = call("GET", USER_PREFIX + "/profile", old["access_token"])
        self.assertEqual(res.status, 401, res)
        self.assertEqual(res.json()["error"], "token_revoked")
        self.assertEqual(refresh(old["refresh_token"]).status, 401)
        self.assertEqual(call("GET", USER_PREFIX + "/profile", fresh["access_token"]).status, 200)
        res = refresh(fresh["refresh_token"])
        self.assertEqual(res.status, 200, res)
        self.assertEqual(call("GET", USER_PREFIX + "/profile", res.json()["access_token"]).status, 200)
        # the password itself changed
        self.assertEqual(server.login(address, password).status, 401)
        login(address, "changed-pass-5Tg8")
        self.assertEqual(psql("SELECT count(*) FROM audit_logs WHERE action = 'user.password.change'"
                              " AND resource_id = '%d'" % body["tokens"]["user"]["id"]), "1")

    def test_policy(self):
        _, address, password = new_user()
        token = login(address, password)["access_token"]
        for new in ("short", " " * 10, address.upper(), "x" * 129):
            res = call("POST", USER_PREFIX + "/password", token, {"current_password": password, "new_password": new})
            self.assertEqual(res.status, 400, (new, res))
        # nothing changed: the token still works
        self.assertEqual(call("GET", USER_PREFIX + "/profile", token).status, 200)

    def test_wrong_current_password_is_rate_limited(self):
        _, address, password = new_user()
        token = login(address, password)["access_token"]
        body = {"current_password": "not-the-password", "new_password": "whatever-pass-1Aa"}
        for _ in range(5):
            res = call("POST", USER_PREFIX + "/password", token, body)
            self.assertEqual(res.status, 401, res)
            self.assertEqual(res.json()["error"], "invalid_credentials")
        # the sixth try is refused even with the right password
        body["current_password"] = password
        res = call("POST", USER_PREFIX + "/password", token, body)
        self.assertEqual(res.status, 429, res)
        self.assertGreater(int(res.header("retry-after")), 0)
        # these failures do not lock the sign-in
        login(address, password)


@unittest.skipIf(Controller is None, "python3-aiosmtpd is not installed")
class EmailChange(unittest.TestCase):
    def test_change_flow(self):
        uid, address, password = new_user()
        _, other, _ = new_user()
        token = login(address, password)["access_token"]
        path = USER_PREFIX + "/email"
        res = call("POST", path + "/code", token, {"email": address.upper()})
        self.assertEqual(res.status, 409, res)
        self.assertEqual(res.json()["error"], "email_unchanged")
        res = call("POST", path + "/code", token, {"email": other.upper()})
        self.assertEqual(res.status, 409, res)
        self.assertEqual(res.json()["error"], "email_taken")
        self.assertEqual(call("POST", path + "/code", token, {"email": "not-an-address"}).status, 400)

        target = "moved-%d@example.com" % uid
        res = call("POST", path + "/code", token, {"email": " " + target.upper() + " "})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["message"], "verification code sent")
        code = smtp.code_for(target)
        self.assertNotIn(code.encode(), res.body)

        res = call("POST", path, token, {"email": target, "code": code, "password": "wrong-password-1"})
        self.assertEqual(res.status, 401, res)
        wrong = "000000" if code != "000000" else "111111"
        res = call("POST", path, token, {"email": target, "code": wrong, "password": password})
        self.assertEqual(res.status, 400, res)
        self.assertEqual(res.json()["error"], "invalid_code")
        res = call("POST", path, token, {"email": target, "code": code, "password": password})
        self.assertEqual(res.status, 200, res)
        profile = res.json()["profile"]
        self.assertEqual(profile["email"], target)
        self.assertIsInstance(profile["email_verified_at"], int)
        # the code is single-use, and the new address signs in
        res = call("POST", path, token, {"email": target, "code": code, "password": password})
        self.assertEqual(res.status, 409, res)
        login(target, password)
        self.assertEqual(server.login(address, password).status, 401)
        actions = psql("SELECT string_agg(action, ',' ORDER BY id) FROM audit_logs WHERE resource_id = '%d'"
                       " AND action LIKE 'user.email.%%'" % uid)
        self.assertEqual(actions, "user.email.change_request,user.email.change")


class Balance(unittest.TestCase):
    def test_no_row_reads_zero(self):
        uid, address, password = new_user()
        res = call("GET", USER_PREFIX + "/balance", login(address, password)["access_token"])
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json(), {
            "user_id": uid, "balance_cents": 0, "currency": "CNY", "updated_at": 0, "transactions": [],
            "pagination": {"page": 1, "per_page": 20, "total_count": 0, "has_next": False, "has_prev": False}})

    def test_ledger_pages(self):
        uid, address, password = new_user()
        token = login(address, password)["access_token"]
        psql("INSERT INTO user_balances (user_id, balance_cents, currency) VALUES (%d, 2500, 'CNY')" % uid)
        psql("INSERT INTO balance_transactions (user_id, entry_type, amount_cents, balance_after_cents, reference,"
             " created_at) SELECT %d, CASE WHEN i %% 5 = 0 THEN 'Refund' ELSE 'recharge' END, 100, i * 100,"
             " 'r' || i, now() - (30 - i) * interval '1 minute' FROM generate_series(1, 25) AS i" % uid)
        res = call("GET", USER_PREFIX + "/balance?per_page=10&page=3", token)
        self.assertEqual(res.status, 200, res)
        body = res.json()
        self.assertEqual(body["balance_cents"], 2500)
        self.assertEqual(body["pagination"], {"page": 3, "per_page": 10, "total_count": 25, "has_next": False,
                                              "has_prev": True})
        self.assertEqual([t["reference"] for t in body["transactions"]], ["r5", "r4", "r3", "r2", "r1"])
        res = call("GET", USER_PREFIX + "/balance?per_page=10&page=2", token).json()
        self.assertTrue(res["pagination"]["has_next"])
        self.assertEqual(len(res["transactions"]), 10)
        res = call("GET", USER_PREFIX + "/balance?entry_type=REFUND", token).json()
        self.assertEqual(res["pagination"]["total_count"], 5)
        self.assertEqual([t["reference"] for t in res["transactions"]], ["r25", "r20", "r15", "r10", "r5"])
        self.assertEqual(call("GET", USER_PREFIX + "/balance?per_page=100", token).status, 200)
        for query in ("per_page=101", "per_page=0", "page=0", "page=x"):
            self.assertEqual(call("GET", USER_PREFIX + "/balance?" + query, token).status, 400, query)


class Credentials(unittest.TestCase):
    def test_rotation_versions(self):
        uid, address, password = new_user()
        token = login(address, password)["access_token"]
        first = call("POST", USER_PREFIX + "/credentials/rotate", token)
        self.assertEqual(first.status, 200, first)
        self.assertEqual(set(first.json()["credential"]), {"version", "status", "issued_at"})
        self.assertEqual(first.json()["credential"]["version"], 1)
        second = call("POST", USER_PREFIX + "/credentials/rotate", token).json()["credential"]
        self.assertEqual((second["version"], second["status"]), (2, 1))
        res = call("POST", ADMIN_PREFIX + "/%d/credentials/rotate" % uid, admin_token())
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["user_id"], uid)
        self.assertEqual(res.json()["credential"]["version"], 3)
        rows = psql("SELECT string_agg(version || ':' || status || ':' || (deprecated_at IS NOT NULL), ','"
                    " ORDER BY version) FROM user_credentials WHERE user_id = %d" % uid)
        self.assertEqual(rows, "1:2:true,2:2:true,3:1:false")
        sealed = psql("SELECT secret_sealed FROM user_credentials WHERE user_id = %d AND version = 3" % uid)
        self.assertGreater(len(sealed), 40)
        for _, _, body in BODIES:
            self.assertNotIn(sealed.encode(), body)
        self.assertEqual(call("POST", ADMIN_PREFIX + "/999999/credentials/rotate", admin_token()).status, 404)
        self.assertEqual(psql("SELECT count(*) FROM audit_logs WHERE action = 'admin.user.credentials.rotate'"
                              " AND resource_id = '%d'" % uid), "1")


class AdminUsers(unittest.TestCase):
    def test_create_defaults_and_normalization(self):
        res = call("POST", ADMIN_PREFIX, admin_token(),
                   {"email": "  Mixed.Case@Example.com ", "password": "created-pass-3Rf7",
                    "roles": [" Ops ", "ops", "USER"]})
        self.assertEqual(res.status, 201, res)
        user = res.json()["user"]
        self.assertEqual(user["email"], "mixed.case@example.com")
        self.assertEqual(user["display_name"], "mixed.case")
        self.assertEqual(user["roles"], ["ops", "user"])
        self.assertEqual(user["status"], 1)
        self.assertIn("email_verified_at", user)
        res = call("POST", ADMIN_PREFIX, admin_token(), {"email": "MIXED.case@example.com", "password": "x" * 12})
        self.assertEqual(res.status, 409, res)
        self.assertEqual(res.json()["error"], "email_taken")
        res = call("POST", ADMIN_PREFIX, admin_token(), {"email": "pending@example.com", "password": "pending-pass-1",
                                                          "status": 2})
        self.assertEqual(res.status, 201, res)
        self.assertNotIn("email_verified_at", res.json()["user"])
        for body in ({"email": "a@example.com", "password": "short"},
                     {"email": "b@example.com", "password": "b@example.com"},
                     {"email": "c@example.com", "password": "long-enough-1", "status": 0},
                     {"email": "d@example.com", "password": "long-enough-1", "roles": ["  "]},
                     {"email": "no-at-sign", "password": "long-enough-1"},
                     {"email": "e@example.com"}):
            self.assertEqual(call("POST", ADMIN_PREFIX, admin_token(), body).status, 400, body)
        self.assertEqual(psql("SELECT count(*) FROM audit_logs WHERE action = 'admin.user.create'"
                              " AND resource_id = '%d'" % user["id"]), "1")

    def test_get(self):
        uid, address, _ = new_user()
        res = call("GET", ADMIN_PREFIX + "/%d" % uid, admin_token())
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["user"]["email"], address)
        self.assertEqual(call("GET", ADMIN_PREFIX + "/999999", admin_token()).status, 404)
        self.assertEqual(call("GET", ADMIN_PREFIX + "/abc", admin_token()).status, 400)

    def test_list_filters_and_pagination(self):
        tag = "lst%d" % os.getpid()
        ids = []
        for i in range(5):
            res = call("POST", ADMIN_PREFIX, admin_token(),
                       {"email": "%s-%d@example.com" % (tag, i), "password": "list-pass-1234",
                        "display_name": "Lister %d" % i, "roles": ["user", "auditor"] if i % 2 else ["user"],
                        "status": 3 if i == 4 else 1})
            self.assertEqual(res.status, 201, res)
            ids.append(res.json()["user"]["id"])
        page = call("GET", ADMIN_PREFIX + "?q=%s&per_page=2&page=2&sort=id&direction=asc" % tag.upper(),
                    admin_token())
        self.assertEqual(page.status, 200, page)
        body = page.json()
        self.assertEqual(body["pagination"], {"page": 2, "per_page": 2, "total_count": 5, "has_next": True,
                                              "has_prev": True})
        self.assertEqual([u["id"] for u in body["users"]], ids[2:4])
        last = call("GET", ADMIN_PREFIX + "?q=%s&per_page=2&page=3&sort=id" % tag, admin_token()).json()
        self.assertFalse(last["pagination"]["has_next"])
        self.assertEqual(len(last["users"]), 1)
        roles = call("GET", ADMIN_PREFIX + "?q=%s&role=AUDITOR" % tag, admin_token()).json()
        self.assertEqual(sorted(u["id"] for u in roles["users"]), [ids[1], ids[3]])
        disabled = call("GET", ADMIN_PREFIX + "?q=%s&status=3" % tag, admin_token()).json()
        self.assertEqual([u["id"] for u in disabled["users"]], [ids[4]])
        names = call("GET", ADMIN_PREFIX + "?q=lister%203", admin_token()).json()
        self.assertEqual([u["id"] for u in names["users"]], [ids[3]])
        everyone = call("GET", ADMIN_PREFIX + "?per_page=100", admin_token()).json()
        self.assertEqual(everyone["pagination"]["total_count"], int(psql("SELECT count(*) FROM users")))
        by_email = call("GET", ADMIN_PREFIX + "?q=%s&sort=email&direction=desc" % tag, admin_token()).json()
        self.assertEqual([u["id"] for u in by_email["users"]], ids[::-1])
        for query in ("per_page=101", "page=0", "sort=password_hash", "direction=up", "status=9"):
            self.assertEqual(call("GET", ADMIN_PREFIX + "?" + query, admin_token()).status, 400, query)

    def test_roles_update(self):
        uid, address, password = new_user()
        tokens = login(address, password)
        res = call("PATCH", ADMIN_PREFIX + "/%d/roles" % uid, admin_token(), {"roles": [" USER ", "user", "Ops"]})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["user"]["roles"], ["user", "ops"])
        self.assertEqual(call("GET", USER_PREFIX + "/profile", tokens["access_token"]).status, 401)
        self.assertEqual(refresh(tokens["refresh_token"]).status, 401)
        for roles in ([], ["", " "]):
            res = call("PATCH", ADMIN_PREFIX + "/%d/roles" % uid, admin_token(), {"roles": roles})
            self.assertEqual(res.status, 400, (roles, res))
        self.assertEqual(call("PATCH", ADMIN_PREFIX + "/999999/roles", admin_token(), {"roles": ["user"]}).status,
                         404)
        # the new roles count at once: a non-admin is refused, an admin is let in
        user_token = login(address, password)["access_token"]
        self.assertEqual(call("GET", ADMIN_PREFIX, user_token).status, 403)
        call("PATCH", ADMIN_PREFIX + "/%d/roles" % uid, admin_token(), {"roles": ["admin"]})
        self.assertEqual(call("GET", ADMIN_PREFIX, login(address, password)["access_token"]).status, 200)

    def test_status_update(self):
        uid, address, password = new_user()
        tokens = login(address, password)
        res = call("PATCH", ADMIN_PREFIX + "/%d/status" % uid, admin_token(), {"status": 3})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["user"]["status"], 3)
        self.assertEqual(server.login(address, password).status, 403)
        call("PATCH", ADMIN_PREFIX + "/%d/status" % uid, admin_token(), {"status": 1})
        # re-enabling does not bring the old tokens back
        self.assertEqual(call("GET", USER_PREFIX + "/profile", tokens["access_token"]).status, 401)
        self.assertEqual(refresh(tokens["refresh_token"]).status, 401)
        login(address, password)
        for status in (0, 4, "1"):
            res = call("PATCH", ADMIN_PREFIX + "/%d/status" % uid, admin_token(), {"status": status})
            self.assertEqual(res.status, 400, (status, res))
        self.assertEqual(psql("SELECT count(*) FROM audit_logs WHERE action = 'admin.user.status'"
                              " AND resource_id = '%d'" % uid), "2")

    def test_admin_cannot_lock_themselves_out(self):
        me = call("GET", USER_PREFIX + "/profile", admin_token()).json()["profile"]["id"]
        res = call("PATCH", ADMIN_PREFIX + "/%d/status" % me, admin_token(), {"status": 3})
        self.assertEqual(res.status, 409, res)
        self.assertEqual(res.json()["error"], "admin_self_lockout")
        res = call("PATCH", ADMIN_PREFIX + "/%d/roles" % me, admin_token(), {"roles": ["user"]})
        self.assertEqual(res.status, 409, res)
        self.assertEqual(res.json()["error"], "admin_self_lockout")
        self.assertIn("admin", call("GET", ADMIN_PREFIX + "/%d" % me, admin_token()).json()["user"]["roles"])

    def test_reset_password(self):
        uid, address, password = new_user()
        tokens = login(address, password)
        path = ADMIN_PREFIX + "/%d/reset-password" % uid
        self.assertEqual(call("POST", path, admin_token(), {"password": address.upper()}).status, 400)
        res = call("POST", path, admin_token(), {"password": "reset-pass-6Yb3"})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json(), {"message": "password reset"})
        self.assertEqual(call("GET", USER_PREFIX + "/profile", tokens["access_token"]).status, 401)
        self.assertEqual(server.login(address, password).status, 401)
        login(address, "reset-pass-6Yb3")
        self.assertEqual(call("POST", ADMIN_PREFIX + "/999999/reset-password", admin_token(),
                              {"password": "reset-pass-6Yb3"}).status, 404)

    def test_force_logout(self):
        uid, address, password = new_user()
        tokens = login(address, password)
        res = call("POST", ADMIN_PREFIX + "/%d/force-logout" % uid, admin_token())
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json(), {"message": "logout forced"})
        self.assertEqual(call("GET", USER_PREFIX + "/profile", tokens["access_token"]).status, 401)
        self.assertEqual(refresh(tokens["refresh_token"]).status, 401)
        # a sign-in right after (same second) works
        self.assertEqual(call("GET", USER_PREFIX + "/profile", login(address, password)["access_token"]).status,
                         200)
        self.assertEqual(call("POST", ADMIN_PREFIX + "/999999/force-logout", admin_token()).status, 404)
        self.assertEqual(psql("SELECT count(*) FROM audit_logs WHERE action = 'admin.user.force_logout'"
                              " AND resource_id = '%d'" % uid), "1")

    def test_user_token_refused_on_admin_routes(self):
        _, address, password = new_user()
        token = login(address, password)["access_token"]
        for method, path in (("GET", ADMIN_PREFIX), ("POST", ADMIN_PREFIX + "/1/force-logout")):
            self.assertEqual(call(method, path, token).status, 403)


class ZLeakSweep(unittest.TestCase):
    """Runs last (unittest sorts classes by name): no response carried a hash or a password."""

    def test_no_secret_in_any_response(self):
        self.assertGreater(len(BODIES), 50)
        for method, path, body in BODIES:
            text = body.decode("utf-8", "replace")
            self.assertNotIn("argon2", text, (method, path))
            self.assertNotIn("password_hash", text, (method, path))
            for password in PASSWORDS:
                if len(password) >= 8:
                    self.assertNotIn(password, text, (method, path))


if __name__ == "__main__":
    unittest.main()

"""Sign-in, lockout, refresh-token rotation and the admin site settings.

The admin accounts are made with `znp admin create` before the server
starts; the non-admin account is created by the admin through
POST /api/v1/admin/users.
Run alone: /usr/bin/python3 -m unittest tests.integration.test_auth -v
"""

import threading
import time
import unittest

from tests.integration import harness

server = None
ADMIN = ("root@example.com", "admin-pass-7Hq2")
USER = ("member@example.com", "member-pass-9Kd4")
LOCKED = ("lockme@example.com", "lock-pass-3Xv8")
MAX_ATTEMPTS = 3


def setUpModule():
    global server
    server = harness.Server("auth", config={
        "auth": {"lockout_max_attempts": MAX_ATTEMPTS, "lockout_minutes": 15},
        "site": {"name": "Configured Site"},
    })
    try:
        for email, password in (ADMIN, LOCKED):
            server.create_admin(email, password)
        server.start()
        token = server.access_token(*ADMIN)
        res = server.request("POST", "/api/v1/admin/users", {"email": USER[0], "password": USER[1]},
                             headers=bearer(token))
        if res.status != 201 or "admin" in res.json()["user"]["roles"]:
            raise AssertionError("creating the non-admin account failed: %r" % res)
    except BaseException:
        server.cleanup()
        raise


def tearDownModule():
    try:
        server.stop_expect_clean()
    finally:
        server.cleanup()


def bearer(token):
    return {"Authorization": "Bearer " + token}


def without_request_id(body):
    return {k: v for k, v in body.items() if k != "request_id"}


class Login(unittest.TestCase):
    def test_good_login(self):
        res = server.login(*ADMIN)
        self.assertEqual(res.status, 200, res)
        body = res.json()
        self.assertEqual(body["token_type"], "Bearer")
        self.assertEqual(body["user"]["email"], ADMIN[0])
        self.assertIn("admin", body["user"]["roles"])
        self.assertGreater(body["expires_in"], 0)
        self.assertGreater(body["refresh_expires_in"], body["expires_in"])
        self.assertEqual(body["access_token"].count("."), 2)
        self.assertNotIn("password_hash", res.body.decode())

    def test_email_is_case_insensitive(self):
        res = server.login("  ROOT@Example.COM ", ADMIN[1])
        self.assertEqual(res.status, 200, res)

    def test_wrong_password(self):
        res = server.login(ADMIN[0], "not-the-password")
        self.assertEqual(res.status, 401, res)
        body = res.json()
        self.assertEqual(body["error"], "invalid_credentials")
        self.assertEqual(body["code"], 401004)

    def test_unknown_email_same_answer(self):
        wrong = server.login(ADMIN[0], "not-the-password")
        unknown = server.login("nobody@example.com", "not-the-password")
        self.assertEqual(unknown.status, wrong.status)
        self.assertEqual(without_request_id(unknown.json()), without_request_id(wrong.json()))

    def assert_locked(self, res):
        self.assertEqual(res.status, 403, res)
        self.assertEqual(res.json()["error"], "account_locked")
        retry_after = res.header("retry-after")
        self.assertIsNotNone(retry_after, res.headers)
        self.assertGreater(int(retry_after), 0)
        self.assertLessEqual(int(retry_after), 15 * 60)

    def test_lockout_after_failures(self):
        for attempt in range(1, MAX_ATTEMPTS):
            res = server.login(LOCKED[0], "wrong-%d" % attempt)
            self.assertEqual(res.status, 401, "attempt %d: %r" % (attempt, res))
        # The failure that reaches the limit locks the account and returns account_locked.
        self.assert_locked(server.login(LOCKED[0], "wrong-last"))
        # Locked now: even the right password is turned away, with a hint when to retry.
        self.assert_locked(server.login(*LOCKED))


class Refresh(unittest.TestCase):
    def refresh(self, token):
        return server.request("POST", "/api/v1/auth/refresh", {"refresh_token": token})

    def test_rotation_and_reuse_revokes_family(self):
        first = server.login(*ADMIN).json()["refresh_token"]
        res = self.refresh(first)
        self.assertEqual(res.status, 200, res)
        second = res.json()["refresh_token"]
        self.assertNotEqual(first, second)

        reuse = self.refresh(first)
        self.assertEqual(reuse.status, 401, reuse)
        self.assertIn(reuse.json()["error"], ("token_revoked", "token_invalid"))

        after = self.refresh(second)
        self.assertEqual(after.status, 401, after)
        self.assertIn(after.json()["error"], ("token_revoked", "token_invalid"))

    def test_other_family_survives_reuse(self):
        mine = server.login(*ADMIN).json()["refresh_token"]
        other = server.login(*ADMIN).json()["refresh_token"]
        self.assertEqual(self.refresh(mine).status, 200)
        self.assertEqual(self.refresh(mine).status, 401)
        self.assertEqual(self.refresh(other).status, 200)

    def test_concurrent_refresh_one_winner(self):
        token = server.login(*ADMIN).json()["refresh_token"]
        count = 8
        barrier = threading.Barrier(count)
        results = [None] * count

        def worker(i):
            barrier.wait()
            results[i] = self.refresh(token).status

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(results.count(200), 1, results)
        self.assertEqual(results.count(401), count - 1, results)

    def test_access_token_is_not_a_refresh_token(self):
        access = server.login(*ADMIN).json()["access_token"]
        res = self.refresh(access)
        self.assertEqual(res.status, 401, res)
        self.assertEqual(res.json()["error"], "token_invalid")

    def test_garbage_refresh_token(self):
        res = self.refresh("not.a.jwt")
        self.assertEqual(res.status, 401, res)
        self.assertEqual(res.json()["error"], "token_invalid")


class SiteSettings(unittest.TestCase):
    PATH = "/api/v1/admin/site-settings"

    @classmethod
    def setUpClass(cls):
        cls.admin = server.access_token(*ADMIN)

    def get(self):
        res = server.request("GET", self.PATH, headers=bearer(self.admin))
        self.assertEqual(res.status, 200, res)
        return res.json()["setting"]

    def patch(self, body):
        return server.request("PATCH", self.PATH, body, headers=bearer(self.admin))

    def test_requires_token(self):
        res = server.request("GET", self.PATH)
        self.assertEqual(res.status, 401, res)
        self.assertEqual(res.json()["error"], "unauthenticated")

    def test_rejects_bad_token(self):
        res = server.request("GET", self.PATH, headers=bearer("abc.def.ghi"))
        self.assertEqual(res.status, 401, res)
        self.assertEqual(res.json()["error"], "token_invalid")

    def test_forbidden_for_non_admin(self):
        token = server.access_token(*USER)
        res = server.request("GET", self.PATH, headers=bearer(token))
        self.assertEqual(res.status, 403, res)
        self.assertEqual(res.json()["error"], "forbidden")
        res = server.request("PATCH", self.PATH, {"name": "x"}, headers=bearer(token))
        self.assertEqual(res.status, 403, res)

    def test_patch_without_token(self):
        res = server.request("PATCH", self.PATH, {"name": "x"})
        self.assertEqual(res.status, 401, res)

    def test_other_admin_prefix_is_not_a_bypass(self):
        res = server.request("GET", "/api/v1/Admin/site-settings")
        self.assertIn(res.status, (401, 404), res)

    def test_patch_absent_null_value(self):
        res = self.patch({"name": "Panel One", "logo_url": "https://cdn.example.com/logo.png"})
        self.assertEqual(res.status, 200, res)
        setting = res.json()["setting"]
        self.assertEqual(setting["name"], "Panel One")
        self.assertEqual(setting["logo_url"], "https://cdn.example.com/logo.png")

        # absent: logo_url keeps its value
        res = self.patch({"name": "  Panel Two  "})
        self.assertEqual(res.status, 200, res)
        setting = res.json()["setting"]
        self.assertEqual(setting["name"], "Panel Two")
        self.assertEqual(setting["logo_url"], "https://cdn.example.com/logo.png")

        # null: clears the value; the name falls back to the configured one
        res = self.patch({"logo_url": None, "name": None})
        self.assertEqual(res.status, 200, res)
        setting = res.json()["setting"]
        self.assertEqual(setting["logo_url"], "")
        self.assertEqual(setting["name"], "Configured Site")

        # empty body object changes nothing
        res = self.patch({})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["setting"]["name"], "Configured Site")
        self.assertEqual(self.get()["logo_url"], "")

    def test_ping_shows_new_site_name(self):
        res = self.patch({"name": "Ping Visible", "logo_url": "https://img.example.com/a.png"})
        self.assertEqual(res.status, 200, res)
        ping = harness.wait_until(
            lambda: (lambda body: body if body["site_name"] == "Ping Visible" else None)(
                server.request("GET", "/api/v1/ping").json()), timeout=5)
        self.assertIsNotNone(ping, "ping never showed the new site name")
        self.assertEqual(ping["logo_url"], "https://img.example.com/a.png")

    def test_validation_errors_name_field(self):
        cases = [
            ({"name": 42}, "$.name"),
            ({"name": "x" * 129}, "$.name"),
            ({"logo_url": "ftp://example.com/x.png"}, "$.logo_url"),
            ({"service_domain": "has space.example.com"}, "$.service_domain"),
        ]
        for body, field in cases:
            with self.subTest(body=str(body)[:40]):
                res = self.patch(body)
                self.assertEqual(res.status, 400, res)
                envelope = res.json()
                self.assertEqual(envelope["error"], "validation_failed")
                self.assertIn(field, [d["field"] for d in envelope["details"]])

    def test_unknown_field_ignored(self):
        # The codec ignores keys the schema does not name (forward compatibility).
        before = self.get()
        res = self.patch({"nmae": "typo"})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["setting"]["name"], before["name"])

    def test_patch_is_persisted(self):
        res = self.patch({"subscription_domain": "https://sub.example.com"})
        self.assertEqual(res.status, 200, res)
        cluster = harness.EmbeddedCluster(server.data_dir)
        stored = cluster.psql("SELECT subscription_domain FROM site_settings WHERE id = 1",
                              database=server.database_name()).strip()
        self.assertEqual(stored, "https://sub.example.com")
        self.assertEqual(self.get()["subscription_domain"], "https://sub.example.com")


class AdminMfaSetting(unittest.TestCase):
    PATH = "/api/v1/admin/site-settings"

    def psql(self, sql):
        return harness.EmbeddedCluster(server.data_dir).psql(sql, database=server.database_name()).strip()

    def test_site_setting_requires_admin_mfa(self):
        token = server.access_token(*ADMIN)
        res = server.request("PATCH", self.PATH, {"require_admin_mfa": True}, headers=bearer(token))
        self.assertEqual(res.status, 200, res)
        self.assertIs(res.json()["setting"]["require_admin_mfa"], True)
        try:
            # the admin has no MFA, so admin routes now wait for enrolment; user routes do not
            res = server.request("GET", self.PATH, headers=bearer(token))
            self.assertEqual(res.status, 403, res)
            self.assertEqual(res.json()["error"], "mfa_required")
            res = server.request("GET", "/api/v1/user/mfa", headers=bearer(token))
            self.assertEqual(res.status, 200, res)
            audit = self.psql("SELECT diff::text FROM audit_logs WHERE action = 'admin.site_settings.update'"
                              " AND diff ? 'require_admin_mfa' ORDER BY id DESC LIMIT 1")
            self.assertIn('"to": true', audit)
        finally:
            # switched back in the database: NOTIFY reaches the in-process copy within the watcher interval
            self.psql("UPDATE site_settings SET require_admin_mfa = false WHERE id = 1")
        for _ in range(int(harness.scaled(50))):
            res = server.request("GET", self.PATH, headers=bearer(token))
            if res.status == 200:
                break
            time.sleep(0.1)
        self.assertEqual(res.status, 200, res)
        self.assertIs(res.json()["setting"]["require_admin_mfa"], False)


if __name__ == "__main__":
    unittest.main()

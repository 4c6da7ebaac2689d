"""The signed third-party API and its security settings, on two instances.

Instance A runs the embedded cluster; instance B is a second `znp serve` on
A's DSN (harness.Server.shared_dsn) with the same master key, so it opens the
secret A sealed and finds the nonces A recorded. The tests run in name order:
settings first, then the signature cases with signing on for the user group.
Run alone: ZNP_BIN=build/znp /usr/bin/python3 tests/integration/run.py test_signed
"""

import base64
import json
import os
import time
import unittest

from tests.integration import harness
from tests.integration import signed_client

first = second = None
ADMIN = ("signed-admin@example.com", "signed-admin-pass-4Kq9")
USER = ("signed-user@example.com", "signed-user-pass-7Hd2")
SETTINGS = "/api/v1/admin/security-settings"
ROTATE = SETTINGS + "/rotate-secret"
PROFILE = "/api/v1/user/account/profile"
TTL = 60

state = {}


def setUpModule():
    global first, second
    common = {
        "auth": {"lockout_max_attempts": 0},
        "security": {"master_key": base64.b64encode(os.urandom(32)).decode()},
    }
    first = harness.Server("signed-a", config=common)
    try:
        for account in (ADMIN, USER):
            first.create_admin(*account)
        first.start()
        first_psql("UPDATE users SET roles = ARRAY['user'] WHERE email = '%s'" % USER[0])
        second = harness.Server("signed-b", config=harness.deep_merge(common, {
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
        second.stop_expect_clean()
        first.stop_expect_clean()
    finally:
        for srv in (second, first):
            srv.cleanup()


def first_psql(sql):
    return harness.EmbeddedCluster(first.data_dir).psql(sql, database=first.database_name())


def bearer(token):
    return {"Authorization": "Bearer " + token}


def admin_call(method, path, body=None, srv=None):
    srv = srv or first
    if "admin_token" not in state:
        state["admin_token"] = first.access_token(*ADMIN)
    return srv.request(method, path, body, headers=bearer(state["admin_token"]))


def user_token():
    if "user_token" not in state:
        state["user_token"] = first.access_token(*USER)
    return state["user_token"]


def signed_call(srv, method, target, body=b"", key=None, secret=None, token=None, mutate=None, **kwargs):
    """Send a signed request; `mutate(headers, body)` may change it after signing and return the body."""
    headers, data = signed_client.signed_request(key or state["api_key"], secret or state["api_secret"], method,
                                                 target, body, **kwargs)
    headers.update(bearer(token or user_token()))
    if mutate is not None:
        data = mutate(headers, data)
    return srv.request(method, target, data if data else None, headers=headers)


def error_of(res):
    try:
        return res.json().get("error")
    except ValueError:
        return None


class SecuritySettingsTest(unittest.TestCase):

    def test_1_first_read_creates_and_returns_secret_once(self):
        res = admin_call("GET", SETTINGS)
        self.assertEqual(res.status, 200, res)
        body = res.json()
        setting = body["setting"]
        self.assertIn("api_secret", body, "the read that creates the row returns its secret")
        secret = body["api_secret"]
        self.assertEqual(len(secret), 43)
        self.assertEqual(setting["api_secret_last4"], secret[-4:])
        self.assertFalse(setting["third_party_api_enabled"])
        self.assertEqual(setting["encryption_algorithm"], "aes-256-gcm")
        self.assertEqual(setting["nonce_ttl_seconds"], 300)
        self.assertEqual(setting["signed_route_groups"], [])
        state.update(api_key=setting["api_key"], api_secret=secret, updated_at=setting["updated_at"])

        again = admin_call("GET", SETTINGS)
        self.assertEqual(again.status, 200, again)
        self.assertNotIn("api_secret", again.json())
        self.assertNotIn(secret.encode(), again.body)
        self.assertEqual(again.json()["setting"]["api_secret_last4"], secret[-4:])
        # stored sealed, not in clear
        stored = first_psql("SELECT api_secret_sealed FROM security_settings")
        self.assertNotIn(secret, stored)
        # a plain user may not read it
        res = first.request("GET", SETTINGS, headers=bearer(user_token()))
        self.assertEqual(res.status, 403, res)

    def test_2_patch_validates_and_detects_stale_writes(self):
        for bad in ({"nonce_ttl_seconds": 59}, {"nonce_ttl_seconds": 3601}, {"signed_route_groups": ["users"]},
                    {"encryption_algorithm": "aes-128-cbc"}, {"api_secret": "chosen-by-client-000000"}, {}):
            body = dict(bad)
            if bad:
                body["updated_at"] = state["updated_at"]
            res = admin_call("PATCH", SETTINGS, body)
            self.assertEqual(res.status, 400, (bad, res))

        res = admin_call("PATCH", SETTINGS, {"updated_at": state["updated_at"], "nonce_ttl_seconds": 120})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["setting"]["nonce_ttl_seconds"], 120)
        self.assertNotIn("api_secret", res.json())
        newer = res.json()["setting"]["updated_at"]
        self.assertGreater(newer, state["updated_at"])
        # the same stale updated_at again: 409, nothing written
        res = admin_call("PATCH", SETTINGS, {"updated_at": state["updated_at"], "nonce_ttl_seconds": 600})
        self.assertEqual(res.status, 409, res)
        self.assertEqual(error_of(res), "conflict")
        self.assertEqual(admin_call("GET", SETTINGS).json()["setting"]["nonce_ttl_seconds"], 120)
        state["updated_at"] = newer

        rows = first_psql("SELECT action || ' ' || coalesce(diff::text, '') FROM audit_logs"
                          " WHERE resource_type = 'security_settings' ORDER BY id")
        self.assertIn("admin.security_settings.create", rows)
        self.assertIn("admin.security_settings.update", rows)
        self.assertIn('"nonce_ttl_seconds"', rows)
        self.assertNotIn(state["api_secret"], rows)

    def test_3_rotate_returns_new_secret_once(self):
        stale = admin_call("POST", ROTATE, {"updated_at": state["updated_at"] - 1})
        self.assertEqual(stale.status, 409, stale)
        res = admin_call("POST", ROTATE, {"updated_at": state["updated_at"]})
        self.assertEqual(res.status, 200, res)
        secret = res.json()["api_secret"]
        self.assertNotEqual(secret, state["api_secret"])
        self.assertEqual(res.json()["setting"]["api_secret_last4"], secret[-4:])
        read = admin_call("GET", SETTINGS)
        self.assertNotIn("api_secret", read.json())
        self.assertNotIn(secret.encode(), read.body)
        rows = first_psql("SELECT action FROM audit_logs WHERE action = 'admin.security_settings.rotate_secret'")
        self.assertIn("rotate_secret", rows)
        self.assertNotIn(secret, first_psql("SELECT coalesce(diff::text, '') FROM audit_logs"))
        state.update(old_secret=state["api_secret"], api_secret=secret,
                     updated_at=res.json()["setting"]["updated_at"])

    def test_4_enable_for_user_group(self):
        # unsigned requests work while signing is off
        self.assertEqual(first.request("GET", PROFILE, headers=bearer(user_token())).status, 200)
        res = admin_call("PATCH", SETTINGS, {"updated_at": state["updated_at"], "third_party_api_enabled": True,
                                             "nonce_ttl_seconds": TTL, "signed_route_groups": ["user", "user"]})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["setting"]["signed_route_groups"], ["user"])
        state["updated_at"] = res.json()["setting"]["updated_at"]
        # A refuses at once; B follows through NOTIFY
        res = first.request("GET", PROFILE, headers=bearer(user_token()))
        self.assertEqual((res.status, error_of(res)), (401, "signature_headers_missing"))
        self.assertTrue(harness.wait_until(
            lambda: second.request("GET", PROFILE, headers=bearer(user_token())).status == 401, timeout=10),
            "instance B did not pick up the change")
        # an expired nonce from an earlier run; A deletes it on its first accepted nonce (SignatureTest.test_1)
        first_psql("INSERT INTO api_nonces (api_key, nonce, expires_at)"
                   " VALUES ('%s', 'expired-nonce-0000001', now() - interval '1 hour')" % state["api_key"])
        # groups not chosen stay open: the admin API and public routes
        self.assertEqual(admin_call("GET", SETTINGS).status, 200)
        self.assertEqual(first.request("GET", "/api/v1/ping").status, 200)


class SignatureTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if not state.get("updated_at") or "old_secret" not in state:
            raise unittest.SkipTest("settings tests did not run")

    def test_1_signature_case_table(self):
        now = int(time.time())
        body = json.dumps({"display_name": "Signed Sam"}).encode()

        def drop(name):
            def mutate(headers, data):
                del headers[name]
                return data
            return mutate

        def replace_body(headers, data):
            return json.dumps({"display_name": "Mallory"}).encode()

        def flip_last_byte(headers, data):
            return data[:-1] + bytes([data[-1] ^ 1])

        def flip_and_resign(headers, data):
            # a changed ciphertext with a matching signature: only the GCM tag catches it
            data = data[:3] + bytes([data[3] ^ 1]) + data[4:]
            headers["X-ZNP-Signature"] = signed_client.sign(state["api_secret"], "PATCH", PROFILE, "",
                                                            headers["X-ZNP-Timestamp"], headers["X-ZNP-Nonce"], data)
            return data

        cases = [
            # name, method, kwargs, expected status, expected error
            ("good GET", "GET", {}, 200, None),
            ("good PATCH", "PATCH", {"body": body}, 200, None),
            ("good encrypted PATCH", "PATCH", {"body": body, "encrypted": True}, 200, None),
            ("wrong api key", "GET", {"key": "not-the-key-000"}, 401, "api_key_invalid"),
            ("old secret", "GET", {"secret": state["old_secret"]}, 401, "signature_invalid"),
            ("wrong secret", "GET", {"secret": "x" * 43}, 401, "signature_invalid"),
            ("wrong body", "PATCH", {"body": body, "mutate": replace_body}, 401, "signature_invalid"),
            ("expired timestamp", "GET", {"timestamp": now - TTL - 30}, 401, "timestamp_out_of_window"),
            ("future timestamp", "GET", {"timestamp": now + TTL + 30}, 401, "timestamp_out_of_window"),
            ("malformed timestamp", "GET", {"timestamp": "soon"}, 401, "timestamp_out_of_window"),
            ("short nonce", "GET", {"nonce": "abc"}, 401, "nonce_invalid"),
            ("missing signature", "GET", {"mutate": drop("X-ZNP-Signature")}, 401, "signature_headers_missing"),
            ("missing nonce", "GET", {"mutate": drop("X-ZNP-Nonce")}, 401, "signature_headers_missing"),
            ("missing api key", "GET", {"mutate": drop("X-ZNP-API-Key")}, 401, "signature_headers_missing"),
            ("tampered ciphertext, old signature", "PATCH",
             {"body": body, "encrypted": True, "mutate": flip_last_byte}, 401, "signature_invalid"),
            ("tampered ciphertext, new signature", "PATCH",
             {"body": body, "encrypted": True, "mutate": flip_and_resign}, 401, "body_decrypt_failed"),
            ("IV of 16 bytes", "PATCH", {"body": body, "encrypted": True, "iv": os.urandom(16)}, 401,
             "encryption_iv_invalid"),
            ("IV of 8 bytes", "PATCH", {"body": body, "encrypted": True, "iv": os.urandom(8)}, 401,
             "encryption_iv_invalid"),
        ]
        for name, method, kwargs, status, error in cases:
            with self.subTest(name):
                kwargs = dict(kwargs)
                res = signed_call(first, method, PROFILE, kwargs.pop("body", b""), **kwargs)
                self.assertEqual(res.status, status, "%s: %r" % (name, res))
                if error is not None:
                    self.assertEqual(error_of(res), error, name)
                    self.assertEqual(res.json()["code"] // 1000, 401)
        # the encrypted PATCH reached the operation as plaintext
        profile = first.request("GET", PROFILE, headers=bearer(user_token()))
        self.assertEqual(profile.status, 401)  # unsigned
        profile = signed_call(first, "GET", PROFILE)
        self.assertEqual(profile.json()["profile"]["display_name"] if "profile" in profile.json()
                         else profile.json().get("display_name"), "Signed Sam", profile)

    def test_2_nonce_replay_refused_on_same_and_second_instance(self):
        nonce = signed_client.new_nonce()
        res = signed_call(first, "GET", PROFILE, nonce=nonce)
        self.assertEqual(res.status, 200, res)
        again = signed_call(first, "GET", PROFILE, nonce=nonce)
        self.assertEqual((again.status, error_of(again)), (401, "nonce_reused"))
        on_b = signed_call(second, "GET", PROFILE, nonce=nonce)
        self.assertEqual((on_b.status, error_of(on_b)), (401, "nonce_reused"), on_b)
        # and the other way round
        nonce = signed_client.new_nonce()
        self.assertEqual(signed_call(second, "GET", PROFILE, nonce=nonce).status, 200)
        res = signed_call(first, "GET", PROFILE, nonce=nonce)
        self.assertEqual((res.status, error_of(res)), (401, "nonce_reused"))
        stored = first_psql("SELECT count(*) FROM api_nonces WHERE nonce = '%s'" % nonce)
        self.assertEqual(stored.strip(), "1")

    def test_3_expired_nonces_are_deleted_and_reusable(self):
        # inserted by SecuritySettingsTest.test_4, deleted by A's first accepted request in test_1
        self.assertEqual(first_psql("SELECT count(*) FROM api_nonces WHERE nonce = 'expired-nonce-0000001'").strip(),
                         "0")
        # a nonce whose record expired (and was not deleted yet) is accepted again
        first_psql("INSERT INTO api_nonces (api_key, nonce, expires_at)"
                   " VALUES ('%s', 'expired-nonce-0000002', now() - interval '1 second')" % state["api_key"])
        self.assertEqual(signed_call(second, "GET", PROFILE, nonce="expired-nonce-0000002").status, 200)
        res = signed_call(first, "GET", PROFILE, nonce="expired-nonce-0000002")
        self.assertEqual((res.status, error_of(res)), (401, "nonce_reused"))

    def test_4_admin_group_and_grpc(self):
        res = admin_call("PATCH", SETTINGS, {"updated_at": state["updated_at"], "signed_route_groups": ["user", "admin"]})
        self.assertEqual(res.status, 200, res)
        state["updated_at"] = res.json()["setting"]["updated_at"]
        res = admin_call("GET", SETTINGS)
        self.assertEqual((res.status, error_of(res)), (401, "signature_headers_missing"))
        res = signed_call(first, "GET", "/api/v1/admin/site-settings", token=state["admin_token"])
        self.assertEqual(res.status, 200, res)
        if harness.grpc_client_available():
            # gRPC carries no signature headers, so a signed group refuses it rather than let it around the check
            proc = harness.grpc_run("call", first.grpc_addr, "/znp.v1.Admin/GetSiteSettings", "{}",
                                    "-H", "authorization:Bearer " + state["admin_token"])
            self.assertNotEqual(proc.returncode, 0, proc.stdout)
            self.assertIn("UNAUTHENTICATED", proc.stdout)
            self.assertIn("signature_headers_missing", proc.stdout)
            # public gRPC methods stay open
            self.assertEqual(harness.grpc_run("call", first.grpc_addr, "/znp.v1.System/Ping", "{}").returncode, 0)

        # the public group: ping runs inline on the event loop unless it must be signed, then on a worker
        res = signed_call(first, "PATCH", SETTINGS, json.dumps({
            "updated_at": state["updated_at"], "signed_route_groups": ["user", "admin", "public"]}).encode(),
            token=state["admin_token"])
        self.assertEqual(res.status, 200, res)
        state["updated_at"] = res.json()["setting"]["updated_at"]
        res = first.request("GET", "/api/v1/ping")
        self.assertEqual((res.status, error_of(res)), (401, "signature_headers_missing"))
        res = signed_call(first, "GET", "/api/v1/ping?probe=1")
        self.assertEqual(res.status, 200, res)

    def test_5_disable_opens_the_groups(self):
        body = json.dumps({"updated_at": state["updated_at"], "third_party_api_enabled": False}).encode()
        res = signed_call(first, "PATCH", SETTINGS, body, token=state["admin_token"])
        self.assertEqual(res.status, 200, res)
        state["updated_at"] = res.json()["setting"]["updated_at"]
        self.assertEqual(first.request("GET", PROFILE, headers=bearer(user_token())).status, 200)
        self.assertTrue(harness.wait_until(
            lambda: second.request("GET", PROFILE, headers=bearer(user_token())).status == 200, timeout=10))


if __name__ == "__main__":
    unittest.main()

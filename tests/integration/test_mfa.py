"""TOTP multi-factor authentication: enrollment, the two-step sign-in, replay
and recovery codes, disabling, and security.require_admin_mfa.

TOTP codes are computed here with the standard library (RFC 6238, HMAC-SHA1,
6 digits, 30-second steps). The server accepts one step either side of its
own and each step once per user, so a flow that needs two codes uses the
current step and then the next one (fresh_step) without waiting 30 seconds.
Run alone: /usr/bin/python3 tests/integration/run.py test_mfa
"""

import base64
import hashlib
import hmac
import struct
import time
import unittest
import urllib.parse

from tests.integration import harness

server = None
ADMIN = ("mfa-admin@example.com", "admin-pass-4Rt8")
USER = ("mfa-user@example.com", "user-pass-6Wq3")
SPARE = ("mfa-spare@example.com", "spare-pass-2Lm9")
SITE_NAME = "MFA Test Site"


def setUpModule():
    global server
    server = harness.Server("mfa", config={
        "auth": {"lockout_max_attempts": 20, "lockout_minutes": 15},
        "security": {"require_admin_mfa": True},
        "site": {"name": SITE_NAME},
    })
    try:
        for email, password in (ADMIN, USER, SPARE):
            server.create_admin(email, password)
        server.start()
        for email in (USER[0], SPARE[0]):
            psql("UPDATE users SET roles = ARRAY['user'] WHERE email = '%s'" % email)
    except BaseException:
        server.cleanup()
        raise


def tearDownModule():
    try:
        server.stop_expect_clean()
    finally:
        server.cleanup()


def psql(sql):
    cluster = harness.EmbeddedCluster(server.data_dir)
    return cluster.psql(sql, database=server.database_name())


def totp(secret, step):
    """The 6-digit RFC 6238 code of base32 `secret` for time step `step`."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return "%06d" % (value % 1000000)


def current_step():
    return int(time.time()) // 30


def fresh_step(last_used):
    """The earliest step after `last_used` that the server accepts now (its step, one either side).

    Slow runs (valgrind) may have left `last_used` far behind; a step too far
    ahead is waited for.
    """
    step = max(last_used + 1, current_step() - 1)
    while step > current_step() + 1:
        time.sleep(0.5)
    return step


def bearer(token):
    return {"Authorization": "Bearer " + token}


class Recorder:
    """Sends requests and keeps every response body, to search them for leaked secrets."""

    def __init__(self):
        self.bodies = []

    def request(self, method, path, body=None, token=None):
        res = server.request(method, path, body, headers=bearer(token) if token else None)
        self.bodies.append(res.body.decode("utf-8", "replace"))
        return res

    def login(self, email, password):
        return self.request("POST", "/api/v1/auth/login", {"email": email, "password": password})

    def login_mfa(self, mfa_token, code):
        return self.request("POST", "/api/v1/auth/login/mfa", {"mfa_token": mfa_token, "code": code})


def enable_mfa(rec, token):
    """Enroll and confirm with the current step's code; return (secret, recovery codes, step used)."""
    res = rec.request("POST", "/api/v1/user/mfa/totp/enroll", token=token)
    if res.status != 200:
        raise AssertionError("enroll failed: %r" % res)
    secret = res.json()["secret"]
    step = current_step()
    res = rec.request("POST", "/api/v1/user/mfa/totp/confirm", {"code": totp(secret, step)}, token=token)
    if res.status != 200:
        raise AssertionError("confirm failed: %r" % res)
    return secret, res.json()["recovery_codes"], step


class UserFlow(unittest.TestCase):
    def test_enroll_sign_in_replay_recovery_disable(self):
        rec = Recorder()
        token = server.access_token(*USER)

        # before enrollment
        res = rec.request("GET", "/api/v1/user/mfa", token=token)
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json(), {"enabled": False, "confirmed_at": None, "recovery_codes_left": 0})
        res = rec.request("POST", "/api/v1/user/mfa/totp/confirm", {"code": "123456"}, token=token)
        self.assertEqual(res.status, 409, res)
        self.assertEqual(res.json()["error"], "mfa_enrollment_missing")

        # enroll twice: the second secret replaces the first
        res = rec.request("POST", "/api/v1/user/mfa/totp/enroll", token=token)
        self.assertEqual(res.status, 200, res)
        first_secret = res.json()["secret"]
        res = rec.request("POST", "/api/v1/user/mfa/totp/enroll", token=token)
        self.assertEqual(res.status, 200, res)
        body = res.json()
        secret = body["secret"]
        self.assertNotEqual(secret, first_secret)
        self.assertRegex(secret, r"^[A-Z2-7]{32}$")
        self.assertEqual(len(base64.b32decode(secret)), 20)
        uri = urllib.parse.urlsplit(body["otpauth_uri"])
        self.assertEqual((uri.scheme, uri.netloc), ("otpauth", "totp"))
        self.assertEqual(uri.path, "/MFA%20Test%20Site:mfa-user%40example.com")
        query = urllib.parse.parse_qs(uri.query)
        self.assertEqual(query, {"secret": [secret], "issuer": [SITE_NAME], "algorithm": ["SHA1"],
                                 "digits": ["6"], "period": ["30"]})
        self.assertIn("issuer=MFA%20Test%20Site&", body["otpauth_uri"])

        # the seed is stored sealed, never as itself
        stored = psql("SELECT encode(pending_secret, 'hex') FROM user_mfa m JOIN users u ON u.id = m.user_id"
                      " WHERE u.email = '%s'" % USER[0]).strip()
        self.assertEqual(len(stored), 2 * (20 + 29))
        self.assertNotIn(base64.b32decode(secret).hex(), stored)

        # confirm: a code of the replaced secret and a wrong code fail, the right one enables MFA
        step = current_step()
        res = rec.request("POST", "/api/v1/user/mfa/totp/confirm", {"code": totp(first_secret, step)}, token=token)
        self.assertEqual(res.status, 400, res)
        self.assertEqual(res.json()["error"], "mfa_code_invalid")
        res = rec.request("POST", "/api/v1/user/mfa/totp/confirm", {"code": "12345"}, token=token)
        self.assertEqual(res.status, 400, res)
        self.assertEqual(res.json()["error"], "validation_failed")
        res = rec.request("POST", "/api/v1/user/mfa/totp/confirm", {"code": totp(secret, step)}, token=token)
        self.assertEqual(res.status, 200, res)
        codes = res.json()["recovery_codes"]
        self.assertEqual(len(codes), 10)
        self.assertEqual(len(set(codes)), 10)
        for code in codes:
            self.assertRegex(code, r"^[a-z2-7]{4}-[a-z2-7]{4}$")
        leaked_from = len(rec.bodies)

        res = rec.request("GET", "/api/v1/user/mfa", token=token)
        self.assertEqual(res.status, 200, res)
        status = res.json()
        self.assertTrue(status["enabled"])
        self.assertLessEqual(abs(status["confirmed_at"] - time.time()), 60)
        self.assertEqual(status["recovery_codes_left"], 10)
        res = rec.request("POST", "/api/v1/user/mfa/totp/enroll", token=token)
        self.assertEqual(res.status, 409, res)
        self.assertEqual(res.json()["error"], "mfa_already_enabled")

        # the password alone gives a challenge and no tokens
        res = rec.login(*USER)
        self.assertEqual(res.status, 200, res)
        body = res.json()
        self.assertIs(body["mfa_required"], True)
        self.assertEqual(body["mfa_expires_in"], 300)
        for absent in ("access_token", "refresh_token", "user", "expires_in"):
            self.assertNotIn(absent, body)
        mfa_token = body["mfa_token"]
        res = rec.request("GET", "/api/v1/user/mfa", token=mfa_token)
        self.assertEqual(res.status, 401, res)

        # the confirm step's code is spent; a wrong code counts as a failed sign-in
        res = rec.login_mfa(mfa_token, totp(secret, step))
        self.assertEqual(res.status, 400, res)
        self.assertEqual(res.json()["error"], "mfa_code_invalid")
        failures = psql("SELECT failed_login_attempts FROM users WHERE email = '%s'" % USER[0]).strip()
        self.assertEqual(failures, "1")

        # a later step's code signs in and resets the counter
        used = fresh_step(step)
        res = rec.login_mfa(mfa_token, totp(secret, used))
        self.assertEqual(res.status, 200, res)
        pair = res.json()
        self.assertEqual(pair["token_type"], "Bearer")
        self.assertEqual(pair["user"]["email"], USER[0])
        res = rec.request("GET", "/api/v1/user/mfa", token=pair["access_token"])
        self.assertEqual(res.status, 200, res)
        failures = psql("SELECT failed_login_attempts FROM users WHERE email = '%s'" % USER[0]).strip()
        self.assertEqual(failures, "0")

        # the challenge succeeds once
        res = rec.login_mfa(mfa_token, codes[0])
        self.assertEqual(res.status, 401, res)
        self.assertEqual(res.json()["error"], "token_invalid")

        # the same TOTP code on a new challenge is a replay
        mfa_token = rec.login(*USER).json()["mfa_token"]
        res = rec.login_mfa(mfa_token, totp(secret, used))
        self.assertEqual(res.status, 400, res)
        self.assertEqual(res.json()["error"], "mfa_code_invalid")

        # a recovery code works once, typed in any case
        res = rec.login_mfa(mfa_token, codes[0].upper())
        self.assertEqual(res.status, 200, res)
        mfa_token = rec.login(*USER).json()["mfa_token"]
        res = rec.login_mfa(mfa_token, codes[0])
        self.assertEqual(res.status, 400, res)
        self.assertEqual(res.json()["error"], "mfa_code_invalid")
        res = rec.request("GET", "/api/v1/user/mfa", token=token)
        self.assertEqual(res.json()["recovery_codes_left"], 9)

        # new recovery codes replace the old ones
        res = rec.request("POST", "/api/v1/user/mfa/recovery-codes/regenerate",
                          {"password": USER[1], "code": codes[1]}, token=token)
        self.assertEqual(res.status, 200, res)
        new_codes = res.json()["recovery_codes"]
        self.assertEqual(len(new_codes), 10)
        self.assertFalse(set(new_codes) & set(codes))
        res = rec.login_mfa(mfa_token, codes[2])
        self.assertEqual(res.status, 400, res)

        # disabling needs the password and a code
        res = rec.request("POST", "/api/v1/user/mfa/disable", {"password": "wrong-password", "code": new_codes[0]},
                          token=token)
        self.assertEqual(res.status, 401, res)
        self.assertEqual(res.json()["error"], "invalid_credentials")
        res = rec.request("POST", "/api/v1/user/mfa/disable", {"password": USER[1], "code": "000000"}, token=token)
        self.assertEqual(res.status, 400, res)
        self.assertEqual(res.json()["error"], "mfa_code_invalid")
        res = rec.request("POST", "/api/v1/user/mfa/disable", {"password": USER[1], "code": new_codes[0]},
                          token=token)
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json(), {"enabled": False})
        res = rec.request("POST", "/api/v1/user/mfa/disable", {"password": USER[1], "code": new_codes[1]},
                          token=token)
        self.assertEqual(res.status, 409, res)
        self.assertEqual(res.json()["error"], "mfa_not_enabled")
        left = psql("SELECT count(*) FROM mfa_recovery_codes r JOIN users u ON u.id = r.user_id"
                    " WHERE u.email = '%s'" % USER[0]).strip()
        self.assertEqual(left, "0")

        # after disabling the password alone signs in again
        res = rec.login(*USER)
        self.assertEqual(res.status, 200, res)
        self.assertIs(res.json()["mfa_required"], False)
        self.assertIn("access_token", res.json())

        # no later response repeated the secret or a recovery code (the new codes appear in their own response)
        later = rec.bodies[leaked_from:]
        regenerated = [body for body in later if new_codes[0] in body]
        self.assertEqual(len(regenerated), 1)
        others = "\n".join(body for body in later if body is not regenerated[0])
        self.assertNotIn(secret, "\n".join(later))
        for code in codes + new_codes:
            self.assertNotIn(code, others)

        # the audit log has the MFA events without secrets
        actions = psql("SELECT string_agg(DISTINCT action, ',') FROM audit_logs WHERE action LIKE '%%mfa%%'").strip()
        for action in ("mfa.enabled", "mfa.disabled", "mfa.recovery_used", "auth.mfa.failed"):
            self.assertIn(action, actions.split(","))
        dump = psql("SELECT coalesce(string_agg(coalesce(diff::text, ''), ' '), '') FROM audit_logs")
        self.assertNotIn(secret, dump)


class Challenge(unittest.TestCase):
    def test_malformed_and_foreign_tokens_rejected(self):
        res = server.request("POST", "/api/v1/auth/login/mfa", {"mfa_token": "not.a.token", "code": "123456"})
        self.assertEqual(res.status, 401, res)
        self.assertEqual(res.json()["error"], "token_invalid")
        # an access token is not a challenge
        access = server.access_token(*SPARE)
        res = server.request("POST", "/api/v1/auth/login/mfa", {"mfa_token": access, "code": "123456"})
        self.assertEqual(res.status, 401, res)
        self.assertEqual(res.json()["error"], "token_invalid")
        res = server.request("POST", "/api/v1/auth/login/mfa", {"mfa_token": access})
        self.assertEqual(res.status, 400, res)

    def test_mfa_routes_need_a_bearer_token(self):
        for method, path in (("GET", "/api/v1/user/mfa"), ("POST", "/api/v1/user/mfa/totp/enroll")):
            res = server.request(method, path)
            self.assertEqual(res.status, 401, (path, res))


class AdminRequirement(unittest.TestCase):
    def test_admin_routes_wait_for_mfa(self):
        rec = Recorder()

        # an admin without MFA signs in with tokens, but admin routes reject the request
        res = rec.login(*ADMIN)
        self.assertEqual(res.status, 200, res)
        self.assertIs(res.json()["mfa_required"], False)
        token = res.json()["access_token"]
        res = rec.request("GET", "/api/v1/admin/site-settings", token=token)
        self.assertEqual(res.status, 403, res)
        self.assertEqual(res.json()["error"], "mfa_required")
        self.assertEqual(res.json()["code"], 403030)

        # user routes, enrollment included, stay reachable
        res = rec.request("GET", "/api/v1/user/mfa", token=token)
        self.assertEqual(res.status, 200, res)
        secret, codes, step = enable_mfa(rec, token)
        leaked_from = len(rec.bodies)
        res = rec.request("GET", "/api/v1/admin/site-settings", token=token)
        self.assertEqual(res.status, 200, res)

        # the admin now signs in in two steps
        res = rec.login(*ADMIN)
        self.assertIs(res.json()["mfa_required"], True)
        res = rec.login_mfa(res.json()["mfa_token"], totp(secret, fresh_step(step)))
        self.assertEqual(res.status, 200, res)
        self.assertIn("admin", res.json()["user"]["roles"])

        later = "\n".join(rec.bodies[leaked_from:])
        self.assertNotIn(secret, later)
        for code in codes:
            self.assertNotIn(code, later)


if __name__ == "__main__":
    unittest.main()

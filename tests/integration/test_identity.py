"""User identity credentials: derivation, lazy creation, rotation and master-key rotation.

Two znp instances share one database: A runs the embedded cluster, B runs on
A's DSN. The identity is observed through a published default template for
the surge client type that prints user_identity, and checked against an
independent derivation in Python (hashlib, hmac, and AES-GCM from
python3-cryptography when it is installed). Tests run in name order because
the last one stops both instances to rotate the master key.
Run alone: /usr/bin/python3 tests/integration/run.py test_identity
"""

import base64
import hashlib
import hmac
import os
import re
import struct
import threading
import unittest

from tests.integration import harness

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError:  # python3-cryptography is missing
    AESGCM = None

ADMIN = ("identity-admin@example.com", "admin-pass-5Kc2")
PASSWORD = "member-pass-8Qd3"
MASTER_KEY = base64.b64encode(os.urandom(32)).decode()
NEW_KEY = base64.b64encode(os.urandom(32)).decode()
SURGE_UA = "Surge/5.0"
TEMPLATE = "ID {{.user_identity.uuid}} {{.user_identity.password}} {{.user_identity.version}}" \
           " {{.user_identity.account}} {{.user_identity.secret}}\n"
LINE = re.compile(r"^ID ([0-9a-f-]{36}) ([0-9a-f]{64}) (\d+) (\S+) (\S+)$", re.M)

servers = {}
_state = {"counter": 0}


def setUpModule():
    common = {"security": {"master_key": MASTER_KEY}}
    first = harness.Server("identity-a", config=common)
    servers["a"] = first
    try:
        first.create_admin(*ADMIN)
        first.start()
        second = harness.Server("identity-b", config=harness.deep_merge(common, {
            "database": {"dsn": first.shared_dsn(), "auto_migrate": False}}))
        second.access_secret, second.refresh_secret = first.access_secret, first.refresh_secret
        servers["b"] = second
        second.start()
        publish_template()
    except BaseException:
        for server in servers.values():
            server.cleanup()
        raise


def tearDownModule():
    try:
        for name in ("b", "a"):
            if name in servers and servers[name].proc is not None:
                servers[name].stop_expect_clean()
    finally:
        for server in servers.values():
            server.cleanup()


def token_of(address, password):
    key = ("token", address)
    if key not in _state:
        res = servers["a"].login(address, password)
        if res.status != 200:
            raise AssertionError("login as %s failed: %r" % (address, res))
        _state[key] = res.json()["access_token"]
    return _state[key]


def call(method, path, body=None, caller=ADMIN, server="a"):
    headers = {"Authorization": "Bearer " + token_of(*caller)}
    return servers[server].request(method, path, body=body, headers=headers)


def psql(sql):
    return harness.EmbeddedCluster(servers["a"].data_dir).psql(sql, database="znp").strip()


def publish_template():
    res = call("POST", "/api/v1/admin/subscription-templates",
               {"name": "Identity surge", "client_type": "surge", "content": TEMPLATE, "is_default": True})
    if res.status != 201:
        raise AssertionError("create template failed: %r" % res)
    res = call("POST", "/api/v1/admin/subscription-templates/%d/publish" % res.json()["template"]["id"], {})
    if res.status != 200:
        raise AssertionError("publish failed: %r" % res)


def new_member():
    """A fresh user with one active subscription: (user id, email, subscription token)."""
    _state["counter"] += 1
    address = "identity%d-%d@example.com" % (_state["counter"], os.getpid())
    res = call("POST", "/api/v1/admin/users", {"email": address, "password": PASSWORD})
    if res.status != 201:
        raise AssertionError("create user failed: %r" % res)
    user_id = res.json()["user"]["id"]
    if "plan" not in _state:
        res = call("POST", "/api/v1/admin/plans", {"name": "Identity plan", "status": 2, "visible": True})
        if res.status != 201:
            raise AssertionError("create plan failed: %r" % res)
        _state["plan"] = res.json()["plan"]["id"]
    res = call("POST", "/api/v1/admin/subscriptions", {"user_id": user_id, "plan_id": _state["plan"]})
    if res.status != 201:
        raise AssertionError("create subscription failed: %r" % res)
    return user_id, address, res.json()["subscription"]["token"]


def identity_of(token, server="a"):
    """(uuid, password, version) from the surge template, after checking the aliases agree."""
    res = servers[server].request("GET", "/api/v1/subscriptions/%s" % token, headers={"User-Agent": SURGE_UA})
    if res.status != 200:
        raise AssertionError("download failed: %r" % res)
    match = LINE.search(res.body.decode("utf-8"))
    if match is None:
        raise AssertionError("no identity line in %r" % res.body[:300])
    uuid, password, version, account, secret = match.groups()
    if account != uuid or secret != password:
        raise AssertionError("account/secret differ from uuid/password: %r" % (match.groups(),))
    return uuid, password, int(version)


def credential_rows(user_id):
    out = psql("SELECT version, status, key_id, secret_sealed FROM user_credentials WHERE user_id = %d"
               " ORDER BY version" % user_id)
    return [line.split("|") for line in out.splitlines() if line]


def last_job_id():
    return int(psql("SELECT coalesce(max(id), 0) FROM jobs"))


def sync_jobs_since(last_job, user_id):
    """Sync jobs queued after `last_job`; a finished job has its payload cleared, so it counts as well."""
    return psql("SELECT count(*) FROM jobs WHERE kind = 'bindings.sync_user' AND id > %d"
                " AND (payload = '{\"user_id\": %d}'::jsonb OR status = 'done')" % (last_job, user_id))


# --- the reference derivation, written from its description ----------------

def le64(n):
    return struct.pack("<q", n)


def user_key(key_text, user_id, purpose):
    root = hashlib.sha256(key_text.encode()).digest()
    return hmac.new(root, le64(user_id) + purpose, hashlib.sha256).digest()


def b64raw_decode(text):
    return base64.b64decode(text + "=" * (-len(text) % 4))


def open_seed(key_text, user_id, sealed):
    nonce, cipher = sealed.split(":")
    return AESGCM(user_key(key_text, user_id, b"encryption")).decrypt(b64raw_decode(nonce), b64raw_decode(cipher),
                                                                       le64(user_id))


def derive(seed, user_id, version):
    account = bytearray(hmac.new(seed, le64(user_id) + le64(version) + b"account", hashlib.sha256).digest()[:16])
    account[6] = (account[6] & 0x0F) | 0x40
    account[8] = (account[8] & 0x3F) | 0x80
    h = account.hex()
    uuid = "%s-%s-%s-%s-%s" % (h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])
    return uuid, hmac.new(seed, le64(user_id) + le64(version) + b"password", hashlib.sha256).hexdigest()


class IdentityTest(unittest.TestCase):
    def test_1_same_across_calls_and_instances(self):
        user_id, _, token = new_member()
        first = identity_of(token)
        self.assertEqual(first[2], 1)
        self.assertEqual(identity_of(token), first)
        self.assertEqual(identity_of(token, server="b"), first)
        rows = credential_rows(user_id)
        self.assertEqual(len(rows), 1)
        version, status, key_id, sealed = rows[0]
        self.assertEqual((version, status), ("1", "1"))
        self.assertEqual(key_id, hashlib.sha256(MASTER_KEY.encode()).hexdigest()[:8])
        self.assertRegex(sealed, r"^[A-Za-z0-9+/]{16}:[A-Za-z0-9+/]{64}$")
        if AESGCM is None:
            self.skipTest("python3-cryptography is not installed: the AES-GCM part is not checked")
        self.assertEqual(derive(open_seed(MASTER_KEY, user_id, sealed), user_id, 1), first[:2])

    def test_2_reference_row_derives_reference_identity(self):
        if AESGCM is None:
            self.skipTest("python3-cryptography is not installed")
        user_id, _, token = new_member()
        seed, nonce = os.urandom(32), os.urandom(12)
        cipher = AESGCM(user_key(MASTER_KEY, user_id, b"encryption")).encrypt(nonce, seed, le64(user_id))
        sealed = "%s:%s" % (base64.b64encode(nonce).decode().rstrip("="), base64.b64encode(cipher).decode().rstrip("="))
        psql("INSERT INTO user_credentials (user_id, version, status, key_id, secret_sealed, fingerprint)"
             " VALUES (%d, 7, 1, 'abcdef01', '%s', 'imported')" % (user_id, sealed))
        uuid, password, version = identity_of(token)
        self.assertEqual(version, 7)
        self.assertEqual((uuid, password), derive(seed, user_id, 7))

    def test_3_parallel_first_uses_create_one_credential(self):
        user_id, _, token = new_member()
        results, errors = [], []

        def fetch(index):
            try:
                results.append(identity_of(token, server="ab"[index % 2]))
            except Exception as e:  # reported below with the others
                errors.append(e)

        threads = [threading.Thread(target=fetch, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(errors, [])
        self.assertEqual(len(results), 20)
        self.assertEqual(len(set(results)), 1)
        self.assertEqual(psql("SELECT count(*) FROM user_credentials WHERE user_id = %d" % user_id), "1")

    def test_4_user_rotation_changes_password_and_queues_sync(self):
        user_id, address, token = new_member()
        before = identity_of(token)
        last_job = last_job_id()
        res = call("POST", "/api/v1/user/account/credentials/rotate", {}, caller=(address, PASSWORD))
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["credential"]["version"], 2)
        after = identity_of(token)
        self.assertEqual(after[2], 2)
        self.assertNotEqual(after[0], before[0])
        self.assertNotEqual(after[1], before[1])
        # the other instance drops its cached file through NOTIFY
        harness.wait_until(lambda: identity_of(token, server="b") == after)
        self.assertEqual([row[:2] for row in credential_rows(user_id)], [["1", "2"], ["2", "1"]])
        self.assertEqual(sync_jobs_since(last_job, user_id), "1")
        self.assertEqual(psql("SELECT count(*) FROM audit_logs WHERE action = 'user.credentials.rotate'"
                              " AND resource_id = '%d'" % user_id), "1")

    def test_5_admin_rotation_is_audited(self):
        user_id, _, token = new_member()
        before = identity_of(token)
        last_job = last_job_id()
        res = call("POST", "/api/v1/admin/users/%d/credentials/rotate" % user_id, {})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["user_id"], user_id)
        after = identity_of(token)
        self.assertNotEqual(after[1], before[1])
        self.assertEqual(psql("SELECT count(*) FROM audit_logs WHERE action = 'admin.user.credentials.rotate'"
                              " AND resource_id = '%d' AND actor_email = '%s'" % (user_id, ADMIN[0])), "1")
        self.assertEqual(sync_jobs_since(last_job, user_id), "1")
        res = call("POST", "/api/v1/admin/users/999999999/credentials/rotate", {})
        self.assertEqual(res.status, 404, res)

    def test_6_user_template_switch(self):
        _, address, _ = new_member()
        member = (address, PASSWORD)
        ids = []
        for index in range(3):
            res = call("POST", "/api/v1/admin/subscription-templates",
                       {"name": "Switch %d-%d" % (index, os.getpid()), "client_type": "clash", "content": "# x\n"})
            self.assertEqual(res.status, 201, res)
            ids.append(res.json()["template"]["id"])
        sub = call("GET", "/api/v1/user/subscriptions", caller=member).json()["subscriptions"][0]
        path = "/api/v1/user/subscriptions/%d/template" % sub["id"]
        # an empty list allows no switch
        res = call("POST", path, {"template_id": ids[0]}, caller=member)
        self.assertEqual((res.status, res.json()["error"]), (403, "template_not_allowed"), res)
        res = call("PATCH", "/api/v1/admin/subscriptions/%d" % sub["id"], {"available_template_ids": ids[:2]})
        self.assertEqual(res.status, 200, res)

        res = call("POST", path, {"template_id": ids[1]}, caller=member)
        self.assertEqual(res.status, 200, res)
        body = res.json()["subscription"]
        self.assertEqual(body["template_id"], ids[1])
        self.assertTrue(body["subscription_url"].endswith("/api/v1/subscriptions/" + sub["token"])
                        or body["subscription_url"] == "", body)
        self.assertEqual(psql("SELECT template_id FROM subscriptions WHERE id = %d" % sub["id"]), str(ids[1]))
        self.assertEqual(psql("SELECT count(*) FROM audit_logs WHERE action = 'user.subscription.template_switch'"
                              " AND resource_id = '%d'" % sub["id"]), "1")

        res = call("POST", path, {"template_id": ids[2]}, caller=member)
        self.assertEqual(res.status, 403, res)
        res = call("POST", path, {"template_id": 999999999}, caller=member)
        self.assertEqual(res.status, 404, res)
        res = call("POST", path, {"template_id": 0}, caller=member)
        self.assertEqual(res.status, 400, res)
        # another user's subscription reads as missing
        res = call("POST", path, {"template_id": ids[0]})
        self.assertEqual(res.status, 404, res)
        self.assertEqual(psql("SELECT template_id FROM subscriptions WHERE id = %d" % sub["id"]), str(ids[1]))

    def test_7_old_format_row_opens_and_upgrades(self):
        if AESGCM is None:
            self.skipTest("python3-cryptography is not installed")
        user_id, _, token = new_member()
        # the format before the reference one: version byte, nonce, ciphertext and tag under the decoded master key
        seed, nonce = os.urandom(32), os.urandom(12)
        aad = ("credential:%d:1" % user_id).encode()
        blob = b"\x01" + nonce + AESGCM(base64.b64decode(MASTER_KEY)).encrypt(nonce, seed, aad)
        psql("INSERT INTO user_credentials (user_id, version, status, key_id, secret_sealed, fingerprint)"
             " VALUES (%d, 1, 1, 'legacy01', '%s', 'legacy')" % (user_id, base64.b64encode(blob).decode()))
        expected = derive(seed, user_id, 1) + (1,)
        self.assertEqual(identity_of(token), expected)

        # the scheduled job identity.upgrade runs hourly: with no record of a last run, B runs it when it starts
        psql("DELETE FROM scheduled_runs WHERE name = 'identity.upgrade'")
        servers["b"].stop_expect_clean()
        servers["b"].start()
        harness.wait_until(lambda: ":" in credential_rows(user_id)[0][3])
        version, status, key_id, sealed = credential_rows(user_id)[0]
        self.assertEqual(key_id, hashlib.sha256(MASTER_KEY.encode()).hexdigest()[:8])
        self.assertEqual(open_seed(MASTER_KEY, user_id, sealed), seed)
        self.assertEqual(identity_of(token, server="b"), expected)

    def test_9_master_key_rotation_keeps_passwords(self):
        members = [new_member() for _ in range(2)]
        before = {token: identity_of(token) for _, _, token in members}
        rotated = new_member()
        self.assertEqual(call("POST", "/api/v1/admin/users/%d/credentials/rotate" % rotated[0], {}).status, 200)
        before[rotated[2]] = identity_of(rotated[2])
        if AESGCM is not None:
            # a row still in the old format is rewritten too
            legacy_user, _, legacy_token = new_member()
            seed, nonce = os.urandom(32), os.urandom(12)
            blob = b"\x01" + nonce + AESGCM(base64.b64decode(MASTER_KEY)).encrypt(
                nonce, seed, ("credential:%d:1" % legacy_user).encode())
            psql("INSERT INTO user_credentials (user_id, version, status, key_id, secret_sealed, fingerprint)"
                 " VALUES (%d, 1, 1, 'legacy02', '%s', 'legacy')" % (legacy_user, base64.b64encode(blob).decode()))
            before[legacy_token] = derive(seed, legacy_user, 1) + (1,)
        sealed_before = psql("SELECT string_agg(secret_sealed, ',' ORDER BY id) FROM user_credentials")

        a = servers["a"]
        servers["b"].stop_expect_clean()
        a.stop_expect_clean()
        # a key on the command line is refused, and a short one on stdin too
        proc = a.cli("tools", "rotate-master-key", check=False)
        self.assertEqual(proc.returncode, 2, proc.stderr)
        proc = a.cli("tools", "rotate-master-key", "--new-key-stdin", input="short\n", check=False)
        self.assertEqual(proc.returncode, 2, proc.stderr)
        proc = a.cli("tools", "rotate-master-key", "--new-key-stdin", input=NEW_KEY + "\n")
        new_id = hashlib.sha256(NEW_KEY.encode()).hexdigest()[:8]
        self.assertIn("under key id %s" % new_id, proc.stdout)

        a.extra_config = harness.deep_merge(a.extra_config, {"security": {"credential_key": NEW_KEY}})
        a.start()
        self.assertEqual(psql("SELECT count(*) FROM user_credentials WHERE key_id <> '%s'" % new_id), "0")
        sealed_after = psql("SELECT string_agg(secret_sealed, ',' ORDER BY id) FROM user_credentials")
        self.assertNotEqual(sealed_after, sealed_before)
        self.assertEqual(psql("SELECT count(*) FROM user_credentials WHERE strpos(secret_sealed, ':') = 0"), "0")
        for token, identity in before.items():
            self.assertEqual(identity_of(token), identity)
        if AESGCM is None:
            return
        for user_id, _, token in members:
            sealed = credential_rows(user_id)[0][3]
            with self.assertRaises(InvalidTag):
                open_seed(MASTER_KEY, user_id, sealed)
            self.assertEqual(derive(open_seed(NEW_KEY, user_id, sealed), user_id, 1), before[token][:2])


if __name__ == "__main__":
    unittest.main()

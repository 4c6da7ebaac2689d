"""Scheduled jobs: subscriptions.expire on two instances sharing one database.

Instance A runs the embedded cluster; instance B is a second `znp serve` on
A's DSN with A's secrets. Both run the job every second
(jobs.expire_interval_s: 1), so each change must still be audited once.
maintenance.purge also runs every second (jobs.purge_interval_s: 1).
The tests move rows into the past or over quota with psql. The job then
changes the status, and the public download shows the matching entry.
Run alone: /usr/bin/python3 tests/integration/run.py test_scheduled
"""

import base64
import os
import time
import unittest
import urllib.parse

from tests.integration import harness

first = second = None
ADMIN = ("scheduled-admin@example.com", "admin-pass-7Kq2")
PASSWORD = "member-pass-3Vb9"
_state = {"counter": 0, "tokens": {}}


def setUpModule():
    global first, second
    common = {"jobs": {"expire_interval_s": 1, "purge_interval_s": 1, "retention_days": 2}}
    first = harness.Server("scheduled-a", config=common)
    try:
        first.create_admin(*ADMIN)
        first.start()
        second = harness.Server("scheduled-b", config=harness.deep_merge(common, {
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


def admin_call(srv, method, path, body=None):
    if srv.name not in _state["tokens"]:
        res = srv.login(*ADMIN)
        if res.status != 200:
            raise AssertionError("admin login failed: %r" % res)
        _state["tokens"][srv.name] = res.json()["access_token"]
    return srv.request(method, path, body=body,
                       headers={"Authorization": "Bearer " + _state["tokens"][srv.name]})


def psql(sql):
    return harness.EmbeddedCluster(first.data_dir).psql(sql, database=first.database_name()).strip()


def new_subscription():
    _state["counter"] += 1
    if "plan" not in _state:
        res = admin_call(first, "POST", "/api/v1/admin/plans",
                         {"name": "Scheduled plan", "traffic_limit_bytes": 5000, "status": 2, "visible": True})
        if res.status != 201:
            raise AssertionError("create plan failed: %r" % res)
        _state["plan"] = res.json()["plan"]["id"]
    address = "scheduled%d-%d@example.com" % (_state["counter"], os.getpid())
    res = admin_call(first, "POST", "/api/v1/admin/users", {"email": address, "password": PASSWORD})
    if res.status != 201:
        raise AssertionError("create user failed: %r" % res)
    res = admin_call(first, "POST", "/api/v1/admin/subscriptions",
                     {"user_id": res.json()["user"]["id"], "plan_id": _state["plan"]})
    if res.status != 201:
        raise AssertionError("create subscription failed: %r" % res)
    return res.json()["subscription"]


def status_of(sub_id):
    return int(psql("SELECT status FROM subscriptions WHERE id = %d" % sub_id))


def wait_status(sub_id, expected, timeout=10):
    deadline = time.monotonic() + harness.scaled(timeout)
    while time.monotonic() < deadline:
        if status_of(sub_id) == expected:
            return True
        time.sleep(0.2)
    return status_of(sub_id) == expected


def audit_rows(sub_id, action):
    out = psql("SELECT coalesce(actor_id, 0) || '|' || (diff->>'status') FROM audit_logs"
               " WHERE resource_type = 'subscription' AND resource_id = '%d' AND action = '%s'" % (sub_id, action))
    return [line for line in out.splitlines() if line]


def entry_names(token):
    res = first.request("GET", "/api/v1/subscriptions/%s" % token, headers={"User-Agent": "Shadowrocket/2.2"})
    if res.status != 200:
        raise AssertionError("download failed: %r" % res)
    links = base64.b64decode(res.body).decode("utf-8").split()
    return [urllib.parse.unquote(link.split("#", 1)[1]) for link in links]


def settle():
    """Let both instances run the job a few more times (the scheduler ticks once a second even under valgrind)."""
    time.sleep(min(harness.scaled(2.5), 8))


class ExpireJob(unittest.TestCase):
    def test_past_expiry_expires_once(self):
        sub = new_subscription()
        self.assertEqual(status_of(sub["id"]), 1)
        psql("UPDATE subscriptions SET expires_at = now() - interval '1 minute' WHERE id = %d" % sub["id"])
        self.assertTrue(wait_status(sub["id"], 3), "subscription was not expired")
        names = entry_names(sub["token"])
        self.assertEqual(len(names), 1, names)
        self.assertIn("expired", names[0])
        res = admin_call(second, "GET", "/api/v1/admin/subscriptions/%d" % sub["id"])
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["subscription"]["status"], 3)
        settle()
        self.assertEqual(audit_rows(sub["id"], "subscription.expired"), ["0|3"])

    def test_quota_blocks_then_restores(self):
        sub = new_subscription()
        psql("UPDATE subscriptions SET traffic_total_bytes = 100, traffic_used_bytes = 100 WHERE id = %d" % sub["id"])
        self.assertTrue(wait_status(sub["id"], 4), "subscription was not blocked")
        names = entry_names(sub["token"])
        self.assertEqual(len(names), 1, names)
        self.assertIn("quota", names[0])
        res = admin_call(second, "PATCH", "/api/v1/admin/subscriptions/%d" % sub["id"],
                         {"traffic_total_bytes": 1000})
        self.assertEqual(res.status, 200, res)
        self.assertTrue(wait_status(sub["id"], 1), "subscription was not restored")
        self.assertEqual(entry_names(sub["token"]), [])
        settle()
        self.assertEqual(audit_rows(sub["id"], "subscription.quota_used_up"), ["0|4"])
        self.assertEqual(audit_rows(sub["id"], "subscription.quota_restored"), ["0|1"])

    def test_unlimited_current_stays_active(self):
        sub = new_subscription()
        psql("UPDATE subscriptions SET traffic_total_bytes = 0, traffic_used_bytes = 999999,"
             " expires_at = now() + interval '1 day' WHERE id = %d" % sub["id"])
        settle()
        self.assertEqual(status_of(sub["id"]), 1)
        self.assertEqual(psql("SELECT count(*) FROM audit_logs WHERE resource_type = 'subscription'"
                              " AND resource_id = '%d' AND action LIKE 'subscription.quota%%'" % sub["id"]), "0")

    def test_instances_share_last_run(self):
        out = psql("SELECT extract(epoch FROM now() - last_run_at) FROM scheduled_runs"
                   " WHERE name = 'subscriptions.expire'")
        self.assertNotEqual(out, "")
        self.assertLess(float(out), harness.scaled(5))


if __name__ == "__main__":
    unittest.main()


class PurgeJob(unittest.TestCase):
    def test_old_rows_go_and_recent_rows_stay(self):
        tag = "purge-%d" % os.getpid()
        user = int(psql("SELECT id FROM users ORDER BY id LIMIT 1"))
        before = int(psql("SELECT count(*) FROM refresh_tokens WHERE expires_at > now()"))
        # one statement, so no purge pass can see the jobs without the tokens
        psql("WITH t AS (INSERT INTO refresh_tokens (jti, family_id, user_id, issued_at, expires_at) VALUES"
             " (gen_random_uuid(), gen_random_uuid(), %d, now() - interval '40 days', now() - interval '2 days'),"
             " (gen_random_uuid(), gen_random_uuid(), %d, now(), now() + interval '1 day'))"
             " INSERT INTO jobs (kind, status, updated_at) VALUES"
             " ('%s-old', 'done', now() - interval '3 days'), ('%s-dead', 'dead', now() - interval '3 days'),"
             " ('%s-recent', 'done', now() - interval '1 day'), ('%s-queued', 'queued', now() - interval '30 days')"
             % (user, user, tag, tag, tag, tag))
        before += 1
        deadline = time.monotonic() + harness.scaled(10)
        while time.monotonic() < deadline:
            if psql("SELECT count(*) FROM jobs WHERE kind IN ('%s-old', '%s-dead')" % (tag, tag)) == "0":
                break
            time.sleep(0.2)
        kinds = psql("SELECT kind FROM jobs WHERE kind LIKE '%s-%%' ORDER BY kind" % tag).split()
        self.assertEqual(kinds, ["%s-queued" % tag, "%s-recent" % tag])
        self.assertEqual(psql("SELECT count(*) FROM refresh_tokens WHERE expires_at < now() - interval '1 day'"), "0")
        self.assertEqual(int(psql("SELECT count(*) FROM refresh_tokens WHERE expires_at > now()")), before)

"""Admin subscriptions (/api/v1/admin/subscriptions) and the user's own list (/api/v1/user/subscriptions).

One server for the module. The admin is made with `znp admin create` before
the server starts. Users and plans are created through the admin API. Each
test makes its own users, so the single-active rule of one test cannot
touch another's subscriptions.
Run alone: /usr/bin/python3 tests/integration/run.py test_subscriptions
"""

import calendar
import os
import re
import time
import unittest

from tests.integration import harness

server = None
ADMIN = ("subs-admin@example.com", "admin-pass-7Hq2")
PASSWORD = "member-pass-9Kd4"
SUBS = "/api/v1/admin/subscriptions"
USER_SUBS = "/api/v1/user/subscriptions"
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")
_tokens = {}
_counter = [0]
_plan = {}


def setUpModule():
    global server
    server = harness.Server("subscriptions")
    try:
        server.create_admin(*ADMIN)
        server.start()
        harness.seed_bindings(server, range(1, 13))
    except BaseException:
        server.cleanup()
        raise


def tearDownModule():
    try:
        server.stop_expect_clean()
    finally:
        server.cleanup()


def call(method, path, token=None, body=None):
    headers = {"Authorization": "Bearer " + token} if token else {}
    return server.request(method, path, body=body, headers=headers)


def token_of(address, password=PASSWORD):
    if address not in _tokens:
        res = server.login(address, password)
        if res.status != 200:
            raise AssertionError("login as %s failed: %r" % (address, res))
        _tokens[address] = res.json()["access_token"]
    return _tokens[address]


def admin():
    return token_of(*ADMIN)


def psql(sql):
    return harness.EmbeddedCluster(server.data_dir).psql(sql, database=server.database_name()).strip()


def new_user():
    """Create an active user; returns (id, email)."""
    _counter[0] += 1
    address = "subs%d-%d@example.com" % (_counter[0], os.getpid())
    res = call("POST", "/api/v1/admin/users", admin(), {"email": address, "password": PASSWORD})
    if res.status != 201:
        raise AssertionError("create user failed: %r" % res)
    return res.json()["user"]["id"], address


def plan(key="basic", **fields):
    """A plan made once per key."""
    if key not in _plan:
        _counter[0] += 1
        body = {"name": "Plan %s %d" % (key, _counter[0]), "traffic_limit_bytes": 1000, "devices_limit": 3,
                "binding_ids": [5, 2], "traffic_multipliers": {"ss": 1.5}, "status": 2, "visible": True}
        body.update(fields)
        res = call("POST", "/api/v1/admin/plans", admin(), body)
        if res.status != 201:
            raise AssertionError("create plan failed: %r" % res)
        _plan[key] = res.json()["plan"]
    return _plan[key]


def create(user_id, **fields):
    body = {"user_id": user_id, "plan_id": plan()["id"]}
    body.update(fields)
    res = call("POST", SUBS, admin(), body)
    if res.status != 201:
        raise AssertionError("create subscription failed: %r" % res)
    return res.json()["subscription"]


def get(sub_id):
    res = call("GET", "%s/%d" % (SUBS, sub_id), admin())
    if res.status != 200:
        raise AssertionError("get subscription failed: %r" % res)
    return res.json()["subscription"]


def utc(year, month, day, hour=0):
    return calendar.timegm((year, month, day, hour, 0, 0))


class CreateSubscription(unittest.TestCase):
    def test_defaults_come_from_the_plan(self):
        uid, address = new_user()
        sub = create(uid)
        p = plan()
        self.assertEqual(sub["user"]["id"], uid)
        self.assertEqual(sub["user"]["email"], address)
        self.assertEqual(sub["name"], p["name"])
        self.assertEqual(sub["plan_name"], p["name"])
        self.assertEqual(sub["plan_id"], p["id"])
        self.assertEqual(sub["status"], 1)
        self.assertEqual(sub["traffic_total_bytes"], 1000)
        self.assertEqual(sub["traffic_used_bytes"], 0)
        self.assertEqual(sub["devices_limit"], 3)
        self.assertEqual(sub["expires_at"], 0)
        self.assertEqual(sub["template_id"], 0)
        self.assertEqual(sub["available_template_ids"], [])
        self.assertRegex(sub["token"], TOKEN_RE)
        snapshot = sub["plan_snapshot"]
        self.assertEqual(snapshot["id"], p["id"])
        self.assertEqual(snapshot["binding_ids"], [2, 5])
        self.assertEqual(snapshot["traffic_multipliers"], {"ss": 1.5})
        self.assertEqual(get(sub["id"]), sub)
        count = psql("SELECT count(*) FROM audit_logs WHERE action = 'admin.subscription.create'"
                     " AND resource_id = '%d'" % sub["id"])
        self.assertEqual(count, "1")

    def test_values_and_unique_tokens(self):
        uid, _ = new_user()
        sub = create(uid, name=" Mine ", plan_name="Gold", expires_at=utc(2031, 5, 1), traffic_total_bytes=0,
                     traffic_used_bytes=50, devices_limit=0, template_id=4, available_template_ids=[4, 6], status=3)
        self.assertEqual(sub["name"], "Mine")
        self.assertEqual(sub["plan_name"], "Gold")
        self.assertEqual(sub["expires_at"], utc(2031, 5, 1))
        self.assertEqual(sub["traffic_total_bytes"], 0)
        self.assertEqual(sub["traffic_used_bytes"], 50)
        self.assertEqual(sub["template_id"], 4)
        self.assertEqual(sub["available_template_ids"], [4, 6])
        self.assertEqual(sub["status"], 3)
        other = create(uid, status=3, template_id=8)
        self.assertEqual(other["available_template_ids"], [8])
        self.assertNotEqual(sub["token"], other["token"])

    def test_rejects_bad_requests(self):
        uid, address = new_user()
        p = plan()["id"]
        cases = [
            ({"user_id": 999999999, "plan_id": p}, 404),
            ({"user_id": uid, "plan_id": 999999999}, 404),
            ({"user_id": uid, "plan_id": p, "traffic_total_bytes": 10, "traffic_used_bytes": 11}, 400),
            ({"user_id": uid, "plan_id": p, "traffic_total_bytes": -1}, 400),
            ({"user_id": uid, "plan_id": p, "traffic_total_bytes": 1.5}, 400),
            ({"user_id": uid, "plan_id": p, "status": 4}, 400),
            ({"user_id": uid, "plan_id": p, "expires_at": 0}, 400),
            ({"plan_id": p}, 400),
        ]
        for body, status in cases:
            res = call("POST", SUBS, admin(), body)
            self.assertEqual(res.status, status, (body, res))
        self.assertEqual(psql("SELECT count(*) FROM subscriptions WHERE user_id = %d" % uid), "0")
        user_token = token_of(address)
        self.assertEqual(call("POST", SUBS, user_token, {"user_id": uid, "plan_id": p}).status, 403)
        self.assertEqual(call("GET", SUBS, user_token).status, 403)
        self.assertEqual(call("GET", SUBS).status, 401)


class SingleActive(unittest.TestCase):
    def test_effective_create_disables_others(self):
        uid, _ = new_user()
        first = create(uid)
        second = create(uid)
        self.assertEqual(get(first["id"])["status"], 2)
        self.assertEqual(get(second["id"])["status"], 1)
        # an expired or disabled one leaves the active one alone
        create(uid, status=3)
        create(uid, status=2)
        create(uid, expires_at=utc(2001, 1, 1))
        self.assertEqual(get(second["id"])["status"], 1)
        # re-activating the first through PATCH disables the second
        res = call("PATCH", "%s/%d" % (SUBS, first["id"]), admin(), {"status": 1})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(get(second["id"])["status"], 2)
        # another user's subscription is never touched
        other_uid, _ = new_user()
        other = create(other_uid)
        create(uid)
        self.assertEqual(get(other["id"])["status"], 1)


class UpdateSubscription(unittest.TestCase):
    def test_patch_absent_null_value(self):
        uid, _ = new_user()
        sub = create(uid, template_id=3, available_template_ids=[3], expires_at=utc(2032, 1, 1))
        path = "%s/%d" % (SUBS, sub["id"])
        res = call("PATCH", path, admin(), {})
        self.assertEqual(res.status, 200, res)
        unchanged = res.json()["subscription"]
        for key in ("name", "template_id", "available_template_ids", "expires_at", "token", "plan_snapshot"):
            self.assertEqual(unchanged[key], sub[key], key)
        res = call("PATCH", path, admin(), {"template_id": None, "expires_at": None, "available_template_ids": None})
        self.assertEqual(res.status, 200, res)
        cleared = res.json()["subscription"]
        self.assertEqual(cleared["template_id"], 0)
        self.assertEqual(cleared["expires_at"], 0)
        self.assertEqual(cleared["available_template_ids"], [])
        self.assertEqual(cleared["name"], sub["name"])
        res = call("PATCH", path, admin(), {"name": "Renamed", "traffic_used_bytes": 700, "devices_limit": 9})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["subscription"]["name"], "Renamed")
        self.assertEqual(res.json()["subscription"]["traffic_used_bytes"], 700)
        self.assertEqual(res.json()["subscription"]["devices_limit"], 9)
        for body in ({"name": None}, {"status": None}, {"name": "  "}, {"traffic_total_bytes": 10},
                     {"traffic_used_bytes": 1001}, {"devices_limit": -1}, {"traffic_used_bytes": 2.5}):
            res = call("PATCH", path, admin(), body)
            self.assertEqual(res.status, 400, (body, res))
        after = get(sub["id"])
        self.assertEqual(after["traffic_total_bytes"], 1000)
        self.assertEqual(after["traffic_used_bytes"], 700)
        self.assertEqual(call("PATCH", SUBS + "/999999999", admin(), {"name": "x"}).status, 404)

    def test_new_plan_refreshes_snapshot(self):
        uid, _ = new_user()
        sub = create(uid)
        gold = plan("gold", binding_ids=[9], traffic_limit_bytes=5)
        res = call("PATCH", "%s/%d" % (SUBS, sub["id"]), admin(), {"plan_id": gold["id"]})
        self.assertEqual(res.status, 200, res)
        moved = res.json()["subscription"]
        self.assertEqual(moved["plan_id"], gold["id"])
        self.assertEqual(moved["plan_name"], gold["name"])
        self.assertEqual(moved["plan_snapshot"]["binding_ids"], [9])
        # the traffic total stays what it was: only the admin changes it
        self.assertEqual(moved["traffic_total_bytes"], 1000)
        res = call("PATCH", "%s/%d" % (SUBS, sub["id"]), admin(), {"plan_id": 999999999})
        self.assertEqual(res.status, 404, res)

    def test_disable_and_token_reset(self):
        uid, _ = new_user()
        sub = create(uid)
        res = call("POST", "%s/%d/disable" % (SUBS, sub["id"]), admin(), {"reason": "chargeback"})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["subscription"]["status"], 2)
        reason = psql("SELECT diff->>'reason' FROM audit_logs WHERE action = 'admin.subscription.disable'"
                      " AND resource_id = '%d'" % sub["id"])
        self.assertEqual(reason, "chargeback")
        res = call("POST", "%s/%d/reset-token" % (SUBS, sub["id"]), admin())
        self.assertEqual(res.status, 200, res)
        self.assertRegex(res.json()["subscription"]["token"], TOKEN_RE)
        self.assertNotEqual(res.json()["subscription"]["token"], sub["token"])
        self.assertEqual(call("POST", SUBS + "/999999999/disable", admin(), {}).status, 404)


class ExtendSubscription(unittest.TestCase):
    def extend(self, sub_id, body, status=200):
        res = call("POST", "%s/%d/extend" % (SUBS, sub_id), admin(), body)
        self.assertEqual(res.status, status, (body, res))
        return res.json().get("subscription")

    def test_month_step_clamps_to_month_end(self):
        uid, _ = new_user()
        sub = create(uid, expires_at=utc(2030, 1, 31, 12))
        self.assertEqual(self.extend(sub["id"], {"extend_months": 1})["expires_at"], utc(2030, 2, 28, 12))
        sub = create(uid, expires_at=utc(2032, 1, 31, 12))
        self.assertEqual(self.extend(sub["id"], {"extend_months": 1})["expires_at"], utc(2032, 2, 29, 12))
        sub = create(uid, expires_at=utc(2032, 2, 29))
        self.assertEqual(self.extend(sub["id"], {"extend_years": 1})["expires_at"], utc(2033, 2, 28))
        self.assertEqual(self.extend(sub["id"], {"extend_days": 1, "extend_hours": 2})["expires_at"],
                         utc(2033, 3, 1, 2))

    def test_expired_extension_starts_from_now(self):
        uid, _ = new_user()
        active = create(uid)
        expired = create(uid, status=3, expires_at=utc(2020, 1, 1))
        before = int(time.time())
        result = self.extend(expired["id"], {"extend_days": 2})
        after = int(time.time())
        self.assertGreaterEqual(result["expires_at"], before + 2 * 86400)
        self.assertLessEqual(result["expires_at"], after + 2 * 86400 + 1)
        self.assertEqual(result["status"], 1)
        self.assertEqual(get(active["id"])["status"], 2)

    def test_absolute_and_rejected_extensions(self):
        uid, _ = new_user()
        sub = create(uid, expires_at=utc(2031, 1, 1))
        self.assertEqual(self.extend(sub["id"], {"expires_at": utc(2035, 6, 1)})["expires_at"], utc(2035, 6, 1))
        self.extend(sub["id"], {}, 400)
        self.extend(sub["id"], {"extend_days": -1}, 400)
        self.extend(sub["id"], {"extend_days": 1.5}, 400)
        forever = create(uid)
        self.extend(forever["id"], {"extend_days": 1}, 400)
        self.assertEqual(get(forever["id"])["expires_at"], 0)
        self.extend(999999999, {"extend_days": 1}, 404)


class AdminList(unittest.TestCase):
    def test_pagination_and_filters(self):
        uid, _ = new_user()
        ids = [create(uid, status=3, name="page-%d" % i)["id"] for i in range(5)]
        seen = []
        for page in (1, 2, 3):
            res = call("GET", "%s?user_id=%d&per_page=2&page=%d" % (SUBS, uid, page), admin())
            self.assertEqual(res.status, 200, res)
            meta = res.json()["pagination"]
            self.assertEqual(meta["total_count"], 5)
            self.assertEqual(meta["has_next"], page < 3)
            self.assertEqual(meta["has_prev"], page > 1)
            seen += [s["id"] for s in res.json()["subscriptions"]]
        self.assertEqual(seen, list(reversed(ids)))
        res = call("GET", "%s?user_id=%d&q=PAGE-3" % (SUBS, uid), admin())
        self.assertEqual([s["id"] for s in res.json()["subscriptions"]], [ids[3]])
        res = call("GET", "%s?user_id=%d&status=1" % (SUBS, uid), admin())
        self.assertEqual(res.json()["subscriptions"], [])
        self.assertEqual(call("GET", SUBS + "?per_page=101", admin()).status, 400)


class UserSubscriptions(unittest.TestCase):
    def test_list_hides_disabled_and_builds_url(self):
        res = call("PATCH", "/api/v1/admin/site-settings", admin(), {"subscription_domain": "sub.example.com/",
                                                                      "service_domain": "https://panel.example.com"})
        self.assertEqual(res.status, 200, res)
        uid, address = new_user()
        old = create(uid, name="old")
        current = create(uid, name="current")
        expired = create(uid, name="expired", status=3)
        token = token_of(address)
        res = call("GET", USER_SUBS, token)
        self.assertEqual(res.status, 200, res)
        data = res.json()
        self.assertEqual(data["pagination"]["total_count"], 2)
        listed = {s["id"]: s for s in data["subscriptions"]}
        self.assertEqual(set(listed), {current["id"], expired["id"]})
        self.assertNotIn(old["id"], listed)
        self.assertEqual(listed[current["id"]]["subscription_url"],
                         "https://sub.example.com/api/v1/subscriptions/" + current["token"])
        self.assertNotIn("plan_snapshot", listed[current["id"]])
        res = call("GET", USER_SUBS + "?sort=name&direction=asc", token)
        self.assertEqual([s["name"] for s in res.json()["subscriptions"]], ["current", "expired"])
        res = call("GET", USER_SUBS + "?status=3", token)
        self.assertEqual([s["id"] for s in res.json()["subscriptions"]], [expired["id"]])
        # without a subscription domain the service domain is the base
        res = call("PATCH", "/api/v1/admin/site-settings", admin(), {"subscription_domain": None})
        self.assertEqual(res.status, 200, res)
        res = call("GET", USER_SUBS + "?status=1", token)
        self.assertEqual(res.json()["subscriptions"][0]["subscription_url"],
                         "https://panel.example.com/api/v1/subscriptions/" + current["token"])

    def test_token_reset_only_for_own_visible(self):
        uid, address = new_user()
        _, stranger = new_user()
        sub = create(uid)
        token = token_of(address)
        res = call("POST", "%s/%d/reset-token" % (USER_SUBS, sub["id"]), token)
        self.assertEqual(res.status, 200, res)
        fresh = res.json()["subscription"]["token"]
        self.assertRegex(fresh, TOKEN_RE)
        self.assertNotEqual(fresh, sub["token"])
        self.assertEqual(get(sub["id"])["token"], fresh)
        self.assertEqual(call("POST", "%s/%d/reset-token" % (USER_SUBS, sub["id"]), token_of(stranger)).status, 404)
        self.assertEqual(get(sub["id"])["token"], fresh)
        call("POST", "%s/%d/disable" % (SUBS, sub["id"]), admin(), {})
        self.assertEqual(call("POST", "%s/%d/reset-token" % (USER_SUBS, sub["id"]), token).status, 404)
        self.assertEqual(call("GET", USER_SUBS).status, 401)


if __name__ == "__main__":
    unittest.main()

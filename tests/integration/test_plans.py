"""Plans and billing options (/api/v1/admin/plans) and the plans on sale (/api/v1/user/plans).

One server for the module. The admin is made with `znp admin create` before
the server starts; a plain user is created through the admin API. Each test
makes its own plans with unique names so the tests do not depend on order.
Run alone: /usr/bin/python3 tests/integration/run.py test_plans
"""

import os
import unittest

from tests.integration import harness

server = None
ADMIN = ("plans-admin@example.com", "admin-pass-7Hq2")
USER = ("plans-user@example.com", "member-pass-9Kd4")
PLANS = "/api/v1/admin/plans"
USER_PLANS = "/api/v1/user/plans"
_tokens = {}
_counter = [0]


def setUpModule():
    global server
    server = harness.Server("plans")
    try:
        server.create_admin(*ADMIN)
        server.start()
        harness.seed_bindings(server, range(1, 13))
        res = call("POST", "/api/v1/admin/users", admin(), {"email": USER[0], "password": USER[1]})
        if res.status != 201:
            raise AssertionError("create user failed: %r" % res)
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


def token_of(address, password):
    if address not in _tokens:
        res = server.login(address, password)
        if res.status != 200:
            raise AssertionError("login as %s failed: %r" % (address, res))
        _tokens[address] = res.json()["access_token"]
    return _tokens[address]


def admin():
    return token_of(*ADMIN)


def user():
    return token_of(*USER)


def psql(sql):
    return harness.EmbeddedCluster(server.data_dir).psql(sql, database=server.database_name()).strip()


def unique(prefix="plan"):
    _counter[0] += 1
    return "%s-%d-%d" % (prefix, os.getpid(), _counter[0])


def make_plan(**fields):
    body = {"name": unique("Plan")}
    body.update(fields)
    res = call("POST", PLANS, admin(), body)
    if res.status != 201:
        raise AssertionError("create plan failed: %r" % res)
    return res.json()["plan"]


def make_option(plan_id, **fields):
    body = {"duration_value": 1, "duration_unit": "month", "price_cents": 1000}
    body.update(fields)
    res = call("POST", "%s/%d/billing-options" % (PLANS, plan_id), admin(), body)
    if res.status != 201:
        raise AssertionError("create option failed: %r" % res)
    return res.json()["option"]


class CreatePlan(unittest.TestCase):
    def test_create_stores_every_field(self):
        slug = unique("std")
        body = {"name": "  Standard  ", "slug": slug, "description": "everyday", "tags": ["popular", " hot "],
                "features": ["200 GiB", "3 devices"], "binding_ids": [7, 3, 7], "price_cents": 2999,
                "currency": "usd", "duration_days": 30, "traffic_limit_bytes": 214748364800,
                "traffic_multipliers": {"VLESS": 1, "ss": 1.5}, "devices_limit": 3,
                "traffic_reset_schedule": "monthly_on_purchase_day", "sort_order": 10, "status": 2, "visible": True}
        res = call("POST", PLANS, admin(), body)
        self.assertEqual(res.status, 201, res)
        plan = res.json()["plan"]
        self.assertEqual(plan["name"], "Standard")
        self.assertEqual(plan["slug"], slug)
        self.assertEqual(plan["description"], "everyday")
        self.assertEqual(plan["tags"], ["popular", "hot"])
        self.assertEqual(plan["features"], ["200 GiB", "3 devices"])
        self.assertEqual(plan["binding_ids"], [3, 7])
        self.assertEqual(plan["price_cents"], 2999)
        self.assertEqual(plan["currency"], "USD")
        self.assertEqual(plan["duration_days"], 30)
        self.assertEqual(plan["traffic_limit_bytes"], 214748364800)
        self.assertEqual(plan["traffic_multipliers"], {"vless": 1, "ss": 1.5})
        self.assertEqual(plan["devices_limit"], 3)
        self.assertEqual(plan["traffic_reset_schedule"], "monthly_on_purchase_day")
        self.assertEqual(plan["sort_order"], 10)
        self.assertEqual(plan["status"], 2)
        self.assertTrue(plan["visible"])
        self.assertEqual(plan["billing_options"], [])
        self.assertGreater(plan["created_at"], 0)
        got = call("GET", "%s/%d" % (PLANS, plan["id"]), admin())
        self.assertEqual(got.status, 200, got)
        self.assertEqual(got.json()["plan"], plan)
        # the write is audited
        count = psql("SELECT count(*) FROM audit_logs WHERE action = 'admin.plan.create' AND resource_id = '%d'"
                     % plan["id"])
        self.assertEqual(count, "1")

    def test_defaults(self):
        plan = make_plan()
        self.assertEqual(plan["status"], 1)
        self.assertFalse(plan["visible"])
        self.assertEqual(plan["currency"], "CNY")
        self.assertEqual(plan["traffic_limit_bytes"], 0)
        self.assertEqual(plan["devices_limit"], 0)
        self.assertEqual(plan["traffic_multipliers"], {})
        self.assertEqual(plan["traffic_reset_schedule"], "none")
        self.assertEqual(plan["tags"], [])
        self.assertEqual(plan["binding_ids"], [])

    def test_slug_derived_and_normalised(self):
        plan = make_plan(name="Pro Plan %d" % os.getpid())
        self.assertEqual(plan["slug"], "pro-plan-%d" % os.getpid())
        plan = make_plan(slug="My_Slug %d" % os.getpid())
        self.assertEqual(plan["slug"], "my-slug-%d" % os.getpid())
        # a name without ASCII letters or digits falls back to plan-<id>
        plan = make_plan(name="旗舰套餐")
        self.assertEqual(plan["slug"], "plan-%d" % plan["id"])

    def test_slug_conflict_is_409_whatever_the_case(self):
        slug = unique("dup")
        make_plan(slug=slug)
        res = call("POST", PLANS, admin(), {"name": "Other", "slug": slug.upper()})
        self.assertEqual(res.status, 409, res)
        self.assertEqual(res.json()["code"], 409070, res)
        other = make_plan(slug=unique("free"))
        res = call("PATCH", "%s/%d" % (PLANS, other["id"]), admin(), {"slug": slug.upper()})
        self.assertEqual(res.status, 409, res)
        self.assertEqual(res.json()["error"], "plan_slug_taken", res)
        self.assertEqual([d["field"] for d in res.json()["details"]], ["$.slug"], res)
        self.assertEqual(call("GET", "%s/%d" % (PLANS, other["id"]), admin()).json()["plan"]["slug"], other["slug"])

    def test_rejects_bad_values(self):
        bad = [
            {"name": "   "},
            {"name": "x", "price_cents": 10.5},
            {"name": "x", "price_cents": 1.0},
            {"name": "x", "price_cents": -1},
            {"name": "x", "price_cents": "100"},
            {"name": "x", "traffic_limit_bytes": -1},
            {"name": "x", "devices_limit": -1},
            {"name": "x", "currency": "US"},
            {"name": "x", "currency": "US1"},
            {"name": "x", "traffic_multipliers": {"ss": 0}},
            {"name": "x", "traffic_multipliers": {"ss": -1}},
            {"name": "x", "traffic_multipliers": {"ss": "2"}},
            {"name": "x", "traffic_multipliers": {"": 1}},
            {"name": "x", "traffic_multipliers": {"SS": 1, "ss": 2}},
            {"name": "x", "traffic_multipliers": [1]},
            {"name": "x", "traffic_reset_schedule": "weekly"},
            {"name": "x", "status": 0},
            {"name": "x", "status": 4},
            {"name": "x", "binding_ids": [0]},
            {"name": "x", "binding_ids": [1, 999999]},
            {"name": "x", "slug": "bad/slug"},
            {"slug": "no-name"},
        ]
        for body in bad:
            res = call("POST", PLANS, admin(), body)
            self.assertEqual(res.status, 400, (body, res))

    def test_non_admin_is_forbidden(self):
        self.assertEqual(call("POST", PLANS, user(), {"name": "x"}).status, 403)
        self.assertEqual(call("GET", PLANS, user()).status, 403)
        self.assertEqual(call("GET", PLANS).status, 401)
        plan = make_plan()
        self.assertEqual(call("PATCH", "%s/%d" % (PLANS, plan["id"]), user(), {"name": "y"}).status, 403)
        self.assertEqual(call("POST", "%s/%d/billing-options" % (PLANS, plan["id"]), user(),
                              {"duration_value": 1, "duration_unit": "day", "price_cents": 1}).status, 403)


class UpdatePlan(unittest.TestCase):
    def test_patch_absent_null_value(self):
        plan = make_plan(description="desc", tags=["a"], features=["f"], binding_ids=[1, 2],
                         traffic_multipliers={"ss": 2}, price_cents=500)
        path = "%s/%d" % (PLANS, plan["id"])
        # absent: nothing changes
        res = call("PATCH", path, admin(), {})
        self.assertEqual(res.status, 200, res)
        unchanged = res.json()["plan"]
        for key in ("name", "slug", "description", "tags", "features", "binding_ids", "traffic_multipliers",
                    "price_cents", "status", "visible"):
            self.assertEqual(unchanged[key], plan[key], key)
        # values
        res = call("PATCH", path, admin(), {"name": "Renamed", "price_cents": 0, "binding_ids": [9],
                                            "status": 2, "visible": True, "traffic_reset_schedule": "yearly"})
        self.assertEqual(res.status, 200, res)
        changed = res.json()["plan"]
        self.assertEqual(changed["name"], "Renamed")
        self.assertEqual(changed["price_cents"], 0)
        self.assertEqual(changed["binding_ids"], [9])
        self.assertEqual(changed["status"], 2)
        self.assertTrue(changed["visible"])
        self.assertEqual(changed["traffic_reset_schedule"], "yearly")
        self.assertEqual(changed["description"], "desc")
        self.assertEqual(changed["tags"], ["a"])
        # null clears the clearable fields
        res = call("PATCH", path, admin(), {"description": None, "tags": None, "features": None,
                                            "binding_ids": None, "traffic_multipliers": None})
        self.assertEqual(res.status, 200, res)
        cleared = res.json()["plan"]
        self.assertEqual(cleared["description"], "")
        self.assertEqual(cleared["tags"], [])
        self.assertEqual(cleared["features"], [])
        self.assertEqual(cleared["binding_ids"], [])
        self.assertEqual(cleared["traffic_multipliers"], {})
        self.assertEqual(cleared["name"], "Renamed")
        self.assertEqual(psql("SELECT count(*) FROM plan_bindings WHERE plan_id = %d" % plan["id"]), "0")
        # null is rejected where it has no meaning, and nothing changes
        for body in ({"name": None}, {"price_cents": None}, {"status": None}, {"visible": None},
                     {"price_cents": 1.5}, {"price_cents": -5}, {"slug": "---"}):
            res = call("PATCH", path, admin(), body)
            self.assertEqual(res.status, 400, (body, res))
        self.assertEqual(call("GET", path, admin()).json()["plan"]["name"], "Renamed")
        count = psql("SELECT count(*) FROM audit_logs WHERE action = 'admin.plan.update' AND resource_id = '%d'"
                     % plan["id"])
        self.assertEqual(count, "3")

    def test_unknown_plan_is_404(self):
        self.assertEqual(call("PATCH", PLANS + "/999999999", admin(), {"name": "x"}).status, 404)
        self.assertEqual(call("GET", PLANS + "/999999999", admin()).status, 404)


class ListPlans(unittest.TestCase):
    def test_pagination_tells_the_truth(self):
        tag = unique("page")
        ids = [make_plan(description=tag, sort_order=i)["id"] for i in range(5)]
        seen = []
        for page in (1, 2, 3):
            res = call("GET", "%s?q=%s&per_page=2&page=%d" % (PLANS, tag, page), admin())
            self.assertEqual(res.status, 200, res)
            data = res.json()
            meta = data["pagination"]
            self.assertEqual(meta["total_count"], 5)
            self.assertEqual(meta["page"], page)
            self.assertEqual(meta["per_page"], 2)
            self.assertEqual(meta["has_prev"], page > 1)
            self.assertEqual(meta["has_next"], page < 3)
            self.assertEqual(len(data["plans"]), 2 if page < 3 else 1)
            seen += [p["id"] for p in data["plans"]]
        self.assertEqual(seen, ids)
        res = call("GET", "%s?q=%s&per_page=2&page=4" % (PLANS, tag), admin())
        self.assertEqual(res.json()["plans"], [])
        self.assertFalse(res.json()["pagination"]["has_next"])
        for query in ("per_page=101", "per_page=0", "page=0", "sort=password", "direction=up", "status=4"):
            self.assertEqual(call("GET", PLANS + "?" + query, admin()).status, 400, query)

    def test_filters_and_sort(self):
        tag = unique("filter")
        cheap = make_plan(description=tag, price_cents=100, status=2, visible=True)
        dear = make_plan(description=tag, price_cents=900, status=2, visible=False)
        draft = make_plan(description=tag, price_cents=500)
        make_option(cheap["id"])

        def ids(query):
            res = call("GET", "%s?q=%s&%s" % (PLANS, tag, query), admin())
            self.assertEqual(res.status, 200, res)
            return [p["id"] for p in res.json()["plans"]]

        self.assertEqual(ids("sort=price"), [cheap["id"], draft["id"], dear["id"]])
        self.assertEqual(ids("sort=price&direction=desc"), [dear["id"], draft["id"], cheap["id"]])
        self.assertEqual(ids("status=2&sort=price"), [cheap["id"], dear["id"]])
        self.assertEqual(ids("visible=true"), [cheap["id"]])
        self.assertEqual(ids("visible=false&status=1"), [draft["id"]])
        res = call("GET", "%s?q=%s&sort=price" % (PLANS, tag), admin())
        self.assertEqual(len(res.json()["plans"][0]["billing_options"]), 1)


class BillingOptions(unittest.TestCase):
    def test_create_list_update_delete(self):
        plan = make_plan(currency="EUR")
        base = "%s/%d/billing-options" % (PLANS, plan["id"])
        month = make_option(plan["id"], duration_value=3, duration_unit="months", price_cents=7999, sort_order=2)
        self.assertEqual(month["name"], "3 months")
        self.assertEqual(month["duration_unit"], "month")
        self.assertEqual(month["currency"], "EUR")
        self.assertEqual(month["status"], 1)
        self.assertFalse(month["visible"])
        self.assertEqual(month["plan_id"], plan["id"])
        hour = make_option(plan["id"], duration_value=1, duration_unit="hour", price_cents=0, currency="usd",
                           name="  Trial  ", sort_order=1)
        self.assertEqual(hour["name"], "Trial")
        self.assertEqual(hour["currency"], "USD")
        self.assertEqual(hour["price_cents"], 0)
        year = make_option(plan["id"], duration_value=1, duration_unit="year", price_cents=29900, currency="CNY",
                           status=2, visible=True, sort_order=2)
        self.assertEqual(year["name"], "1 year")

        res = call("GET", base, admin())
        self.assertEqual(res.status, 200, res)
        self.assertEqual([o["id"] for o in res.json()["options"]], [hour["id"], year["id"], month["id"]])
        res = call("GET", base + "?status=2&visible=true", admin())
        self.assertEqual([o["id"] for o in res.json()["options"]], [year["id"]])
        got = call("GET", "%s/%d" % (PLANS, plan["id"]), admin()).json()["plan"]
        self.assertEqual(len(got["billing_options"]), 3)

        # PATCH: absent keeps, value sets, null name regenerates the label
        path = "%s/%d" % (base, month["id"])
        res = call("PATCH", path, admin(), {"price_cents": 6999, "duration_value": 6})
        self.assertEqual(res.status, 200, res)
        option = res.json()["option"]
        self.assertEqual(option["price_cents"], 6999)
        self.assertEqual(option["duration_value"], 6)
        self.assertEqual(option["name"], "3 months")
        self.assertEqual(option["currency"], "EUR")
        res = call("PATCH", path, admin(), {"name": None})
        self.assertEqual(res.json()["option"]["name"], "6 months")
        for body in ({"price_cents": -1}, {"price_cents": 9.99}, {"duration_value": 0}, {"duration_unit": "week"},
                     {"currency": "EURO"}, {"status": None}, {"status": 5}):
            self.assertEqual(call("PATCH", path, admin(), body).status, 400, body)
        self.assertEqual(call("PATCH", path, admin(), {}).json()["option"]["price_cents"], 6999)

        # an option of another plan is not found through this plan
        other = make_plan()
        wrong = "%s/%d/billing-options/%d" % (PLANS, other["id"], month["id"])
        self.assertEqual(call("PATCH", wrong, admin(), {"price_cents": 1}).status, 404)
        self.assertEqual(call("DELETE", wrong, admin()).status, 404)

        res = call("DELETE", path, admin())
        self.assertEqual(res.status, 204, res)
        self.assertEqual(call("DELETE", path, admin()).status, 404)
        res = call("GET", base, admin())
        self.assertEqual([o["id"] for o in res.json()["options"]], [hour["id"], year["id"]])
        actions = psql("SELECT string_agg(action, ',' ORDER BY id) FROM audit_logs"
                       " WHERE resource_type = 'plan_billing_option' AND resource_id = '%d'" % month["id"])
        self.assertEqual(actions, "admin.plan_billing_option.create,admin.plan_billing_option.update,"
                                  "admin.plan_billing_option.update,admin.plan_billing_option.update,"
                                  "admin.plan_billing_option.delete")

    def test_rejects_bad_options(self):
        plan = make_plan()
        base = "%s/%d/billing-options" % (PLANS, plan["id"])
        for body in ({"duration_value": 1, "duration_unit": "month"},
                     {"duration_value": 0, "duration_unit": "month", "price_cents": 1},
                     {"duration_value": 1, "duration_unit": "week", "price_cents": 1},
                     {"duration_value": 1, "duration_unit": "month", "price_cents": -1},
                     {"duration_value": 1, "duration_unit": "month", "price_cents": 12.5},
                     {"duration_value": 1, "duration_unit": "month", "price_cents": 1, "currency": "12A"}):
            self.assertEqual(call("POST", base, admin(), body).status, 400, body)
        self.assertEqual(call("POST", PLANS + "/999999999/billing-options", admin(),
                              {"duration_value": 1, "duration_unit": "day", "price_cents": 1}).status, 404)
        self.assertEqual(call("GET", PLANS + "/999999999/billing-options", admin()).status, 404)


class UserPlans(unittest.TestCase):
    def test_only_active_visible_plans_and_options(self):
        tag = unique("shop")
        on_sale = make_plan(description=tag, status=2, visible=True, binding_ids=[4], sort_order=1)
        hidden = make_plan(description=tag, status=2, visible=False)
        draft = make_plan(description=tag, status=1, visible=True)
        archived = make_plan(description=tag, status=3, visible=True)
        visible_option = make_option(on_sale["id"], status=2, visible=True, price_cents=1500, currency="USD")
        make_option(on_sale["id"], status=2, visible=False)
        make_option(on_sale["id"], status=1, visible=True)
        make_option(on_sale["id"], status=3, visible=True)
        make_option(hidden["id"], status=2, visible=True)

        res = call("GET", USER_PLANS + "?q=" + tag, user())
        self.assertEqual(res.status, 200, res)
        data = res.json()
        self.assertEqual([p["id"] for p in data["plans"]], [on_sale["id"]])
        self.assertEqual(data["pagination"]["total_count"], 1)
        plan = data["plans"][0]
        self.assertEqual([o["id"] for o in plan["billing_options"]], [visible_option["id"]])
        self.assertEqual(plan["billing_options"][0]["price_cents"], 1500)
        self.assertEqual(plan["billing_options"][0]["currency"], "USD")
        self.assertNotIn("binding_ids", plan)
        self.assertNotIn("status", plan)

        # hiding the plan removes it; showing it again brings it back
        path = "%s/%d" % (PLANS, on_sale["id"])
        self.assertEqual(call("PATCH", path, admin(), {"visible": False}).status, 200)
        self.assertEqual(call("GET", USER_PLANS + "?q=" + tag, user()).json()["plans"], [])
        self.assertEqual(call("PATCH", path, admin(), {"visible": True}).status, 200)
        self.assertEqual(len(call("GET", USER_PLANS + "?q=" + tag, user()).json()["plans"]), 1)
        for other in (hidden, draft, archived):
            self.assertNotIn(other["id"], [p["id"] for p in call("GET", USER_PLANS + "?per_page=100", user())
                                           .json()["plans"]])

    def test_requires_sign_in(self):
        self.assertEqual(call("GET", USER_PLANS).status, 401)


if __name__ == "__main__":
    unittest.main()

"""Traffic reset schedules: the scheduled job subscriptions.traffic_reset with a controlled clock.

One server with jobs.traffic_reset_interval_s: 1 and the panel time zone
Asia/Shanghai (UTC+8). The job reads its clock from the file named by
ZNP_TEST_CLOCK_FILE (see docs/testing.md), so the test moves it across month
ends. Purchase dates are set with psql on created_at. Each step waits for a
run of the job that started after the clock was written.
Run alone: /usr/bin/python3 tests/integration/run.py test_resets
"""

import calendar
import os
import time
import unittest

from tests.integration import harness

server = None
clock_path = None
ADMIN = ("resets-admin@example.com", "admin-pass-2Pw7")
PASSWORD = "member-pass-6Hn4"
_state = {"counter": 0}


def setUpModule():
    global server, clock_path
    server = harness.Server("resets", config={"jobs": {"traffic_reset_interval_s": 1},
                                              "panel": {"time_zone": "Asia/Shanghai"}})
    clock_path = os.path.join(server.workdir, "clock")
    set_clock("2020-01-01T00:00:00Z")
    try:
        server.create_admin(*ADMIN)
        server.start(env={"ZNP_TEST_CLOCK_FILE": clock_path})
    except BaseException:
        server.cleanup()
        raise


def tearDownModule():
    try:
        server.stop_expect_clean()
    finally:
        server.cleanup()


def set_clock(utc_text):
    seconds = calendar.timegm(time.strptime(utc_text, "%Y-%m-%dT%H:%M:%SZ"))
    with open(clock_path + ".tmp", "w") as f:
        f.write("%d\n" % seconds)
    os.replace(clock_path + ".tmp", clock_path)


def psql(sql):
    return harness.EmbeddedCluster(server.data_dir).psql(sql, database=server.database_name()).strip()


def admin_call(method, path, body=None):
    if "admin" not in _state:
        res = server.login(*ADMIN)
        if res.status != 200:
            raise AssertionError("admin login failed: %r" % res)
        _state["admin"] = res.json()["access_token"]
    return server.request(method, path, body=body, headers={"Authorization": "Bearer " + _state["admin"]})


def plan(schedule):
    if schedule not in _state:
        res = admin_call("POST", "/api/v1/admin/plans", {"name": "Reset " + schedule, "status": 2, "visible": True,
                                                         "traffic_limit_bytes": 1000,
                                                         "traffic_reset_schedule": schedule})
        if res.status != 201:
            raise AssertionError("create plan failed: %r" % res)
        _state[schedule] = res.json()["plan"]["id"]
    return _state[schedule]


def subscription(schedule, purchased, used, total=1000, status=1):
    """A subscription of a fresh user bought at `purchased` (timestamptz text); returns (id, token)."""
    _state["counter"] += 1
    res = admin_call("POST", "/api/v1/admin/users",
                     {"email": "resets%d-%d@example.com" % (_state["counter"], os.getpid()), "password": PASSWORD})
    if res.status != 201:
        raise AssertionError("create user failed: %r" % res)
    res = admin_call("POST", "/api/v1/admin/subscriptions", {"user_id": res.json()["user"]["id"],
                                                             "plan_id": plan(schedule)})
    if res.status != 201:
        raise AssertionError("create subscription failed: %r" % res)
    sub = res.json()["subscription"]
    psql("UPDATE subscriptions SET created_at = '%s', traffic_used_bytes = %d, traffic_total_bytes = %d,"
         " status = %d, expires_at = NULL WHERE id = %d" % (purchased, used, total, status, sub["id"]))
    return sub["id"], sub["token"]


def run_job_at(utc_text):
    """Set the clock, then wait until a run of the job that started afterwards has committed."""
    set_clock(utc_text)
    start = psql("SELECT now()")
    harness.wait_until(lambda: psql("SELECT count(*) FROM scheduled_runs WHERE name = 'subscriptions.traffic_reset'"
                                    " AND last_run_at > '%s'" % start) == "1", timeout=20)


def state(sub_id):
    return psql("SELECT traffic_used_bytes, status, coalesce(to_char(traffic_reset_on, 'YYYY-MM-DD'), '-')"
                " FROM subscriptions WHERE id = %d" % sub_id).split("|")


def resets(sub_id):
    out = psql("SELECT to_char(reset_on, 'YYYY-MM-DD') || ' ' || used_bytes_before FROM traffic_reset_logs"
               " WHERE subscription_id = %d ORDER BY reset_on" % sub_id)
    return [line for line in out.splitlines() if line]


def downloaded_bytes(token):
    res = server.request("GET", "/api/v1/subscriptions/%s" % token, headers={"User-Agent": "Shadowrocket/2.2"})
    fields = dict(part.strip().split("=") for part in res.header("subscription-userinfo").split(";"))
    return int(fields["download"])


class ResetScheduleTest(unittest.TestCase):
    def setUp(self):
        # a clock before every purchase, so nothing is due while a test sets its rows up
        run_job_at("2020-01-01T00:00:00Z")

    def test_month_end_schedules_in_panel_time_zone(self):
        # bought on the 31st, 10:00 in Shanghai
        day31, day31_token = subscription("monthly_on_purchase_day", "2025-01-31 10:00:00+08", 500)
        # quota used up: the reset makes it active again
        blocked, _ = subscription("monthly_on_purchase_day", "2025-01-31 09:00:00+08", 1000, status=4)
        # bought on 30 January: the 1st of each month after that
        first, _ = subscription("first_of_month", "2025-01-30 12:00:00+08", 400)
        # bought on 29 February 2024: resets on 28 February in 2025
        yearly, _ = subscription("yearly", "2024-02-29 12:00:00+08", 900)
        never, _ = subscription("none", "2024-01-15 12:00:00+08", 800)
        self.assertEqual(downloaded_bytes(day31_token), 500)

        # 27 February 23:30 in Shanghai: only the 1st of February is due
        run_job_at("2025-02-27T15:30:00Z")
        self.assertEqual(state(day31), ["500", "1", "-"])
        self.assertEqual(state(blocked), ["1000", "4", "-"])
        self.assertEqual(state(first), ["0", "1", "2025-02-01"])
        self.assertEqual(state(yearly), ["900", "1", "-"])

        # 28 February 00:30 in Shanghai (still the 27th in UTC): day 31 clamps to the 28th
        run_job_at("2025-02-27T16:30:00Z")
        self.assertEqual(state(day31), ["0", "1", "2025-02-28"])
        self.assertEqual(state(blocked), ["0", "1", "2025-02-28"])
        self.assertEqual(state(yearly), ["0", "1", "2025-02-28"])
        self.assertEqual(state(first), ["0", "1", "2025-02-01"])
        self.assertEqual(state(never), ["800", "1", "-"])
        self.assertEqual(resets(day31), ["2025-02-28 500"])
        self.assertEqual(resets(blocked), ["2025-02-28 1000"])
        self.assertEqual(psql("SELECT count(*) FROM audit_logs WHERE action = 'subscription.quota_restored'"
                              " AND resource_id = '%d'" % blocked), "1")
        # the NOTIFY drops the cached download, so the new usage shows
        harness.wait_until(lambda: downloaded_bytes(day31_token) == 0)

        # usage in March; on 30 March nothing is due, on the 31st day 31 comes back
        psql("UPDATE subscriptions SET traffic_used_bytes = 300 WHERE id IN (%d, %d)" % (day31, first))
        run_job_at("2025-03-30T04:00:00Z")
        self.assertEqual(state(day31), ["300", "1", "2025-02-28"])
        self.assertEqual(state(first), ["0", "1", "2025-03-01"])
        run_job_at("2025-03-30T16:00:00Z")
        self.assertEqual(state(day31), ["0", "1", "2025-03-31"])
        self.assertEqual(resets(day31), ["2025-02-28 500", "2025-03-31 300"])

        # a second run on the same day changes nothing
        psql("UPDATE subscriptions SET traffic_used_bytes = 50 WHERE id = %d" % day31)
        run_job_at("2025-03-31T10:00:00Z")
        self.assertEqual(state(day31), ["50", "1", "2025-03-31"])
        self.assertEqual(len(resets(day31)), 2)
        self.assertEqual(resets(never), [])

    def test_expiry_arithmetic_matches_reset_calendar(self):
        # expiry extensions use PostgreSQL's date + interval; the reset calendar in C clamps the same way
        table = [("2025-01-29", 1, "2025-02-28"), ("2025-01-30", 1, "2025-02-28"), ("2025-01-31", 1, "2025-02-28"),
                 ("2024-01-31", 1, "2024-02-29"), ("2025-03-31", 1, "2025-04-30"), ("2025-12-31", 1, "2026-01-31"),
                 ("2025-01-31", 3, "2025-04-30"), ("2024-01-31", 12, "2025-01-31"), ("2025-12-31", 3, "2026-03-31")]
        for start, months, expected in table:
            got = psql("SELECT to_char(date '%s' + make_interval(months => %d), 'YYYY-MM-DD')" % (start, months))
            self.assertEqual(got, expected, (start, months))

    def test_purchase_time_zone_decides_the_day(self):
        # 31 January 20:00 UTC is 1 February 04:00 in Shanghai: the purchase day is the 1st
        sub, _ = subscription("monthly_on_purchase_day", "2025-01-31 20:00:00+00", 100)
        run_job_at("2025-02-28T17:00:00Z")  # 1 March 01:00 in Shanghai
        self.assertEqual(state(sub), ["0", "1", "2025-03-01"])

    def test_disabled_and_expired_are_left_alone(self):
        disabled, _ = subscription("first_of_month", "2025-01-10 12:00:00+08", 100, status=2)
        expired, _ = subscription("first_of_month", "2025-01-10 12:00:00+08", 100)
        psql("UPDATE subscriptions SET expires_at = '2025-01-20 00:00:00+08' WHERE id = %d" % expired)
        run_job_at("2025-02-01T00:00:00Z")
        self.assertEqual(state(disabled), ["100", "2", "-"])
        self.assertEqual(state(expired)[0], "100")
        self.assertEqual(resets(expired), [])


if __name__ == "__main__":
    unittest.main()

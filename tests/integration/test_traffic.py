"""Traffic accounting: kernel callbacks, exactly-once reports, the user traffic view and gRPC reports.

One server for the module, configured with a webhook shared token and a
signing secret. Plans, subscriptions, nodes, bindings and node tokens are
inserted straight into the database, so each test controls the plan
snapshot and the live plan separately. Users are made through the admin
API, so they can sign in. Each test uses its own subscriptions and report
ids, so the tests do not depend on order.
Run alone: /usr/bin/python3 tests/integration/run.py test_traffic
"""

import datetime
import hashlib
import hmac
import json
import os
import threading
import time
import unittest
import uuid

from tests.integration import harness

server = None
ADMIN = ("traffic-admin@example.com", "admin-pass-7Hq2")
PASSWORD = "member-pass-4Kd9"
SHARED_TOKEN = "webhook-token-" + uuid.uuid4().hex
SIGNING_SECRET = "webhook-secret-" + uuid.uuid4().hex
TOLERANCE = 300
INT64_MAX = 9223372036854775807
TRAFFIC = "/api/v1/kernel/traffic"
EVENTS = "/api/v1/kernel/events"
SERVICE_EVENTS = "/api/v1/kernel/service-events"
_tokens = {}
_counter = [0]


def setUpModule():
    global server
    server = harness.Server("traffic", config={
        "webhook": {"shared_token": SHARED_TOKEN, "signing_secret": SIGNING_SECRET,
                    "signature_tolerance_s": TOLERANCE},
        "panel": {"time_zone": "Asia/Shanghai"},
    })
    try:
        server.create_admin(*ADMIN)
        server.start()
    except BaseException:
        server.cleanup()
        raise


def tearDownModule():
    try:
        server.stop_expect_clean()
    finally:
        server.cleanup()


# -- helpers -----------------------------------------------------------------

def unique(prefix):
    _counter[0] += 1
    return "%s-%d-%d" % (prefix, os.getpid(), _counter[0])


def psql(sql):
    return harness.EmbeddedCluster(server.data_dir).psql(sql, database=server.database_name()).strip()


def token_of(address, password):
    if address not in _tokens:
        _tokens[address] = server.access_token(address, password)
    return _tokens[address]


def admin():
    return token_of(*ADMIN)


def new_user():
    """An active user made through the admin API; returns (id, email)."""
    address = unique("traffic") + "@example.com"
    res = server.request("POST", "/api/v1/admin/users", {"email": address, "password": PASSWORD},
                         headers={"Authorization": "Bearer " + admin()})
    if res.status != 201:
        raise AssertionError("create user failed: %r" % res)
    return res.json()["user"]["id"], address


def new_plan(multipliers=None):
    return int(psql("INSERT INTO plans (name, slug, traffic_multipliers) VALUES ('%s', '%s', '%s'::jsonb)"
                    " RETURNING id" % (unique("plan"), unique("plan"), json.dumps(multipliers or {}))))


def new_subscription(user_id, plan_id, snapshot_multipliers=None, total=0, used=0, expires="NULL", status=1):
    snapshot = json.dumps({"traffic_multipliers": snapshot_multipliers or {}})
    token = uuid.uuid4().hex[:22]
    return int(psql(
        "INSERT INTO subscriptions (user_id, name, plan_id, plan_name, plan_snapshot, status, token, expires_at,"
        " traffic_total_bytes, traffic_used_bytes) VALUES (%d, 'sub', %d, 'plan', '%s'::jsonb, %d, '%s', %s, %d, %d)"
        " RETURNING id" % (user_id, plan_id, snapshot, status, token, expires, total, used)))


def new_node():
    return int(psql("INSERT INTO nodes (name, control_endpoint) VALUES ('%s', 'http://127.0.0.1:9') RETURNING id"
                    % unique("node")))


def new_binding(node_id, kernel_id):
    return int(psql("INSERT INTO protocol_bindings (node_id, protocol, role, kernel_id) VALUES (%d, 'vless',"
                    " 'listener', '%s') RETURNING id" % (node_id, kernel_id)))


def used_of(subscription_id):
    return int(psql("SELECT traffic_used_bytes FROM subscriptions WHERE id = %d" % subscription_id))


def post(path, body, token=SHARED_TOKEN, headers=None):
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["X-ZNP-Webhook-Token"] = token
    return server.request("POST", path, body=body, headers=all_headers)


def post_raw(path, raw, headers):
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers)
    return server.request("POST", path, body=raw, headers=all_headers)


def signature(raw, timestamp=None, secret=SIGNING_SECRET):
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), ("%d." % timestamp).encode() + raw, hashlib.sha256).hexdigest()
    return "t=%d,v1=%s" % (timestamp, mac)


def report(node_id, records, report_id=None):
    body = {"node_id": node_id, "records": records}
    if report_id is not None:
        body["report_id"] = report_id
    return body


def record(subscription_id, up, down, protocol="", **extra):
    item = {"subscription_id": subscription_id, "bytes_up": up, "bytes_down": down, "protocol": protocol}
    item.update(extra)
    return item


def parallel(count, work):
    """Run work(i) on `count` threads at once; returns the results in order."""
    results = [None] * count
    barrier = threading.Barrier(count)

    def run(i):
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # reported by the caller's asserts
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(harness.scaled(60))
    return results


class Fixture:
    """A user with a subscription on a plain plan, and a node."""

    def __init__(self, multipliers=None, snapshot=None, **subscription):
        self.user_id, self.email = new_user()
        self.plan_id = new_plan(multipliers)
        self.subscription_id = new_subscription(self.user_id, self.plan_id, snapshot, **subscription)
        self.node_id = new_node()


# -- tests -------------------------------------------------------------------

class WebhookAuthTest(unittest.TestCase):
    def attempt(self, fixture, headers, raw=None, signed_raw=None):
        """POST one report with `headers`; `signed_raw` is the body the signature was made for."""
        report_id = unique("auth")
        raw_body = raw or json.dumps(report(fixture.node_id, [record(fixture.subscription_id, 10, 20)],
                                            report_id)).encode()
        final = {}
        for name, value in headers.items():
            final[name] = value(signed_raw or raw_body) if callable(value) else value
        res = post_raw(TRAFFIC, raw_body, final)
        stored = int(psql("SELECT count(*) FROM traffic_reports WHERE report_id = '%s'" % report_id))
        return res, stored

    def test_auth_table(self):
        fixture = Fixture()
        now = int(time.time())
        tampered = json.dumps(report(fixture.node_id, [record(fixture.subscription_id, 10, 99999)])).encode()
        cases = [
            ("no credentials", {}, 401),
            ("wrong token", {"X-ZNP-Webhook-Token": "not-the-token"}, 401),
            ("empty token", {"X-ZNP-Webhook-Token": ""}, 401),
            ("right token", {"X-ZNP-Webhook-Token": SHARED_TOKEN}, 200),
            ("valid signature", {"X-ZNP-Webhook-Signature": lambda raw: signature(raw)}, 200),
            ("valid Stripe-Signature", {"Stripe-Signature": lambda raw: signature(raw)}, 200),
            ("expired signature", {"X-ZNP-Webhook-Signature": lambda raw: signature(raw, now - TOLERANCE - 60)}, 401),
            ("future signature", {"X-ZNP-Webhook-Signature": lambda raw: signature(raw, now + TOLERANCE + 60)}, 401),
            ("wrong secret", {"X-ZNP-Webhook-Signature": lambda raw: signature(raw, secret="other")}, 401),
            ("malformed signature", {"X-ZNP-Webhook-Signature": "v1=abc"}, 401),
            # a wrong signature decides even when the token is right
            ("wrong signature with right token", {"X-ZNP-Webhook-Signature": lambda raw: signature(raw, secret="x"),
                                                  "X-ZNP-Webhook-Token": SHARED_TOKEN}, 401),
        ]
        expected_used = 0
        for name, headers, status in cases:
            with self.subTest(case=name):
                res, stored = self.attempt(fixture, headers)
                self.assertEqual(res.status, status, res)
                self.assertEqual(stored, 1 if status == 200 else 0)
                if status == 401:
                    self.assertEqual(res.json()["code"], 401170)
                else:
                    expected_used += 30
                self.assertEqual(used_of(fixture.subscription_id), expected_used)

        with self.subTest(case="tampered body"):
            res, stored = self.attempt(fixture, {"X-ZNP-Webhook-Signature": lambda raw: signature(raw)},
                                       raw=tampered,
                                       signed_raw=json.dumps(report(fixture.node_id, [record(
                                           fixture.subscription_id, 10, 20)])).encode())
            self.assertEqual(res.status, 401, res)
            self.assertEqual(used_of(fixture.subscription_id), expected_used)

    def test_every_callback_requires_credentials(self):
        fixture = Fixture()
        for path, body in ((EVENTS + "?node_id=%d" % fixture.node_id, {"event": "node_healthy", "id": "x"}),
                           (SERVICE_EVENTS + "?node_id=%d" % fixture.node_id,
                            {"event": "user.traffic.reported", "payload": {"user_id": fixture.user_id, "used": 5}})):
            with self.subTest(path=path):
                self.assertEqual(post(path, body, token=None).status, 401)
                self.assertEqual(post(path, body, token="wrong").status, 401)
        self.assertEqual(used_of(fixture.subscription_id), 0)


class SecondServerTest(unittest.TestCase):
    """A server without webhook keys: callbacks are closed, and old report keys are purged after a restart."""

    def test_closed_callbacks_and_key_purge(self):
        other = harness.Server("traffic-closed")
        try:
            other.start()

            # with neither a shared token nor a signing secret every callback is rejected
            raw = json.dumps({"node_id": 1, "records": []}).encode()
            for headers in ({}, {"X-ZNP-Webhook-Token": ""}, {"X-ZNP-Webhook-Token": SHARED_TOKEN},
                            {"X-ZNP-Webhook-Signature": signature(raw)}):
                with self.subTest(headers=sorted(headers)):
                    res = other.request("POST", TRAFFIC, body=raw,
                                        headers=dict(headers, **{"Content-Type": "application/json"}))
                    self.assertEqual(res.status, 401, res)
                    self.assertEqual(res.json()["code"], 401170)

            # keys past the 30-day retention go at the next run of traffic.purge_reports, newer ones stay
            def query(sql):
                return harness.EmbeddedCluster(other.data_dir).psql(sql, database=other.database_name()).strip()

            node_id = int(query("INSERT INTO nodes (name, control_endpoint) VALUES ('purge-node',"
                                " 'http://127.0.0.1:9') RETURNING id"))
            query("INSERT INTO traffic_reports (node_id, report_id, received_at) VALUES"
                  " (%d, 'old', now() - interval '31 days'), (%d, 'recent', now() - interval '29 days')"
                  % (node_id, node_id))
            query("UPDATE scheduled_runs SET last_run_at = now() - interval '2 hours'"
                  " WHERE name = 'traffic.purge_reports'")
            other.stop_expect_clean()
            other.start()
            keys = "SELECT string_agg(report_id, ',' ORDER BY report_id) FROM traffic_reports"
            self.assertEqual(harness.wait_until(lambda: query(keys) == "recent", timeout=10), True)
            other.stop_expect_clean()
        finally:
            other.cleanup()


class ExactlyOnceTest(unittest.TestCase):
    def test_retransmitted_report_counts_once(self):
        fixture = Fixture()
        body = report(fixture.node_id, [record(fixture.subscription_id, 1000, 2000)], "R1")
        first = post(TRAFFIC, body)
        self.assertEqual(first.status, 200, first)
        self.assertEqual(first.json(), {"accepted": 1, "failed": 0, "rejected": [], "duplicate": False})
        for _ in range(3):
            again = post(TRAFFIC, body)
            self.assertEqual(again.status, 200, again)
            self.assertEqual(again.json(), {"accepted": 1, "failed": 0, "rejected": [], "duplicate": True})
        self.assertEqual(used_of(fixture.subscription_id), 3000)

        second = post(TRAFFIC, report(fixture.node_id, [record(fixture.subscription_id, 1000, 2000)], "R2"))
        self.assertEqual(second.json()["duplicate"], False)
        self.assertEqual(used_of(fixture.subscription_id), 6000)
        self.assertEqual(int(psql("SELECT count(*) FROM traffic_records WHERE subscription_id = %d"
                                  % fixture.subscription_id)), 2)

        # the same report id from another node is another report
        other_node = new_node()
        third = post(TRAFFIC, report(other_node, [record(fixture.subscription_id, 1, 0)], "R1"))
        self.assertEqual(third.json()["duplicate"], False)
        self.assertEqual(used_of(fixture.subscription_id), 6001)

    def test_report_without_id_is_not_deduplicated(self):
        fixture = Fixture()
        body = report(fixture.node_id, [record(fixture.subscription_id, 5, 5)])
        post(TRAFFIC, body)
        post(TRAFFIC, body)
        self.assertEqual(used_of(fixture.subscription_id), 20)

    def test_unknown_node_is_not_found(self):
        fixture = Fixture()
        res = post(TRAFFIC, report(999999999, [record(fixture.subscription_id, 5, 5)], unique("r")))
        self.assertEqual(res.status, 404, res)
        self.assertEqual(used_of(fixture.subscription_id), 0)

    def test_parallel_identical_reports_count_once(self):
        fixture = Fixture()
        body = report(fixture.node_id, [record(fixture.subscription_id, 700, 300)], unique("same"))
        results = parallel(20, lambda i: post(TRAFFIC, body))
        for res in results:
            self.assertIsInstance(res, harness.Response, res)
            self.assertEqual(res.status, 200, res)
            self.assertEqual(res.json()["accepted"], 1)
        self.assertEqual(sum(1 for res in results if not res.json()["duplicate"]), 1)
        self.assertEqual(used_of(fixture.subscription_id), 1000)
        self.assertEqual(int(psql("SELECT count(*) FROM traffic_records WHERE subscription_id = %d"
                                  % fixture.subscription_id)), 1)

    def test_parallel_different_reports_sum_exactly(self):
        fixture = Fixture()
        second = new_subscription(fixture.user_id, fixture.plan_id)
        prefix = unique("many")

        def send(i):
            # two subscriptions in opposite orders, so the row locks are taken from both sides
            records = [record(fixture.subscription_id, i + 1, 0), record(second, 0, 2 * (i + 1))]
            if i % 2:
                records.reverse()
            return post(TRAFFIC, report(fixture.node_id, records, "%s-%d" % (prefix, i)))

        results = parallel(50, send)
        for res in results:
            self.assertIsInstance(res, harness.Response, res)
            self.assertEqual(res.status, 200, res)
            self.assertEqual(res.json()["accepted"], 2)
        self.assertEqual(used_of(fixture.subscription_id), sum(range(1, 51)))
        self.assertEqual(used_of(second), 2 * sum(range(1, 51)))


class RecordRulesTest(unittest.TestCase):
    def test_bad_records_rejected_with_reasons(self):
        fixture = Fixture()
        sub = fixture.subscription_id
        raw = ('{"node_id": %d, "report_id": "%s", "records": ['
               '{"subscription_id": %d, "bytes_up": -5, "bytes_down": 10},'
               '{"subscription_id": %d, "bytes_up": 1e30, "bytes_down": 0},'
               '{"subscription_id": %d, "bytes_up": "12abc", "bytes_down": 0},'
               '{"subscription_id": %d, "bytes_up": 1.5, "bytes_down": 0},'
               '{"bytes_up": 1, "bytes_down": 0},'
               '"not an object",'
               '{"subscription_id": %d, "bytes_up": 1, "protocol": "bad protocol!"},'
               '{"subscription_id": 999999999, "bytes_up": 1},'
               '{"subscription_id": %d, "bytes_up": 40, "bytes_down": 2}'
               ']}') % (fixture.node_id, unique("bad"), sub, sub, sub, sub, sub, sub)
        res = post_raw(TRAFFIC, raw.encode(), {"X-ZNP-Webhook-Token": SHARED_TOKEN})
        self.assertEqual(res.status, 200, res)
        answer = res.json()
        self.assertEqual(answer["accepted"], 1)
        self.assertEqual(answer["failed"], 8)  # seven rejected, one for a subscription that does not exist
        reasons = {item["index"]: item["reason"] for item in answer["rejected"]}
        self.assertEqual(sorted(reasons), [0, 1, 2, 3, 4, 5, 6])
        self.assertIn("negative", reasons[0])
        self.assertIn("out of range", reasons[1])
        self.assertIn("integer", reasons[2])
        self.assertIn("integer", reasons[3])
        self.assertIn("required", reasons[4])
        self.assertIn("object", reasons[5])
        self.assertIn("protocol", reasons[6])
        self.assertEqual(used_of(sub), 42)

        # a retransmission gets the same counts and rejections and adds nothing
        again = post_raw(TRAFFIC, raw.encode(), {"X-ZNP-Webhook-Token": SHARED_TOKEN}).json()
        self.assertEqual(again["duplicate"], True)
        self.assertEqual(dict(again, duplicate=False), answer)
        self.assertEqual(used_of(sub), 42)

    def test_counters_saturate_at_int64_max(self):
        fixture = Fixture(used=INT64_MAX - 10)
        res = post(TRAFFIC, report(fixture.node_id, [record(fixture.subscription_id, INT64_MAX, 1)], unique("sat")))
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["accepted"], 1)
        self.assertEqual(used_of(fixture.subscription_id), INT64_MAX)
        raw, charged = psql("SELECT raw_bytes, charged_bytes FROM traffic_records WHERE subscription_id = %d"
                            % fixture.subscription_id).split("|")
        self.assertEqual((int(raw), int(charged)), (INT64_MAX, INT64_MAX))

        # a second report and the per-day sum stay at the maximum instead of wrapping; a far-future time is now
        res = post(TRAFFIC, report(fixture.node_id, [record(fixture.subscription_id, 5, 0, observed_at=INT64_MAX)],
                                   unique("sat")))
        self.assertEqual(res.json()["accepted"], 1, res)
        self.assertEqual(used_of(fixture.subscription_id), INT64_MAX)
        self.assertEqual(int(psql("SELECT max(raw_bytes) FROM traffic_daily WHERE subscription_id = %d"
                                  % fixture.subscription_id)), INT64_MAX)

    def test_multiplier_saturates(self):
        fixture = Fixture(multipliers={"ss": 3})
        post(TRAFFIC, report(fixture.node_id, [record(fixture.subscription_id, INT64_MAX // 2, 0, "ss")]))
        self.assertEqual(used_of(fixture.subscription_id), INT64_MAX)

    def test_multiplier_snapshot_then_live_plan_then_one(self):
        cases = [
            ("snapshot wins", {"vless": 3}, {"vless": 2}, "vless", 1000, 2000),
            ("live plan when the snapshot has none", {"vless": 3}, {}, "vless", 1000, 3000),
            ("live plan when the snapshot has 0", {"vless": 3}, {"vless": 0}, "vless", 1000, 3000),
            ("one when neither has it", {"ss": 3}, {"ss": 2}, "vless", 1000, 1000),
            ("protocol is case-insensitive", {}, {"vless": 2}, "VLESS", 1000, 2000),
            ("empty protocol is one", {"": 5}, {"": 5}, "", 1000, 1000),
            ("halves round away from zero", {}, {"vless": 1.5}, "vless", 3, 5),
            ("fractions round to nearest", {}, {"vless": 0.3}, "vless", 10, 3),
        ]
        for name, live, snapshot, protocol, raw, charged in cases:
            with self.subTest(case=name):
                fixture = Fixture(multipliers=live, snapshot=snapshot)
                res = post(TRAFFIC, report(fixture.node_id, [record(fixture.subscription_id, raw, 0, protocol)]))
                self.assertEqual(res.json()["accepted"], 1, res)
                self.assertEqual(used_of(fixture.subscription_id), charged)

    def test_user_id_selects_effective_subscription(self):
        user_id, _ = new_user()
        plan_id = new_plan()
        node_id = new_node()
        expired = new_subscription(user_id, plan_id, expires="now() - interval '1 day'")
        disabled = new_subscription(user_id, plan_id, status=2)
        dated = new_subscription(user_id, plan_id, expires="now() + interval '10 days'")
        forever = new_subscription(user_id, plan_id)  # never expires: preferred over any dated one
        res = post(TRAFFIC, report(node_id, [{"user_id": user_id, "bytes_up": 100}]))
        self.assertEqual(res.json()["accepted"], 1, res)
        self.assertEqual([used_of(s) for s in (expired, disabled, dated, forever)], [0, 0, 0, 100])

        # a user with no effective subscription fails the record, not the report
        lonely, _ = new_user()
        res = post(TRAFFIC, report(node_id, [{"user_id": lonely, "bytes_up": 1}]))
        self.assertEqual(res.json(), {"accepted": 0, "failed": 1, "rejected": [], "duplicate": False})

    def test_subscription_of_another_user_fails(self):
        fixture = Fixture()
        other, _ = new_user()
        res = post(TRAFFIC, report(fixture.node_id, [{"subscription_id": fixture.subscription_id,
                                                      "user_id": other, "bytes_up": 1}]))
        self.assertEqual(res.json()["failed"], 1)
        self.assertEqual(used_of(fixture.subscription_id), 0)

    def test_quota_crossing_stops_eligibility(self):
        fixture = Fixture(total=100)
        binding = new_binding(fixture.node_id, unique("k"))
        psql("INSERT INTO plan_bindings (plan_id, binding_id) VALUES (%d, %d)" % (fixture.plan_id, binding))
        eligible = "SELECT count(*) FROM binding_eligible_users WHERE binding_id = %d" % binding
        self.assertEqual(psql(eligible), "1")
        post(TRAFFIC, report(fixture.node_id, [record(fixture.subscription_id, 60, 0)]))
        self.assertEqual(psql(eligible), "1")
        post(TRAFFIC, report(fixture.node_id, [record(fixture.subscription_id, 60, 0)]))
        self.assertEqual(psql(eligible), "0")
        self.assertEqual(used_of(fixture.subscription_id), 120)


class NodeEventTest(unittest.TestCase):
    def health(self, binding):
        return psql("SELECT health_status, last_heartbeat_at IS NOT NULL FROM protocol_bindings WHERE id = %d"
                    % binding)

    def test_node_events_change_binding_health(self):
        node_id = new_node()
        kernel_id = unique("kernel")
        binding = new_binding(node_id, kernel_id)
        other_node = new_node()
        other = new_binding(other_node, kernel_id)  # the same kernel id on another node stays untouched
        path = EVENTS + "?node_id=%d" % node_id
        self.assertEqual(self.health(binding), "0|f")

        res = post(path, {"event": "node_degraded", "id": kernel_id, "status": "degraded", "message": "slow",
                          "observed_at": int(time.time())})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json(), {"status": "accepted", "binding_id": binding, "health_status": 2})
        self.assertEqual(self.health(binding), "2|t")

        res = post(path, {"event": "node_unhealthy", "id": kernel_id, "observed_at": INT64_MAX})
        self.assertEqual(res.status, 200, res)  # a timestamp beyond now is taken as now
        self.assertEqual(res.json()["health_status"], 3)
        res = post(path, {"event": "node_healthy", "node_id": kernel_id, "status": "Healthy"})
        self.assertEqual(res.json()["health_status"], 1)
        res = post(path, {"event": "node.removed", "id": kernel_id})
        self.assertEqual(res.json()["health_status"], 4)
        self.assertEqual(self.health(binding), "4|t")
        self.assertEqual(self.health(other), "0|f")

        res = post(path, {"event": "node_healthy", "id": "no-such-kernel-id"})
        self.assertEqual(res.json(), {"status": "ignored", "binding_id": 0, "health_status": 0})
        self.assertEqual(post(path, {"event": "node_healthy"}).status, 400)
        self.assertEqual(post(EVENTS, {"event": "node_healthy", "id": kernel_id}).status, 400)


class ServiceEventTest(unittest.TestCase):
    def send(self, node_id, used, event_id=None, event="user.traffic.reported", **payload):
        body = {"event": event, "payload": dict(payload, current={"used": used})}
        if event_id is not None:
            body["event_id"] = event_id
        res = post(SERVICE_EVENTS + "?node_id=%d" % node_id, body)
        self.assertEqual(res.status, 200, res)
        return res.json()

    def test_absolute_values_become_increments(self):
        fixture = Fixture(snapshot={"vless": 2})
        node = fixture.node_id
        sub = fixture.subscription_id
        self.assertEqual(self.send(node, 1000, "e1", user_id=fixture.user_id, protocol="vless")["raw_delta"], 1000)
        self.assertEqual(used_of(sub), 2000)
        self.assertEqual(self.send(node, 1500, "e2", user_id=str(fixture.user_id), protocol="vless")["raw_delta"],
                         500)
        self.assertEqual(used_of(sub), 3000)

        # a retransmitted event adds nothing
        again = self.send(node, 1500, "e2", user_id=fixture.user_id, protocol="vless")
        self.assertEqual((again["duplicate"], again["raw_delta"]), (True, 0))
        # the same absolute value under a new id adds nothing either
        self.assertEqual(self.send(node, 1500, "e3", user_id=fixture.user_id, protocol="vless")["raw_delta"], 0)
        self.assertEqual(used_of(sub), 3000)

        # a lower value means the kernel counter restarted: all of it counts
        self.assertEqual(self.send(node, 200, "e4", event="user_traffic_reported", subscription_id=sub,
                                   protocol="vless")["raw_delta"], 200)
        self.assertEqual(used_of(sub), 3400)

        # another node's absolute values are tracked apart
        other = new_node()
        self.assertEqual(self.send(other, 100, "e1", user_id=fixture.user_id)["raw_delta"], 100)
        self.assertEqual(used_of(sub), 3500)

        # the incremental path and the absolute path add up in one ledger
        post(TRAFFIC, report(node, [record(sub, 50, 0)]))
        self.assertEqual(used_of(sub), 3550)

    def test_other_events_and_bad_payloads(self):
        fixture = Fixture()
        path = SERVICE_EVENTS + "?node_id=%d" % fixture.node_id
        res = post(path, {"event": "user.quota.changed", "payload": {"user_id": fixture.user_id, "used": 5}})
        self.assertEqual(res.json()["status"], "ignored")
        res = post(path, {"event": "user.traffic.reported", "payload": {"user_id": fixture.user_id}})
        self.assertEqual(res.status, 400, res)
        res = post(path, {"event": "user.traffic.reported", "payload": {"user_id": fixture.user_id, "used": -1}})
        self.assertEqual(res.status, 400, res)
        res = post(path, {"event": "user.traffic.reported", "payload": "not an object"})
        self.assertEqual(res.status, 400, res)
        res = post(path, {"event": "user.traffic.reported", "payload": {"used": 5}})
        self.assertEqual(res.json()["status"], "ignored")
        self.assertEqual(used_of(fixture.subscription_id), 0)


class UserTrafficViewTest(unittest.TestCase):
    def view(self, token, subscription_id, query=""):
        return server.request("GET", "/api/v1/user/subscriptions/%d/traffic%s" % (subscription_id, query),
                              headers={"Authorization": "Bearer " + token})

    def test_traffic_by_day_and_protocol(self):
        fixture = Fixture(snapshot={"vless": 2})
        token = token_of(fixture.email, PASSWORD)
        base = datetime.datetime.now(datetime.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        base -= datetime.timedelta(days=3)
        # 15:30 UTC is 23:30 in Shanghai (same day); 16:30 UTC is 00:30 of the next day there
        late = int((base + datetime.timedelta(hours=15, minutes=30)).timestamp())
        after_midnight = int((base + datetime.timedelta(hours=16, minutes=30)).timestamp())
        day1 = base.date().isoformat()
        day2 = (base.date() + datetime.timedelta(days=1)).isoformat()
        records = [
            record(fixture.subscription_id, 100, 0, "vless", observed_at=late),
            record(fixture.subscription_id, 10, 0, "ss", observed_at=late),
            record(fixture.subscription_id, 0, 7, "vless", observed_at=after_midnight),
            record(fixture.subscription_id, 1, 0, "vless", observed_at=late - 86400 * 40),  # outside the default
        ]
        self.assertEqual(post(TRAFFIC, report(fixture.node_id, records)).json()["accepted"], 4)

        res = self.view(token, fixture.subscription_id)
        self.assertEqual(res.status, 200, res)
        body = res.json()
        self.assertEqual(body["time_zone"], "Asia/Shanghai")
        self.assertEqual(body["items"], [
            {"day": day1, "protocol": "ss", "raw_bytes": 10, "charged_bytes": 10},
            {"day": day1, "protocol": "vless", "raw_bytes": 100, "charged_bytes": 200},
            {"day": day2, "protocol": "vless", "raw_bytes": 7, "charged_bytes": 14},
        ])
        self.assertEqual((body["total_raw_bytes"], body["total_charged_bytes"]), (117, 224))
        start = datetime.date.fromisoformat(body["from"])
        end = datetime.date.fromisoformat(body["to"])
        self.assertEqual((end - start).days, 29)

        res = self.view(token, fixture.subscription_id, "?from=%s&to=%s" % (day2, day2))
        self.assertEqual([item["raw_bytes"] for item in res.json()["items"]], [7])
        self.assertEqual(res.json()["total_charged_bytes"], 14)

        older = (base.date() - datetime.timedelta(days=60)).isoformat()
        res = self.view(token, fixture.subscription_id, "?from=%s&to=%s" % (older, day1))
        self.assertEqual(res.json()["total_raw_bytes"], 111)

    def test_rejects_other_users_and_bad_ranges(self):
        fixture = Fixture()
        stranger = Fixture()
        token = token_of(fixture.email, PASSWORD)
        self.assertEqual(self.view(token, stranger.subscription_id).status, 404)
        self.assertEqual(self.view(token, fixture.subscription_id, "?from=2026-02-30").status, 400)
        self.assertEqual(self.view(token, fixture.subscription_id, "?from=2026-12-05&to=2026-12-01").status, 400)
        self.assertEqual(self.view(token, fixture.subscription_id, "?from=2024-01-01&to=2026-01-01").status, 400)
        self.assertEqual(self.view(token, fixture.subscription_id, "?from=20261201").status, 400)
        res = server.request("GET", "/api/v1/user/subscriptions/%d/traffic" % fixture.subscription_id)
        self.assertEqual(res.status, 401)


@unittest.skipUnless(harness.grpc_client_available(), "node and tests/integration/node_modules are required")
class GrpcReportTest(unittest.TestCase):
    METHOD = "/znp.kernel.v1.KernelReports/ReportTraffic"

    def node_token(self, node_id):
        token = "znp-node-" + uuid.uuid4().hex
        psql("INSERT INTO node_backend_tokens (node_id, token_hash) VALUES (%d, '%s')"
             % (node_id, hashlib.sha256(token.encode()).hexdigest()))
        return token

    def call(self, method, message, token):
        args = ["call", server.grpc_addr, method, json.dumps(message)]
        if token is not None:
            args += ["-H", "authorization:Bearer " + token]
        proc = harness.grpc_run(*args)
        return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])

    def test_report_traffic_with_node_token(self):
        fixture = Fixture()
        token = self.node_token(fixture.node_id)
        message = {"report_id": unique("grpc"),
                   "records": [{"subscription_id": fixture.subscription_id, "bytes_up": 300, "bytes_down": 200,
                                "protocol": "vless"}]}
        code, answer = self.call(self.METHOD, message, token)
        self.assertEqual(code, 0, answer)
        self.assertEqual((answer["accepted"], answer["failed"], answer["duplicate"]), (1, 0, False))
        code, answer = self.call(self.METHOD, message, token)
        self.assertEqual(code, 0, answer)
        self.assertEqual((answer["accepted"], answer["duplicate"]), (1, True))
        self.assertEqual(used_of(fixture.subscription_id), 500)
        self.assertEqual(psql("SELECT node_id FROM traffic_reports WHERE report_id = '%s'" % message["report_id"]),
                         str(fixture.node_id))

        # the HTTP callback with the same node and report id is the same report
        res = post(TRAFFIC, report(fixture.node_id, message["records"], message["report_id"]))
        self.assertEqual(res.json()["duplicate"], True)
        self.assertEqual(used_of(fixture.subscription_id), 500)

        # negative counters are rejected per record over gRPC too
        code, answer = self.call(self.METHOD, {"records": [{"subscription_id": fixture.subscription_id,
                                                            "bytes_up": -1}]}, token)
        self.assertEqual(code, 0, answer)
        self.assertEqual(answer["rejected"][0]["index"], 0)

    def test_report_traffic_rejects_bad_tokens(self):
        fixture = Fixture()
        token = self.node_token(fixture.node_id)
        message = {"records": [{"subscription_id": fixture.subscription_id, "bytes_up": 1}]}
        code, answer = self.call(self.METHOD, message, None)
        self.assertEqual((code, answer["error"]["name"]), (1, "UNAUTHENTICATED"))
        code, answer = self.call(self.METHOD, message, "znp-node-wrong")
        self.assertEqual((code, answer["error"]["name"]), (1, "UNAUTHENTICATED"))
        # the webhook token is not a node token
        code, answer = self.call(self.METHOD, message, SHARED_TOKEN)
        self.assertEqual((code, answer["error"]["name"]), (1, "UNAUTHENTICATED"))
        other_node = new_node()
        code, answer = self.call(self.METHOD, dict(message, node_id=other_node), token)
        self.assertEqual((code, answer["error"]["name"]), (1, "PERMISSION_DENIED"))
        self.assertEqual(used_of(fixture.subscription_id), 0)

    def test_report_events_with_node_token(self):
        fixture = Fixture()
        token = self.node_token(fixture.node_id)
        kernel_id = unique("kernel")
        binding = new_binding(fixture.node_id, kernel_id)
        code, answer = self.call("/znp.kernel.v1.KernelReports/ReportEvents",
                                 {"event": "node_unhealthy", "id": kernel_id}, token)
        self.assertEqual(code, 0, answer)
        self.assertEqual((answer["status"], answer["binding_id"], answer["health_status"]),
                         ("accepted", binding, 3))


if __name__ == "__main__":
    unittest.main()

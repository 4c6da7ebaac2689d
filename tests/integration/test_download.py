"""Public subscription download (GET /api/v1/subscriptions/{token} and GET /s/{token}).

One server for the module, with a CJK site name and a 12-hour update
interval. Users, the plan and the subscriptions are made through the admin
API; the expired and quota cases move the row with psql, as the scheduled job
will. The plan here has no protocol entries, so an active subscription
renders an empty but valid file; test_download_entries.py covers entries.
Run alone: /usr/bin/python3 tests/integration/run.py test_download
"""

import base64
import hashlib
import json
import os
import re
import time
import unittest
import urllib.parse

from tests.integration import harness

server = None
ADMIN = ("download-admin@example.com", "admin-pass-4Rt8")
PASSWORD = "member-pass-2Lw6"
SITE_NAME = "云加速 Cloud"
_state = {"counter": 0}

FC03 = [
    ("karing/1.1.0 singbox/1.12.0 clashmeta mihomo/1.19.0", "sing-box"),
    ("FlClash/v0.8.35 clash-verge/v1.6.6 Platform/android", "clash-meta"),
    ("ClashMeta/1.19.28; mihomo/1.19.28", "clash-meta"),
    ("SFI/1.12.1 (Build 1; sing-box 1.11.3; language en_US)", "sing-box"),
    ("Stash/2.4", "stash"),
    ("Shadowrocket/2.2", "base64"),
    ("Quantumult%20X/1.4", "quantumult-x"),
    (None, "base64"),
]
CONTENT_TYPES = {
    "sing-box": "application/json",
    "sip008": "application/json",
    "clash-meta": "text/yaml; charset=utf-8",
    "clash": "text/yaml; charset=utf-8",
    "stash": "text/yaml; charset=utf-8",
    "base64": "text/plain; charset=utf-8",
    "surge": "text/plain; charset=utf-8",
    "quantumult-x": "text/plain; charset=utf-8",
    "loon": "text/plain; charset=utf-8",
}


def setUpModule():
    global server
    # the loopback peer is a trusted proxy, so a test can send as another client address with X-Forwarded-For
    server = harness.Server("download", config={"site": {"name": SITE_NAME, "subscription_update_hours": 12},
                                                "server": {"trusted_proxies": "127.0.0.1"}})
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


def admin_call(method, path, body=None):
    if "admin" not in _state:
        res = server.login(*ADMIN)
        if res.status != 200:
            raise AssertionError("admin login failed: %r" % res)
        _state["admin"] = res.json()["access_token"]
    return server.request(method, path, body=body, headers={"Authorization": "Bearer " + _state["admin"]})


def psql(sql):
    return harness.EmbeddedCluster(server.data_dir).psql(sql, database=server.database_name()).strip()


def plan_id():
    if "plan" not in _state:
        res = admin_call("POST", "/api/v1/admin/plans",
                         {"name": "Download plan", "traffic_limit_bytes": 5000, "status": 2, "visible": True})
        if res.status != 201:
            raise AssertionError("create plan failed: %r" % res)
        _state["plan"] = res.json()["plan"]["id"]
    return _state["plan"]


def new_subscription():
    """A fresh user with one active subscription; returns the subscription object."""
    _state["counter"] += 1
    address = "download%d-%d@example.com" % (_state["counter"], os.getpid())
    res = admin_call("POST", "/api/v1/admin/users", {"email": address, "password": PASSWORD})
    if res.status != 201:
        raise AssertionError("create user failed: %r" % res)
    res = admin_call("POST", "/api/v1/admin/subscriptions",
                     {"user_id": res.json()["user"]["id"], "plan_id": plan_id()})
    if res.status != 201:
        raise AssertionError("create subscription failed: %r" % res)
    return res.json()["subscription"]


def download(token, user_agent=None, query="", headers=None, short=False):
    path = ("/s/%s" if short else "/api/v1/subscriptions/%s") % token
    all_headers = dict(headers or {})
    if user_agent is not None:
        all_headers["User-Agent"] = user_agent
    return server.request("GET", path + query, headers=all_headers)


def userinfo(res):
    fields = {}
    for part in res.header("subscription-userinfo").split(";"):
        key, _, value = part.strip().partition("=")
        fields[key] = int(value)
    return fields


class ClientFormats(unittest.TestCase):
    def test_fc03_user_agents_pick_their_format(self):
        token = new_subscription()["token"]
        for agent, name in FC03:
            with self.subTest(agent=agent):
                res = download(token, agent)
                self.assertEqual(res.status, 200, res)
                self.assertEqual(res.header("content-type"), CONTENT_TYPES[name])
                if name == "sing-box":
                    self.assertIn("outbounds", json.loads(res.body.decode("utf-8")))
                elif name in ("clash-meta", "stash"):
                    self.assertIn(b"proxies:", res.body)

    def test_flag_overrides_the_user_agent(self):
        token = new_subscription()["token"]
        for flag, name in [("clash-meta", "clash-meta"), ("sing-box", "sing-box"), ("sip008", "sip008"),
                           ("surge", "surge"), ("base64", "base64"), ("v2rayng", "base64")]:
            with self.subTest(flag=flag):
                res = download(token, "Stash/2.4", "?flag=" + flag)
                self.assertEqual(res.status, 200, res)
                self.assertEqual(res.header("content-type"), CONTENT_TYPES[name])
        res = download(token, "Stash/2.4", "?format=sing-box")
        self.assertEqual(res.header("content-type"), "application/json")
        res = download(token, None, "?flag=sip008")
        self.assertEqual(json.loads(res.body.decode("utf-8")).get("version"), 1)

    def test_repeated_requests_keep_their_format(self):
        # The first round renders each file, and the next two come from the cache. There the detected client is
        # remembered per User-Agent, flag and Accept value, so each case must keep its own format and ETag.
        cases = [(agent, "", None, CONTENT_TYPES[name]) for agent, name in FC03] + [
            ("Stash/2.4", "?flag=sing-box", None, "application/json"),
            (None, "", {"Accept": "text/html"}, "text/html; charset=utf-8"),
            ("ClashMeta/1.19.28; mihomo/1.19.28", "?flag=base64", None, CONTENT_TYPES["base64"]),
            ("ClashMeta/1.19.28; mihomo/1.19.28", "", {"Accept": "text/html"}, CONTENT_TYPES["clash-meta"]),
        ]
        # two tokens, so that the three rounds stay under the per-token limit of 30 a minute, and an address of
        # their own, so that they leave the per-address bucket of the other tests alone
        tokens = [new_subscription()["token"], new_subscription()["token"]]
        first = {}
        for round_number in range(3):
            for i, (agent, query, headers, content_type) in enumerate(cases):
                with self.subTest(round=round_number, agent=agent, query=query, headers=headers):
                    res = download(tokens[i % 2], agent, query, headers=dict(headers or {}, **{
                        "X-Forwarded-For": "192.0.2.77"}))
                    self.assertEqual(res.status, 200, res)
                    self.assertEqual(res.header("content-type"), content_type)
                    self.assertEqual(first.setdefault(i, res.header("etag")), res.header("etag"))

    def test_short_alias_gives_the_same_file(self):
        token = new_subscription()["token"]
        long_res = download(token, "ClashMeta/1.19.28; mihomo/1.19.28")
        short_res = download(token, "ClashMeta/1.19.28; mihomo/1.19.28", short=True)
        self.assertEqual(short_res.status, 200, short_res)
        self.assertEqual(short_res.body, long_res.body)
        self.assertEqual(short_res.header("etag"), long_res.header("etag"))


class Headers(unittest.TestCase):
    def test_etag_and_not_modified(self):
        token = new_subscription()["token"]
        res = download(token, "Stash/2.4")
        etag = res.header("etag")
        # the first 128 bits of the body's SHA-256 in base64url, quoted
        digest = hashlib.sha256(res.body).digest()[:16]
        self.assertEqual(etag, '"%s"' % base64.urlsafe_b64encode(digest).rstrip(b"=").decode())
        for value in [etag, "W/" + etag, '"nope", ' + etag, "*"]:
            with self.subTest(if_none_match=value):
                again = download(token, "Stash/2.4", headers={"If-None-Match": value})
                self.assertEqual(again.status, 304, again)
                self.assertEqual(again.body, b"")
                self.assertEqual(again.header("etag"), etag)
        changed = download(token, "Stash/2.4", headers={"If-None-Match": '"0000"'})
        self.assertEqual(changed.status, 200)
        other = download(token, "Stash/2.4", "?flag=sing-box", headers={"If-None-Match": etag})
        self.assertEqual(other.status, 200)
        self.assertNotEqual(other.header("etag"), etag)

    def test_userinfo_interval_and_disposition(self):
        sub = new_subscription()
        psql("UPDATE subscriptions SET traffic_used_bytes = 1234, traffic_total_bytes = 5000,"
             " expires_at = to_timestamp(4102444800) WHERE id = %d" % sub["id"])
        res = download(sub["token"], "ClashMeta/1.19.28; mihomo/1.19.28")
        self.assertEqual(res.status, 200, res)
        self.assertEqual(userinfo(res), {"upload": 0, "download": 1234, "total": 5000, "expire": 4102444800})
        self.assertEqual(res.header("profile-update-interval"), "12")
        disposition = res.header("content-disposition")
        match = re.fullmatch(r'attachment; filename="([ -~]*)"; filename\*=UTF-8\'\'(\S+)', disposition)
        self.assertIsNotNone(match, disposition)
        self.assertEqual(match.group(1), "___ Cloud")
        self.assertEqual(urllib.parse.unquote(match.group(2), errors="strict"), SITE_NAME)

    def test_unknown_token_is_not_found(self):
        for token in ["AAAAAAAAAAAAAAAAAAAAAA", "short", "x" * 64]:
            with self.subTest(token=token):
                res = download(token, "Stash/2.4")
                self.assertEqual(res.status, 404, res)
                self.assertEqual(res.json()["error"], "not_found")
                self.assertIsNone(res.header("subscription-userinfo"))

    def test_security_headers_per_response_kind(self):
        # a file for a program and its 304 go without Content-Security-Policy, but keep the other security headers
        token = new_subscription()["token"]
        first = download(token, "ClashMeta/1.19.28; mihomo/1.19.28")
        again = download(token, "ClashMeta/1.19.28; mihomo/1.19.28", headers={"If-None-Match": first.header("etag")})
        for res, status in [(first, 200), (again, 304)]:
            with self.subTest(status=status):
                self.assertEqual(res.status, status, res)
                self.assertIsNone(res.header("content-security-policy"))
                self.assertEqual(res.header("x-content-type-options"), "nosniff")
                self.assertEqual(res.header("referrer-policy"), "no-referrer")
                self.assertTrue(res.header("x-request-id"))

        # the page for a browser, a JSON file (sing-box) and the error envelope keep it
        page = download(token, Browsers.BROWSER, headers={"Accept": "text/html"})
        json_file = download(token, "SFI/1.12.1 (Build 1; sing-box 1.11.3; language en_US)")
        missing = download("AAAAAAAAAAAAAAAAAAAAAA", "Stash/2.4")
        for res, status in [(page, 200), (json_file, 200), (missing, 404)]:
            with self.subTest(status=status):
                self.assertEqual(res.status, status, res)
                self.assertIn("frame-ancestors 'none'", res.header("content-security-policy") or "")
                self.assertEqual(res.header("x-content-type-options"), "nosniff")

    def test_token_rate_limit(self):
        token = new_subscription()["token"]
        # the bucket refills one token every 2 s, so a slow run (valgrind) may get a few more than the burst
        allowed = 0
        res = download(token, "Shadowrocket/2.2")
        while res.status == 200 and allowed < 45:
            allowed += 1
            res = download(token, "Shadowrocket/2.2")
        self.assertGreaterEqual(allowed, 30)
        self.assertEqual(res.status, 429, res)
        self.assertEqual(res.json()["error"], "too_many_requests")
        self.assertGreaterEqual(int(res.header("retry-after")), 1)
        self.assertEqual(download(new_subscription()["token"], "Shadowrocket/2.2").status, 200)

    def test_reset_token_stops_the_old_one(self):
        sub = new_subscription()
        res = admin_call("POST", "/api/v1/admin/subscriptions/%d/reset-token" % sub["id"])
        if res.status not in (200, 201):
            self.skipTest("token reset route answered %d" % res.status)
        self.assertEqual(download(sub["token"]).status, 404)


class BlockedSubscriptions(unittest.TestCase):
    def info_names(self, token, agent, query=""):
        res = download(token, agent, query)
        self.assertEqual(res.status, 200, res)
        if res.header("content-type") == "application/json":
            doc = json.loads(res.body.decode("utf-8"))
            if "servers" in doc:
                return [s["remarks"] for s in doc["servers"]]
            return [o["tag"] for o in doc["outbounds"] if o.get("type") == "shadowsocks"]
        text = res.body.decode("utf-8")
        if text.startswith("proxies:") or "\nproxies:" in text or text.startswith("port") or "proxies:" in text:
            return re.findall(r'name: "([^"]*)"', text.split("proxy-groups:")[0])
        links = base64.b64decode(text).decode("utf-8").split()
        return [urllib.parse.unquote(link.split("#", 1)[1]) for link in links]

    def test_disabled_gets_one_informational_entry(self):
        sub = new_subscription()
        res = admin_call("POST", "/api/v1/admin/subscriptions/%d/disable" % sub["id"], {})
        self.assertEqual(res.status, 200, res)
        for agent, query in [("Shadowrocket/2.2", ""), ("ClashMeta/1.19.28; mihomo/1.19.28", ""),
                             ("SFI/1.12.1 (Build 1; sing-box 1.11.3; language en_US)", ""), (None, "?flag=sip008")]:
            with self.subTest(agent=agent, query=query):
                names = self.info_names(sub["token"], agent, query)
                self.assertEqual(len(names), 1, names)
                self.assertIn("disabled", names[0])

    def test_expired_gets_one_informational_entry(self):
        sub = new_subscription()
        psql("UPDATE subscriptions SET expires_at = now() - interval '1 day' WHERE id = %d" % sub["id"])
        names = self.info_names(sub["token"], "ClashMeta/1.19.28; mihomo/1.19.28")
        self.assertEqual(len(names), 1, names)
        self.assertIn("expired", names[0])
        res = download(sub["token"], "Shadowrocket/2.2")
        self.assertLess(0, userinfo(res)["expire"])
        self.assertLess(userinfo(res)["expire"], time.time())

    def test_quota_used_up_gets_one_informational_entry(self):
        sub = new_subscription()
        psql("UPDATE subscriptions SET traffic_total_bytes = 100, traffic_used_bytes = 100 WHERE id = %d" % sub["id"])
        names = self.info_names(sub["token"], "Shadowrocket/2.2")
        self.assertEqual(len(names), 1, names)
        self.assertIn("quota", names[0])

    def test_plan_without_entries_gets_an_empty_file(self):
        sub = new_subscription()
        res = download(sub["token"], "Shadowrocket/2.2")
        self.assertEqual(res.status, 200, res)
        self.assertEqual(base64.b64decode(res.body), b"")


class Browsers(unittest.TestCase):
    BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"

    def test_browser_gets_a_page_in_its_language(self):
        token = new_subscription()["token"]
        for language, needle in [("en-US,en;q=0.9", "import"), ("zh-CN,zh;q=0.9", "导入")]:
            with self.subTest(language=language):
                res = download(token, self.BROWSER,
                               headers={"Accept": "text/html,application/xhtml+xml", "Accept-Language": language})
                self.assertEqual(res.status, 200, res)
                self.assertEqual(res.header("content-type"), "text/html; charset=utf-8")
                body = res.body.decode("utf-8")
                self.assertIn(needle, body)
                self.assertIn("云加速", body)
                self.assertNotIn("ss://", body)
                self.assertIsNone(res.header("subscription-userinfo"))

    def test_flag_beats_the_browser(self):
        token = new_subscription()["token"]
        res = download(token, self.BROWSER, "?flag=clash-meta", headers={"Accept": "text/html"})
        self.assertEqual(res.header("content-type"), "text/yaml; charset=utf-8")


if __name__ == "__main__":
    unittest.main()


class TemplateDownloadTest(unittest.TestCase):
    """Published templates: the default for the clash client type renders for a clash User-Agent."""

    TEMPLATES = "/api/v1/admin/subscription-templates"
    CLASH_UA = "clash/1.18.0"
    BODY = ("# {{.template.name}} v{{.template.version}} for {{.subscription.id}} {{.user_identity.account}}\n"
            "# name {{.subscription.name}}\n")

    @classmethod
    def setUpClass(cls):
        res = admin_call("POST", cls.TEMPLATES, {"name": "Download clash", "client_type": "clash",
                                                 "content": cls.BODY, "is_default": True})
        if res.status != 201:
            raise AssertionError("create template failed: %r" % res)
        cls.path = "%s/%d" % (cls.TEMPLATES, res.json()["template"]["id"])
        res = admin_call("POST", cls.path + "/publish", {})
        if res.status != 200:
            raise AssertionError("publish failed: %r" % res)
        res = admin_call("PATCH", cls.path, {"content": "# draft only\n"})
        if res.status != 200:
            raise AssertionError("draft edit failed: %r" % res)

    def published_version(self):
        return int(psql("SELECT max(v.version) FROM subscription_template_versions v"
                        " JOIN subscription_templates t ON t.id = v.template_id WHERE t.name = 'Download clash'"))

    def test_published_template_renders_and_draft_does_not(self):
        sub = new_subscription()
        res = download(sub["token"], self.CLASH_UA)
        self.assertEqual(res.status, 200, res)
        text = res.body.decode("utf-8")
        # user_identity.account is the user's credential UUID, as in the reference panel
        self.assertRegex(text, r"^# Download clash v%d for %d [0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-"
                               r"[0-9a-f]{12}\n" % (self.published_version(), sub["id"]))
        self.assertNotIn("draft", text)
        self.assertEqual(res.header("content-type"), CONTENT_TYPES["clash"])
        # another client type keeps the built-in format
        res = download(sub["token"], "Stash/2.4")
        self.assertNotIn("Download clash", res.body.decode("utf-8"))

    def test_each_token_gets_its_own_body(self):
        first, second = new_subscription(), new_subscription()
        for _ in range(2):
            for sub in (first, second):
                text = download(sub["token"], self.CLASH_UA).body.decode("utf-8")
                self.assertIn(" for %d " % sub["id"], text)

    def test_new_version_changes_body_and_etag(self):
        token = new_subscription()["token"]
        before = download(token, self.CLASH_UA)
        self.assertEqual(admin_call("PATCH", self.path, {"content": self.BODY + "# second\n"}).status, 200)
        self.assertEqual(admin_call("POST", self.path + "/publish", {}).status, 200)
        after = download(token, self.CLASH_UA)
        self.assertEqual(after.status, 200, after)
        self.assertIn("# second", after.body.decode("utf-8"))
        self.assertNotEqual(before.header("etag"), after.header("etag"))
        res = download(token, self.CLASH_UA, headers={"If-None-Match": before.header("etag")})
        self.assertEqual(res.status, 200, res)

    def test_disabled_subscription_stops_getting_the_template(self):
        sub = new_subscription()
        self.assertIn("Download clash", download(sub["token"], self.CLASH_UA).body.decode("utf-8"))
        res = admin_call("PATCH", "/api/v1/admin/subscriptions/%d" % sub["id"], {"status": 2})
        self.assertEqual(res.status, 200, res)
        text = download(sub["token"], self.CLASH_UA).body.decode("utf-8")
        self.assertNotIn("Download clash", text)
        self.assertIn("Subscription disabled", text)

    def test_cached_response_lags_only_in_traffic(self):
        sub = new_subscription()
        self.assertIn("# name %s\n" % sub["name"], download(sub["token"], self.CLASH_UA).body.decode("utf-8"))
        # the first download created the user's credential, whose notification empties the cache; let it arrive
        time.sleep(harness.scaled(0.5))
        self.assertIn("download=0;", download(sub["token"], self.CLASH_UA).header("subscription-userinfo"))
        # counting traffic below the quota sends no notification: the cached response keeps the old figure
        # (download.cache_ttl_s at most)
        psql("UPDATE subscriptions SET traffic_used_bytes = 1234 WHERE id = %d" % sub["id"])
        self.assertIn("download=0;", download(sub["token"], self.CLASH_UA).header("subscription-userinfo"))
        # a rename, even one made without the API, notifies through the trigger of migration 0019
        psql("UPDATE subscriptions SET name = 'Renamed quietly' WHERE id = %d" % sub["id"])
        res = harness.wait_until(lambda: (lambda r: r if "# name Renamed quietly\n" in r.body.decode("utf-8") else None)(
            download(sub["token"], self.CLASH_UA)), timeout=harness.scaled(5), interval=0.05)
        self.assertIsNotNone(res)
        self.assertIn("download=1234;", res.header("subscription-userinfo"))
        # a bare NOTIFY with the id drops the cached response too
        psql("UPDATE subscriptions SET traffic_used_bytes = 777 WHERE id = %d" % sub["id"])
        self.assertIn("download=1234;", download(sub["token"], self.CLASH_UA).header("subscription-userinfo"))
        psql("NOTIFY znp_subscriptions, '%d'" % sub["id"])
        res = harness.wait_until(lambda: (lambda r: r if "download=777;" in r.header("subscription-userinfo") else None)(
            download(sub["token"], self.CLASH_UA)), timeout=harness.scaled(5), interval=0.05)
        self.assertIsNotNone(res)

    def test_context_has_every_sample_key(self):
        # each key the publish check's sample data has outside the node list
        keys = ["subscription." + k for k in (
            "id", "name", "plan", "plan_id", "plan_snapshot", "status", "token", "expires_at", "traffic_total_bytes",
            "traffic_used_bytes", "traffic_remaining_bytes", "devices_limit", "available_template_ids")]
        keys += ["user_identity." + k for k in (
            "version", "status", "account_id", "account", "password", "id", "uuid", "username", "secret")]
        keys += ["template.id", "template.name", "template.format", "template.version", "generated_at", "nodes",
                 "protocol_bindings"]
        content = "".join("%s={{.%s}}\n" % (k, k) for k in keys)
        res = admin_call("POST", self.TEMPLATES, {"name": "Download surge", "client_type": "surge",
                                                  "content": content, "is_default": True})
        self.assertEqual(res.status, 201, res)
        tid = res.json()["template"]["id"]
        res = admin_call("POST", "%s/%d/publish" % (self.TEMPLATES, tid), {})
        self.assertEqual(res.status, 200, res)
        sub = new_subscription()
        text = download(sub["token"], "Surge/5.0").body.decode("utf-8")
        self.assertNotIn("<no value>", text)
        self.assertIn("subscription.token=%s\n" % sub["token"], text)
        self.assertIn("subscription.status=active\n", text)
        self.assertIn("template.version=1\n", text)

    def test_failing_template_falls_back_to_the_built_in_file(self):
        token = new_subscription()["token"]
        built_in = download(token, "Loon/3.0").body
        res = admin_call("POST", self.TEMPLATES, {"name": "Download loon", "client_type": "loon",
                                                  "content": "{{range .nodes}}{{end}}ok\n", "is_default": True})
        self.assertEqual(res.status, 201, res)
        tid = res.json()["template"]["id"]
        self.assertEqual(admin_call("POST", "%s/%d/publish" % (self.TEMPLATES, tid), {}).status, 200)
        self.assertEqual(download(token, "Loon/3.0").body, b"ok\n")
        # a published version that fails at render time must not reach the client
        psql("INSERT INTO subscription_template_versions (template_id, version, content, format)"
             " VALUES (%d, 2, '{{range .nodes}}{{end}}{{len 7}}', 'text')" % tid)
        # written past the API, so the cached file goes when the NOTIFY of the insert arrives
        deadline = time.monotonic() + harness.scaled(10)
        res = download(token, "Loon/3.0")
        while res.body == b"ok\n" and time.monotonic() < deadline:
            time.sleep(0.1)
            res = download(token, "Loon/3.0")
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.body, built_in)
        self.assertEqual(res.header("content-type"), CONTENT_TYPES["loon"])
        with open(server.log_path, encoding="utf-8") as log:
            self.assertIn("template %d version 2 failed" % tid, log.read())

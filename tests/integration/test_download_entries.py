"""Subscription downloads with protocol entries, on two instances sharing one database.

Instance A owns the embedded cluster; instance B connects to it with the same
master key, as two instances of one deployment do. Nodes, bindings and
entries are written with psql (the admin API for them is tested in
test_bindings.py), except the cross-instance case, which changes an entry
through A's admin API and reads it through B. A write that neither instance
made reaches their caches through NOTIFY, so those checks poll for a few
seconds. Entry and binding rows notify on znp_eligibility, and node rows on
znp_subscriptions (migration 0019). WarmResponses checks
that a repeated download runs no query and that every kind of write drops
the cached response on both instances. GzipEncoding checks the gzip form a
client gets when its Accept-Encoding allows it. Also covers the user node view
GET /api/v1/user/nodes.
Run alone: /usr/bin/python3 tests/integration/run.py test_download_entries
"""

import base64
import gzip
import json
import os
import re
import subprocess
import time
import unittest
import urllib.parse

import yaml

from tests.integration import harness
from tests.integration import test_download_golden as golden

first = second = None
ADMIN = ("entries-admin@example.com", "admin-pass-7Hq2")
PASSWORD = "member-pass-5Kd9"
_state = {"counter": 0}

EMOJI = "\U0001F1F8\U0001F1EC SG-01 \u2708 \u9999\u6e2f \"x\""
RESERVED = "HKG 01 #A&B=C/D?%"
SERVER_KEY = "AAECAwQFBgcICQoLDA0ODw=="
PRIVATE_KEY = "binding-private-key-never-served"

# (kind, binding protocol, binding profile, entry name, entry address, port, entry profile)
ENTRIES = [
    ("vmess", "vmess", {"network": "ws", "path": "/ws", "security": "tls"}, EMOJI, "vm.example.com", 443,
     {"sni": "vm.example.com", "host": "cdn.example.com"}),
    ("vless", "vless", {"security": "reality", "flow": "xtls-rprx-vision", "reality_private_key": PRIVATE_KEY},
     "VLESS 日本", "jp.example.com", 443,
     {"public_key": "jNXHt1yRo0vDuchQlIP6Z0ZvjT3KtzVI-T4E7RoLJS0", "short_id": "0123abcd", "sni": "www.example.com",
      "fingerprint": "chrome"}),
    ("trojan", "trojan", {"sni": "tj.example.com", "alpn": ["h2", "http/1.1"]}, RESERVED, "tj.example.com", 443, {}),
    ("ss", "shadowsocks", {"method": "aes-256-gcm"}, "SS 新加坡", "2001:db8::1", 8388, {}),
    ("ss2022", "ss", {"method": "2022-blake3-aes-128-gcm"}, "SS 2022 香港", "ss22.example.com", 8390,
     {"server_key": SERVER_KEY}),
    ("hy2", "hy2", {"obfs": "salamander", "obfs_password": "ob fs", "sni": "hy.example.com"}, "Hysteria2 台北",
     "hy.example.com", 443, {}),
    ("tuic", "tuic", {"congestion_control": "bbr", "alpn": "h3", "sni": "tuic.example.com"}, "TUIC 东京",
     "tuic.example.com", 443, {}),
    # no client format for socks: left out and logged
    ("socks", "socks", {}, "SOCKS 内网", "10.0.0.1", 1080, {}),
    # REALITY without the public key clients need: left out and logged
    ("broken", "vless", {"security": "reality"}, "VLESS broken", "broken.example.com", 443, {}),
]
SERVED = [e for e in ENTRIES if e[0] not in ("socks", "broken")]
NAMES = {e[0]: e[3] for e in ENTRIES}

CLASH_META = "ClashMeta/1.19.28; mihomo/1.19.28"
SING_BOX = "SFI/1.12.1 (Build 1; sing-box 1.11.3; language en_US)"
V2RAYN = "v2rayN/6.31"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


def setUpModule():
    global first, second
    common = {
        "site": {"name": "Entries 节点"},
        # one key for both instances, so both open the credentials either one sealed
        "security": {"master_key": base64.b64encode(os.urandom(32)).decode()},
        # the module sends more downloads from 127.0.0.1 than the download's per-address burst (120) allows;
        # the per-token limit of src/download still applies
        "rate_limits": {"enabled": False},
    }
    first = harness.Server("dl-entries-a", config=common)
    try:
        first.create_admin(*ADMIN)
        first.start()
        second = harness.Server("dl-entries-b", config=harness.deep_merge(common, {
            "database": {"dsn": first.shared_dsn(), "auto_migrate": False}}))
        second.access_secret, second.refresh_secret = first.access_secret, first.refresh_secret
        second.start()
        seed()
    except BaseException:
        for srv in (second, first):
            if srv is not None:
                srv.cleanup()
        raise


def tearDownModule():
    try:
        # B first: A owns the cluster B is connected to
        second.stop_expect_clean()
        first.stop_expect_clean()
    finally:
        second.cleanup()
        first.cleanup()


def psql(sql):
    return harness.EmbeddedCluster(first.data_dir).psql(sql, database=first.database_name()).strip()


def sql_text(value):
    return "'%s'" % value.replace("'", "''")


def admin_call(method, path, body=None, server=None):
    if "admin" not in _state:
        res = first.login(*ADMIN)
        if res.status != 200:
            raise AssertionError("admin login failed: %r" % res)
        _state["admin"] = res.json()["access_token"]
    headers = {"Authorization": "Bearer " + _state["admin"]}
    if isinstance(body, bytes):
        headers["Content-Type"] = "application/json"
    return (server or first).request(method, path, body=body, headers=headers)


def seed():
    """One node with a binding and an entry per kind, and a plan linked to every binding."""
    node = psql("INSERT INTO nodes (name, control_endpoint, status, access_address)"
                " VALUES ('dl-node', 'http://127.0.0.1:9', 1, 'node.example.com') RETURNING id")
    _state["node"] = int(node)
    _state["bindings"], _state["entries"] = {}, {}
    for i, (kind, protocol, bprofile, name, address, port, eprofile) in enumerate(ENTRIES):
        bid = psql("INSERT INTO protocol_bindings (node_id, name, protocol, role, kernel_id, profile)"
                   " VALUES (%s, %s, %s, 'listener', %s, %s::jsonb) RETURNING id"
                   % (node, sql_text(kind), sql_text(protocol), sql_text("k-" + kind), sql_text(json.dumps(bprofile))))
        eid = psql("INSERT INTO protocol_entries (binding_id, name, protocol, entry_address, entry_port, profile,"
                   " sort_order) VALUES (%s, %s, %s, %s, %d, %s::jsonb, %d) RETURNING id"
                   % (bid, sql_text(name), sql_text(protocol), sql_text(address), port, sql_text(json.dumps(eprofile)),
                      i))
        _state["bindings"][kind], _state["entries"][kind] = int(bid), int(eid)
    res = admin_call("POST", "/api/v1/admin/plans", {"name": "Entries plan", "status": 2, "visible": True})
    if res.status != 201:
        raise AssertionError("create plan failed: %r" % res)
    _state["plan"] = res.json()["plan"]["id"]
    psql("INSERT INTO plan_bindings (plan_id, binding_id) SELECT %d, id FROM protocol_bindings WHERE node_id = %s"
         % (_state["plan"], node))


def new_user(with_subscription=True):
    """A fresh user (and an active subscription on the entries plan); returns (email, subscription or None)."""
    _state["counter"] += 1
    email = "entries%d-%d@example.com" % (_state["counter"], os.getpid())
    res = admin_call("POST", "/api/v1/admin/users", {"email": email, "password": PASSWORD})
    if res.status != 201:
        raise AssertionError("create user failed: %r" % res)
    if not with_subscription:
        return email, None
    res = admin_call("POST", "/api/v1/admin/subscriptions", {"user_id": res.json()["user"]["id"], "plan_id": _state["plan"]})
    if res.status != 201:
        raise AssertionError("create subscription failed: %r" % res)
    return email, res.json()["subscription"]


def download(token, user_agent=None, query="", headers=None, server=None, timeout=10.0):
    all_headers = dict(headers or {})
    if user_agent is not None:
        all_headers["User-Agent"] = user_agent
    return (server or first).request("GET", "/api/v1/subscriptions/%s%s" % (token, query), headers=all_headers,
                                     timeout=timeout)


def names_in(res):
    """The entry names of a downloaded file, in file order, whatever its format."""
    text = res.body.decode("utf-8")
    kind = res.header("content-type")
    if kind == "application/json":
        doc = json.loads(text)
        if "servers" in doc:
            return [s["remarks"] for s in doc["servers"]]
        return [o["tag"] for o in doc["outbounds"] if "server" in o]
    if kind.startswith("text/yaml"):
        return [p["name"] for p in yaml.load(text, Loader=yaml.CSafeLoader)["proxies"]]
    if text.startswith("[Proxy]"):
        section = text.split("[Proxy Group]")[0]
        return [line.split(" = ", 1)[0] for line in section.splitlines()[1:] if " = " in line]
    if re.match(r"^(vmess|trojan|shadowsocks)=", text) or text == "":
        return [m.group(1) for m in re.finditer(r"tag=(.*)$", text, re.M)]
    if " = " in text.split("\n", 1)[0]:
        return [line.split(" = ", 1)[0] for line in text.splitlines() if " = " in line]
    links = base64.b64decode(text, validate=True).decode("utf-8").splitlines()
    return [golden.parse_link(link)[0] for link in links]


def links_of(token, server=None):
    res = download(token, V2RAYN, server=server)
    assert res.status == 200, res
    return base64.b64decode(res.body, validate=True).decode("utf-8").splitlines()


class EntriesPerClient(unittest.TestCase):
    def test_each_client_gets_the_entries_it_can_use(self):
        _, sub = new_user()
        served = [e[3] for e in SERVED]
        cases = [
            (CLASH_META, "", served),
            (SING_BOX, "", served),
            (V2RAYN, "", served),
            ("Stash/2.4", "", served),
            ("clash/1.18.0", "", [NAMES["vmess"], NAMES["trojan"], NAMES["ss"]]),
            # Surge and Loon leave out names with a double quote or "="; Quantumult X IPv6 hosts
            ("Surge iOS/2920", "", [NAMES["ss"], NAMES["ss2022"], NAMES["hy2"], NAMES["tuic"]]),
            ("Loon/3.2.1 (iPhone)", "", [NAMES["ss"], NAMES["ss2022"]]),
            ("Quantumult%20X/1.4", "", [NAMES["vmess"], NAMES["trojan"], NAMES["ss2022"]]),
            (None, "?flag=sip008", [NAMES["ss"], NAMES["ss2022"]]),
        ]
        for agent, query, expected in cases:
            with self.subTest(agent=agent, query=query):
                res = download(sub["token"], agent, query)
                self.assertEqual(res.status, 200, res)
                self.assertEqual(names_in(res), expected)
                self.assertNotIn(PRIVATE_KEY.encode(), res.body)
                self.assertNotIn("SOCKS".encode(), res.body)

    def test_links_carry_the_user_identity(self):
        _, sub = new_user()
        links = links_of(sub["token"])
        self.assertEqual(len(links), len(SERVED))
        parsed = {kind: golden.parse_link(link) for kind, link in zip([e[0] for e in SERVED], links)}
        for kind, (name, host, port, _, _) in parsed.items():
            entry = next(e for e in SERVED if e[0] == kind)
            self.assertEqual((name, host, port), (entry[3], entry[4], entry[5]))
        uuid = parsed["vmess"][3]["uuid"]
        self.assertRegex(uuid, r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        password = parsed["trojan"][3]["password"]
        self.assertRegex(password, r"^[0-9a-f]{64}$")
        self.assertEqual(parsed["vless"][3]["uuid"], uuid)
        self.assertEqual(parsed["tuic"][3], {"uuid": uuid, "password": password})
        self.assertEqual(parsed["hy2"][3]["password"], password)
        self.assertEqual(parsed["ss"][3], {"cipher": "aes-256-gcm", "password": password})
        # shadowsocks 2022: the first 16 bytes of the identity password as base64, after the server key
        user_key = base64.b64encode(bytes.fromhex(password)[:16]).decode()
        self.assertEqual(parsed["ss2022"][3], {"cipher": "2022-blake3-aes-128-gcm", "password": SERVER_KEY + ":" + user_key})
        self.assertIn("pbk=jNXHt1yRo0vDuchQlIP6Z0ZvjT3KtzVI-T4E7RoLJS0", links[1])
        self.assertIn("@[2001:db8::1]:8388", links[3])
        # every link of one user carries the same identity; another user gets another one
        other = golden.parse_link(links_of(new_user()[1]["token"])[0])[3]["uuid"]
        self.assertNotEqual(other, uuid)

    def test_unrenderable_entries_are_left_out_and_logged(self):
        _, sub = new_user()
        res = download(sub["token"], CLASH_META)
        self.assertEqual(res.status, 200)
        self.assertNotIn(NAMES["socks"], names_in(res))
        self.assertNotIn(NAMES["broken"], names_in(res))
        with open(first.log_path, encoding="utf-8") as log:
            text = log.read()
        self.assertIn("entry %d left out: protocol socks has no client format" % _state["entries"]["socks"], text)
        self.assertIn("entry %d left out: REALITY without reality_public_key" % _state["entries"]["broken"], text)

    def test_browser_gets_a_page_without_entries(self):
        _, sub = new_user()
        res = download(sub["token"], BROWSER, headers={"Accept": "text/html"})
        self.assertEqual(res.header("content-type"), "text/html; charset=utf-8")
        body = res.body.decode("utf-8")
        for entry in ENTRIES:
            self.assertNotIn(entry[4], body)
        self.assertLess(len(res.body), 4096)


class Reachability(unittest.TestCase):
    """Which entries are served follows the binding, entry and node rows at once, on either instance."""

    def served(self, token, server=None):
        return [golden.parse_link(link)[0] for link in links_of(token, server)]

    def test_health_status_and_node_state_decide(self):
        _, sub = new_user()
        trojan = NAMES["trojan"]
        bid, eid, node = _state["bindings"]["trojan"], _state["entries"]["trojan"], _state["node"]
        cases = [
            ("UPDATE protocol_bindings SET health_status = 3 WHERE id = %d" % bid, False),
            ("UPDATE protocol_bindings SET health_status = 4 WHERE id = %d" % bid, False),
            ("UPDATE protocol_bindings SET health_status = 2 WHERE id = %d" % bid, True),
            ("UPDATE protocol_bindings SET health_status = 1 WHERE id = %d" % bid, True),
            ("UPDATE protocol_bindings SET health_status = 0 WHERE id = %d" % bid, True),
            ("UPDATE protocol_bindings SET status = 2, updated_at = now() WHERE id = %d" % bid, False),
            ("UPDATE protocol_bindings SET status = 1, updated_at = now() WHERE id = %d" % bid, True),
            ("UPDATE protocol_entries SET status = 2, updated_at = now() WHERE id = %d" % eid, False),
            ("UPDATE protocol_entries SET status = 1, updated_at = now() WHERE id = %d" % eid, True),
            ("DELETE FROM plan_bindings WHERE binding_id = %d" % bid, False),
            ("INSERT INTO plan_bindings (plan_id, binding_id) VALUES (%d, %d)" % (_state["plan"], bid), True),
        ]
        for sql, present in cases:
            with self.subTest(sql=sql):
                # fill both caches, so the next download proves the cached file was not reused
                self.served(sub["token"])
                self.served(sub["token"], second)
                psql(sql)
                for server in (first, second):
                    self.assertTrue(harness.wait_until(
                        lambda: (trojan in self.served(sub["token"], server)) == present, timeout=5), server.name)
                if not present:
                    self.assertEqual(len(self.served(sub["token"])), len(SERVED) - 1)

        # a node's status reaches both caches through the NOTIFY of migration 0019; a new token, since the
        # polling above may have used up much of the first one's 30 downloads a minute
        _, sub = new_user()
        for status, present in [(3, False), (4, False), (2, True), (1, True)]:
            with self.subTest(node_status=status):
                self.served(sub["token"], second)
                psql("UPDATE nodes SET status = %d, updated_at = now() WHERE id = %d" % (status, node))
                expected = len(SERVED) if present else 0
                self.assertTrue(harness.wait_until(
                    lambda: len(self.served(sub["token"], second)) == expected, timeout=5, interval=0.1))


class ConditionalAndBlocked(unittest.TestCase):
    def test_etag_follows_the_entries(self):
        _, sub = new_user()
        res = download(sub["token"], CLASH_META)
        etag = res.header("etag")
        self.assertEqual(download(sub["token"], CLASH_META, headers={"If-None-Match": etag}).status, 304)
        self.assertEqual(download(sub["token"], CLASH_META, headers={"If-None-Match": etag}, server=second).status,
                         304)
        eid = _state["entries"]["tuic"]
        psql("UPDATE protocol_entries SET entry_port = 8443, updated_at = now() WHERE id = %d" % eid)
        try:
            for server in (first, second):
                again = harness.wait_until(lambda: (lambda r: r if r.status == 200 else None)(
                    download(sub["token"], CLASH_META, headers={"If-None-Match": etag}, server=server)), timeout=5)
                self.assertIsNotNone(again, server.name)
                self.assertNotEqual(again.header("etag"), etag)
                self.assertIn(b"port: 8443", again.body)
        finally:
            psql("UPDATE protocol_entries SET entry_port = 443, updated_at = now() WHERE id = %d" % eid)

    def test_blocked_subscriptions_get_one_notice_not_the_entries(self):
        cases = [
            ("disabled", lambda sid: admin_call("POST", "/api/v1/admin/subscriptions/%d/disable" % sid, {})),
            ("expired", lambda sid: psql("UPDATE subscriptions SET expires_at = now() - interval '1 hour'"
                                         " WHERE id = %d" % sid)),
            ("quota", lambda sid: psql("UPDATE subscriptions SET traffic_total_bytes = 10, traffic_used_bytes = 10"
                                       " WHERE id = %d" % sid)),
        ]
        for reason, block in cases:
            with self.subTest(reason=reason):
                _, sub = new_user()
                self.assertEqual(len(names_in(download(sub["token"], CLASH_META))), len(SERVED))
                block(sub["id"])
                # NOTIFY reaches each instance's cache asynchronously, so wait until
                # each instance serves the notice before checking every client.
                for server in (first, second):
                    self.assertTrue(harness.wait_until(
                        lambda: len(names_in(download(sub["token"], CLASH_META, server=server))) == 1,
                        timeout=harness.scaled(10)), (reason, server))
                for agent, query in [(CLASH_META, ""), (SING_BOX, ""), (V2RAYN, ""), ("Surge iOS/2920", ""),
                                     ("Loon/3.2.1 (iPhone)", ""), ("Quantumult%20X/1.4", ""), (None, "?flag=sip008")]:
                    for server in (first, second):
                        res = download(sub["token"], agent, query, server=server)
                        self.assertEqual(res.status, 200, res)
                        names = names_in(res)
                        self.assertEqual(len(names), 1, (agent, names))
                        self.assertIn(reason, names[0].lower())
                        self.assertNotIn(b"example.com", res.body)


class GzipEncoding(unittest.TestCase):
    """Files of 1 KiB or more go gzip-compressed to clients that accept it, with their own ETag.

    http.client sends "Accept-Encoding: identity" unless a test sets the
    header; curl sends none, which is the absent case. Each case uses fresh
    tokens, so its first download of a client is the cold (rendering) one.
    """

    def gzip_etag(self, etag):
        return etag[:-1] + '-gzip"'

    def assert_vary(self, res):
        vary = ",".join(res.headers.get("vary", []))
        self.assertIn("accept-encoding", vary.lower(), res.headers)

    def test_gzip_body_decompresses_to_the_identity_body(self):
        _, sub = new_user()
        for agent in (CLASH_META, SING_BOX, V2RAYN):
            with self.subTest(agent=agent):
                packed = download(sub["token"], agent, headers={"Accept-Encoding": "gzip, deflate, br"})
                plain = download(sub["token"], agent)
                self.assertEqual((packed.status, plain.status), (200, 200))
                self.assertGreaterEqual(len(plain.body), 1024)
                self.assertIsNone(plain.header("content-encoding"))
                self.assertEqual(packed.header("content-encoding"), "gzip")
                self.assertEqual(gzip.decompress(packed.body), plain.body)
                self.assertLess(len(packed.body), len(plain.body))
                self.assertEqual(int(packed.header("content-length")), len(packed.body))
                self.assertEqual(packed.header("content-type"), plain.header("content-type"))
                self.assertEqual(packed.header("subscription-userinfo"), plain.header("subscription-userinfo"))
                self.assertEqual(packed.header("etag"), self.gzip_etag(plain.header("etag")))
                self.assert_vary(packed)
                self.assert_vary(plain)

    def test_refusals_and_absence_get_the_identity_body(self):
        _, sub = new_user()
        plain = download(sub["token"], CLASH_META)
        for value in ("gzip;q=0", "identity", "*;q=0", "br, deflate", "", "gzip;q=0.5, identity"):
            with self.subTest(accept_encoding=value):
                res = download(sub["token"], CLASH_META, headers={"Accept-Encoding": value})
                self.assertEqual(res.status, 200, res)
                self.assertIsNone(res.header("content-encoding"))
                self.assertEqual(res.body, plain.body)
                self.assertEqual(res.header("etag"), plain.header("etag"))
                self.assert_vary(res)
        for value in ("*", "x-gzip", "gzip;q=0.2"):
            with self.subTest(accept_encoding=value):
                res = download(sub["token"], CLASH_META, headers={"Accept-Encoding": value})
                self.assertEqual(res.header("content-encoding"), "gzip")
        absent = harness.curl(first.url("/api/v1/subscriptions/" + sub["token"]), "http1.1",
                              headers={"User-Agent": CLASH_META})
        self.assertEqual(absent.status, 200)
        self.assertIsNone(absent.header("content-encoding"))
        self.assertEqual(absent.body, plain.body)

    def test_not_modified_across_encodings(self):
        _, sub = new_user()
        plain = download(sub["token"], CLASH_META)
        packed = download(sub["token"], CLASH_META, headers={"Accept-Encoding": "gzip"})
        self.assertNotEqual(plain.header("etag"), packed.header("etag"))
        for encoding, tag, expected in [("gzip", plain.header("etag"), packed.header("etag")),
                                        ("gzip", packed.header("etag"), packed.header("etag")),
                                        ("identity", packed.header("etag"), plain.header("etag")),
                                        ("identity", "W/" + packed.header("etag"), plain.header("etag"))]:
            with self.subTest(encoding=encoding, tag=tag):
                res = download(sub["token"], CLASH_META, headers={"Accept-Encoding": encoding, "If-None-Match": tag})
                self.assertEqual(res.status, 304, res)
                self.assertEqual(res.body, b"")
                self.assertEqual(res.header("etag"), expected)
                self.assertIsNone(res.header("content-encoding"))
                self.assert_vary(res)
        other = download(sub["token"], CLASH_META, headers={"Accept-Encoding": "gzip", "If-None-Match": '"0-gzip"'})
        self.assertEqual(other.status, 200)

    def test_cold_and_warm_answers_are_identical(self):
        for encoding in ("gzip", "identity"):
            with self.subTest(encoding=encoding):
                _, sub = new_user()
                cold = download(sub["token"], SING_BOX, headers={"Accept-Encoding": encoding})
                warm = download(sub["token"], SING_BOX, headers={"Accept-Encoding": encoding})
                self.assertEqual((cold.status, warm.status), (200, 200))
                self.assertEqual(cold.body, warm.body)
                for name in ("etag", "content-encoding", "content-length", "vary", "content-type"):
                    self.assertEqual(cold.headers.get(name), warm.headers.get(name), name)
                self.assertEqual(cold.header("content-encoding"), "gzip" if encoding == "gzip" else None)

    def test_http11_h2c_and_head(self):
        _, sub = new_user()
        path = "/api/v1/subscriptions/" + sub["token"]
        plain = download(sub["token"], CLASH_META)
        # curl stores the body as it arrives, without --compressed
        for mode in ("http1.1", "h2c"):
            with self.subTest(mode=mode):
                res = harness.curl(first.url(path), mode, headers={"User-Agent": CLASH_META, "Accept-Encoding": "gzip"})
                self.assertEqual(res.status, 200)
                self.assertEqual(res.http_version, "2" if mode == "h2c" else "1.1")
                self.assertEqual(res.header("content-encoding"), "gzip")
                self.assertEqual(gzip.decompress(res.body), plain.body)
                self.assertEqual(res.header("etag"), self.gzip_etag(plain.header("etag")))
                self.assert_vary(res)
        for encoding in ("gzip", "identity"):
            with self.subTest(method="HEAD", encoding=encoding):
                get = download(sub["token"], CLASH_META, headers={"Accept-Encoding": encoding})
                head = first.request("HEAD", path, headers={"User-Agent": CLASH_META, "Accept-Encoding": encoding})
                self.assertEqual(head.status, 200)
                self.assertEqual(head.body, b"")
                self.assertEqual(head.header("content-length"), str(len(get.body)))
                self.assertEqual(head.header("content-encoding"), get.header("content-encoding"))
                self.assertEqual(head.header("etag"), get.header("etag"))

    def test_cold_head_matches_the_warm_get(self):
        _, sub = new_user()
        path = "/api/v1/subscriptions/" + sub["token"]
        head = first.request("HEAD", path, headers={"User-Agent": SING_BOX, "Accept-Encoding": "gzip"})
        get = download(sub["token"], SING_BOX, headers={"Accept-Encoding": "gzip"})
        self.assertEqual((head.status, get.status), (200, 200))
        self.assertEqual(head.body, b"")
        self.assertEqual(head.header("content-encoding"), "gzip")
        self.assertEqual(head.header("content-length"), str(len(get.body)))
        self.assertEqual(head.header("etag"), get.header("etag"))

    def test_small_bodies_stay_identity(self):
        _, sub = new_user()
        res = download(sub["token"], BROWSER, headers={"Accept-Encoding": "gzip"})
        self.assertEqual(res.status, 200)
        self.assertLess(len(res.body), 1024)
        self.assertIsNone(res.header("content-encoding"))
        self.assertNotIn("-gzip", res.header("etag"))
        self.assert_vary(res)


class CrossInstance(unittest.TestCase):
    def test_entry_change_crosses_instances(self):
        _, sub = new_user()
        eid = _state["entries"]["hy2"]
        before = download(sub["token"], SING_BOX, server=second)
        self.assertIn(NAMES["hy2"], names_in(before))
        res = admin_call("PATCH", "/api/v1/admin/protocol-entries/%d" % eid, {"name": "Hysteria2 改名"})
        self.assertEqual(res.status, 200, res)
        try:
            # A's own next download shows it at once, and B's shows it once A's NOTIFY arrives
            self.assertIn("Hysteria2 改名", names_in(download(sub["token"], SING_BOX)))
            after = harness.wait_until(lambda: (lambda r: r if "Hysteria2 改名" in names_in(r) else None)(
                download(sub["token"], SING_BOX, server=second)), timeout=2, interval=0.02)
            self.assertIsNotNone(after)
            self.assertNotEqual(after.header("etag"), before.header("etag"))
        finally:
            psql("UPDATE protocol_entries SET name = %s, updated_at = now() WHERE id = %d"
                 % (sql_text(NAMES["hy2"]), eid))


class WarmResponses(unittest.TestCase):
    """A repeated download is served from memory, and each kind of write drops that response everywhere.

    Each case caches the response on both instances, writes through A's API, then
    expects A's very next download to be fresh and B's to follow within a few
    seconds (the NOTIFY). A Stash template that is not a default shows the
    subscription, template and entry names, so most writes are visible in the
    body. The NOTIFY usually reaches A before the test's next request too, so
    A's check proves that A is never stale, not which of the two drops came
    first.
    """

    CONTENT = ("T={{.template.name}} v{{.template.version}} name={{.subscription.name}}\n"
               "{{range .nodes}}{{.name}};{{end}}\n")

    @classmethod
    def setUpClass(cls):
        cls.templates = []
        for name in ("Warm one", "Warm two"):
            res = admin_call("POST", "/api/v1/admin/subscription-templates",
                             {"name": "%s %d" % (name, os.getpid()), "client_type": "stash", "content": cls.CONTENT})
            if res.status != 201:
                raise AssertionError("create template failed: %r" % res)
            tid = res.json()["template"]["id"]
            if admin_call("POST", "/api/v1/admin/subscription-templates/%d/publish" % tid, {}).status != 200:
                raise AssertionError("publish failed")
            cls.templates.append(tid)

    def templated_user(self):
        email, sub = new_user()
        res = admin_call("PATCH", "/api/v1/admin/subscriptions/%d" % sub["id"],
                         {"template_id": self.templates[0], "available_template_ids": self.templates})
        self.assertEqual(res.status, 200, res)
        return email, sub

    def warm(self, token):
        """Download twice on each instance, so the second response came from the cache; return A's response."""
        for server in (second, first):
            for _ in range(2):
                res = download(token, "Stash/2.4", server=server)
                self.assertEqual(res.status, 200, res)
        return res

    def expect_fresh(self, token, fresh):
        res = download(token, "Stash/2.4")
        self.assertTrue(fresh(res), (res, res.body[:300]))
        res = harness.wait_until(lambda: (lambda r: r if fresh(r) else None)(download(token, "Stash/2.4", server=second)),
                                 timeout=5, interval=0.05)
        self.assertIsNotNone(res, "instance B kept the old response")

    def test_each_write_drops_cached_responses(self):
        tmpl = "/api/v1/admin/subscription-templates/%d"
        plan = "/api/v1/admin/plans/%d" % _state["plan"]
        trojan, entry = _state["bindings"]["trojan"], _state["entries"]["hy2"]
        all_bindings = sorted(_state["bindings"].values())

        def body(res):
            return res.body.decode("utf-8")

        def switch_template(email, sub):
            res = first.request("POST", "/api/v1/user/subscriptions/%d/template" % sub["id"],
                                {"template_id": self.templates[1]},
                                headers={"Authorization": "Bearer " + first.access_token(email, PASSWORD)})
            self.assertEqual(res.status, 200, res)

        cases = [
            ("disable", lambda email, sub: admin_call("POST", "/api/v1/admin/subscriptions/%d/disable" % sub["id"], {}),
             lambda sub: lambda r: "Subscription disabled" in body(r), None),
            ("rename", lambda email, sub: admin_call("PATCH", "/api/v1/admin/subscriptions/%d" % sub["id"],
                                                     {"name": "Warm renamed"}),
             lambda sub: lambda r: "name=Warm renamed\n" in body(r), None),
            ("template switch", switch_template,
             lambda sub: lambda r: "T=Warm two" in body(r), None),
            ("plan link", lambda email, sub: admin_call("PATCH", plan, {"binding_ids": [b for b in all_bindings
                                                                                     if b != trojan]}),
             lambda sub: lambda r: NAMES["trojan"] not in body(r) and NAMES["vmess"] in body(r),
             lambda: admin_call("PATCH", plan, {"binding_ids": all_bindings})),
            ("entry", lambda email, sub: admin_call("PATCH", "/api/v1/admin/protocol-entries/%d" % entry,
                                                    {"name": "Hysteria2 warm"}),
             lambda sub: lambda r: "Hysteria2 warm;" in body(r),
             lambda: admin_call("PATCH", "/api/v1/admin/protocol-entries/%d" % entry, {"name": NAMES["hy2"]})),
            ("node disabled", lambda email, sub: admin_call("POST", "/api/v1/admin/nodes/%d/disable" % _state["node"],
                                                            {}),
             lambda sub: lambda r: NAMES["vmess"] not in body(r) and "T=Warm one" in body(r),
             lambda: psql("UPDATE nodes SET status = 1 WHERE id = %d" % _state["node"])),
            ("template publish", lambda email, sub: (
                admin_call("PATCH", tmpl % self.templates[0], {"content": "republished\n" + self.CONTENT}),
                admin_call("POST", (tmpl + "/publish") % self.templates[0], {})),
             lambda sub: lambda r: body(r).startswith("republished\n"), None),
            ("site settings", lambda email, sub: admin_call("PATCH", "/api/v1/admin/site-settings",
                                                            {"name": "Warm Site"}),
             lambda sub: lambda r: '"Warm Site"' in (r.header("content-disposition") or ""),
             lambda: admin_call("PATCH", "/api/v1/admin/site-settings", {"name": "Entries 节点"})),
        ]
        for name, write, fresh, undo in cases:
            with self.subTest(write=name):
                email, sub = self.templated_user()
                before = self.warm(sub["token"])
                self.assertFalse(fresh(sub)(before), body(before)[:300])
                try:
                    res = write(email, sub)
                    if not isinstance(res, tuple):
                        res = (res,)
                    for one in res:
                        if one is not None:
                            self.assertIn(one.status, (200, 204), one)
                    self.expect_fresh(sub["token"], fresh(sub))
                finally:
                    if undo is not None:
                        undo()

    def test_reset_token_stops_working_at_once(self):
        _, sub = new_user()
        self.warm(sub["token"])
        res = admin_call("POST", "/api/v1/admin/subscriptions/%d/reset-token" % sub["id"], {})
        self.assertEqual(res.status, 200, res)
        new_token = res.json()["subscription"]["token"]
        self.assertNotEqual(new_token, sub["token"])
        self.assertEqual(download(sub["token"], "Stash/2.4").status, 404)
        self.assertTrue(harness.wait_until(lambda: download(sub["token"], "Stash/2.4", server=second).status == 404,
                                           timeout=5, interval=0.02))
        for server in (first, second):
            self.assertEqual(download(new_token, "Stash/2.4", server=server).status, 200)

    def test_expiry_shows_notice_without_write(self):
        _, sub = new_user()
        psql("UPDATE subscriptions SET expires_at = now() + interval '%.1f seconds' WHERE id = %d"
             % (harness.scaled(1.5), sub["id"]))
        deadline = float(psql("SELECT extract(epoch FROM expires_at) FROM subscriptions WHERE id = %d" % sub["id"]))
        time.sleep(harness.scaled(0.3))  # the NOTIFY of the UPDATE above, before the responses are cached
        for server in (first, second):
            for _ in range(2):
                self.assertEqual(len(names_in(download(sub["token"], V2RAYN, server=server))), len(SERVED))
        time.sleep(max(0.0, deadline - time.time()) + 0.2)
        for server in (first, second):
            names = names_in(download(sub["token"], V2RAYN, server=server))
            self.assertEqual(len(names), 1, names)
            self.assertIn("expired", names[0].lower())

    def test_cached_response_runs_no_query(self):
        """While a transaction holds an exclusive lock on subscriptions, any query that reads the table waits.

        A cached response still comes back at once on both instances, with the
        same ETag and over the same route; a token that was never downloaded
        (its first download must read the table) does not.
        """
        _, sub = new_user()
        _, cold = new_user()
        download(sub["token"], CLASH_META)
        time.sleep(harness.scaled(0.5))  # the first download made the credential, whose NOTIFY empties the cache
        etags = {server.name: self.warm_etag(sub["token"], server) for server in (first, second)}
        cluster = harness.EmbeddedCluster(first.data_dir)
        # psql runs each statement as it reads it, so the lock is held until COMMIT is written
        locker = subprocess.Popen(cluster.psql_argv(first.database_name()), stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
        locker.stdin.write(b"BEGIN;\nLOCK TABLE subscriptions IN ACCESS EXCLUSIVE MODE;\n")
        locker.stdin.flush()
        try:
            self.assertTrue(harness.wait_until(lambda: psql(
                "SELECT count(*) FROM pg_locks WHERE relation = 'subscriptions'::regclass"
                " AND mode = 'AccessExclusiveLock' AND granted") == "1", timeout=5, interval=0.05))
            for server in (first, second):
                started = time.monotonic()
                res = download(sub["token"], CLASH_META, server=server)
                self.assertEqual(res.status, 200, res)
                self.assertEqual(res.header("etag"), etags[server.name])
                self.assertLess(time.monotonic() - started, harness.scaled(1.5))
            # the same request on a token not yet cached needs the table, so it waits for the lock
            with self.assertRaises(TimeoutError):
                download(cold["token"], CLASH_META, server=second, timeout=1.0)
        finally:
            locker.stdin.write(b"COMMIT;\n")
            locker.stdin.close()
            locker.wait(timeout=harness.scaled(30))
        self.assertEqual(download(cold["token"], CLASH_META).status, 200)

    def warm_etag(self, token, server):
        res = download(token, CLASH_META, server=server)
        self.assertEqual(res.status, 200, res)
        again = download(token, CLASH_META, server=server)
        self.assertEqual(again.header("etag"), res.header("etag"))
        return res.header("etag")


class EmojiNames(unittest.TestCase):
    """A name with a flag emoji, CJK and a quote, through the admin API, to three clients."""

    def test_emoji_name_stored_and_served_byte_for_byte(self):
        bid = _state["bindings"]["trojan"]
        res = admin_call("POST", "/api/v1/admin/protocol-entries",
                         {"binding_id": bid, "name": EMOJI, "entry_address": "emoji.example.com", "entry_port": 443})
        self.assertEqual(res.status, 201, res)
        entry = res.json()["entry"]
        try:
            self.assertEqual(entry["name"].encode("utf-8"), EMOJI.encode("utf-8"))
            got = admin_call("GET", "/api/v1/admin/protocol-entries/%d" % entry["id"])
            self.assertEqual(got.json()["entry"]["name"].encode("utf-8"), EMOJI.encode("utf-8"))
            _, sub = new_user()
            # clash.meta: a double-quoted YAML scalar with the quote escaped
            res = download(sub["token"], "clash.meta")
            self.assertIn(b'name: "' + EMOJI.replace('"', '\\"').encode("utf-8") + b'"', res.body)
            self.assertIn(EMOJI, names_in(res))
            # sing-box: the tag unchanged
            res = download(sub["token"], "sing-box 1.11.0")
            self.assertIn(EMOJI, names_in(res))
            # v2rayN: the fragment percent-encodes the UTF-8 bytes
            links = links_of(sub["token"])
            fragment = "#" + urllib.parse.quote(EMOJI, safe="")
            self.assertEqual(len([link for link in links if link.endswith(fragment)]), 1)
        finally:
            admin_call("DELETE", "/api/v1/admin/protocol-entries/%d" % entry["id"])

    def test_invalid_utf8_name_rejected_at_input(self):
        bid = _state["bindings"]["trojan"]
        for raw in (b"\xc0\xaf", b"\xed\xa0\x80"):
            with self.subTest(raw=raw):
                body = (b'{"binding_id": %d, "name": "bad ' % bid) + raw + \
                    b'", "entry_address": "bad.example.com", "entry_port": 443}'
                res = admin_call("POST", "/api/v1/admin/protocol-entries", body)
                self.assertEqual(res.status, 400, res)
        self.assertEqual(psql("SELECT count(*) FROM protocol_entries WHERE entry_address = 'bad.example.com'"), "0")


class TemplateContext(unittest.TestCase):
    def test_nodes_and_protocol_bindings_list_the_served_entries(self):
        content = ("{{range $i, $n := .nodes}}{{$i}}|{{$n.name}}|{{$n.protocol}}|{{$n.hostname}}|{{$n.port}}|"
                   "{{$n.health_status}}|{{$n.node_name}}|{{$n.entry_id}}\n{{end}}"
                   "{{range .protocol_bindings}}{{.binding_id}},{{end}}\n")
        res = admin_call("POST", "/api/v1/admin/subscription-templates",
                         {"name": "Entries loon", "client_type": "loon", "content": content})
        self.assertEqual(res.status, 201, res)
        tid = res.json()["template"]["id"]
        self.assertEqual(admin_call("POST", "/api/v1/admin/subscription-templates/%d/publish" % tid, {}).status, 200)
        _, sub = new_user()
        # not the default for loon: only this subscription uses it
        psql("UPDATE subscriptions SET template_id = %d WHERE id = %d" % (tid, sub["id"]))
        lines = download(sub["token"], "Loon/3.2.1 (iPhone)").body.decode("utf-8").splitlines()
        # the context lists every entry in scope, also those the built-in formats cannot render
        self.assertEqual(len(lines), len(ENTRIES) + 1)
        for i, entry in enumerate(ENTRIES):
            self.assertEqual(lines[i], "%d|%s|%s|%s|%d|unknown|dl-node|%d" % (
                i, entry[3], entry[1], entry[4], entry[5], _state["entries"][entry[0]]))
        self.assertEqual(lines[-1], "".join("%d," % _state["bindings"][e[0]] for e in ENTRIES))


class UserNodeView(unittest.TestCase):
    def nodes(self, email, query=""):
        token = first.access_token(email, PASSWORD)
        res = first.request("GET", "/api/v1/user/nodes" + query, headers={"Authorization": "Bearer " + token})
        self.assertEqual(res.status, 200, res)
        return res.json()

    def test_lists_the_granted_node_without_secrets(self):
        email, _ = new_user()
        doc = self.nodes(email)
        self.assertEqual(doc["pagination"], {"page": 1, "per_page": 20, "total_count": 1, "has_next": False,
                                             "has_prev": False})
        (node,) = doc["nodes"]
        self.assertEqual(node["id"], _state["node"])
        self.assertEqual([e["name"] for e in node["entries"]], [e[3] for e in ENTRIES])
        self.assertEqual(sorted(s["protocol"] for s in node["protocol_statuses"]), sorted(e[1] for e in ENTRIES))
        text = json.dumps(doc)
        for secret in (PRIVATE_KEY, "127.0.0.1:9", "control_endpoint", "entry_address", "example.com", SERVER_KEY,
                       "profile"):
            self.assertNotIn(secret, text)

    def test_protocol_filter_uses_the_binding_protocol(self):
        email, _ = new_user()
        for protocol, kinds in [("vless", ["vless", "broken"]), ("hy2", ["hy2"]), ("shadowsocks", ["ss"]),
                                ("wireguard", [])]:
            with self.subTest(protocol=protocol):
                doc = self.nodes(email, "?protocol=" + protocol)
                if not kinds:
                    self.assertEqual(doc["nodes"], [])
                    self.assertEqual(doc["pagination"]["total_count"], 0)
                    continue
                (node,) = doc["nodes"]
                self.assertEqual([e["name"] for e in node["entries"]], [NAMES[k] for k in kinds])
                self.assertEqual({s["protocol"] for s in node["protocol_statuses"]}, {protocol})

    def test_unhealthy_bindings_and_users_without_subscription(self):
        email, _ = new_user()
        bid = _state["bindings"]["tuic"]
        psql("UPDATE protocol_bindings SET health_status = 3 WHERE id = %d" % bid)
        try:
            (node,) = self.nodes(email)["nodes"]
            self.assertNotIn(NAMES["tuic"], [e["name"] for e in node["entries"]])
            self.assertNotIn(bid, [s["binding_id"] for s in node["protocol_statuses"]])
        finally:
            psql("UPDATE protocol_bindings SET health_status = 0 WHERE id = %d" % bid)
        self.assertEqual(self.nodes(email, "?status=3")["nodes"], [])
        nobody, _ = new_user(with_subscription=False)
        doc = self.nodes(nobody)
        self.assertEqual(doc["nodes"], [])
        self.assertEqual(doc["pagination"]["total_count"], 0)


if __name__ == "__main__":
    unittest.main()

"""Golden files of the built-in formats, checked with real parsers.

tests/golden/<format>/<entry>.<ext> contains each built-in format rendered for
each entry of one fixed data set (and all.<ext> for all of them), and
tests/golden/dataset.json describes the entries. The unit test
formats__golden_files_match fails when the renderers' output drifts from
these files; scripts/golden-update.sh rewrites them and runs this module.
No server is started here:
- Clash, Clash.Meta and Stash files load with PyYAML's libyaml loader and
  have the keys each proxy type needs;
- sing-box and SIP008 files are valid JSON with their required keys;
- every share link passes a strict RFC 3986 check and urllib, and gives
  back the entry's name (emoji and CJK included), host, port and credential
  byte for byte;
- vmess, vless, trojan and shadowsocks links become v2ray JSON client
  configurations that `v2ray -test -config` (Debian's v2ray 4.34) accepts.
Run alone: /usr/bin/python3 tests/integration/run.py test_download_golden
"""

import base64
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest
import urllib.parse

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN = os.path.join(REPO, "tests", "golden")

with open(os.path.join(GOLDEN, "dataset.json"), encoding="utf-8") as _f:
    DATASET = json.load(_f)
KINDS = {entry["kind"]: entry for entry in DATASET}

FORMATS = ["base64", "links", "clash", "clash-meta", "stash", "sing-box", "sip008", "surge", "quantumult-x", "loon"]
EXTENSIONS = {"clash": "yaml", "clash-meta": "yaml", "stash": "yaml", "sing-box": "json", "sip008": "json"}

# Which entries each format carries (docs/clients.md); the others must leave a valid file without them.
# Surge and Loon also leave out names with a double quote, "=" or ",", Quantumult X IPv6 hosts.
CARRIES = {
    "base64": set(KINDS),
    "links": set(KINDS),
    "clash-meta": set(KINDS),
    "sing-box": set(KINDS),
    "clash": {"vmess", "vmess-tcp", "trojan", "trojan-ws", "shadowsocks", "shadowsocks-ipv6"},
    "stash": set(KINDS),
    "sip008": {"shadowsocks", "shadowsocks-ipv6", "shadowsocks-2022"},
    "surge": {"vmess-tcp", "trojan-ws", "shadowsocks", "shadowsocks-2022", "hysteria2-plain", "tuic"},
    "quantumult-x": {"vmess", "vmess-tcp", "trojan", "shadowsocks", "shadowsocks-2022"},
    "loon": {"vmess-tcp", "trojan-ws", "shadowsocks", "shadowsocks-2022", "hysteria2-plain"},
}

# Clash proxy type -> keys a proxy of that type must have besides name, type, server and port.
CLASH_KEYS = {
    "vmess": ["uuid", "alterId", "cipher"],
    "vless": ["uuid"],
    "trojan": ["password"],
    "ss": ["cipher", "password"],
    "hysteria2": ["password"],
    "tuic": ["uuid", "password"],
}
CLASH_TYPES = {"vmess": "vmess", "vless": "vless", "trojan": "trojan", "shadowsocks": "ss", "hysteria2": "hysteria2",
               "tuic": "tuic"}

# sing-box outbound type -> required keys besides type, tag, server and server_port.
SINGBOX_KEYS = {
    "vmess": ["uuid"],
    "vless": ["uuid"],
    "trojan": ["password"],
    "shadowsocks": ["method", "password"],
    "hysteria2": ["password"],
    "tuic": ["uuid", "password"],
}

# Share links that v2ray 4.34 cannot express, with the reason. Every other vmess, vless, trojan and
# shadowsocks link is turned into a v2ray configuration and tested.
NOT_FOR_V2RAY = {
    "vless-reality": "v2ray 4.34 has neither REALITY nor the xtls-rprx-vision flow (Xray only)",
    "shadowsocks-2022": "v2ray 4.34 has no shadowsocks 2022 (2022-blake3-*) methods",
    "hysteria2": "v2ray 4.34 has no hysteria2 protocol",
    "hysteria2-plain": "v2ray 4.34 has no hysteria2 protocol",
    "tuic": "v2ray 4.34 has no tuic protocol",
}

# RFC 3986 characters: unreserved, sub-delims, ":" "@" "/" "?" and percent-escapes; "[" "]" only around an IPv6 host.
URI_CHARS = re.compile(r"^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*$")


def golden(fmt, kind):
    return os.path.join(GOLDEN, fmt, "%s.%s" % (kind, EXTENSIONS.get(fmt, "txt")))


def read(fmt, kind):
    with open(golden(fmt, kind), "rb") as f:
        return f.read().decode("utf-8", errors="strict")


def b64decode_any(text):
    """Decode standard or URL-safe base64 with or without padding."""
    text = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def strict_parse(link):
    """Check `link` against RFC 3986 and return urllib's split of it."""
    scheme, sep, rest = link.partition("://")
    if not sep or not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme):
        raise AssertionError("bad scheme in %r" % link)
    if rest.count("#") > 1:
        raise AssertionError("more than one '#' in %r" % link)

    authority_end = len(rest)
    for stop in "/?#":
        pos = rest.find(stop)
        if pos != -1:
            authority_end = min(authority_end, pos)
    authority, tail = rest[:authority_end], rest[authority_end:]

    userinfo, at, hostport = authority.rpartition("@")
    if hostport.startswith("["):
        host, close, port_part = hostport[1:].partition("]")
        if not close or not re.fullmatch(r"[0-9A-Fa-f:.]+", host):
            raise AssertionError("bad IPv6 literal in %r" % link)
        hostport_plain = port_part
    else:
        hostport_plain = hostport

    if "[" in hostport_plain or "]" in hostport_plain or "[" in tail or "]" in tail or "[" in userinfo:
        raise AssertionError("brackets outside an IPv6 host in %r" % link)
    for piece in (userinfo, hostport_plain, tail.replace("#", "", 1)):
        if not URI_CHARS.match(piece):
            raise AssertionError("character outside RFC 3986 in %r" % link)
    if "+" in tail.partition("#")[2]:
        raise AssertionError("a '+' in the fragment of %r" % link)

    split = urllib.parse.urlsplit(link)
    if split.port is None or not 1 <= split.port <= 65535:
        raise AssertionError("no valid port in %r" % link)
    return split


def unquote(text):
    return urllib.parse.unquote(text, encoding="utf-8", errors="strict")


def parse_link(link):
    """Return (name, host, port, credential dict, split) for one share link."""
    if link.startswith("vmess://"):
        doc = json.loads(b64decode_any(link[len("vmess://"):]).decode("utf-8"))
        for key in ("v", "ps", "add", "port", "id", "aid", "net", "tls"):
            if key not in doc:
                raise AssertionError("vmess object without %s" % key)
        return doc["ps"], doc["add"], int(doc["port"]), {"uuid": doc["id"], "vmess": doc}, None
    split = strict_parse(link)
    name = unquote(split.fragment)
    userinfo = split.netloc.rpartition("@")[0]
    cred = {}
    if split.scheme == "ss":
        if "%3A" in userinfo.upper() or ":" in userinfo:
            method, _, password = userinfo.partition(":")
            cred = {"cipher": method, "password": unquote(password)}
        else:
            method, _, password = b64decode_any(userinfo).decode("utf-8").partition(":")
            cred = {"cipher": method, "password": password}
    elif split.scheme == "tuic":
        uuid, _, password = userinfo.partition(":")
        cred = {"uuid": unquote(uuid), "password": unquote(password)}
    elif split.scheme == "vless":
        cred = {"uuid": unquote(userinfo)}
    else:
        cred = {"password": unquote(userinfo)}
    return name, split.hostname, split.port, cred, split


class YamlFiles(unittest.TestCase):
    def test_every_clash_file_loads_with_libyaml(self):
        self.assertTrue(yaml.__with_libyaml__, "PyYAML without libyaml")
        for fmt in ("clash", "clash-meta", "stash"):
            for kind in list(KINDS) + ["all"]:
                with self.subTest(format=fmt, kind=kind):
                    doc = yaml.load(read(fmt, kind), Loader=yaml.CSafeLoader)
                    for key in ("proxies", "proxy-groups", "rules"):
                        self.assertIn(key, doc)
                    names = [p["name"] for p in doc["proxies"]]
                    self.assertEqual(len(names), len(set(names)))
                    group = doc["proxy-groups"][0]
                    self.assertEqual(group["proxies"], names + ["DIRECT"])
                    self.assertEqual(doc["rules"][-1], "MATCH,Proxy")
                    for proxy in doc["proxies"]:
                        for key in ["name", "type", "server", "port"] + CLASH_KEYS[proxy["type"]]:
                            self.assertIn(key, proxy)
                        self.assertTrue(1 <= proxy["port"] <= 65535)
                    if kind == "all":
                        expected = [k for k in KINDS if k in CARRIES[fmt]]
                        self.assertEqual(len(doc["proxies"]), len(expected))
                        continue
                    entry = KINDS[kind]
                    if kind not in CARRIES[fmt]:
                        self.assertEqual(doc["proxies"], [])
                        continue
                    (proxy,) = doc["proxies"]
                    self.assertEqual(proxy["name"].encode("utf-8"), entry["name"].encode("utf-8"))
                    self.assertEqual(proxy["type"], CLASH_TYPES[entry["protocol"]])
                    self.assertEqual((proxy["server"], proxy["port"]), (entry["host"], entry["port"]))
                    if "password" in CLASH_KEYS[proxy["type"]]:
                        self.assertEqual(proxy["password"], entry["password"])
                    if "uuid" in CLASH_KEYS[proxy["type"]]:
                        self.assertEqual(proxy["uuid"], entry["uuid"])


class JsonFiles(unittest.TestCase):
    def test_every_singbox_file_is_valid_json(self):
        for kind in list(KINDS) + ["all"]:
            with self.subTest(kind=kind):
                doc = json.loads(read("sing-box", kind))
                self.assertIn("outbounds", doc)
                self.assertIn("final", doc["route"])
                tags = [o["tag"] for o in doc["outbounds"]]
                self.assertEqual(len(tags), len(set(tags)))
                self.assertIn(doc["route"]["final"], tags)
                proxies = [o for o in doc["outbounds"] if o["type"] in SINGBOX_KEYS]
                for out in proxies:
                    for key in ["type", "tag", "server", "server_port"] + SINGBOX_KEYS[out["type"]]:
                        self.assertIn(key, out)
                if kind == "all":
                    self.assertEqual(len(proxies), len(KINDS))
                    continue
                entry = KINDS[kind]
                (out,) = proxies
                self.assertEqual(out["tag"].encode("utf-8"), entry["name"].encode("utf-8"))
                self.assertEqual(out["type"], entry["protocol"])
                self.assertEqual((out["server"], out["server_port"]), (entry["host"], entry["port"]))
                for key in ("uuid", "password"):
                    if key in SINGBOX_KEYS[out["type"]]:
                        self.assertEqual(out[key], entry[key])

    def test_every_sip008_file_is_valid_json(self):
        for kind in list(KINDS) + ["all"]:
            with self.subTest(kind=kind):
                doc = json.loads(read("sip008", kind))
                self.assertEqual(doc["version"], 1)
                for server in doc["servers"]:
                    for key in ("remarks", "server", "server_port", "password", "method"):
                        self.assertIn(key, server)
                if kind == "all":
                    self.assertEqual(len(doc["servers"]), len(CARRIES["sip008"]))
                elif kind in CARRIES["sip008"]:
                    (server,) = doc["servers"]
                    entry = KINDS[kind]
                    self.assertEqual(server["remarks"], entry["name"])
                    self.assertEqual((server["password"], server["method"]), (entry["password"], entry["cipher"]))
                else:
                    self.assertEqual(doc["servers"], [])


class ShareLinks(unittest.TestCase):
    def test_base64_is_the_links_file(self):
        for kind in list(KINDS) + ["all"]:
            with self.subTest(kind=kind):
                self.assertEqual(base64.b64decode(read("base64", kind), validate=True).decode("utf-8"),
                                 read("links", kind))

    def test_links_round_trip_name_host_and_credential(self):
        links = read("links", "all").splitlines()
        self.assertEqual(len(links), len(KINDS))
        for kind, link in zip(KINDS, links):
            entry = KINDS[kind]
            with self.subTest(kind=kind):
                self.assertEqual(read("links", kind).splitlines(), [link])
                self.assertEqual(entry["link"], link)
                name, host, port, cred, _ = parse_link(link)
                self.assertEqual(name.encode("utf-8"), entry["name"].encode("utf-8"))
                self.assertEqual((host, port), (entry["host"], entry["port"]))
                for key in ("uuid", "password", "cipher"):
                    if key in cred:
                        self.assertEqual(cred[key], entry[key])
                if ":" in entry["host"] and not link.startswith("vmess://"):
                    self.assertIn("@[%s]:" % entry["host"], link)

    def test_reserved_characters_percent_encoded(self):
        link = KINDS["trojan"]["link"]
        self.assertTrue(link.startswith("trojan://p%40ss%3Aw%2Frd%2B%3D@"), link)
        self.assertTrue(link.endswith("#HKG%2001%20%23A%26B%3DC%2FD%3F%25"), link)
        self.assertTrue(KINDS["vless-ws"]["link"].endswith("#HKG%2001%20%23A%26B%3DC%2FD%3F%25"))
        for kind in ("trojan-ws", "hysteria2", "tuic"):
            _, _, _, cred, _ = parse_link(KINDS[kind]["link"])
            self.assertEqual(cred["password"], "p@ss:w/rd+=")
            self.assertIn("%40ss%3Aw%2Frd%2B%3D@", KINDS[kind]["link"])

    def test_emoji_name_in_every_format(self):
        name = KINDS["vmess"]["name"]
        self.assertEqual(name, "\U0001F1F8\U0001F1EC SG-01 \u2708 \u9999\u6e2f \"x\"")
        doc = yaml.load(read("clash-meta", "vmess"), Loader=yaml.CSafeLoader)
        self.assertEqual(doc["proxies"][0]["name"], name)
        self.assertIn('"\U0001F1F8\U0001F1EC SG-01 \u2708 \u9999\u6e2f \\"x\\""', read("clash-meta", "vmess"))
        outbounds = json.loads(read("sing-box", "vmess"))["outbounds"]
        self.assertEqual([o["tag"] for o in outbounds if o["type"] == "vmess"], [name])
        self.assertTrue(KINDS["hysteria2"]["link"].endswith(
            "#%F0%9F%87%B8%F0%9F%87%AC%20SG-01%20%E2%9C%88%20%E9%A6%99%E6%B8%AF%20%22x%22"))

    def test_strict_parser_rejects_bad_links(self):
        for bad in ["trojan://pw@host:443#HKG 01", "trojan://pw@host:443#a#b", "trojan://pw@host:99999#x",
                    "trojan://pw@[2001:db8::1%25eth0]:443#x", "trojan://pw@host:443#%zz", "trojan://pw@host:443#A+B",
                    "ss://x@[2001:db8::1:443#x", "TROJAN//pw@host:443"]:
            with self.subTest(link=bad):
                with self.assertRaises((AssertionError, ValueError, UnicodeDecodeError)):
                    name, _, _, _, _ = parse_link(bad)
                    unquote(name)


class TextFiles(unittest.TestCase):
    def test_line_formats_name_every_carried_entry(self):
        for fmt in ("surge", "quantumult-x", "loon"):
            for kind in KINDS:
                with self.subTest(format=fmt, kind=kind):
                    text = read(fmt, kind)
                    lines = [line for line in text.split("\n") if line and not line.startswith(("[", "#"))]
                    entry = KINDS[kind]
                    if fmt == "quantumult-x":
                        proxies = [line for line in lines if re.match(r"^(shadowsocks|vmess|trojan)=", line)]
                        names = [re.search(r"tag=(.*)$", line).group(1) for line in proxies]
                    else:
                        proxies = [line for line in lines if " = " in line and "," in line and
                                   not line.startswith(("Proxy = select", "FINAL", "MATCH"))]
                        names = [line.split(" = ", 1)[0] for line in proxies]
                        for line in proxies:
                            fields = [f.strip() for f in line.split(" = ", 1)[1].split(",")]
                            self.assertTrue(1 <= int(fields[2]) <= 65535, line)
                    if kind in CARRIES[fmt]:
                        self.assertEqual(names, [entry["name"]], text)
                    else:
                        self.assertEqual(names, [], text)


def v2ray_outbound(link):
    """A v2ray 4.34 outbound for a vmess, vless, trojan or shadowsocks share link."""
    name, host, port, cred, split = parse_link(link)
    stream = {"network": "tcp", "security": "none"}
    if link.startswith("vmess://"):
        doc = cred["vmess"]
        user = {"id": doc["id"], "alterId": int(doc["aid"]), "security": doc.get("scy") or "auto"}
        settings = {"vnext": [{"address": host, "port": port, "users": [user]}]}
        net, tls = doc["net"], doc["tls"] == "tls"
        params = {"path": doc.get("path", ""), "host": doc.get("host", ""), "sni": doc.get("sni", "")}
        protocol = "vmess"
    else:
        params = {k: v[0] for k, v in urllib.parse.parse_qs(split.query, strict_parsing=False).items()}
        net = params.get("type", "tcp")
        tls = params.get("security", "tls" if split.scheme == "trojan" else "none") == "tls"
        if split.scheme == "vless":
            protocol = "vless"
            settings = {"vnext": [{"address": host, "port": port,
                                   "users": [{"id": cred["uuid"], "encryption": "none"}]}]}
        elif split.scheme == "trojan":
            protocol = "trojan"
            settings = {"servers": [{"address": host, "port": port, "password": cred["password"]}]}
        elif split.scheme == "ss":
            protocol = "shadowsocks"
            settings = {"servers": [{"address": host, "port": port, "method": cred["cipher"],
                                     "password": cred["password"]}]}
        else:
            raise AssertionError("no v2ray outbound for %s" % split.scheme)
    stream["network"] = net
    if tls:
        stream["security"] = "tls"
        tls_settings = {"serverName": params.get("sni") or host}
        if params.get("alpn"):
            tls_settings["alpn"] = params["alpn"].split(",")
        stream["tlsSettings"] = tls_settings
    if net == "ws":
        stream["wsSettings"] = {"path": params.get("path") or "/", "headers": {"Host": params.get("host") or host}}
    return {"tag": "proxy", "protocol": protocol, "settings": settings, "streamSettings": stream}


def v2ray_test(outbound):
    config = {"log": {"loglevel": "warning"},
              "inbounds": [{"listen": "127.0.0.1", "port": 10808, "protocol": "socks", "settings": {"udp": True}}],
              "outbounds": [outbound]}
    with tempfile.NamedTemporaryFile("w", prefix="znp-golden-v2ray-", suffix=".json", delete=False) as f:
        json.dump(config, f)
        path = f.name
    try:
        return subprocess.run(["v2ray", "-test", "-config", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=60)
    finally:
        os.unlink(path)


class V2rayConfigs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if shutil.which("v2ray") is None:
            raise AssertionError("v2ray is not installed (scripts/setup.sh --test installs it)")

    def test_links_become_configs_v2ray_accepts(self):
        tested = []
        for kind, entry in KINDS.items():
            if kind in NOT_FOR_V2RAY or entry["protocol"] not in ("vmess", "vless", "trojan", "shadowsocks"):
                self.assertIn(kind, NOT_FOR_V2RAY, "%s has no v2ray check and no reason for it" % kind)
                continue
            with self.subTest(kind=kind):
                proc = v2ray_test(v2ray_outbound(entry["link"]))
                self.assertEqual(proc.returncode, 0, proc.stdout)
                self.assertIn("Configuration OK", proc.stdout)
                tested.append(entry["protocol"])
        self.assertEqual(sorted(set(tested)), ["shadowsocks", "trojan", "vless", "vmess"])

    def test_v2ray_rejects_a_broken_config(self):
        outbound = v2ray_outbound(KINDS["vless-ws"]["link"])
        outbound["settings"]["vnext"][0]["users"][0]["id"] = "not-a-uuid"
        self.assertNotEqual(v2ray_test(outbound).returncode, 0)


class GoldenSet(unittest.TestCase):
    def test_every_format_and_entry_has_a_file(self):
        for fmt in FORMATS:
            files = sorted(os.path.basename(p) for p in glob.glob(os.path.join(GOLDEN, fmt, "*")))
            expected = sorted("%s.%s" % (k, EXTENSIONS.get(fmt, "txt")) for k in list(KINDS) + ["all"])
            self.assertEqual(files, expected, fmt)
        self.assertEqual({e["protocol"] for e in DATASET},
                         {"vmess", "vless", "trojan", "shadowsocks", "hysteria2", "tuic"})


if __name__ == "__main__":
    unittest.main()

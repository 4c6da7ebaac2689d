"""The e2e test's own parsers: share links, Clash proxies and v2ctl stats output (no processes).

The proxy test relies on these parsers to give the real clients exactly the
parameters of a download, so each case pins one detail of the formats.
Run from the repository root:
  /usr/bin/python3 -m unittest tests.e2e.test_parsers
"""

import base64
import json
import unittest

from tests.e2e import clients, kernel_adapter

UUID = "2f0c4b8e-5d1a-4c3b-9e6f-7a8b9c0d1e2f"
PASSWORD = "a" * 64


def vmess_link(fields):
    return "vmess://" + base64.b64encode(json.dumps(fields).encode()).decode()


class ShareLinkTest(unittest.TestCase):
    def test_vmess_fields(self):
        node = clients.parse_vmess(vmess_link({"v": "2", "ps": "香港 🇭🇰", "add": "127.0.0.1", "port": "443",
                                               "id": UUID, "aid": "0", "scy": "auto", "net": "tcp",
                                               "type": "none", "tls": ""}))
        self.assertEqual(node["name"], "香港 🇭🇰")
        self.assertEqual((node["host"], node["port"]), ("127.0.0.1", 443))
        self.assertEqual((node["uuid"], node["alter_id"], node["security"]), (UUID, 0, "auto"))
        self.assertFalse(node["tls"])
        self.assertEqual(node["extra"], {})

    def test_vmess_unpadded_base64(self):
        link = vmess_link({"add": "h", "port": 1, "id": UUID}).rstrip("=")
        self.assertEqual(clients.parse_vmess(link)["uuid"], UUID)

    def test_vmess_unknown_security_layer_unsupported(self):
        node = clients.parse_vmess(vmess_link({"add": "h", "port": 1, "id": UUID, "tls": "reality"}))
        with self.assertRaises(clients.DownloadError):
            clients.v2ray_client_config(node, 1080)

    def test_ss_user_info_without_method(self):
        with self.assertRaises(clients.DownloadError):
            clients.parse_ss("ss://%s@h:1#n" % base64.urlsafe_b64encode(b"no-colon").decode().rstrip("="))

    def test_vless_fields(self):
        node = clients.parse_vless("vless://%s@[2001:db8::1]:8443?encryption=none&security=tls&sni=a.example"
                                   "&type=tcp&flow=xtls-rprx-vision#A%%20B" % UUID)
        self.assertEqual(node["host"], "2001:db8::1")
        self.assertEqual(node["port"], 8443)
        self.assertEqual(node["name"], "A B")
        self.assertTrue(node["tls"])
        self.assertEqual(node["sni"], "a.example")
        self.assertEqual(node["flow"], "xtls-rprx-vision")
        self.assertEqual(node["extra"], {})

    def test_vless_reality_unsupported(self):
        node = clients.parse_vless("vless://%s@h:1?security=reality&pbk=k#n" % UUID)
        self.assertEqual(node["unsupported"], "security=reality")
        with self.assertRaises(clients.DownloadError):
            clients.v2ray_client_config(node, 1080)

    def test_trojan_fields(self):
        node = clients.parse_trojan("trojan://%s@127.0.0.1:4443?security=tls&sni=proxy.test&allowInsecure=1"
                                    "&type=tcp#T" % PASSWORD)
        self.assertEqual(node["password"], PASSWORD)
        self.assertEqual(node["sni"], "proxy.test")
        self.assertTrue(node["allow_insecure"])
        config = clients.trojan_client_config(node, 1080, "/ca.pem")
        self.assertEqual(config["ssl"]["verify"], False)
        self.assertEqual(config["password"], [PASSWORD])

    def test_trojan_percent_encoded_password(self):
        node = clients.parse_trojan("trojan://p%40ss%3Aword@h:1?security=tls#n")
        self.assertEqual(node["password"], "p@ss:word")

    def test_ss_base64_user_info(self):
        userinfo = base64.urlsafe_b64encode(b"aes-256-gcm:pa:ss@word").decode().rstrip("=")
        node = clients.parse_ss("ss://%s@127.0.0.1:8388#S" % userinfo)
        self.assertEqual((node["method"], node["password"]), ("aes-256-gcm", "pa:ss@word"))
        self.assertEqual(clients.ss_local_config(node, 1080)["server_port"], 8388)

    def test_ss_plain_user_info(self):
        node = clients.parse_ss("ss://2022-blake3-aes-256-gcm:a%2Bb%3D@h:1#S")
        self.assertEqual((node["method"], node["password"]), ("2022-blake3-aes-256-gcm", "a+b="))
        with self.assertRaises(clients.DownloadError):
            clients.ss_local_config(node, 1080)  # ss-libev has no 2022 methods

    def test_unknown_parameter_rejected_by_builder(self):
        node = clients.parse_trojan("trojan://%s@h:1?security=tls&type=ws&path=%%2Fx#n" % PASSWORD)
        with self.assertRaises(clients.DownloadError):
            clients.trojan_client_config(node, 1080, None)

    def test_bad_links_rejected(self):
        cases = ["vless://h:1", "trojan://p@h?x=1", "vless://%s@h:1?a=1&a=2" % UUID, "ss://x@h:1/path"]
        for link in cases:
            with self.subTest(link=link):
                with self.assertRaises(clients.DownloadError):
                    clients.PARSERS[link.split("://")[0]](link)

    def test_base64_body(self):
        text = "\n".join([vmess_link({"add": "h", "port": 1, "id": UUID}), "hysteria2://p@h:1#x", ""])
        nodes = clients.parse_share_links(base64.b64encode(text.encode()))
        self.assertEqual([n["protocol"] for n in nodes], ["vmess", "other"])


class ClashTest(unittest.TestCase):
    def test_proxies(self):
        body = ("proxies:\n"
                "  - {name: \"v\", type: vless, server: 127.0.0.1, port: 1, uuid: %s, network: tcp}\n"
                "  - {name: \"t\", type: trojan, server: 127.0.0.1, port: 2, password: \"%s\", sni: proxy.test}\n"
                "  - {name: \"s\", type: ss, server: 127.0.0.1, port: 3, cipher: aes-256-gcm, password: \"123\"}\n"
                "  - {name: \"h\", type: hysteria2, server: 127.0.0.1, port: 4}\n" % (UUID, PASSWORD))
        nodes, _ = clients.parse_clash(body.encode())
        self.assertEqual([n["protocol"] for n in nodes], ["vless", "trojan", "ss", "other"])
        self.assertEqual(nodes[0]["uuid"], UUID)
        self.assertTrue(nodes[1]["tls"])
        self.assertEqual(nodes[1]["sni"], "proxy.test")
        self.assertEqual(nodes[2]["password"], "123")

    def test_missing_proxies(self):
        with self.assertRaises(clients.DownloadError):
            clients.parse_clash(b"port: 7890\n")


class V2rayStatsTest(unittest.TestCase):
    def test_counters_per_email(self):
        text = ('stat: <\n  name: "user>>>u1@p>>>traffic>>>uplink"\n  value: 86\n>\n'
                'stat: <\n  name: "user>>>u1@p>>>traffic>>>downlink"\n>\n'
                'stat: <\n  name: "user>>>u2@p>>>traffic>>>downlink"\n  value: 7\n>\n'
                'stat: <\n  name: "inbound>>>api>>>traffic>>>uplink"\n  value: 9\n>\n')
        self.assertEqual(kernel_adapter.parse_v2ray_stats(text), {"u1@p": [86, 0], "u2@p": [0, 7]})

    def test_empty_output(self):
        self.assertEqual(kernel_adapter.parse_v2ray_stats(""), {})


class ListenTest(unittest.TestCase):
    def test_accepted_and_rejected(self):
        for listen, port in (("127.0.0.1:80", 80), ("0.0.0.0:443", 443), (":8443", 8443), ("[::1]:9", 9)):
            with self.subTest(listen=listen):
                self.assertEqual(kernel_adapter.parse_listen(listen), port)
        for listen in ("", "80", "192.0.2.1:80", "127.0.0.1:0", "127.0.0.1:70000", "[2001:db8::1]:80"):
            with self.subTest(listen=listen):
                with self.assertRaises(kernel_adapter.KernelError):
                    kernel_adapter.parse_listen(listen)


if __name__ == "__main__":
    unittest.main()

"""Real proxy clients for the end-to-end test, configured from parsed subscription downloads.

A node is a plain dict. Every parser fills protocol ("vmess", "vless",
"trojan" or "ss"), name, host, port, network and tls, plus the protocol's own
keys:

  VMess        uuid, alter_id, security
  VLESS        uuid, encryption, flow
  Trojan       password, sni, allow_insecure
  shadowsocks  method, password, plugin

Parsers keep every parameter of the download in the node (unknown ones in
"extra"). The config builders reject any value they cannot pass on to the
client, so a download that the client cannot use exactly as written fails the
test instead of being patched.

Clients: v2ray 4.34 for VMess and VLESS, trojan-gfw 1.16 for Trojan,
shadowsocks-libev's ss-local for shadowsocks (Debian packages v2ray, trojan,
shadowsocks-libev). Each listens as a SOCKS5 proxy on a free 127.0.0.1 port.
"""

import base64
import binascii
import http.server
import json
import os
import subprocess
import threading
import urllib.parse

from tests.e2e import kernel_adapter

V2RAY = "/usr/bin/v2ray"
TROJAN = "/usr/bin/trojan"
SS_LOCAL = "/usr/bin/ss-local"


class DownloadError(AssertionError):
    pass


# --------------------------------------------------------------------------
# share links
# --------------------------------------------------------------------------

def b64decode_loose(text):
    """Decode standard or URL-safe base64 with or without padding."""
    text = text.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as e:
        raise DownloadError("invalid base64 %r: %s" % (text[:40], e))


def split_authority(link, scheme):
    """Split SCHEME://USERINFO@HOST:PORT?QUERY#NAME into (userinfo, host, port, query dict, name)."""
    parts = urllib.parse.urlsplit(link)
    if parts.scheme != scheme:
        raise DownloadError("expected a %s:// link: %r" % (scheme, link[:80]))
    if "@" not in parts.netloc:
        raise DownloadError("%s link without user info: %r" % (scheme, link[:80]))
    # rsplit: shadowsocks plain user info contains ':' and may contain '@'
    userinfo, hostport = parts.netloc.rsplit("@", 1)
    try:
        host, port_text = hostport.rsplit(":", 1)
        port = int(port_text)
    except ValueError:
        raise DownloadError("%s link without a numeric port: %r" % (scheme, link[:80]))
    query = {}
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if key in query:
            raise DownloadError("%s link repeats query parameter %s" % (scheme, key))
        query[key] = value
    if parts.path not in ("", "/"):
        raise DownloadError("%s link has an unexpected path %r" % (scheme, parts.path))
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return urllib.parse.unquote(userinfo), host, port, query, urllib.parse.unquote(parts.fragment)


def parse_vmess(link):
    """Parse vmess://base64(v2rayN JSON)."""
    data = json.loads(b64decode_loose(link[len("vmess://"):]).decode("utf-8"))
    tls = data.get("tls") or "none"
    node = {"protocol": "vmess", "name": data.get("ps", ""), "host": data["add"], "port": int(data["port"]),
            "uuid": data["id"], "alter_id": int(data.get("aid") or 0), "security": data.get("scy") or "auto",
            "network": data.get("net") or "tcp", "header": data.get("type") or "none",
            "tls": tls == "tls", "sni": data.get("sni") or "",
            "allow_insecure": str(data.get("allowInsecure")) in ("1", "true"),
            "extra": {k: v for k, v in data.items() if k in ("path", "host", "alpn", "fp") and v}}
    if tls not in ("none", "tls"):
        node["unsupported"] = "tls=%s" % tls
    return node


def parse_vless(link):
    userinfo, host, port, query, name = split_authority(link, "vless")
    security = query.pop("security", "none")
    node = {"protocol": "vless", "name": name, "host": host, "port": port, "uuid": userinfo,
            "encryption": query.pop("encryption", "none"), "network": query.pop("type", "tcp"),
            "flow": query.pop("flow", ""), "tls": security == "tls", "sni": query.pop("sni", ""),
            "allow_insecure": query.pop("allowInsecure", "0") == "1"}
    if security not in ("none", "tls"):
        node["unsupported"] = "security=%s" % security
    drop_default(query, "headerType", "none")
    node["extra"] = query
    return node


def drop_default(query, key, default):
    """Remove `key` from `query` when it only states the default value."""
    if query.get(key) == default:
        del query[key]


def parse_trojan(link):
    userinfo, host, port, query, name = split_authority(link, "trojan")
    security = query.pop("security", "tls")
    node = {"protocol": "trojan", "name": name, "host": host, "port": port, "password": userinfo,
            "network": query.pop("type", "tcp"), "tls": security == "tls", "sni": query.pop("sni", ""),
            "allow_insecure": query.pop("allowInsecure", "0") == "1"}
    drop_default(query, "headerType", "none")
    node["extra"] = query
    return node


def parse_ss(link):
    """Parse a SIP002 link: user info is base64url(method:password) or percent-encoded plain method:password."""
    userinfo, host, port, query, name = split_authority(link, "ss")
    plain = userinfo if ":" in userinfo else b64decode_loose(userinfo).decode("utf-8")
    if ":" not in plain:
        raise DownloadError("ss link user info is not method:password: %r" % link[:80])
    method, password = plain.split(":", 1)
    plugin = query.pop("plugin", "")
    return {"protocol": "ss", "name": name, "host": host, "port": port, "method": method, "password": password,
            "plugin": plugin, "network": "tcp", "tls": False, "extra": query}


PARSERS = {"vmess": parse_vmess, "vless": parse_vless, "trojan": parse_trojan, "ss": parse_ss}


def parse_share_links(body):
    """Parse a base64 body of share links (one per line) into nodes. Links of other schemes become "other" nodes."""
    text = b64decode_loose(body.decode("ascii")).decode("utf-8")
    nodes = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        scheme = line.split("://", 1)[0]
        parser = PARSERS.get(scheme)
        nodes.append(parser(line) if parser else {"protocol": "other", "link": line})
    return nodes


# --------------------------------------------------------------------------
# Clash
# --------------------------------------------------------------------------

def parse_clash(body):
    """Parse a Clash YAML body's `proxies` into nodes (PyYAML from Debian's python3-yaml)."""
    import yaml
    document = yaml.safe_load(body.decode("utf-8"))
    if not isinstance(document, dict) or not isinstance(document.get("proxies"), list):
        raise DownloadError("Clash file without a proxies list")
    nodes = []
    for proxy in document["proxies"]:
        kind = proxy.get("type")
        common = {"name": proxy.get("name", ""), "host": proxy.get("server"), "port": int(proxy.get("port")),
                  "network": proxy.get("network", "tcp"), "tls": bool(proxy.get("tls", False))}
        if kind == "vmess":
            node = dict(common, protocol="vmess", uuid=proxy["uuid"], alter_id=int(proxy.get("alterId", 0)),
                        security=proxy.get("cipher", "auto"), header="none", sni=proxy.get("servername", ""),
                        allow_insecure=bool(proxy.get("skip-cert-verify", False)), extra={})
        elif kind == "vless":
            node = dict(common, protocol="vless", uuid=proxy["uuid"], encryption="none", flow=proxy.get("flow", ""),
                        sni=proxy.get("servername", ""), allow_insecure=bool(proxy.get("skip-cert-verify", False)),
                        extra={})
            if proxy.get("reality-opts"):
                node["unsupported"] = "reality"
        elif kind == "trojan":
            node = dict(common, protocol="trojan", password=str(proxy["password"]), tls=True,
                        sni=proxy.get("sni", ""), allow_insecure=bool(proxy.get("skip-cert-verify", False)), extra={})
        elif kind == "ss":
            node = dict(common, protocol="ss", method=proxy["cipher"], password=str(proxy["password"]),
                        plugin=proxy.get("plugin", "") or "", extra={})
        else:
            node = {"protocol": "other", "name": proxy.get("name", ""), "type": kind}
        nodes.append(node)
    return nodes, document


# --------------------------------------------------------------------------
# client configs
# --------------------------------------------------------------------------

def require(node, condition, problem):
    if not condition:
        raise DownloadError("node %r cannot be used by the test client as written: %s" % (node.get("name"), problem))


def v2ray_client_config(node, socks_port):
    """Build a v2ray client config that sends every SOCKS connection to `node` (VMess or VLESS)."""
    require(node, node.get("network") == "tcp", "network %r (only tcp)" % node.get("network"))
    require(node, not node.get("unsupported"), node.get("unsupported"))
    require(node, not node.get("extra"), "parameters %r" % node.get("extra"))
    if node["protocol"] == "vmess":
        require(node, node.get("header", "none") == "none", "header type %r" % node.get("header"))
        user = {"id": node["uuid"], "alterId": node["alter_id"], "security": node["security"]}
        settings = {"vnext": [{"address": node["host"], "port": node["port"], "users": [user]}]}
    else:
        require(node, node["encryption"] == "none", "encryption %r" % node["encryption"])
        user = {"id": node["uuid"], "encryption": "none"}
        if node.get("flow"):
            user["flow"] = node["flow"]
        settings = {"vnext": [{"address": node["host"], "port": node["port"], "users": [user]}]}
    outbound = {"protocol": node["protocol"], "settings": settings}
    if node.get("tls"):
        outbound["streamSettings"] = {"security": "tls", "tlsSettings": {
            "serverName": node.get("sni") or node["host"], "allowInsecure": bool(node.get("allow_insecure"))}}
    return {"log": {"loglevel": "warning", "access": "none"},
            "inbounds": [{"listen": "127.0.0.1", "port": socks_port, "protocol": "socks",
                          "settings": {"auth": "noauth", "udp": False}}],
            "outbounds": [outbound]}


def trojan_client_config(node, socks_port, ca_file):
    """Build a trojan-gfw client config for `node`.

    The client verifies the server with `ca_file` unless the node allows insecure TLS.
    """
    require(node, node.get("network", "tcp") == "tcp", "network %r (only tcp)" % node.get("network"))
    require(node, node.get("tls"), "trojan without TLS")
    require(node, not node.get("extra"), "parameters %r" % node.get("extra"))
    ssl = {"sni": node.get("sni") or node["host"]}
    if node.get("allow_insecure"):
        ssl.update(verify=False, verify_hostname=False)
    else:
        ssl.update(verify=True, verify_hostname=True, cert=ca_file)
    return {"run_type": "client", "local_addr": "127.0.0.1", "local_port": socks_port,
            "remote_addr": node["host"], "remote_port": node["port"], "password": [node["password"]],
            "log_level": 2, "ssl": ssl}


def ss_local_config(node, socks_port):
    require(node, not node.get("plugin"), "plugin %r" % node.get("plugin"))
    require(node, not node.get("extra"), "parameters %r" % node.get("extra"))
    require(node, node["method"] in kernel_adapter.SS_METHODS, "method %r is not in ss-libev" % node["method"])
    return {"server": node["host"], "server_port": node["port"], "password": node["password"],
            "method": node["method"], "local_address": "127.0.0.1", "local_port": socks_port, "timeout": 60}


class Client:
    """One running proxy client for `node`, a SOCKS5 proxy on 127.0.0.1:socks_port."""

    def __init__(self, node, workdir, ca_file, label):
        self.node = node
        self.socks_port = kernel_adapter.free_port()
        self.config_path = os.path.join(workdir, "client-%s.json" % label)
        self.log_path = os.path.join(workdir, "client-%s.log" % label)
        protocol = node["protocol"]
        if protocol in ("vmess", "vless"):
            config, argv = v2ray_client_config(node, self.socks_port), [V2RAY, "-config", self.config_path]
        elif protocol == "trojan":
            config, argv = trojan_client_config(node, self.socks_port, ca_file), [TROJAN, "-c", self.config_path]
        elif protocol == "ss":
            config, argv = ss_local_config(node, self.socks_port), [SS_LOCAL, "-c", self.config_path]
        else:
            raise DownloadError("no client for protocol %r" % protocol)
        kernel_adapter.write_private(self.config_path, json.dumps(config, indent=1))
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=workdir)
        if not kernel_adapter.wait_listening(self.socks_port, self.proc.pid, 10):
            self.stop()
            raise AssertionError("%s client did not listen on %d: %s" % (
                protocol, self.socks_port, kernel_adapter.tail(self.log_path, 600)))

    def fetch(self, url, timeout=4):
        """GET `url` through this client with curl, and return (curl exit status, HTTP status, body)."""
        return fetch_via_socks(self.socks_port, url, timeout)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def fetch_via_socks(socks_port, url, timeout=4):
    """GET `url` through a SOCKS5 proxy with curl, and return (curl exit status, HTTP status or 0, body bytes)."""
    proc = subprocess.run(["curl", "-sS", "--max-time", str(timeout), "--socks5-hostname",
                           "127.0.0.1:%d" % socks_port, "-o", "-", "-w", "\n%{http_code}", url],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout + 10)
    body, _, code = proc.stdout.rpartition(b"\n")
    try:
        status = int(code)
    except ValueError:
        status = 0
    return proc.returncode, status, body



# --------------------------------------------------------------------------
# local servers the tests fetch from and report to
# --------------------------------------------------------------------------

class PageServer:
    """An HTTP server on 127.0.0.1 with one page of random hex digits at /page, to check fetches byte for byte."""

    def __init__(self, size=20000):
        self.page = os.urandom(size // 2).hex().encode("ascii")
        page = self.page

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/page":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, fmt, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d/page" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

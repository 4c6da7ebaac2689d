"""Subscription templates (/api/v1/admin/subscription-templates).

One server for the module. The admin is made with `znp admin create` before
the server starts; a plain user is created through the admin API. Each test
makes its own templates with unique names and client types so the tests do
not depend on order.
Run alone: /usr/bin/python3 tests/integration/run.py test_templates
"""

import os
import threading
import unittest

from tests.integration import harness

server = None
ADMIN = ("templates-admin@example.com", "admin-pass-4Tz8")
USER = ("templates-user@example.com", "member-pass-6Wb3")
TEMPLATES = "/api/v1/admin/subscription-templates"
_tokens = {}
_counter = [0]
GOOD = "proxies:{{range .nodes}}\n  - name: {{.node_name}} ({{.protocol}}){{end}}\n"


def setUpModule():
    global server
    server = harness.Server("templates")
    try:
        server.create_admin(*ADMIN)
        server.start()
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


def unique(prefix):
    _counter[0] += 1
    return "%s-%d-%d" % (prefix, os.getpid(), _counter[0])


def make_template(**fields):
    body = {"name": unique("Template"), "client_type": unique("client"), "content": GOOD}
    body.update(fields)
    res = call("POST", TEMPLATES, admin(), body)
    if res.status != 201:
        raise AssertionError("create template failed: %r" % res)
    return res.json()["template"]


def detail_of(res):
    return " ".join(d["message"] for d in res.json()["details"])


class TemplateTest(unittest.TestCase):
    def test_create_read_update_delete(self):
        client_type = unique("Clash")
        tmpl = make_template(client_type=client_type, format="YAML", description="for tests",
                             variables={"region": {"value_type": "string"}})
        self.assertEqual(tmpl["client_type"], client_type.lower())
        self.assertEqual(tmpl["format"], "yaml")
        self.assertEqual(tmpl["version"], 0)
        self.assertEqual(tmpl["published_at"], 0)
        self.assertEqual(tmpl["variables"], {"region": {"value_type": "string"}})
        path = "%s/%d" % (TEMPLATES, tmpl["id"])

        res = call("GET", path, admin())
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["template"]["content"], GOOD)

        res = call("PATCH", path, admin(), {"name": "renamed " + tmpl["name"], "content": "{{.generated_at}}"})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["template"]["content"], "{{.generated_at}}")
        self.assertEqual(res.json()["template"]["client_type"], client_type.lower())

        # a second template with the same name in any case clashes
        res = call("POST", TEMPLATES, admin(), {"name": ("renamed " + tmpl["name"]).upper(),
                                                 "client_type": client_type, "content": GOOD})
        self.assertEqual(res.status, 409, res)
        self.assertEqual(res.json()["error"], "template_name_taken")

        # drafts are hidden from the list unless asked for
        listed = call("GET", TEMPLATES + "?client_type=" + client_type, admin()).json()
        self.assertEqual(listed["templates"], [])
        listed = call("GET", TEMPLATES + "?include_drafts=true&client_type=" + client_type, admin()).json()
        self.assertEqual([t["id"] for t in listed["templates"]], [tmpl["id"]])
        self.assertEqual(listed["pagination"]["total_count"], 1)
        self.assertEqual(call("GET", TEMPLATES + "?include_drafts=true&format=text&client_type=" + client_type,
                              admin()).json()["templates"], [])

        self.assertEqual(call("DELETE", path, admin()).status, 204)
        self.assertEqual(call("GET", path, admin()).status, 404)
        self.assertEqual(call("DELETE", path, admin()).status, 404)
        actions = psql("SELECT string_agg(action, ',' ORDER BY id) FROM audit_logs"
                       " WHERE resource_type = 'subscription_template' AND resource_id = '%d'" % tmpl["id"])
        self.assertEqual(actions, "admin.template.create,admin.template.update,admin.template.delete")

    def test_list_pages_and_sorts(self):
        client_type = unique("surge")
        ids = [make_template(client_type=client_type, name=name)["id"] for name in ("alpha", "Bravo", "charlie")]
        for tid in ids:
            self.assertEqual(call("POST", "%s/%d/publish" % (TEMPLATES, tid), admin(), {}).status, 200)
        query = TEMPLATES + "?client_type=%s&sort=name&direction=asc&per_page=2" % client_type
        first = call("GET", query, admin()).json()
        self.assertEqual([t["id"] for t in first["templates"]], ids[:2])
        self.assertEqual(first["pagination"], {"page": 1, "per_page": 2, "total_count": 3, "has_next": True,
                                               "has_prev": False})
        second = call("GET", query + "&page=2", admin()).json()
        self.assertEqual([t["id"] for t in second["templates"]], ids[2:])
        self.assertFalse(second["pagination"]["has_next"])
        newest = call("GET", TEMPLATES + "?client_type=%s&sort=version" % client_type, admin()).json()
        self.assertEqual([t["id"] for t in newest["templates"]], ids[::-1])

    def test_publish_keeps_published_version_apart_from_draft(self):
        tmpl = make_template()
        path = "%s/%d" % (TEMPLATES, tmpl["id"])
        res = call("POST", path + "/publish", admin(), {"changelog": "first"})
        self.assertEqual(res.status, 200, res)
        body = res.json()
        self.assertEqual(body["template"]["version"], 1)
        self.assertEqual(body["history"]["version"], 1)
        self.assertEqual(body["history"]["published_by"], ADMIN[0])
        self.assertGreater(body["template"]["published_at"], 0)

        res = call("PATCH", path, admin(), {"content": "draft {{.subscription.name}}"})
        self.assertEqual(res.status, 200, res)
        res = call("POST", path + "/publish", admin(), {"changelog": "second", "operator": "ops team"})
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["template"]["version"], 2)
        res = call("PATCH", path, admin(), {"content": "unpublished draft"})
        self.assertEqual(res.status, 200, res)

        history = call("GET", path + "/history", admin()).json()
        self.assertEqual(history["template_id"], tmpl["id"])
        self.assertEqual([h["version"] for h in history["history"]], [2, 1])
        self.assertEqual([h["changelog"] for h in history["history"]], ["second", "first"])
        self.assertEqual(history["history"][0]["published_by"], "ops team")
        # the draft edit after publishing changed neither published version
        self.assertEqual(history["history"][0]["content"], "draft {{.subscription.name}}")
        self.assertEqual(history["history"][1]["content"], GOOD)
        self.assertEqual(call("GET", path, admin()).json()["template"]["version"], 2)
        self.assertEqual(psql("SELECT content FROM subscription_template_versions WHERE template_id = %d"
                              " AND version = 2" % tmpl["id"]), "draft {{.subscription.name}}")
        self.assertEqual(call("GET", "%s/%d/history" % (TEMPLATES, 999999999), admin()).status, 404)

    def test_rollback_publishes_a_copy(self):
        tmpl = make_template()
        path = "%s/%d" % (TEMPLATES, tmpl["id"])
        self.assertEqual(call("POST", path + "/publish", admin(), {}).status, 200)
        call("PATCH", path, admin(), {"content": "v2 {{.template.version}}"})
        self.assertEqual(call("POST", path + "/publish", admin(), {}).status, 200)
        res = call("POST", path + "/rollback", admin(), {"version": 1})
        self.assertEqual(res.status, 200, res)
        body = res.json()
        self.assertEqual(body["template"]["version"], 3)
        self.assertEqual(body["template"]["content"], GOOD)
        self.assertEqual(body["history"]["content"], GOOD)
        self.assertEqual(body["history"]["changelog"], "roll back to version 1")
        history = call("GET", path + "/history", admin()).json()["history"]
        self.assertEqual([h["version"] for h in history], [3, 2, 1])
        actions = psql("SELECT string_agg(action, ',' ORDER BY id) FROM audit_logs"
                       " WHERE resource_type = 'subscription_template' AND resource_id = '%d'" % tmpl["id"])
        self.assertEqual(actions, "admin.template.create,admin.template.publish,admin.template.update,"
                                  "admin.template.publish,admin.template.rollback")
        res = call("POST", path + "/rollback", admin(), {"version": 9})
        self.assertEqual(res.status, 404, res)

    def test_syntax_error_reports_line_and_column(self):
        res = call("POST", TEMPLATES, admin(), {"name": unique("Bad"), "client_type": "clash",
                                                 "content": "ok\nline two {{if .nodes}\n"})
        self.assertEqual(res.status, 400, res)
        self.assertEqual(res.json()["error"], "template_invalid")
        self.assertRegex(detail_of(res), r"line 2, column \d+")

        tmpl = make_template()
        res = call("PATCH", "%s/%d" % (TEMPLATES, tmpl["id"]), admin(), {"content": "{{range .nodes}}"})
        self.assertEqual(res.status, 400, res)
        self.assertRegex(detail_of(res), r"line 1, column \d+")

    def test_missing_key_rejected_at_publish(self):
        tmpl = make_template(content="a\n{{range .nodes}}{{.node_name}} {{.no_such_key}}{{end}}")
        res = call("POST", "%s/%d/publish" % (TEMPLATES, tmpl["id"]), admin(), {})
        self.assertEqual(res.status, 400, res)
        self.assertEqual(res.json()["error"], "template_invalid")
        self.assertIn("line 2, column", detail_of(res))
        self.assertIn("no_such_key", detail_of(res))
        self.assertEqual(call("GET", "%s/%d" % (TEMPLATES, tmpl["id"]), admin()).json()["template"]["version"], 0)

        # every key of the download context is known to the check
        known = ("{{.subscription.name}} {{.subscription.traffic_remaining_bytes}} {{.generated_at}}\n"
                 "{{range $i, $b := .protocol_bindings}}{{$i}} {{$b.hostname}}:{{$b.port}} {{$b.profile}}{{end}}\n"
                 "{{.user_identity.uuid}} {{.template.name}} {{.template.version}}")
        tmpl = make_template(content=known)
        res = call("POST", "%s/%d/publish" % (TEMPLATES, tmpl["id"]), admin(), {})
        self.assertEqual(res.status, 200, res)

    def test_single_default_per_client_type(self):
        client_type = unique("sing-box")
        first = make_template(client_type=client_type, is_default=True)
        second = make_template(client_type=client_type, is_default=True)
        other = make_template(is_default=True)
        self.assertFalse(call("GET", "%s/%d" % (TEMPLATES, first["id"]), admin()).json()["template"]["is_default"])
        self.assertTrue(call("GET", "%s/%d" % (TEMPLATES, second["id"]), admin()).json()["template"]["is_default"])
        self.assertTrue(call("GET", "%s/%d" % (TEMPLATES, other["id"]), admin()).json()["template"]["is_default"])

        ids = [make_template(client_type=client_type)["id"] for _ in range(10)]
        token = admin()
        statuses = []

        def set_default(tid):
            res = call("PATCH", "%s/%d" % (TEMPLATES, tid), token, {"is_default": True})
            statuses.append(res.status)

        threads = [threading.Thread(target=set_default, args=(tid,)) for tid in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(statuses, [200] * 10)
        count = psql("SELECT count(*) FROM subscription_templates WHERE client_type = '%s' AND is_default"
                     % client_type.lower())
        self.assertEqual(count, "1")

    def test_clients_list_is_the_detection_table(self):
        res = call("GET", TEMPLATES + "/clients", admin())
        self.assertEqual(res.status, 200, res)
        clients = {c["client_type"]: c for c in res.json()["clients"]}
        self.assertIn("v2rayng", clients)
        self.assertIn("v2rayn", clients)
        self.assertIn("mihomo", clients["clash-meta"]["user_agent_tokens"])
        self.assertEqual(clients["clash-meta"]["kind"], "core")
        self.assertEqual(clients["stash"]["format"], "stash")

    def test_non_admin_is_forbidden(self):
        tmpl = make_template()
        path = "%s/%d" % (TEMPLATES, tmpl["id"])
        self.assertEqual(call("GET", TEMPLATES, user()).status, 403)
        self.assertEqual(call("GET", TEMPLATES + "/clients", user()).status, 403)
        self.assertEqual(call("POST", TEMPLATES, user(), {"name": "x", "client_type": "x", "content": "x"}).status,
                         403)
        self.assertEqual(call("PATCH", path, user(), {"name": "y"}).status, 403)
        self.assertEqual(call("POST", path + "/publish", user(), {}).status, 403)
        self.assertEqual(call("POST", path + "/rollback", user(), {"version": 1}).status, 403)
        self.assertEqual(call("GET", path + "/history", user()).status, 403)
        self.assertEqual(call("DELETE", path, user()).status, 403)
        self.assertEqual(call("GET", TEMPLATES).status, 401)


if __name__ == "__main__":
    unittest.main()

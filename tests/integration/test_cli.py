"""The command line: version, config checking and schema migrations.

Run alone: /usr/bin/python3 -m unittest tests.integration.test_cli -v
"""

import os
import re
import subprocess
import unittest

from tests.integration import harness


def run(argv, **kwargs):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=harness.scaled(60), **kwargs)


class Version(unittest.TestCase):
    def test_version(self):
        proc = run([harness.ZNP_BIN, "version"])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertRegex(proc.stdout, r"\b\d+\.\d+\.\d+\b")

    def test_unknown_command(self):
        proc = run([harness.ZNP_BIN, "no-such-command"])
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("no-such-command", proc.stderr)


class CheckConfig(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = harness.Server("check-config")
        cls.server.pick_ports()
        cls.server.write_config()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def check(self, path):
        return run([harness.ZNP_BIN, "tools", "check-config", "--config", path])

    def test_valid_config_masks_secrets(self):
        proc = self.check(self.server.config_path)
        output = proc.stdout + proc.stderr
        self.assertEqual(proc.returncode, 0, output)
        self.assertIn("access_secret", output)
        self.assertNotIn(self.server.access_secret, output)
        self.assertNotIn(self.server.refresh_secret, output)
        self.assertIn(str(self.server.http_port), output)

    def test_dsn_password_is_masked(self):
        path = os.path.join(self.server.workdir, "dsn.yaml")
        with open(path, "w") as f:
            f.write('database:\n  dsn: "host=127.0.0.1 dbname=znp user=znp password=hunter2-s3cret"\n'
                    'auth:\n  access_secret: "%s"\n  refresh_secret: "%s"\n' % (
                        self.server.access_secret, self.server.refresh_secret))
        proc = self.check(path)
        output = proc.stdout + proc.stderr
        self.assertEqual(proc.returncode, 0, output)
        self.assertNotIn("hunter2-s3cret", output)

    def test_unknown_key_reports_line(self):
        path = os.path.join(self.server.workdir, "unknown.yaml")
        with open(path, "w") as f:
            f.write("server:\n  listen: \"127.0.0.1:8080\"\n  bogus_key: 1\nlog:\n  level: info\n")
        proc = self.check(path)
        output = proc.stdout + proc.stderr
        self.assertNotEqual(proc.returncode, 0, output)
        self.assertIn("bogus_key", output)
        self.assertRegex(output, r"unknown\.yaml:3\b")

    def test_invalid_value_is_rejected(self):
        path = os.path.join(self.server.workdir, "badport.yaml")
        with open(path, "w") as f:
            f.write("server:\n  listen: \"127.0.0.1:99999\"\n")
        proc = self.check(path)
        self.assertNotEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn("listen", proc.stdout + proc.stderr)

    def test_missing_file(self):
        proc = self.check(os.path.join(self.server.workdir, "does-not-exist.yaml"))
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("does-not-exist.yaml", proc.stderr)


class Migrations(unittest.TestCase):
    """`znp migrate down` then `up` must give back the same schema."""

    @classmethod
    def setUpClass(cls):
        cls.server = harness.Server("migrate")

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def schema_dump(self):
        """pg_dump --schema-only of the znp database, with the cluster started by hand for the dump."""
        cluster = harness.EmbeddedCluster(self.server.data_dir)
        started = False
        if not cluster.is_running():
            cluster.start()
            started = True
        try:
            info = cluster.info()
            argv = harness.as_owner_of(cluster.data_dir, [
                os.path.join(cluster.bin, "pg_dump"), "--schema-only", "--no-owner",
                "-h", info.socket_dir, "-p", str(info.port), self.server.database_name()])
            proc = run(argv, cwd="/")
            self.assertEqual(proc.returncode, 0, proc.stderr)
            # Comments and the \restrict / \unrestrict lines differ between runs because
            # pg_dump (15.20 on Debian 12) writes a random key into them; the statements do not.
            return "\n".join(line for line in proc.stdout.splitlines()
                             if not line.startswith(("--", "\\restrict", "\\unrestrict")))
        finally:
            if started:
                cluster.stop()

    def test_down_then_up_restores_schema(self):
        server = self.server
        up = server.cli("migrate", "up")
        self.assertEqual(up.returncode, 0)
        first = self.schema_dump()
        self.assertIn("CREATE TABLE public.users", first)
        self.assertIn("CREATE TABLE public.site_settings", first)

        status = server.cli("migrate", "status").stdout
        self.assertRegex(status, r"(?im)^.*\b0*1\b.*applied")

        server.cli("migrate", "down", "--to", "0")
        empty = self.schema_dump()
        self.assertNotIn("CREATE TABLE public.users", empty)
        self.assertNotIn("site_settings_notify", empty)
        status = server.cli("migrate", "status").stdout
        self.assertRegex(status, r"(?im)^.*\b0*1\b.*pending")

        server.cli("migrate", "up")
        again = self.schema_dump()
        self.assertEqual(re.sub(r"\n+", "\n", first), re.sub(r"\n+", "\n", again))

    def test_up_is_idempotent(self):
        self.server.cli("migrate", "up")
        before = self.schema_dump()
        proc = self.server.cli("migrate", "up")
        self.assertEqual(proc.returncode, 0)
        self.assertEqual(before, self.schema_dump())


if __name__ == "__main__":
    unittest.main()

"""Outgoing mail through the job queue against a real SMTP server.

Mail jobs are queued by inserting rows into `jobs` through psql, exactly as
znp_mail_enqueue writes them, so these tests do not depend on any route that
sends mail. smtpcap.py (aiosmtpd) offers STARTTLS with a self-signed
certificate, requires AUTH and stores one file per message.
Run alone: /usr/bin/python3 tests/integration/run.py test_mail
"""

import email
import email.header
import email.policy
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unittest

from tests.integration import harness

HERE = os.path.dirname(os.path.abspath(__file__))
SMTP_USER = "mailer"
SMTP_PASSWORD = "smtp-pass-5Rt8"
MAX_ATTEMPTS = 2

server = None
cert = key = None
cert_dir = None
smtp_port = None


class SmtpCapture:
    """One smtpcap.py process on 127.0.0.1:port writing into outdir."""

    def __init__(self, port, outdir):
        self.port = port
        self.outdir = outdir
        self.proc = None

    def start(self):
        argv = ["/usr/bin/python3", os.path.join(HERE, "smtpcap.py"), "--port", str(self.port),
                "--outdir", self.outdir, "--cert", cert, "--key", key,
                "--user", SMTP_USER, "--password", SMTP_PASSWORD]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if "smtpcap listening" not in line:
            self.stop()
            raise AssertionError("smtpcap did not start: %r" % line)

    def stop(self):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc = None

    def messages(self):
        """Captured messages as (facts dict, email.message.EmailMessage), oldest first."""
        out = []
        for path in sorted(glob.glob(os.path.join(self.outdir, "*.eml"))):
            with open(path[:-4] + ".json") as f:
                facts = json.load(f)
            with open(path, "rb") as f:
                out.append((facts, email.message_from_binary_file(f, policy=email.policy.default)))
        return out


def setUpModule():
    global server, cert, key, cert_dir, smtp_port
    cert_dir = harness.make_workdir("mail-certs")
    cert, key = harness.make_self_signed_cert(cert_dir)
    smtp_port = harness.free_port()
    server = harness.Server("mail", config={
        "jobs": {"threads": 1, "poll_interval_ms": 200},
        "mail": {
            "smtp_url": "smtp://127.0.0.1:%d" % smtp_port,
            "starttls": "required",
            "username": SMTP_USER,
            "from": "noreply@example.test",
            "ca_file": cert,
            "timeout_ms": 5000,
            "max_attempts": MAX_ATTEMPTS,
        },
        "site": {"name": "Mail Test Site"},
    })
    try:
        server.start(env={"ZNP_MAIL_PASSWORD": SMTP_PASSWORD})
    except BaseException:
        server.cleanup()
        raise


def tearDownModule():
    try:
        server.stop_expect_clean()
    finally:
        server.cleanup()
        if not harness.KEEP:
            shutil.rmtree(cert_dir, ignore_errors=True)


def psql(sql):
    return harness.EmbeddedCluster(server.data_dir).psql(sql, database=server.database_name())


def queue_mail(to, template, locale, variables, max_attempts=MAX_ATTEMPTS):
    payload = json.dumps({"to": to, "template": template, "locale": locale, "vars": variables})
    out = psql("INSERT INTO jobs (kind, payload, max_attempts) VALUES ('mail.send', $$%s$$::jsonb, %d) RETURNING id"
               % (payload, max_attempts))
    return int(out.strip().splitlines()[0])


def job_row(job_id):
    out = psql("SELECT status, attempts, payload::text, COALESCE(last_error, '') FROM jobs WHERE id = %d" % job_id)
    status, attempts, payload, last_error = out.strip().split("|", 3)
    return {"status": status, "attempts": int(attempts), "payload": json.loads(payload), "last_error": last_error}


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + harness.scaled(timeout)
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s" % what)


def server_log():
    with open(server.log_path, errors="replace") as f:
        return f.read()


class MailDelivery(unittest.TestCase):
    def setUp(self):
        self.outdir = harness.make_workdir("mail-out")
        self.smtp = SmtpCapture(smtp_port, self.outdir)

    def tearDown(self):
        self.smtp.stop()
        if not harness.KEEP:
            shutil.rmtree(self.outdir, ignore_errors=True)

    def test_delivered_over_starttls_with_auth(self):
        self.smtp.start()
        job = queue_mail("alice@example.com", "verify_email", "en", {"code": "482913", "minutes": 15})

        messages = wait_for(lambda: self.smtp.messages(), 20, "the message")
        self.assertEqual(len(messages), 1)
        facts, msg = messages[0]
        self.assertTrue(facts["tls"])
        self.assertEqual(facts["auth_user"], SMTP_USER)
        self.assertEqual(facts["mail_from"], "noreply@example.test")
        self.assertEqual(facts["rcpt_tos"], ["alice@example.com"])
        self.assertEqual(str(msg["To"]), "alice@example.com")
        self.assertEqual(str(msg["Subject"]), "Mail Test Site: your verification code")
        self.assertIsNotNone(msg["Date"])
        self.assertIsNotNone(msg["Message-ID"])
        self.assertEqual(msg.get_content_type(), "text/plain")
        body = msg.get_content()
        self.assertIn("482913", body)
        self.assertIn("15 minutes", body)

        row = wait_for(lambda: job_row(job)["status"] == "done" and job_row(job), 10, "the job to be done")
        self.assertEqual(row["attempts"], 1)
        self.assertEqual(row["payload"], {}, "the code must not stay in the queue")
        log = server_log()
        self.assertNotIn("482913", log)
        self.assertNotIn("alice@example.com", log)
        self.assertIn("a***@example.com", log)

    def test_chinese_subject_is_encoded(self):
        self.smtp.start()
        queue_mail("bob@example.com", "password_reset", "zh-CN", {"code": "771204", "minutes": 30})
        facts, msg = wait_for(lambda: self.smtp.messages(), 20, "the message")[0]
        raw = msg.as_bytes()
        self.assertIn(b"=?UTF-8?B?", raw)
        self.assertEqual(str(msg["Subject"]), "Mail Test Site：重置密码验证码")
        self.assertIn("771204", msg.get_content())
        self.assertIn("30 分钟", msg.get_content())

    def test_retried_until_server_comes_up(self):
        job = queue_mail("carol@example.com", "email_change", "en", {"code": "300118", "minutes": 10},
                         max_attempts=5)
        row = wait_for(lambda: (lambda r: r["attempts"] >= 1 and r["status"] == "queued" and r)(job_row(job)),
                       15, "the first failed attempt")
        self.assertIn("smtp send failed", row["last_error"])
        self.assertNotIn("carol", row["last_error"])

        self.smtp.start()
        facts, msg = wait_for(lambda: self.smtp.messages(), 30, "the retried message")[0]
        self.assertEqual(facts["rcpt_tos"], ["carol@example.com"])
        self.assertIn("300118", msg.get_content())
        row = wait_for(lambda: job_row(job)["status"] == "done" and job_row(job), 10, "the job to be done")
        self.assertGreaterEqual(row["attempts"], 2)

    def test_dead_after_max_attempts(self):
        job = queue_mail("dave@example.org", "verify_email", "en", {"code": "909090", "minutes": 5})
        row = wait_for(lambda: job_row(job)["status"] == "dead" and job_row(job), 30, "the job to be dead")
        self.assertEqual(row["attempts"], MAX_ATTEMPTS)
        self.assertEqual(row["payload"], {})

        audit = psql("SELECT action, diff::text FROM audit_logs WHERE action = 'mail.failed'")
        rows = [line.split("|", 1) for line in audit.strip().splitlines()]
        self.assertEqual(len(rows), 1, audit)
        diff = json.loads(rows[0][1])
        self.assertEqual(diff["recipient"], "d***@example.org")
        self.assertEqual(diff["template"], "verify_email")
        self.assertNotIn("909090", audit)
        self.assertNotIn("dave@", audit)

        metrics = server.request("GET", "/metrics").body.decode()
        self.assertIn('znp_jobs_total{kind="mail.send",result="dead"} 1', metrics)
        self.assertIn('znp_jobs_total{kind="mail.send",result="retry"}', metrics)
        self.assertNotIn("909090", server_log())



class MailDisabled(unittest.TestCase):
    """Without mail.smtp_url a mail job logs one line and is done."""

    @classmethod
    def setUpClass(cls):
        cls.server = harness.Server("mail-off", config={"jobs": {"poll_interval_ms": 200}})
        try:
            cls.server.start()
        except BaseException:
            cls.server.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.server.stop_expect_clean()
        finally:
            cls.server.cleanup()

    def psql(self, sql):
        return harness.EmbeddedCluster(self.server.data_dir).psql(sql, database=self.server.database_name())

    def test_job_done_without_sending(self):
        payload = json.dumps({"to": "erin@example.com", "template": "verify_email", "locale": "en",
                              "vars": {"code": "112233", "minutes": 5}})
        job = int(self.psql("INSERT INTO jobs (kind, payload) VALUES ('mail.send', $$%s$$::jsonb) RETURNING id"
                            % payload).strip().splitlines()[0])
        status = wait_for(lambda: (lambda v: v in ("done", "dead") and v)(
            self.psql("SELECT status FROM jobs WHERE id = %d" % job).strip()), 10, "the job to finish")
        self.assertEqual(status, "done")
        self.assertEqual(self.psql("SELECT payload::text FROM jobs WHERE id = %d" % job).strip(), "{}")
        with open(self.server.log_path, errors="replace") as f:
            log = f.read()
        self.assertEqual(log.count("mail disabled"), 1)
        self.assertIn("e***@example.com", log)
        self.assertNotIn("112233", log)
        self.assertNotIn("erin@example.com", log)

if __name__ == "__main__":
    unittest.main()

"""The suite-wide secret sweep: no response of any test module leaks a secret.

harness.TRAFFIC records every HTTP exchange with a znp on 127.0.0.1 (through
http.client and curl), every mail an in-process aiosmtpd server received and,
when a server stops, the refresh-token ids and password hashes in its
database. This module's name sorts last, so run.py runs it after every other
module of the same run and it checks all of their responses (bodies and
headers) for:

- an argon2 hash ("$argon2") or any stored password hash,
- a refresh-token row id (jti),
- a code that znp mailed (verification, reset, email change),
- a TOTP secret or recovery code,
- a password (8 characters or more) that a test sent in a request body,
  except in the published documents (/openapi.json, /docs/), whose
  examples are the same for everyone.

Only the responses documented to hand out a secret once are exempt, and only
for that secret: TOTP enrolment for its secret, MFA confirmation and
recovery-code regeneration for the recovery codes. Run alone it has nothing
to check and skips.
"""

import email
import email.policy
import json
import re
import unittest

from tests.integration import harness

# path (query removed) -> the kinds of secret that response may carry once
ONE_TIME = {
    "/api/v1/user/mfa/totp/enroll": {"totp_secret"},
    "/api/v1/user/mfa/totp/confirm": {"recovery_code"},
    "/api/v1/user/mfa/recovery-codes/regenerate": {"recovery_code"},
}
STATIC_DOCUMENTS = ("/openapi.json", "/docs/")
PASSWORD_KEYS = ("password", "new_password", "current_password")
MIN_EXCHANGES = 50

ALONE_SIX_DIGITS = re.compile(r"(?<![0-9A-Za-z])[0-9]{6}(?![0-9A-Za-z])")
RECOVERY_SHAPE = re.compile(r"(?<![0-9A-Za-z])[a-z2-7]{4}-[a-z2-7]{4}(?![0-9A-Za-z])")


def plain_path(target):
    """The path of a request target or URL, without scheme, host and query."""
    path = re.sub(r"^[a-z]+://[^/]+", "", target or "")
    return path.split("?", 1)[0]


def mail_text(raw):
    message = email.message_from_bytes(raw, policy=email.policy.default)
    parts = message.walk() if message.is_multipart() else [message]
    texts = [str(message["subject"] or "")]
    for part in parts:
        if part.get_content_maintype() == "text":
            texts.append(part.get_content())
    return "\n".join(texts)


def json_strings(value):
    """Every string inside a decoded JSON value (keys included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from json_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from json_strings(item)


def headers_without_length(headers):
    try:
        pairs = json.loads(headers)
    except ValueError:
        return headers
    if isinstance(pairs, dict):
        pairs = [(k, v) for k, vs in pairs.items() for v in vs]
    return json.dumps([(k, v) for k, v in pairs if k.lower() != "content-length"])


class Secrets:
    """The secrets the suite saw, collected from the record."""

    def __init__(self, exchanges, mails, stored):
        self.codes = set()
        for raw in mails:
            self.codes.update(ALONE_SIX_DIGITS.findall(mail_text(raw)))
        self.stored = {s for s in stored if len(s) >= 16}
        self.totp_secrets = set()
        self.recovery_codes = set()
        self.passwords = set()
        for ex in exchanges:
            path = plain_path(ex["path"])
            body = self._json(ex["body"])
            if path in ONE_TIME and isinstance(body, dict):
                if isinstance(body.get("secret"), str):
                    self.totp_secrets.add(body["secret"])
                for code in body.get("recovery_codes") or []:
                    if isinstance(code, str):
                        self.recovery_codes.add(code)
            sent = self._json(ex["request"])
            if isinstance(sent, dict):
                for key in PASSWORD_KEYS:
                    value = sent.get(key)
                    # short ones ("short") and e-mail shaped ones are ordinary words in responses
                    if isinstance(value, str) and len(value.strip()) >= 8 and "@" not in value:
                        self.passwords.add(value)

    @staticmethod
    def _json(data):
        if not data:
            return None
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return None


def findings_for(ex, secrets):
    """The list of (kind, secret) that exchange `ex` leaked."""
    path = plain_path(ex["path"])
    allowed = ONE_TIME.get(path, set())
    body = ex["body"]
    text = body.decode("utf-8", "replace")
    headers = ex["headers"]
    both = text + "\n" + headers

    found = []
    if "$argon2" in both:
        found.append(("password hash", "$argon2"))
    for value in secrets.stored:
        if value in both:
            found.append(("stored secret", value))
    # the published documents are the same for everyone (their examples may match a test's password)
    if not path.startswith(STATIC_DOCUMENTS):
        for value in secrets.passwords:
            if value in both:
                found.append(("password", value))
    if "totp_secret" not in allowed:
        for value in secrets.totp_secrets:
            if value in both:
                found.append(("totp secret", value))

    if "recovery_code" not in allowed:
        for value in set(RECOVERY_SHAPE.findall(both)) & secrets.recovery_codes:
            found.append(("recovery code", value))
    # mailed codes: strings of JSON responses, the headers, other text responses except the metrics page
    try:
        haystacks = list(json_strings(json.loads(text)))
    except ValueError:
        haystacks = [] if path == "/metrics" else [text]
    haystacks.append(headers_without_length(headers))
    for hay in haystacks:
        for value in set(ALONE_SIX_DIGITS.findall(hay)) & secrets.codes:
            found.append(("mailed code", value))
    return found


class SecretSweep(unittest.TestCase):
    def test_no_response_of_the_suite_leaks_a_secret(self):
        with harness.TRAFFIC.lock:
            exchanges = [ex for ex in harness.TRAFFIC.exchanges if ex["module"] != __name__.rsplit(".", 1)[-1]]
            mails = list(harness.TRAFFIC.mails)
            stored = set(harness.TRAFFIC.stored)
        if not harness.RECORD or len(exchanges) < MIN_EXCHANGES:
            self.skipTest("only %d recorded exchanges: run it after other modules in one run.py call"
                          % len(exchanges))
        secrets = Secrets(exchanges, mails, stored)
        # the sweep found the secrets the modules of this run hand out, or a clean result means nothing
        modules = {ex["module"] for ex in exchanges}
        self.assertTrue(secrets.passwords and secrets.stored, "no password or stored secret recorded")
        if modules & {"test_register", "test_identity_flow", "test_account"}:
            self.assertTrue(secrets.codes, "no mailed code recorded")
        if modules & {"test_mfa", "test_identity_flow"}:
            self.assertTrue(secrets.totp_secrets and secrets.recovery_codes, "no TOTP secret recorded")
        leaks = []
        for ex in exchanges:
            for kind, value in findings_for(ex, secrets):
                leaks.append("%s: %s %s -> %s leaked a %s (%s)" % (
                    ex["module"], ex["method"], ex["path"], ex["status"], kind, value[:12] + "..."))
        self.assertEqual(leaks, [], "\n".join(sorted(set(leaks))[:40]))


class SweepSelfCheck(unittest.TestCase):
    """The detectors find what they look for (so a clean sweep means something)."""

    def test_each_kind_is_detected(self):
        mail = (b"Subject: code\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYour code is 482913.\r\n")
        exchanges = [
            {"path": "/api/v1/user/mfa/totp/enroll", "body": b'{"secret": "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"}',
             "request": b"", "headers": "[]"},
            {"path": "/api/v1/user/mfa/totp/confirm", "body": b'{"recovery_codes": ["abcd-efgh"]}',
             "request": b"", "headers": "[]"},
            {"path": "/api/v1/auth/login", "body": b"{}", "request": b'{"password": "sent-pass-1Ab2"}',
             "headers": "[]"},
        ]
        jti = "0b3f6a8e-0a47-4b7e-9a55-5b1f9a1c2d3e"

        secrets = Secrets(exchanges, [mail], {jti, "short"})
        self.assertEqual(secrets.codes, {"482913"})
        self.assertEqual(secrets.stored, {jti})
        cases = [
            ('{"hash": "$argon2id$v=19$m=256"}', "password hash"),
            ('{"jti": "%s"}' % jti, "stored secret"),
            ('{"echo": "sent-pass-1Ab2"}', "password"),
            ('{"s": "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"}', "totp secret"),
            ('{"c": ["abcd-efgh"]}', "recovery code"),
            ('{"message": "use 482913"}', "mailed code"),
            ("plain 482913 text", "mailed code"),
        ]

        for body, kind in cases:
            ex = {"path": "/api/v1/user/account/profile", "body": body.encode(), "headers": "[]"}
            self.assertIn(kind, [k for k, _ in findings_for(ex, secrets)], body)
        quiet = {"path": "/api/v1/user/account/profile", "headers": '[["content-length", "482913"]]',
                 "body": b'{"code": 482913, "at": "2026-01-01T00:00:00Z", "id": "x482913"}'}
        self.assertEqual(findings_for(quiet, secrets), [])
        # the one-time responses may carry their own secret, and only that one
        enroll = dict(exchanges[0], body=b'{"secret": "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "r": "abcd-efgh"}')
        self.assertEqual([k for k, _ in findings_for(enroll, secrets)], ["recovery code"])


if __name__ == "__main__":
    unittest.main()

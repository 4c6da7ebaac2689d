"""A small SMTP server on 127.0.0.1 that keeps every message it receives.

Built on aiosmtpd (Debian python3-aiosmtpd). The tests point mail.smtp_url at
it and read the codes out of the captured messages.
"""

import email
import email.policy
import re
import socket
import ssl
import threading
import time

from aiosmtpd.controller import Controller

from tests.integration import harness


class Message:
    """One captured message: envelope recipients, decoded subject and text body, TLS or not."""

    def __init__(self, rcpt_tos, raw, tls=False):
        self.rcpt_tos = [r.lower() for r in rcpt_tos]
        self.tls = tls  # True when the message came over a TLS connection
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        self.subject = str(parsed["subject"] or "")
        part = parsed.get_body(preferencelist=("plain",)) if parsed.is_multipart() else parsed
        self.body = part.get_content() if part is not None else ""
        self.raw = raw

    def code(self):
        """The first group of exactly six digits in the body, or None."""
        match = re.search(r"(?<!\d)(\d{6})(?!\d)", self.body)
        return match.group(1) if match else None


def _implicit_tls(server):
    """True when the connection was TLS from the start (aiosmtpd sets session.ssl only after STARTTLS)."""
    transport = getattr(server, "transport", None)
    return transport is not None and transport.get_extra_info("ssl_object") is not None


class _Handler:
    def __init__(self, capture):
        self.capture = capture

    async def handle_DATA(self, server, session, envelope):
        self.capture._add(Message(envelope.rcpt_tos, envelope.original_content or envelope.content,
                                  tls=session.ssl is not None or _implicit_tls(server)))
        return "250 OK"


class SmtpCapture:
    """Start with start(), read with wait_for(), stop with stop().

    With `cert` and `key` (PEM paths) it speaks implicit TLS from the first
    byte, as an smtps:// server does, and url names smtps.
    """

    def __init__(self, cert=None, key=None):
        self.cert = cert
        self.key = key
        self.messages = []
        self.cond = threading.Condition()
        self.controller = None
        self.port = None

    def start(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        options = {}
        if self.cert:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.cert, self.key)
            options["ssl_context"] = context
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **options)
        self.controller.start()
        return self

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % ("smtps" if self.cert else "smtp", self.port)

    def _add(self, message):
        with self.cond:
            self.messages.append(message)
            self.cond.notify_all()

    def for_address(self, address):
        with self.cond:
            return [m for m in self.messages if address.lower() in m.rcpt_tos]

    def wait_for(self, address, count=1, timeout=15):
        """Block until `address` has received `count` messages; return the newest."""
        deadline = time.monotonic() + harness.scaled(timeout)
        with self.cond:
            while True:
                found = [m for m in self.messages if address.lower() in m.rcpt_tos]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no mail #%d for %s within %.0f s (have %d)" % (
                        count, address, harness.scaled(timeout), len(found)))
                self.cond.wait(left)

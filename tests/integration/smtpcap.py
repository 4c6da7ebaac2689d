#!/usr/bin/python3
"""A capturing SMTP server for the mail tests (aiosmtpd from Debian's python3-aiosmtpd).

Each accepted message is written to OUTDIR as <ns>-<hex>.json (envelope,
TLS and AUTH facts) and then <ns>-<hex>.eml (the raw message); the .eml
appears last, by rename, so a reader that sees it also finds the .json.

Usage: /usr/bin/python3 smtpcap.py --port P --outdir DIR [--cert C --key K] [--user U --password PW]
With --cert and --key the server offers STARTTLS and requires it before MAIL;
with --user it requires AUTH (PLAIN or LOGIN). It prints
"smtpcap listening on HOST:PORT" once it accepts connections and stops on
SIGTERM or SIGINT. Run it with /usr/bin/python3: aiosmtpd is a Debian package.
"""

import argparse
import json
import os
import signal
import ssl
import threading
import time
import uuid

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class CaptureHandler:
    def __init__(self, outdir):
        self.outdir = outdir
        os.makedirs(outdir, exist_ok=True)

    async def handle_DATA(self, server, session, envelope):
        name = "%d-%s" % (time.time_ns(), uuid.uuid4().hex[:8])
        login = None
        if isinstance(session.auth_data, LoginPassword):
            login = session.auth_data.login.decode("utf-8", "replace")
        facts = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "tls": session.ssl is not None,
            "auth_user": login,
        }
        with open(os.path.join(self.outdir, name + ".json"), "w") as f:
            json.dump(facts, f)
        partial = os.path.join(self.outdir, "." + name + ".eml")
        with open(partial, "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(partial, os.path.join(self.outdir, name + ".eml"))
        return "250 OK captured " + name


class PasswordCheck:
    def __init__(self, user, password):
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == self.user
              and auth_data.password == self.password)
        # returning auth_data makes aiosmtpd keep it in session.auth_data
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--outdir", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--user")
    parser.add_argument("--password", default="")
    args = parser.parse_args()

    options = {"auth_require_tls": bool(args.cert)}
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
        options.update(tls_context=context, require_starttls=True)
    if args.user:
        options.update(authenticator=PasswordCheck(args.user, args.password), auth_required=True)

    controller = Controller(CaptureHandler(args.outdir), hostname=args.host, port=args.port, **options)
    controller.start()
    print("smtpcap listening on %s:%d" % (args.host, args.port), flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # a short wait in a loop reacts to the signal promptly
    while not stop.wait(0.2):
        pass
    controller.stop()


if __name__ == "__main__":
    main()

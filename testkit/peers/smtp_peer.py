"""A local SMTP peer for blast's tests (aiosmtpd 1.4.6; install with scripts/peers).

Listens on 127.0.0.1, prints "READY <port>" on stdout once it accepts connections, and
appends one JSON line per accepted message to --out:
  {"mail_from", "rcpt_tos", "subject", "headers": {lowercased name: value, last wins},
   "text": text/plain body or null, "html": text/html body or null, "raw": whole message}
Bodies are decoded (transfer encoding, charset) with CRLF turned into LF; "raw" is as sent.
Only accepted recipients are listed; a message with none is never recorded.

  --port N               0 (default) picks a free port
  --out FILE             where accepted messages go (nothing is recorded without it)
  --tempfail ADDR        RCPT TO ADDR always answers 451 4.3.0 (repeatable)
  --tempfail-once ADDR   the first RCPT TO ADDR answers 451, later ones 250 (repeatable)
  --reject ADDR          RCPT TO ADDR answers 550 5.1.1 (repeatable)
  --auth USER:PASS       require AUTH PLAIN/LOGIN (no TLS) before MAIL; bad credentials get 535
  --exit-on-stdin-eof    also stop when stdin closes (so a crashed parent leaves no orphan)
SIGTERM and SIGINT stop it cleanly.
"""

import argparse
import email
import email.policy
import json
import logging
import signal
import sys
import threading
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


def _addr(a):
    return a.strip().strip("<>").lower()


class Handler:
    def __init__(self, args):
        self.out = args.out
        self.reject = {_addr(a) for a in args.reject}
        self.tempfail = {_addr(a) for a in args.tempfail}
        self.tempfail_once = {_addr(a) for a in args.tempfail_once}
        # Handler hooks all run on the controller's single event-loop thread: no lock needed.
        self.tempfailed_once = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        a = _addr(address)
        if a in self.reject:
            return "550 5.1.1 no such user"
        if a in self.tempfail:
            return "451 4.3.0 try again later"
        if a in self.tempfail_once and a not in self.tempfailed_once:
            self.tempfailed_once.add(a)
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        if self.out:
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            record = {
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "subject": None if msg["subject"] is None else str(msg["subject"]),
                "headers": {k.lower(): str(v) for k, v in msg.items()},
                "text": _body(msg, "plain"),
                "html": _body(msg, "html"),
                "raw": raw.decode("utf-8", "replace"),
            }
            line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8", "replace")
            with open(self.out, "ab", buffering=0) as f:  # one write() per line
                f.write(line)
        return "250 OK"


def _body(msg, subtype):
    part = msg.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    try:
        text = part.get_content()
    except (LookupError, UnicodeError):  # unknown or lying charset
        text = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
    return text.replace("\r\n", "\n")


class PeerController(Controller):
    """Controller that learns its real port when bound with port 0 (1.4.6 can't by itself:
    start() connects to self.port to check the server is up)."""

    async def _bind(self):
        server = await super()._create_server()
        self.port = server.sockets[0].getsockname()[1]
        return server

    def _create_server(self):
        return self._bind()


def main():
    p = argparse.ArgumentParser(description="Local SMTP test peer (see module docstring).")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--out")
    p.add_argument("--tempfail", action="append", default=[])
    p.add_argument("--tempfail-once", action="append", default=[])
    p.add_argument("--reject", action="append", default=[])
    p.add_argument("--auth", help="USER:PASS")
    p.add_argument("--exit-on-stdin-eof", action="store_true")
    args = p.parse_args()

    # Quiet the "AUTH without TLS" warnings and per-connection chatter; keep real errors.
    warnings.filterwarnings("ignore", module="aiosmtpd")
    logging.getLogger("mail.log").setLevel(logging.ERROR)

    kwargs = {}
    if args.auth is not None:
        user, sep, password = args.auth.partition(":")
        if not sep:
            p.error("--auth wants USER:PASS")
        creds = (user.encode(), password.encode())

        def authenticator(server, session, envelope, mechanism, auth_data):
            if (getattr(auth_data, "login", None), getattr(auth_data, "password", None)) == creds:
                return AuthResult(success=True)
            # handled=False makes aiosmtpd answer 535; handled=True would send nothing.
            return AuthResult(success=False, handled=False)

        kwargs = dict(authenticator=authenticator, auth_required=True, auth_require_tls=False)

    # server_hostname: the default is socket.getfqdn(), a DNS lookup that can stall.
    controller = PeerController(
        Handler(args), hostname="127.0.0.1", port=args.port,
        server_hostname="blast-smtp-peer", **kwargs,
    )
    controller.start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.exit_on_stdin_eof:
        def watch_stdin():
            while sys.stdin.buffer.read(4096):
                pass
            stop.set()
        threading.Thread(target=watch_stdin, daemon=True).start()

    print(f"READY {controller.port}", flush=True)
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()

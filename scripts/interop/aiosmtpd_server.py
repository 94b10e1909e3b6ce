"""aiosmtpd_server.py: the aiosmtpd server of `make interop`.

STARTTLS required, AUTH (PLAIN, LOGIN) required and only after STARTTLS;
the users are given as USER:PASSWORD arguments. Every message accepted
(after DATA) adds one to a counter that is rewritten to COUNT_FILE, so the
driver can read it at any time, and appends its envelope to
COUNT_FILE.options (one JSON object a line: mail_from, mail_options,
rcpt_tos, rcpt_options, exactly as aiosmtpd parsed them, and size, the
content's length; aiosmtpd upper-
cases the options). Offers SIZE, 8BITMIME, SMTPUTF8 and DSN, and
REQUIRETLS after STARTTLS; takes any well-formed MAIL and RCPT parameter
(stock aiosmtpd answers 555 to those it does not know). Runs until SIGTERM
or SIGINT.

usage: python3 aiosmtpd_server.py PORT CERT KEY COUNT_FILE USER:PASS...
"""

import asyncio
import json
import os
import re
import signal
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

# RFC 5321 esmtp-keyword.
KEYWORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


class ParamSMTP(SMTP):
    """aiosmtpd's SMTP, taking any esmtp-keyword[=value] parameter: only
    SIZE, BODY and SMTPUTF8 are checked (by aiosmtpd); every parameter is
    kept in the envelope's mail_options or rcpt_options."""

    def _getparams(self, params):
        result = {}
        for param in params:
            key, eq, value = param.partition("=")
            if not KEYWORD.match(key) or (eq and not value):
                return None
            if key in ("SIZE", "BODY", "SMTPUTF8"):
                result[key] = value if eq else True
        return result


class ParamController(Controller):
    def factory(self):
        return ParamSMTP(self.handler, **self.SMTP_kwargs)


class CountingHandler:
    def __init__(self, count_file):
        self.count = 0
        self.count_file = count_file
        self.write()

    def write(self):
        tmp = self.count_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % self.count)
        os.replace(tmp, self.count_file)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        extra = ["250-DSN"]
        if server._tls_protocol:
            extra.append("250-REQUIRETLS")
        return responses[:-1] + extra + responses[-1:]

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        with open(self.count_file + ".options", "a") as f:
            f.write(json.dumps({
                "mail_from": envelope.mail_from,
                "mail_options": envelope.mail_options,
                "rcpt_tos": envelope.rcpt_tos,
                "rcpt_options": envelope.rcpt_options,
                "size": len(envelope.original_content or b""),
            }, ensure_ascii=False) + "\n")
        self.write()
        return "250 2.0.0 Ok: queued as aiosmtpd-%d" % self.count


class Authenticator:
    def __init__(self, users):
        self.users = users

    def __call__(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode()
            password = auth_data.password.decode()
            if self.users.get(user) == password:
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


def main():
    port, cert, key, count_file = sys.argv[1:5]
    users = dict(arg.split(":", 1) for arg in sys.argv[5:])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler = CountingHandler(count_file)
    controller = ParamController(
        handler,
        enable_SMTPUTF8=True,
        hostname="127.0.0.1",
        port=int(port),
        server_hostname="localhost",
        require_starttls=True,
        tls_context=context,
        auth_required=True,
        auth_require_tls=True,
        authenticator=Authenticator(users),
        ready_timeout=10,
    )
    controller.start()
    print("aiosmtpd listening on 127.0.0.1:%s" % port, flush=True)
    done = asyncio.Event()
    loop = asyncio.new_event_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    loop.run_until_complete(done.wait())
    controller.stop()
    print("aiosmtpd received %d messages" % handler.count, flush=True)


if __name__ == "__main__":
    main()

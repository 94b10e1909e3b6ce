"""probe.py: check one feature of a `make interop` server with Python's
smtplib, independently of smtp-source, so that a broken fixture is told
apart from a broken client.

usage: python3 probe.py CHECK ARGS...   (see the CHECKS table at the end)

Prints what it did on stderr and, on success, `accepted N` (the messages
the server took) as the last line on stdout; exits 1 on any surprise.
"""

import smtplib
import socket
import ssl
import struct
import sys

DOMAIN = "interop.test"
MSG = (
    "From: probe@%s\r\nTo: alice@%s\r\nSubject: interop probe\r\n\r\nhello\r\n"
    % (DOMAIN, DOMAIN)
)


class ProbeError(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise ProbeError(what)
    print("  ok: " + what, file=sys.stderr)


def tls_context(ca):
    """Verify against CA; the certificate names 127.0.0.1 as well as localhost."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = True
    return ctx


def send_one(s, rcpt="alice@" + DOMAIN):
    refused = s.sendmail("probe@" + DOMAIN, [rcpt], MSG)
    expect(not refused, "message to %s accepted" % rcpt)
    return 1


def starttls(s, ca):
    s.ehlo("probe.interop.test")
    expect(s.has_extn("starttls"), "STARTTLS offered")
    code, _ = s.starttls(context=tls_context(ca))
    expect(code == 220, "STARTTLS 220, certificate verified")
    s.ehlo("probe.interop.test")


def auth_ok(s, mech, user, password):
    s.user, s.password = user, password
    code, resp = s.auth(mech, getattr(s, "auth_" + mech.lower().replace("-", "_")))
    expect(code == 235, "AUTH %s as %s: %d %r" % (mech, user, code, resp))


def auth_bad(s, user, password):
    s.user, s.password = user, password
    try:
        s.auth("PLAIN", s.auth_plain)
    except smtplib.SMTPAuthenticationError as e:
        expect(e.smtp_code == 535, "wrong password refused with 535")
        return
    raise ProbeError("wrong password accepted")


# --- the checks --------------------------------------------------------


def postfix_starttls(port, ca):
    """STARTTLS, no AUTH before TLS, AUTH PLAIN and LOGIN after (Dovecot SASL)."""
    n = 0
    with smtplib.SMTP("127.0.0.1", int(port), timeout=20) as s:
        s.ehlo("probe.interop.test")
        expect(not s.has_extn("auth"), "no AUTH before STARTTLS")
        starttls(s, ca)
        expect("PLAIN" in s.esmtp_features.get("auth", ""), "AUTH PLAIN after STARTTLS")
        auth_ok(s, "PLAIN", "alice", "secret1")
        n += send_one(s)
    with smtplib.SMTP("127.0.0.1", int(port), timeout=20) as s:
        starttls(s, ca)
        auth_ok(s, "LOGIN", "bob", "secret2")
        n += send_one(s)
    with smtplib.SMTP("127.0.0.1", int(port), timeout=20) as s:
        starttls(s, ca)
        auth_bad(s, "alice", "wrong")
    return n


def postfix_smtps(port, ca):
    """TLS from the first byte."""
    with smtplib.SMTP_SSL("127.0.0.1", int(port), timeout=20,
                          context=tls_context(ca)) as s:
        s.ehlo("probe.interop.test")
        auth_ok(s, "PLAIN", "alice", "secret1")
        return send_one(s)


def postfix_xclient(port):
    """XCLIENT offered to 127.0.0.0/8 and obeyed."""
    with smtplib.SMTP("127.0.0.1", int(port), timeout=20) as s:
        s.ehlo("probe.interop.test")
        expect(s.has_extn("xclient"), "XCLIENT offered")
        code, resp = s.docmd("XCLIENT", "ADDR=10.0.0.9")
        expect(code == 220, "XCLIENT ADDR=10.0.0.9: %d %r" % (code, resp))
        s.ehlo_resp = None
        s.ehlo("probe.interop.test")
        return send_one(s)


def proxy_header(version, src, dst, sport, dport):
    if version == "v1":
        return ("PROXY TCP4 %s %s %d %d\r\n" % (src, dst, sport, dport)).encode()
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return sig + bytes([0x21, 0x11]) + struct.pack("!H", len(addrs)) + addrs


class ProxySMTP(smtplib.SMTP):
    header = b""

    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection((host, port), timeout)
        sock.sendall(self.header)
        return sock


def postfix_proxy(port, version, src):
    """A PROXY v1/v2 header from SRC; Postfix logs SRC as the client."""
    ProxySMTP.header = proxy_header(version, src, "127.0.0.1", 40000, int(port))
    with ProxySMTP("127.0.0.1", int(port), timeout=20) as s:
        s.ehlo("probe.interop.test")
        return send_one(s)


def postfix_encrypt(port, ca):
    """MAIL before STARTTLS is refused (530); after it works."""
    with smtplib.SMTP("127.0.0.1", int(port), timeout=20) as s:
        s.ehlo("probe.interop.test")
        code, resp = s.mail("probe@" + DOMAIN)
        expect(code == 530, "MAIL before STARTTLS: %d %r" % (code, resp))
        s.rset()
        starttls(s, ca)
        return send_one(s)


def lmtp(where, ca):
    """LMTP delivery to alice, 550 for a user that does not exist."""
    if where.startswith("unix:"):
        s = smtplib.LMTP(where[5:], timeout=20)
    else:
        host, port = where.rsplit(":", 1)
        s = smtplib.LMTP(host, int(port), timeout=20)
    with s:
        s.ehlo("probe.interop.test")
        n = send_one(s, "alice@" + DOMAIN)
        try:
            s.sendmail("probe@" + DOMAIN, ["nouser@" + DOMAIN], MSG)
            raise ProbeError("nouser accepted")
        except smtplib.SMTPRecipientsRefused as e:
            code = list(e.recipients.values())[0][0]
            expect(code == 550, "nouser refused: %d" % code)
        if ca != "-" and s.has_extn("starttls"):
            starttls(s, ca)
            n += send_one(s, "bob@" + DOMAIN)
        return n


def aiosmtpd(port, ca):
    """STARTTLS required, AUTH required and only after TLS."""
    with smtplib.SMTP("127.0.0.1", int(port), timeout=20) as s:
        s.ehlo("probe.interop.test")
        code, resp = s.mail("probe@" + DOMAIN)
        expect(code == 530, "MAIL before STARTTLS: %d %r" % (code, resp))
        starttls(s, ca)
        code, resp = s.mail("probe@" + DOMAIN)
        expect(code == 530, "MAIL before AUTH: %d %r" % (code, resp))
        auth_bad(s, "alice", "wrong")
        auth_ok(s, "PLAIN", "alice", "secret1")
        n = send_one(s)
    with smtplib.SMTP("127.0.0.1", int(port), timeout=20) as s:
        starttls(s, ca)
        auth_ok(s, "LOGIN", "bob", "secret2")
        n += send_one(s)
    return n


CHECKS = {
    "postfix-starttls": postfix_starttls,  # PORT CA
    "postfix-smtps": postfix_smtps,  # PORT CA
    "postfix-xclient": postfix_xclient,  # PORT
    "postfix-proxy": postfix_proxy,  # PORT v1|v2 SRC
    "postfix-encrypt": postfix_encrypt,  # PORT CA
    "lmtp": lmtp,  # 127.0.0.1:PORT|unix:PATH CA|-
    "aiosmtpd": aiosmtpd,  # PORT CA
}


def main():
    check = CHECKS[sys.argv[1]]
    try:
        n = check(*sys.argv[2:])
    except (ProbeError, smtplib.SMTPException, OSError) as e:
        print("probe %s: %s: %s" % (sys.argv[1], type(e).__name__, e), file=sys.stderr)
        sys.exit(1)
    print("accepted %d" % n)


if __name__ == "__main__":
    main()

//! secure: the steps that make a connection secure and say who the
//! client is, in the order they happen on the wire:
//!
//! 1. `--proxy`: the PROXY header, before any SMTP byte;
//! 2. `--tls-wrapper`: the TLS handshake, before the banner;
//! 3. after EHLO/LHLO: STARTTLS and the handshake, then EHLO again
//!    (only the capabilities offered over TLS count, RFC 3207 §4.2);
//! 4. `--xclient`: XCLIENT, then EHLO again (the server starts over);
//! 5. `--auth`: AUTH PLAIN or LOGIN, never over plaintext unless asked.
//!
//! Refusals follow -A as at every other stage: without it they end the
//! run; with it they are warned about, the connection is given up (QUIT
//! when it is still sane) and its message counts as failed.

use std::time::Instant;

use super::{Flow, Link, Session, Verdict};
use crate::command::Command;
use crate::diag;
use crate::error::{Error, Stage};
use crate::identity;
use crate::plan::AuthMech;
use crate::reply::Reply;
use crate::report::stats::{ErrorClass, Phase};
use crate::tls::{Level, TlsPlan};
use crate::transport::TlsFailure;
use crate::txn::open::{OpenPlan, Opening};

impl Session<'_> {
    /// What comes before the banner: the PROXY header and SMTPS.
    pub(super) fn prelude(&mut self, link: &mut Link) -> Result<Flow, Error> {
        if let Some((version, source)) = self.sh.plan.security.proxy {
            self.proxy_header(link, version, source)?;
        }
        match &self.sh.plan.security.tls {
            Some(tls) if tls.wrapper => self.handshake(link, tls),
            _ => Ok(Flow::Go),
        }
    }

    /// Which of the steps after the greeting the plan asks for.
    pub(super) fn open_plan(&self) -> OpenPlan {
        let plan = &self.sh.plan;
        let security = &plan.security;
        OpenPlan {
            greet: plan.greeting != crate::plan::Greeting::None,
            starttls: security.tls.as_ref().is_some_and(|t| !t.wrapper),
            xclient: security.xclient.is_some(),
            auth: security.auth.is_some(),
        }
    }

    /// Writes the PROXY header: the next source address of the range
    /// (with this socket's port), or the socket's own address.
    fn proxy_header(
        &mut self,
        link: &mut Link,
        version: identity::ProxyVersion,
        source: Option<identity::Cidr>,
    ) -> Result<(), Error> {
        let sock = link.conn.socket();
        let local = sock.local_addr().ok().and_then(|a| a.as_socket());
        let peer = sock.peer_addr().ok().and_then(|a| a.as_socket());
        let port = local.map_or(0, |a| a.port());
        let from = match (source, local) {
            (Some(range), _) => {
                std::net::SocketAddr::new(range.nth(link.n), port)
            }
            (None, Some(own)) => own,
            (None, None) => std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let to = identity::proxy_dest(peer, from.is_ipv4());
        let header = identity::proxy_header(version, from, to);
        if self.sh.plan.verbose > 0 {
            let shown = match version {
                identity::ProxyVersion::V1 => {
                    header[..header.len() - 2].to_vec()
                }
                identity::ProxyVersion::V2 => {
                    format!("PROXY v2 {from} -> {to}").into_bytes()
                }
            };
            diag::info(&shown);
        }
        self.write(link, &[&header], Stage::Proxy)
    }

    /// STARTTLS, when the level and the server allow, then the
    /// handshake (the greeting again is the next step). With --tls=may
    /// and no STARTTLS to be had, `opening` goes on in plaintext.
    pub(super) fn starttls(
        &mut self,
        link: &mut Link,
        opening: &mut Opening,
    ) -> Result<Flow, Error> {
        let sh = self.sh;
        let Some(tls) = sh.plan.security.tls.as_ref() else {
            return Ok(Flow::Go);
        };
        if !link.caps.has("STARTTLS") {
            if tls.level == Level::May {
                opening.plaintext();
                return Ok(Flow::Go);
            }
            let e = self.not_offered(b"STARTTLS", link);
            return self.give_up(e, Some(ErrorClass::Tls), Flow::Abandon);
        }
        let reply = self.command(link, Command::StartTls, Stage::StartTls)?;
        let ok = reply.is_positive();
        if !ok && tls.level == Level::May && !reply.is_closing() {
            // Opportunistic TLS: a refusal means plaintext, as offered.
            if self.sh.plan.verbose > 0 {
                let mut text =
                    b"STARTTLS refused, going on in plaintext: ".to_vec();
                text.extend_from_slice(&crate::error::reject_text(
                    Stage::StartTls,
                    &reply,
                ));
                diag::info(&text);
            }
            opening.plaintext();
            return Ok(Flow::Go);
        }
        if !ok {
            // Counted before the verdict: a fatal refusal shows in the
            // report too.
            self.error_class(ErrorClass::Tls);
        }
        match self.judge(Stage::StartTls, reply)? {
            Verdict::Ok => {}
            Verdict::Rejected => return Ok(Flow::Abandon),
            Verdict::Closing => return Ok(Flow::Closed),
        }
        if link.reader.has_buffered() {
            // Bytes that came with the 220 were sent in plaintext but
            // would be read as if they came over TLS: a man in the
            // middle's injection. Never use them.
            let e = Error::Security(
                b"plaintext data received after the reply to STARTTLS \
(command injection?); connection dropped"
                    .to_vec(),
            );
            return self.give_up(e, Some(ErrorClass::Tls), Flow::Closed);
        }
        self.handshake(link, tls)
    }

    /// The TLS handshake, against the stage deadline; -v says what was
    /// negotiated, the report counts it.
    fn handshake(
        &mut self,
        link: &mut Link,
        tls: &TlsPlan,
    ) -> Result<Flow, Error> {
        let started = Instant::now();
        let deadline = started + self.sh.plan.timeout;
        let config = self
            .tls_config
            .clone()
            .ok_or(Error::Internal("no TLS config"))?;
        let name = tls.server_name.clone();
        let Some(permit) = self.sh.write_permit(self.n) else {
            return Err(Error::Halted);
        };
        let started_tls = link.conn.start_tls(config, name, deadline);
        drop(permit);
        let done = match started_tls {
            Ok(done) => done,
            Err(TlsFailure::Io(e)) => {
                return Err(self.io_failed(link, e, Stage::TlsHandshake))
            }
            Err(TlsFailure::Protocol(e)) => {
                let e = Error::Tls {
                    detail: tls_detail(&e),
                };
                return self.give_up(e, Some(ErrorClass::Tls), Flow::Closed);
            }
        };
        self.latency(Phase::TlsHandshake, started);
        if let Some(r) = &mut self.rec {
            r.counts
                .handshake(&done.version, &done.cipher, done.resumed);
        }
        if self.sh.plan.verbose > 0 {
            let trust = if tls.verifies() {
                "Verified"
            } else {
                "Untrusted"
            };
            let kind = if done.resumed {
                "resumed"
            } else {
                "full handshake"
            };
            let text = format!(
                "{trust} TLS connection established: {} with cipher {} ({kind})",
                done.version, done.cipher
            );
            diag::info(text.as_bytes());
        }
        Ok(Flow::Go)
    }

    /// XCLIENT with this connection's attributes (the greeting again is
    /// the next step).
    pub(super) fn xclient(&mut self, link: &mut Link) -> Result<Flow, Error> {
        let Some(x) = &self.sh.plan.security.xclient else {
            return Ok(Flow::Go);
        };
        if !link.caps.has("XCLIENT") {
            let e = self.not_offered(b"XCLIENT", link);
            return self.give_up(e, None, Flow::Abandon);
        }
        let args = x.args(link.n);
        let reply =
            self.command(link, Command::Xclient(&args), Stage::Xclient)?;
        match self.judge(Stage::Xclient, reply)? {
            Verdict::Ok => Ok(Flow::Go),
            Verdict::Rejected => Ok(Flow::Abandon),
            Verdict::Closing => Ok(Flow::Closed),
        }
    }

    /// AUTH as the next user in turn.
    pub(super) fn auth(&mut self, link: &mut Link) -> Result<Flow, Error> {
        let sh = self.sh;
        let Some(auth) = sh.plan.security.auth.as_ref() else {
            return Ok(Flow::Go);
        };
        if !link.conn.is_encrypted() && !auth.plaintext_ok {
            let e = Error::Security(
                b"AUTH refused: the connection is not encrypted \
(--auth-plaintext allows it)"
                    .to_vec(),
            );
            return self.give_up(e, Some(ErrorClass::Auth), Flow::Abandon);
        }
        let offered = match auth.mech {
            AuthMech::Plain => link.caps.auth_offers("PLAIN"),
            AuthMech::Login => link.caps.auth_offers("LOGIN"),
        };
        if !offered {
            let what = format!("AUTH {}", auth.mech.name());
            let e = self.not_offered(what.as_bytes(), link);
            return self.give_up(e, Some(ErrorClass::Auth), Flow::Abandon);
        }
        let user = &auth.users[(link.n % auth.users.len() as u64) as usize];
        let started = Instant::now();
        let reply = match auth.mech {
            AuthMech::Plain => {
                let response = user.plain();
                let cmd = Command::Auth("PLAIN", Some(&response));
                self.command(link, cmd, Stage::Auth)?
            }
            AuthMech::Login => {
                let (name, password) = user.login();
                let mut reply = self.command(
                    link,
                    Command::Auth("LOGIN", None),
                    Stage::Auth,
                )?;
                for answer in [&name, &password] {
                    if reply.code != 334 {
                        break;
                    }
                    let cmd = Command::AuthResponse(answer);
                    reply = self.command(link, cmd, Stage::Auth)?;
                }
                reply
            }
        };
        let ok = reply.is_positive();
        if ok {
            self.latency(Phase::Auth, started);
        } else {
            self.error_class(ErrorClass::Auth);
        }
        match self.judge(Stage::Auth, reply)? {
            Verdict::Ok => Ok(Flow::Go),
            Verdict::Rejected => Ok(Flow::Abandon),
            Verdict::Closing => Ok(Flow::Closed),
        }
    }

    /// "X not offered in reply to EHLO: 250 first line".
    fn not_offered(&self, what: &[u8], link: &Link) -> Error {
        let mut text = what.to_vec();
        let command = match self.sh.plan.greeting {
            crate::plan::Greeting::Lhlo => "LHLO",
            _ => "EHLO",
        };
        text.extend_from_slice(
            format!(" not offered in reply to {command}").as_bytes(),
        );
        if let Some(reply) = &link.greeting {
            text.extend_from_slice(format!(": {} ", reply.code).as_bytes());
            text.extend_from_slice(first_line(reply));
        }
        Error::Security(text)
    }

    /// A step that cannot go on: fatal without -A; with it, a warning,
    /// and the connection is given up (with QUIT when `quit`).
    pub(super) fn give_up(
        &mut self,
        e: Error,
        class: Option<ErrorClass>,
        then: Flow,
    ) -> Result<Flow, Error> {
        if let Some(class) = class {
            self.error_class(class);
        }
        if !self.sh.plan.allow_reject {
            return Err(e);
        }
        diag::warn(&e.text());
        Ok(then)
    }
}

/// The first line of a reply, as "code text".
fn first_line(reply: &Reply) -> &[u8] {
    let end = reply
        .text
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(reply.text.len());
    &reply.text[..end]
}

/// Why rustls refused the handshake, in words: records that are not TLS
/// at all (a `220` greeting, an HTTP error) mean the peer does not speak
/// TLS there, which rustls calls `InvalidContentType`.
fn tls_detail(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType,
        ) => "the server did not answer with TLS (a plaintext port?)".into(),
        e => e.to_string(),
    }
}

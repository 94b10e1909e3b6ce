//! tls: the client's TLS settings, made once at plan time. Postfix's
//! client security levels (`may`, `encrypt`, `verify`), the trust anchors
//! (`--tls-ca` or the system's roots), the client certificate, the name
//! sent as SNI and verified, and whether sessions resume.
//!
//! `encrypt` and `may` do not check the certificate, as Postfix does at
//! those levels; the handshake's signatures are still verified, so the
//! peer must hold the key of the certificate it shows.

use std::net::IpAddr;
use std::sync::Arc;

use crate::error::{Config, TlsSetup};

use rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use rustls::client::Resumption;
use rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// Postfix's client TLS security levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// STARTTLS when offered, plaintext otherwise.
    May,
    /// TLS required; the certificate is not checked.
    Encrypt,
    /// TLS required; chain and name verified.
    Verify,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::May => "may",
            Level::Encrypt => "encrypt",
            Level::Verify => "verify",
        }
    }
}

/// The TLS long options as given.
#[derive(Debug, Clone, Default)]
pub struct TlsArgs {
    pub level: Option<Level>,
    pub wrapper: bool,
    pub ca: Option<Vec<u8>>,
    pub servername: Option<Vec<u8>>,
    pub cert: Option<Vec<u8>>,
    pub key: Option<Vec<u8>>,
    pub resume: bool,
}

/// What the endpoint says about the peer's name.
pub enum Peer {
    /// A host name (it is the default SNI and verified name).
    Name(String),
    /// An address literal: no SNI; `verify` checks the address.
    Address(IpAddr),
    /// A UNIX socket: no name at all.
    Unix,
}

/// TLS as the sessions use it.
#[derive(Debug, Clone)]
pub struct TlsPlan {
    pub level: Level,
    /// TLS from the first byte (SMTPS), not STARTTLS.
    pub wrapper: bool,
    pub resume: bool,
    pub server_name: ServerName<'static>,
    config: Arc<ClientConfig>,
}

impl TlsPlan {
    /// The configuration one session uses for all its connections. With
    /// --tls-resume each session gets its own session cache (it resumes
    /// its own sessions, as one client would); without it, every
    /// connection does a full handshake.
    pub fn session_config(&self) -> Arc<ClientConfig> {
        if !self.resume {
            return Arc::clone(&self.config);
        }
        let mut own = (*self.config).clone();
        own.resumption = Resumption::in_memory_sessions(4);
        Arc::new(own)
    }

    /// Whether the certificate is checked (for -v's wording).
    pub fn verifies(&self) -> bool {
        self.level == Level::Verify
    }
}

/// Builds the TLS plan, or None when no TLS was asked for.
pub fn build(args: &TlsArgs, peer: Peer) -> Result<Option<TlsPlan>, Config> {
    let level = match (args.level, args.wrapper) {
        (Some(level), _) => level,
        (None, true) => Level::Encrypt,
        (None, false) => return no_tls(args).map(|()| None),
    };
    let provider = Arc::new(provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| Config::Tls(TlsSetup::Versions(e.to_string())))?;
    if args.ca.is_some() && level != Level::Verify {
        // Trust anchors only matter when the certificate is checked.
        let level = level.name();
        return Err(Config::Tls(TlsSetup::CaWithoutVerify { level }));
    }
    let builder = if level == Level::Verify {
        builder.with_root_certificates(roots(args.ca.as_deref())?)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked { provider }))
    };
    let mut config = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let (chain, key) = client_identity(cert, key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| pem("--tls-cert/--tls-key", e.to_string()))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(Config::Tls(TlsSetup::CertWithoutKey)),
    };
    config.resumption = Resumption::disabled();
    let (server_name, sni) = server_name(args, &peer, level)?;
    config.enable_sni = sni;
    Ok(Some(TlsPlan {
        level,
        wrapper: args.wrapper,
        resume: args.resume,
        server_name,
        config: Arc::new(config),
    }))
}

/// The crypto provider: ring, which builds with the toolchain and gcc
/// alone. rustls marks it deprecated for lacking post-quantum key
/// exchange; X25519 and the NIST curves are what mail servers offer.
///
/// Key exchange offers X25519 first, as OpenSSL (and so Postfix's own
/// client) does; ring's default list starts with P-384, whose key share
/// cost the client (and the server) three times the CPU per handshake
/// (measured in `make bench`: 1,144 against 385 µs per handshake).
#[allow(deprecated)]
pub fn provider() -> CryptoProvider {
    use rustls::crypto::ring::kx_group;
    let mut p = rustls::crypto::ring::default_provider();
    p.kx_groups =
        vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    p
}

/// Without --tls or --tls-wrapper the other TLS options mean nothing:
/// say so rather than run without TLS.
fn no_tls(args: &TlsArgs) -> Result<(), Config> {
    let given = [
        (args.ca.is_some(), "--tls-ca"),
        (args.servername.is_some(), "--tls-servername"),
        (args.cert.is_some(), "--tls-cert"),
        (args.key.is_some(), "--tls-key"),
        (args.resume, "--tls-resume"),
    ];
    match given.iter().find(|(on, _)| *on) {
        Some(&(_, what)) => Err(Config::Needs {
            what,
            needs: "--tls or --tls-wrapper",
        }),
        None => Ok(()),
    }
}

/// The name sent as SNI and verified, and whether SNI is sent.
fn server_name(
    args: &TlsArgs,
    peer: &Peer,
    level: Level,
) -> Result<(ServerName<'static>, bool), Config> {
    if let Some(name) = &args.servername {
        let text = String::from_utf8_lossy(name).into_owned();
        let parsed = ServerName::try_from(text.clone()).map_err(|_| {
            Config::BadValue {
                option: "--tls-servername",
                value: text.into_bytes(),
                why: None,
            }
        })?;
        return Ok((parsed, true));
    }
    match peer {
        Peer::Name(host) => match ServerName::try_from(host.clone()) {
            Ok(name) => Ok((name, true)),
            Err(_) if level == Level::Verify => {
                let host = host.clone();
                Err(Config::Tls(TlsSetup::NotAName { host }))
            }
            Err(_) => Ok((placeholder(), false)),
        },
        Peer::Address(ip) => Ok((ServerName::IpAddress((*ip).into()), false)),
        Peer::Unix if level == Level::Verify => Err(Config::Needs {
            what: "--tls=verify on a UNIX socket",
            needs: "--tls-servername",
        }),
        Peer::Unix => Ok((placeholder(), false)),
    }
}

/// A name for rustls's bookkeeping when none is sent or checked.
fn placeholder() -> ServerName<'static> {
    ServerName::IpAddress(IpAddr::from([127, 0, 0, 1]).into())
}

/// A PEM file of `option` that rustls could not use.
fn pem(option: &'static str, detail: String) -> Config {
    Config::Tls(TlsSetup::Pem { option, detail })
}

/// Most bytes of a --tls-ca, --tls-cert or --tls-key file (a system
/// bundle of every root is a few hundred KiB).
const MAX_PEM: u64 = 16 << 20;

/// A PEM file, read without blocking on a FIFO and up to `MAX_PEM`.
fn read(option: &'static str, path: &[u8]) -> Result<Vec<u8>, Config> {
    crate::workload::read_file(path, MAX_PEM).map_err(|e| match e {
        crate::error::Error::Config(inner) => Config::Option {
            option,
            inner: Box::new(inner),
        },
        e => Config::Refused(String::from_utf8_lossy(&e.text()).into_owned()),
    })
}

/// The trust anchors: the PEM bundle given, else the system's roots.
fn roots(ca: Option<&[u8]>) -> Result<RootCertStore, Config> {
    let mut store = RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = match ca {
        Some(path) => {
            let text = read("--tls-ca", path)?;
            CertificateDer::pem_slice_iter(&text)
                .collect::<Result<_, _>>()
                .map_err(|e| pem("--tls-ca", format!("{e:?}")))?
        }
        None => rustls_native_certs::load_native_certs().certs,
    };
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(Config::Tls(match ca {
            Some(path) => TlsSetup::NoCaCertificate {
                path: path.to_vec(),
            },
            None => TlsSetup::NoSystemRoots,
        }));
    }
    Ok(store)
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn client_identity(cert: &[u8], key: &[u8]) -> Result<Identity, Config> {
    let text = read("--tls-cert", cert)?;
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<_, _>>()
        .map_err(|e| pem("--tls-cert", format!("{e:?}")))?;
    if chain.is_empty() {
        return Err(Config::Tls(TlsSetup::NoClientCertificate));
    }
    let text = read("--tls-key", key)?;
    let key = PrivateKeyDer::from_pem_slice(&text)
        .map_err(|e| pem("--tls-key", format!("no private key: {e:?}")))?;
    Ok((chain, key))
}

/// `encrypt` and `may`: any certificate, but the handshake must be
/// signed by its key.
#[derive(Debug)]
struct Unchecked {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(level: Option<Level>) -> TlsArgs {
        TlsArgs {
            level,
            ..TlsArgs::default()
        }
    }

    #[test]
    fn no_tls_without_the_options() {
        assert!(build(&args(None), Peer::Unix).unwrap().is_none());
        let mut a = args(None);
        a.resume = true;
        assert_eq!(
            build(&a, Peer::Unix).unwrap_err().text(),
            b"--tls-resume needs --tls or --tls-wrapper"
        );
    }

    #[test]
    fn wrapper_defaults_to_encrypt() {
        let mut a = args(None);
        a.wrapper = true;
        let plan = build(&a, Peer::Name("mail.example".into()))
            .unwrap()
            .unwrap();
        assert_eq!(plan.level, Level::Encrypt);
        assert!(plan.wrapper);
    }

    #[test]
    fn names_sent_and_verified() {
        let p = build(
            &args(Some(Level::Encrypt)),
            Peer::Name("mx.example".into()),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.server_name.to_str(), "mx.example");
        assert!(p.config.enable_sni);
        let ip = IpAddr::from([127, 0, 0, 1]);
        let p = build(&args(Some(Level::May)), Peer::Address(ip))
            .unwrap()
            .unwrap();
        assert!(!p.config.enable_sni);
        let mut a = args(Some(Level::Encrypt));
        a.servername = Some(b"localhost".to_vec());
        let p = build(&a, Peer::Unix).unwrap().unwrap();
        assert_eq!(p.server_name.to_str(), "localhost");
        assert!(p.config.enable_sni);
    }

    #[test]
    fn verify_on_unix_needs_a_name() {
        let mut a = args(Some(Level::Verify));
        a.ca = Some(b"/nonexistent/ca.pem".to_vec());
        let e = build(&a, Peer::Name("x".into())).unwrap_err().text();
        let e = String::from_utf8(e).unwrap();
        assert!(e.starts_with("--tls-ca: open /nonexistent/ca.pem: "), "{e}");
        let e = build(&args(Some(Level::Verify)), Peer::Unix);
        assert!(e.is_err());
    }

    #[test]
    fn ca_only_with_verify_and_verify_needs_a_real_name() {
        let mut a = args(Some(Level::Encrypt));
        a.ca = Some(b"ca.pem".to_vec());
        assert_eq!(
            build(&a, Peer::Unix).unwrap_err().text(),
            "--tls-ca is used only with --tls=verify (the level is encrypt)"
                .as_bytes()
        );
        let mut v = args(Some(Level::Verify));
        v.servername = None;
        let e = build(&v, Peer::Name("bad_name!".into()));
        // Without system roots the roots error comes first; either way
        // a name that no certificate can carry is never verified
        // against something else.
        assert!(e.is_err());
    }

    #[test]
    fn x25519_is_offered_first() {
        let p = provider();
        assert_eq!(p.kx_groups[0].name(), rustls::NamedGroup::X25519);
        assert_eq!(p.kx_groups.len(), 3);
    }

    #[test]
    fn cert_and_key_go_together() {
        let mut a = args(Some(Level::Encrypt));
        a.cert = Some(b"c.pem".to_vec());
        assert_eq!(
            build(&a, Peer::Unix).unwrap_err().text(),
            "--tls-cert and --tls-key go together".as_bytes()
        );
    }

    #[test]
    fn resumption_is_per_session_and_off_by_default() {
        let plan = build(&args(Some(Level::Encrypt)), Peer::Unix)
            .unwrap()
            .unwrap();
        let a = plan.session_config();
        let b = plan.session_config();
        assert!(Arc::ptr_eq(&a, &b));
        let mut r = args(Some(Level::Encrypt));
        r.resume = true;
        let plan = build(&r, Peer::Unix).unwrap().unwrap();
        assert!(!Arc::ptr_eq(&plan.session_config(), &plan.session_config()));
    }
}

//! The server side of TLS for the scripted peer: certificates minted per
//! test with rcgen, and rustls server configurations that offer them.
//!
//! [`Pki::new`] mints a CA and, on demand, server certificates signed by
//! it ([`Leaf`]): a good one for `localhost` and `127.0.0.1`, an expired
//! one, one for another name, and a self-signed one that no CA vouches
//! for. [`Pki::server`] wraps the rustls configuration in a
//! [`TlsServer`], which a [`Step::StartTls`](super::fake_server::Step)
//! takes: the fake server then runs the handshake and goes on with the
//! script (or the responder) inside TLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// The name another-name leaves are made for.
pub const OTHER_NAME: &str = "mx.other.example";

/// The ring provider. rustls 0.23.48 marks it deprecated only for its
/// lack of post-quantum key exchange, which loopback tests do not need.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Which server certificate to offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leaf {
    /// Signed by the CA, for `localhost` and `127.0.0.1`, valid now.
    Good,
    /// Signed by the CA, for the same names, valid only in 2000.
    Expired,
    /// Signed by the CA, for [`OTHER_NAME`] only.
    OtherName,
    /// Self-signed, for `localhost` and `127.0.0.1`: no CA vouches for
    /// it.
    SelfSigned,
}

/// A CA minted for one test.
pub struct Pki {
    ca: Certificate,
    ca_key: KeyPair,
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

impl Pki {
    pub fn new() -> Pki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new())
            .expect("CA parameters");
        ca.distinguished_name
            .push(DnType::CommonName, "smtp-source tests CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca.self_signed(&ca_key).expect("CA certificate");
        Pki { ca, ca_key }
    }

    /// The CA certificate in PEM (what `--tls-ca` reads).
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// The CA certificate in DER (a client's trust anchor).
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// Writes the CA's PEM to `dir/ca.pem`; its path.
    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.ca_pem()).expect("write ca.pem");
        path
    }

    /// The certificate chain and key of a `leaf`.
    pub fn leaf(
        &self,
        leaf: Leaf,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let names: Vec<String> = match leaf {
            Leaf::OtherName => vec![OTHER_NAME.into()],
            _ => vec!["localhost".into(), "127.0.0.1".into()],
        };
        let mut p = CertificateParams::new(names).expect("leaf parameters");
        p.distinguished_name.push(DnType::CommonName, "localhost");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if leaf == Leaf::Expired {
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = match leaf {
            Leaf::SelfSigned => p.self_signed(&key),
            _ => p.signed_by(&key, &self.ca, &self.ca_key),
        }
        .expect("leaf certificate");
        let key = PrivatePkcs8KeyDer::from(key.serialize_der()).into();
        (vec![cert.der().clone()], key)
    }

    /// A server configuration offering `leaf` (TLS 1.2 and 1.3, session
    /// resumption by the default session cache and by tickets).
    pub fn server(&self, leaf: Leaf) -> TlsServer {
        self.server_with(leaf, false)
    }

    /// [`Pki::server`] that also requires a client certificate signed
    /// by the CA.
    pub fn server_requiring_client_cert(&self, leaf: Leaf) -> TlsServer {
        self.server_with(leaf, true)
    }

    fn server_with(&self, leaf: Leaf, client_auth: bool) -> TlsServer {
        let (chain, key) = self.leaf(leaf);
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = if client_auth {
            let mut roots = RootCertStore::empty();
            roots.add(self.ca.der().clone()).expect("CA as a root");
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .expect("server certificate");
        config.ticketer =
            rustls::crypto::ring::Ticketer::new().expect("ticketer");
        TlsServer(Arc::new(config))
    }

    /// Writes a client certificate signed by the CA and its key (PEM)
    /// to `dir`: `client.pem` and `client.key`.
    pub fn write_client_identity(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let mut p = CertificateParams::new(vec!["client.example".into()])
            .expect("client parameters");
        p.distinguished_name
            .push(DnType::CommonName, "client.example");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("client key");
        let cert = p
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("client certificate");
        let (c, k) = (dir.join("client.pem"), dir.join("client.key"));
        std::fs::write(&c, cert.pem()).expect("write client.pem");
        std::fs::write(&k, key.serialize_pem()).expect("write client.key");
        (c, k)
    }
}

/// A rustls server configuration as a script step carries it. Two are
/// equal when they are the same configuration.
#[derive(Clone, Debug)]
pub struct TlsServer(pub Arc<ServerConfig>);

impl PartialEq for TlsServer {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for TlsServer {}

/// What the server saw of one handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// Where in [`Conn::raw`](super::fake_server::Conn) the decrypted
    /// stream begins: `raw[..at]` came in plaintext, `raw[at..]` inside
    /// TLS.
    pub at: usize,
    /// The SNI the client sent, if any.
    pub sni: Option<String>,
    /// `TLSv1_3`, `TLSv1_2` (rustls's names).
    pub version: String,
    pub resumed: bool,
    /// The client presented a certificate.
    pub client_cert: bool,
}

//! A server's identity (certificate chain and private key) and a client's
//! trust anchors, from PEM, checked when they are loaded.

use crate::{TlsError, provider};
use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use morgana::abi::mft::DeviceKind;
use morgana::{Block, Device, DeviceError};
use rustls::client::WebPkiServerVerifier;
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The protocol versions offered and accepted: TLS 1.3 and 1.2.
static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Largest PEM bundle read from a block device.
const MAX_PEM: u64 = 1 << 20;

/// A server's certificate chain and private key, checked: every
/// certificate parses, the key parses and is of a supported type (ECDSA
/// P-256/P-384, Ed25519, RSA), and it is the key of the first
/// certificate (a signature made with it verifies with the certificate's
/// public key).
///
/// As a device (`tls: Identity`), it is read at boot from a block device
/// holding a PEM bundle (the chain, end-entity first, then the key; the
/// rest of the device zero-filled): a corrupt or mismatched bundle stops
/// the unikernel with one line and status 1. Or build one from PEM baked
/// into the image with [`Identity::from_pem`].
pub struct Identity {
    config: Arc<ServerConfig>,
}

impl Identity {
    /// The identity in a PEM bundle: certificates (end-entity first) and a
    /// private key (PKCS#8, SEC1 or PKCS#1), in any order.
    pub fn from_pem(pem: &[u8]) -> Result<Self, TlsError> {
        Self::from_pem_parts(pem, pem)
    }

    /// The identity from a PEM certificate chain and a PEM private key.
    pub fn from_pem_parts(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let chain = certificates(chain_pem)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| TlsError::bad(format!("no usable private key in the PEM: {e:?}")))?;
        let p = provider::provider();
        let signing = p
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| {
                TlsError::bad(format!(
                    "the private key is corrupt or of an unsupported type: {e}"
                ))
            })?;
        match embedded_match(&chain[0], &key) {
            Some(true) => {}
            Some(false) => {
                return Err(TlsError::bad(
                    "the private key does not match the certificate",
                ));
            }
            // No public key stored with the private one: prove it.
            None => check_pair(&chain[0], &*signing, &p)?,
        }
        let mut config = ServerConfig::builder_with_details(p, provider::time())
            .with_protocol_versions(VERSIONS)
            .map_err(TlsError::Tls)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::bad(format!("certificate and key refused: {e}")))?;
        config.alpn_protocols = alloc::vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// The rustls server configuration (TLS 1.3 and 1.2, no client
    /// authentication, ALPN `http/1.1`), to adjust before serving.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// The same identity with another configuration.
    pub fn with_server_config(mut self, config: ServerConfig) -> Self {
        self.config = Arc::new(config);
        self
    }
}

/// The certificates in `pem`, each checked to parse.
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut chain = Vec::new();
    for (i, c) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let c =
            c.map_err(|e| TlsError::bad(format!("certificate {} is not valid PEM: {e:?}", i + 1)))?;
        ParsedCertificate::try_from(&c)
            .map_err(|e| TlsError::bad(format!("certificate {} is corrupt: {e}", i + 1)))?;
        chain.push(c);
    }
    if chain.is_empty() {
        return Err(TlsError::bad("no certificate in the PEM"));
    }
    Ok(chain)
}

/// Whether the public key stored in the private key's file (EC keys in
/// SEC1 or PKCS#8 as openssl writes them, RSA keys always) is the
/// certificate's: no arithmetic, which matters where guests compute slowly
/// (signing and verifying takes minutes on an emulated hvt). `None` if the
/// file holds no public key.
fn embedded_match(cert: &CertificateDer<'_>, key: &PrivateKeyDer<'_>) -> Option<bool> {
    use spki::der::Decode;
    let parsed = ParsedCertificate::try_from(cert).ok()?;
    let spki_der = parsed.subject_public_key_info();
    let spki = spki::SubjectPublicKeyInfoRef::from_der(spki_der.as_ref()).ok()?;
    let cert_key = spki.subject_public_key.raw_bytes();
    let ec = |der: &[u8]| -> Option<bool> {
        let k = sec1::EcPrivateKey::from_der(der).ok()?;
        Some(k.public_key? == cert_key)
    };
    let rsa = |der: &[u8]| -> Option<bool> {
        let k = pkcs1::RsaPrivateKey::from_der(der).ok()?;
        let c = pkcs1::RsaPublicKey::from_der(cert_key).ok()?;
        Some(k.modulus == c.modulus && k.public_exponent == c.public_exponent)
    };
    match key {
        PrivateKeyDer::Sec1(k) => ec(k.secret_sec1_der()),
        PrivateKeyDer::Pkcs1(k) => rsa(k.secret_pkcs1_der()),
        PrivateKeyDer::Pkcs8(k) => {
            let info = pkcs8::PrivateKeyInfo::from_der(k.secret_pkcs8_der()).ok()?;
            if let Some(public) = info.public_key {
                return Some(public == cert_key);
            }
            ec(info.private_key).or_else(|| rsa(info.private_key))
        }
        _ => None,
    }
}

/// Checks that `key` is the private key of `cert`: signs a message with it
/// and verifies the signature with the certificate's public key, using the
/// provider's algorithms.
fn check_pair(
    cert: &CertificateDer<'_>,
    key: &dyn rustls::sign::SigningKey,
    p: &rustls::crypto::CryptoProvider,
) -> Result<(), TlsError> {
    use SignatureScheme as S;
    let offered = [
        S::ED25519,
        S::ECDSA_NISTP256_SHA256,
        S::ECDSA_NISTP384_SHA384,
        S::RSA_PSS_SHA256,
        S::RSA_PKCS1_SHA256,
    ];
    let signer = key
        .choose_scheme(&offered)
        .ok_or_else(|| TlsError::bad("the private key supports no usable signature scheme"))?;
    let msg = b"morgana-tls: does this key belong to this certificate?";
    let sig = signer
        .sign(msg)
        .map_err(|e| TlsError::bad(format!("the private key cannot sign: {e}")))?;
    let parsed = ParsedCertificate::try_from(cert)
        .map_err(|e| TlsError::bad(format!("certificate 1 is corrupt: {e}")))?;
    let spki = parsed.subject_public_key_info();
    let spki = spki::SubjectPublicKeyInfoRef::try_from(spki.as_ref())
        .map_err(|_| TlsError::bad("certificate 1 has a corrupt public key"))?;
    let public = spki.subject_public_key.raw_bytes();
    let scheme = signer.scheme();
    let algs = p
        .signature_verification_algorithms
        .mapping
        .iter()
        .find(|(s, _)| *s == scheme)
        .map(|(_, a)| *a)
        .unwrap_or(&[]);
    // An algorithm for another kind of key fails to parse this one.
    let ok = algs
        .iter()
        .any(|a| a.verify_signature(public, msg, &sig).is_ok());
    if ok {
        Ok(())
    } else {
        Err(TlsError::bad(
            "the private key does not match the certificate",
        ))
    }
}

/// The certificate authorities a client trusts, from PEM.
///
/// As a device (`ca: TrustAnchors`), read at boot from a block device
/// holding PEM certificates (zero-filled after them).
pub struct TrustAnchors {
    config: Arc<ClientConfig>,
}

impl TrustAnchors {
    /// The CA certificates in `pem`.
    pub fn from_pem(pem: &[u8]) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for c in certificates(pem)? {
            roots
                .add(c)
                .map_err(|e| TlsError::bad(format!("unusable CA certificate: {e}")))?;
        }
        let p = provider::provider();
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), p.clone())
            .build()
            .map_err(|e| TlsError::bad(format!("{e}")))?;
        let mut config = ClientConfig::builder_with_details(p, provider::time())
            .with_protocol_versions(VERSIONS)
            .map_err(TlsError::Tls)?
            .with_webpki_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = alloc::vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// The rustls client configuration (TLS 1.3 and 1.2, webpki
    /// verification against these anchors).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }
}

/// Reads a PEM bundle from a block device: its sectors up to the first
/// zero byte.
fn read_pem(name: &'static str) -> Result<Vec<u8>, DeviceError> {
    let block = Block::acquire(name)?;
    let info = block.info();
    let len = info.capacity().min(MAX_PEM) as usize;
    let ss = info.sector_size as usize;
    let mut buf = alloc::vec![0u8; len / ss * ss];
    block
        .atomic_read(0, &mut buf)
        .map_err(|e| DeviceError::new(name, format!("cannot read: {e:?}")))?;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    buf.truncate(end);
    Ok(buf)
}

impl Device for Identity {
    const NEEDS: &'static [DeviceKind] = &[DeviceKind::Block];

    async fn connect(names: &'static [&'static str]) -> Result<Self, DeviceError> {
        let pem = read_pem(names[0])?;
        Self::from_pem(&pem).map_err(|e| DeviceError::new(names[0], e))
    }
}

impl Device for TrustAnchors {
    const NEEDS: &'static [DeviceKind] = &[DeviceKind::Block];

    async fn connect(names: &'static [&'static str]) -> Result<Self, DeviceError> {
        let pem = read_pem(names[0])?;
        Self::from_pem(&pem).map_err(|e| DeviceError::new(names[0], e))
    }
}

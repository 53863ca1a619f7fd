//! TLS 1.3 and 1.2 for Morgana unikernels: servers and clients over
//! [`morgana_net`] TCP streams, on every platform.
//!
//! Underneath is [rustls] in its `no_std` form (its *unbuffered* connection
//! API) with [rustls-rustcrypto], a crypto provider built from the
//! RustCrypto crates: no cryptography is written here. Bare images are
//! soft-float and cannot run SSE; the RustCrypto crates' x86 back ends
//! choose AES-NI/SSE2/AVX2 code at run time from CPUID, so `morgana build`
//! compiles them with their portable back ends (`--cfg aes_force_soft`,
//! `polyval_force_soft`, `chacha20_force_soft`, `poly1305_force_soft`,
//! `curve25519_dalek_backend="serial"`, and sha2's `force-soft`).
//! Randomness comes from Morgana's `Random` device, certificate validity
//! from the wall clock.
//!
//! A server declares its identity like any device (read at boot from a
//! block device holding a PEM bundle; a corrupt certificate or key, or a
//! mismatched pair, stops the unikernel with one line and status 1):
//!
//! ```no_run
//! # #![no_std]
//! # #![no_main]
//! use morgana_tls::{Identity, TlsListener};
//!
//! #[morgana::main]
//! async fn main(service: morgana_net::Stack, tls: Identity) -> Result<(), morgana_tls::TlsError> {
//!     let listener = TlsListener::bind(&service, 443, &tls)?;
//!     loop {
//!         let (mut stream, _peer) = listener.accept().await?;
//!         morgana::spawn(async move {
//!             if stream.handshake().await.is_ok() {
//!                 let _ = stream.write_all(b"hello over TLS\n").await;
//!             }
//!             let _ = stream.close().await;
//!         });
//!     }
//! }
//! ```
//!
//! A client verifies the server's certificate against [`TrustAnchors`]
//! and its name: [`connect`].
//!
//! [rustls]: https://docs.rs/rustls
//! [rustls-rustcrypto]: https://docs.rs/rustls-rustcrypto

#![no_std]

extern crate alloc;

mod identity;
mod provider;
mod stream;

use alloc::string::String;
use alloc::sync::Arc;
use core::time::Duration;
use morgana_net::{IpEndpoint, Stack, TcpListener, TcpStream};
use stream::Conn;

pub use identity::{Identity, TrustAnchors};
pub use provider::provider;
pub use rustls;
pub use stream::TlsStream;

/// Time a peer has to complete a handshake, unless told otherwise.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS error.
#[derive(Clone, Debug, PartialEq)]
pub enum TlsError {
    /// A certificate, key or anchor was refused when loaded.
    BadIdentity(String),
    /// The TLS protocol failed (the peer's certificate, its records, its
    /// versions...).
    Tls(rustls::Error),
    /// The TCP stream failed.
    Net(morgana_net::Error),
    /// The handshake took longer than allowed.
    HandshakeTimeout,
    /// The server name is not a valid DNS name or address.
    BadServerName,
}

impl TlsError {
    pub(crate) fn bad(msg: impl Into<String>) -> Self {
        Self::BadIdentity(msg.into())
    }
}

impl core::fmt::Display for TlsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadIdentity(m) => f.write_str(m),
            Self::Tls(e) => write!(f, "TLS: {e}"),
            Self::Net(e) => write!(f, "network: {e}"),
            Self::HandshakeTimeout => f.write_str("TLS handshake timed out"),
            Self::BadServerName => f.write_str("invalid server name"),
        }
    }
}

impl core::error::Error for TlsError {}

impl From<morgana_net::Error> for TlsError {
    fn from(e: morgana_net::Error) -> Self {
        Self::Net(e)
    }
}

impl embedded_io_async::Error for TlsError {
    fn kind(&self) -> embedded_io_async::ErrorKind {
        match self {
            Self::Net(e) => embedded_io_async::Error::kind(e),
            Self::HandshakeTimeout => embedded_io_async::ErrorKind::TimedOut,
            _ => embedded_io_async::ErrorKind::InvalidData,
        }
    }
}

/// A TCP listener whose connections speak TLS with one identity.
pub struct TlsListener {
    tcp: TcpListener,
    config: Arc<rustls::ServerConfig>,
    handshake_timeout: Duration,
}

impl TlsListener {
    /// Listens on TCP `port` of `stack`, serving `identity`.
    pub fn bind(stack: &Stack, port: u16, identity: &Identity) -> Result<Self, TlsError> {
        Ok(Self {
            tcp: TcpListener::bind(stack, port)?,
            config: identity.server_config(),
            handshake_timeout: HANDSHAKE_TIMEOUT,
        })
    }

    /// The same listener giving handshakes `limit` to complete.
    pub fn with_handshake_timeout(mut self, limit: Duration) -> Self {
        self.handshake_timeout = limit;
        self
    }

    /// Waits for a TCP connection; returns its TLS session (the handshake
    /// runs in the caller's task: [`TlsStream::handshake`], or the first
    /// read) and the peer's address.
    pub async fn accept(&self) -> Result<(TlsStream, IpEndpoint), TlsError> {
        let (tcp, peer) = self.tcp.accept().await?;
        let conn = rustls::server::UnbufferedServerConnection::new(self.config.clone())
            .map_err(TlsError::Tls)?;
        Ok((
            TlsStream::new(tcp, Conn::Server(conn), self.handshake_timeout),
            peer,
        ))
    }
}

/// Connects to `remote` over TCP and runs a TLS handshake (within
/// [`HANDSHAKE_TIMEOUT`]), verifying the server's certificate against
/// `anchors` and `server_name` (a DNS name or an IP address).
pub async fn connect(
    stack: &Stack,
    remote: impl Into<IpEndpoint>,
    server_name: &str,
    anchors: &TrustAnchors,
) -> Result<TlsStream, TlsError> {
    connect_with_timeout(stack, remote, server_name, anchors, HANDSHAKE_TIMEOUT).await
}

/// [`connect`], with the handshake allowed `limit`.
pub async fn connect_with_timeout(
    stack: &Stack,
    remote: impl Into<IpEndpoint>,
    server_name: &str,
    anchors: &TrustAnchors,
    limit: Duration,
) -> Result<TlsStream, TlsError> {
    let name = rustls_pki_types::ServerName::try_from(server_name)
        .map_err(|_| TlsError::BadServerName)?
        .to_owned();
    let tcp = TcpStream::connect(stack, remote).await?;
    let conn = rustls::client::UnbufferedClientConnection::new(anchors.client_config(), name)
        .map_err(TlsError::Tls)?;
    let mut s = TlsStream::new(tcp, Conn::Client(conn), limit);
    s.handshake().await?;
    Ok(s)
}

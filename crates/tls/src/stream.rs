//! A TLS session over a TCP stream: rustls's unbuffered connection (the
//! API it offers without `std`), driven by reads and writes on the stream.

use crate::TlsError;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;
use morgana_net::{IpEndpoint, TcpStream};
use rustls::client::UnbufferedClientConnection;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};

/// Largest TLS record on the wire: 2^14 bytes of plaintext plus the
/// header and the largest expansion allowed.
const MAX_RECORD: usize = 5 + (1 << 14) + 2048;

/// Plaintext encrypted per write call (one full record).
const WRITE_CHUNK: usize = 1 << 14;

/// The two kinds of rustls connection, driven alike.
pub(crate) enum Conn {
    Server(UnbufferedServerConnection),
    Client(UnbufferedClientConnection),
}

/// What to do after a state was handled (and its borrows released).
enum Action {
    /// Process the records again.
    Again,
    /// Send `out` to the peer.
    Transmit,
    /// Read more records from the peer.
    ReadMore,
    /// The call is done.
    Done,
}

/// What the caller wants from a drive.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Goal {
    /// The handshake done.
    Handshake,
    /// Some plaintext (or the end of the stream).
    Read,
    /// Plaintext encrypted and sent.
    Write,
    /// A close_notify sent.
    Close,
    /// A fatal alert rustls queued (after an error) sent, if any.
    Alert,
}

/// A TLS session (server or client side) over a TCP stream. It implements
/// `embedded_io_async::{Read, Write}`, so [`morgana_http::Server`]
/// can serve it. The handshake runs on the first read or write, or when
/// [`TlsStream::handshake`] is called.
///
/// [`morgana_http::Server`]: https://docs.rs/morgana-http
pub struct TlsStream {
    tcp: TcpStream,
    conn: Conn,
    /// Records received, `..in_len` of it filled.
    incoming: Vec<u8>,
    in_len: usize,
    /// Records to send, `out_sent..` of it not yet sent.
    out: Vec<u8>,
    out_sent: usize,
    /// Plaintext received, `plain_pos..` of it not yet read.
    plain: Vec<u8>,
    plain_pos: usize,
    /// The peer sent close_notify (or closed its TCP side).
    eof: bool,
    /// A fatal error: the session is over.
    failed: Option<TlsError>,
    handshake_timeout: Duration,
    handshaken: bool,
}

impl core::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TlsStream")
            .field("tcp", &self.tcp)
            .field("handshaken", &self.handshaken)
            .finish()
    }
}

impl TlsStream {
    pub(crate) fn new(tcp: TcpStream, conn: Conn, handshake_timeout: Duration) -> Self {
        Self {
            tcp,
            conn,
            // Most handshake flights fit; grown to a full record on demand.
            incoming: vec![0; 4096],
            in_len: 0,
            out: Vec::new(),
            out_sent: 0,
            plain: Vec::new(),
            plain_pos: 0,
            eof: false,
            failed: None,
            handshake_timeout,
            handshaken: false,
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<IpEndpoint> {
        self.tcp.peer_addr()
    }

    /// The TCP stream underneath.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The negotiated protocol version, once the handshake is done.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        match &self.conn {
            Conn::Server(c) => c.protocol_version(),
            Conn::Client(c) => c.protocol_version(),
        }
    }

    /// Runs the handshake to its end, within the handshake timeout (a
    /// client that stalls costs its connection only).
    pub async fn handshake(&mut self) -> Result<(), TlsError> {
        if self.handshaken {
            return Ok(());
        }
        match morgana::timeout(self.handshake_timeout, self.drive(Goal::Handshake, &[])).await {
            Ok(r) => r.map(|_| ()),
            Err(_) => {
                self.failed = Some(TlsError::HandshakeTimeout);
                Err(TlsError::HandshakeTimeout)
            }
        }
    }

    /// Reads plaintext into `buf`; 0 at the end of the stream.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, TlsError> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.handshake().await?;
        if self.plain_pos == self.plain.len() && !self.eof {
            self.drive(Goal::Read, &[]).await?;
        }
        let avail = &self.plain[self.plain_pos..];
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.plain_pos += n;
        if self.plain_pos == self.plain.len() {
            self.plain.clear();
            self.plain_pos = 0;
        }
        Ok(n)
    }

    /// Encrypts and sends some of `buf` (up to a record); returns how much.
    pub async fn write(&mut self, buf: &[u8]) -> Result<usize, TlsError> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.handshake().await?;
        let n = buf.len().min(WRITE_CHUNK);
        self.drive(Goal::Write, &buf[..n]).await?;
        Ok(n)
    }

    /// Encrypts and sends all of `buf`.
    pub async fn write_all(&mut self, mut buf: &[u8]) -> Result<(), TlsError> {
        while !buf.is_empty() {
            let n = self.write(buf).await?;
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Sends close_notify (if the session is up) and closes the TCP
    /// stream gracefully.
    pub async fn close(mut self) -> Result<(), TlsError> {
        if self.handshaken && self.failed.is_none() {
            let _ = morgana::timeout(self.handshake_timeout, self.drive(Goal::Close, &[])).await;
        }
        let limit = self.handshake_timeout;
        let _ = morgana::timeout(limit, self.tcp.close()).await;
        Ok(())
    }

    /// Sends what is queued in `out`.
    async fn transmit(&mut self) -> Result<(), TlsError> {
        while self.out_sent < self.out.len() {
            let n = self
                .tcp
                .write(&self.out[self.out_sent..])
                .await
                .map_err(TlsError::Net)?;
            self.out_sent += n;
        }
        self.out.clear();
        self.out_sent = 0;
        Ok(())
    }

    /// Reads more records from the TCP stream.
    async fn read_more(&mut self) -> Result<(), TlsError> {
        if self.in_len == self.incoming.len() {
            if self.incoming.len() >= MAX_RECORD {
                // rustls takes a whole record at a time; more than one
                // record's worth pending without progress is not TLS.
                return Err(TlsError::Tls(rustls::Error::General(
                    "record too large".into(),
                )));
            }
            self.incoming.resize(MAX_RECORD, 0);
        }
        let n = self
            .tcp
            .read(&mut self.incoming[self.in_len..])
            .await
            .map_err(TlsError::Net)?;
        if n == 0 {
            // The peer closed TCP without close_notify: the end of the
            // stream for a reader (a truncation attack can only cut short),
            // a failure for a handshake or a writer.
            self.eof = true;
            return Ok(());
        }
        self.in_len += n;
        Ok(())
    }

    /// Runs rustls's state machine until `goal` is reached.
    async fn drive(&mut self, goal: Goal, data: &[u8]) -> Result<(), TlsError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        // A transmission cut short by a cancelled call goes first.
        self.transmit().await?;
        let r = self.drive_inner(goal, data).await;
        if let Err(e) = &r {
            self.failed = Some(e.clone());
            if matches!(e, TlsError::Tls(_)) {
                // Tell the peer why (rustls queued an alert), briefly.
                let limit = Duration::from_secs(1);
                let _ = morgana::timeout(limit, self.drive_inner(Goal::Alert, &[])).await;
            }
        }
        r
    }

    async fn drive_inner(&mut self, goal: Goal, data: &[u8]) -> Result<(), TlsError> {
        let mut wrote = false;
        loop {
            let eof_before = self.eof;
            let action = self.step(goal, data, &mut wrote)?;
            match action {
                Action::Again => {}
                Action::Transmit => self.transmit().await?,
                Action::Done => return Ok(()),
                Action::ReadMore => {
                    if eof_before {
                        return match goal {
                            Goal::Read => Ok(()),
                            _ => Err(TlsError::Net(morgana_net::Error::ConnectionReset)),
                        };
                    }
                    self.read_more().await?;
                }
            }
        }
    }

    /// Processes the records received and handles the state rustls is in;
    /// says what to do next.
    fn step(&mut self, goal: Goal, data: &[u8], wrote: &mut bool) -> Result<Action, TlsError> {
        let Self {
            conn,
            incoming,
            in_len,
            out,
            plain,
            eof,
            handshaken,
            ..
        } = self;
        let buf = &mut incoming[..*in_len];
        macro_rules! process {
            ($c:expr) => {{
                let UnbufferedStatus { discard, state } = $c.process_tls_records(buf);
                let action = match state {
                    Err(e) => Err(TlsError::Tls(e)),
                    Ok(state) => handle(state, goal, data, out, plain, eof, handshaken, wrote),
                };
                (discard, action)
            }};
        }
        let (discard, action) = match conn {
            Conn::Server(c) => process!(c),
            Conn::Client(c) => process!(c),
        };
        if discard > 0 {
            incoming.copy_within(discard..*in_len, 0);
            *in_len -= discard;
        }
        action
    }
}

#[allow(clippy::too_many_arguments)]
fn handle<D>(
    state: ConnectionState<'_, '_, D>,
    goal: Goal,
    data: &[u8],
    out: &mut Vec<u8>,
    plain: &mut Vec<u8>,
    eof: &mut bool,
    handshaken: &mut bool,
    wrote: &mut bool,
) -> Result<Action, TlsError> {
    Ok(match state {
        ConnectionState::ReadTraffic(mut r) => {
            while let Some(rec) = r.next_record() {
                let rec = rec.map_err(TlsError::Tls)?;
                plain.extend_from_slice(rec.payload);
            }
            Action::Again
        }
        ConnectionState::ReadEarlyData(_) => {
            // Early data is never enabled (no resumption).
            return Err(TlsError::Tls(rustls::Error::General(
                "unexpected early data".into(),
            )));
        }
        ConnectionState::EncodeTlsData(mut e) => {
            let at = out.len();
            out.resize(at + 4096, 0);
            let n = match e.encode(&mut out[at..]) {
                Ok(n) => Ok(n),
                Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                    out.resize(at + required_size, 0);
                    e.encode(&mut out[at..])
                }
                Err(err) => Err(err),
            };
            match n {
                Ok(n) => out.truncate(at + n),
                Err(err) => {
                    out.truncate(at);
                    return Err(encode_err(err));
                }
            }
            Action::Again
        }
        ConnectionState::TransmitTlsData(t) => {
            // The records are in `out`, sent right after this.
            t.done();
            Action::Transmit
        }
        ConnectionState::BlockedHandshake if goal == Goal::Alert => Action::Done,
        ConnectionState::BlockedHandshake => Action::ReadMore,
        ConnectionState::PeerClosed => {
            *eof = true;
            Action::Again
        }
        ConnectionState::Closed => {
            *eof = true;
            match goal {
                Goal::Alert => Action::Done,
                Goal::Write => return Err(TlsError::Net(morgana_net::Error::ConnectionReset)),
                _ => Action::Done,
            }
        }
        ConnectionState::WriteTraffic(mut w) => {
            *handshaken = true;
            match goal {
                Goal::Alert => Action::Done,
                Goal::Handshake => Action::Done,
                Goal::Read if !plain.is_empty() || *eof => Action::Done,
                Goal::Read => Action::ReadMore,
                Goal::Write if *wrote => Action::Done,
                Goal::Write => {
                    encrypt(out, |o| w.encrypt(data, o))?;
                    *wrote = true;
                    Action::Transmit
                }
                Goal::Close if *wrote => Action::Done,
                Goal::Close => {
                    encrypt(out, |o| w.queue_close_notify(o))?;
                    *wrote = true;
                    Action::Transmit
                }
            }
        }
        _ if goal == Goal::Alert => Action::Done,
        _ => Action::ReadMore,
    })
}

fn encode_err(e: EncodeError) -> TlsError {
    TlsError::Tls(rustls::Error::General(alloc::format!("{e}")))
}

/// Appends what `f` encrypts to `out`, growing it as `f` asks.
fn encrypt(
    out: &mut Vec<u8>,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> Result<(), TlsError> {
    let at = out.len();
    out.resize(at + WRITE_CHUNK + 1024, 0);
    let n = match f(&mut out[at..]) {
        Ok(n) => n,
        Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
            out.resize(at + required_size, 0);
            f(&mut out[at..])
                .map_err(|e| TlsError::Tls(rustls::Error::General(alloc::format!("{e}"))))?
        }
        Err(e) => return Err(TlsError::Tls(rustls::Error::General(alloc::format!("{e}")))),
    };
    out.truncate(at + n);
    Ok(())
}

impl embedded_io_async::ErrorType for TlsStream {
    type Error = TlsError;
}

impl embedded_io_async::Read for TlsStream {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, TlsError> {
        TlsStream::read(self, buf).await
    }
}

impl embedded_io_async::Write for TlsStream {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, TlsError> {
        TlsStream::write(self, buf).await
    }

    async fn flush(&mut self) -> Result<(), TlsError> {
        // Every write is sent at once; nothing is buffered here.
        Ok(())
    }
}

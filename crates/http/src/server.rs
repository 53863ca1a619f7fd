//! The connection loop: reading requests, framing bodies, answering in
//! order, and the limits.

use crate::chunked::{ChunkError, Decoder};
use crate::{Limits, Request, Response, Router};
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use embedded_io_async::{Read, Write};
use morgana::Instant;
use morgana_net::{IpEndpoint, Stack, TcpListener};

/// An HTTP/1.1 server: a [`Router`] and the [`Limits`] it applies. Cheap
/// to clone (the router is shared).
#[derive(Clone)]
pub struct Server {
    router: Rc<Router>,
    limits: Limits,
}

/// How reading from the client went wrong.
enum ReadError {
    /// The client closed its side.
    Eof,
    /// The deadline passed.
    Timeout,
    /// The stream failed.
    Io,
}

/// Why a request could not be read: answered with this status, then the
/// connection is closed. `None`: close without answering.
type Refusal = Option<u16>;

/// How the body of a request is framed.
enum Framing {
    None,
    Length(usize),
    Chunked,
}

/// A request head, owned, and what the server needs from it.
struct Head {
    request: Request,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
}

/// A connection's read side: a buffer of `max_head` bytes, of which
/// `start..end` are received and not yet used.
struct Conn<S> {
    io: S,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<S: Read + Write> Conn<S> {
    fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Reads more into the buffer (moving what is pending to its start
    /// first), by `deadline`.
    async fn fill(&mut self, deadline: Instant) -> Result<usize, ReadError> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // Full: the caller decides (431, or the chunk decoder's limit).
            return Ok(0);
        }
        let left = deadline.duration_since(Instant::now());
        let end = self.end;
        match morgana::timeout(left, self.io.read(&mut self.buf[end..])).await {
            Ok(Ok(0)) => Err(ReadError::Eof),
            Ok(Ok(n)) => {
                self.end += n;
                Ok(n)
            }
            Ok(Err(_)) => Err(ReadError::Io),
            Err(_) => Err(ReadError::Timeout),
        }
    }

    /// Writes all of `data`, by `deadline`.
    async fn send(&mut self, data: &[u8], deadline: Instant) -> bool {
        let left = deadline.duration_since(Instant::now());
        matches!(
            morgana::timeout(left, self.io.write_all(data)).await,
            Ok(Ok(()))
        )
    }
}

impl Server {
    /// A server answering with `router`, with the default [`Limits`].
    pub fn new(router: Router) -> Self {
        Self {
            router: Rc::new(router),
            limits: Limits::default(),
        }
    }

    /// The same server with other limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Listens on TCP `port` of `stack` and serves every connection in a
    /// task of its own. Returns only if the port cannot be bound or
    /// accepting fails.
    pub async fn serve(&self, stack: &Stack, port: u16) -> Result<(), morgana_net::Error> {
        let listener = TcpListener::bind(stack, port)?;
        loop {
            let (mut stream, peer) = listener.accept().await?;
            let server = self.clone();
            morgana::spawn(async move {
                server.serve_connection(&mut stream, Some(peer)).await;
                // Gracefully: the answer goes out before the FIN. A peer
                // that never closes its side is reset by the stack later.
                let limit = server.limits.write_timeout;
                if morgana::timeout(limit, stream.close()).await.is_err() {
                    log::debug!("http: {peer} did not close; dropping");
                }
            });
        }
    }

    /// Serves one connection (any stream: TCP, TLS, ...) until the client
    /// closes it, a request asks to close it, a limit is exceeded or it
    /// fails; then returns, leaving the closing to the caller. `peer` is
    /// what [`Request::peer`] returns.
    pub async fn serve_connection<S: Read + Write>(&self, io: S, peer: Option<IpEndpoint>) {
        let mut c = Conn {
            io,
            buf: vec![0; self.limits.max_head],
            start: 0,
            end: 0,
        };
        loop {
            let head = match self.read_head(&mut c).await {
                Ok(h) => h,
                Err(refusal) => return self.refuse(&mut c, refusal).await,
            };
            let Head {
                mut request,
                framing,
                keep_alive,
                expect_continue,
            } = head;
            request.peer = peer;
            let head_request = request.method == "HEAD";
            if expect_continue && !matches!(framing, Framing::None) {
                let deadline = Instant::now() + self.limits.write_timeout;
                if !c.send(b"HTTP/1.1 100 Continue\r\n\r\n", deadline).await {
                    return;
                }
            }
            match self.read_body(&mut c, framing).await {
                Ok(body) => request.body = body,
                Err(refusal) => return self.refuse(&mut c, refusal).await,
            }
            let response = self.router.handle(request).await;
            if !self
                .respond(&mut c, &response, head_request, keep_alive)
                .await
                || !keep_alive
            {
                let _ = c.io.flush().await;
                return;
            }
        }
    }

    /// Answers with `status` and `Connection: close`, if there is a status.
    async fn refuse<S: Read + Write>(&self, c: &mut Conn<S>, refusal: Refusal) {
        if let Some(status) = refusal {
            log::debug!("http: refusing a request with {status}");
            if self
                .respond(c, &Response::error(status), false, false)
                .await
            {
                let _ = c.io.flush().await;
            }
        }
    }

    /// Sends `response`; false if the stream failed or stalled.
    async fn respond<S: Read + Write>(
        &self,
        c: &mut Conn<S>,
        response: &Response,
        head_request: bool,
        keep_alive: bool,
    ) -> bool {
        let deadline = Instant::now() + self.limits.write_timeout;
        let mut head = response.head(keep_alive);
        let body = response.sent_body(head_request);
        // One write for a small answer: head and body in one segment.
        if body.len() <= 16 << 10 {
            head.extend_from_slice(body);
            c.send(&head, deadline).await
        } else {
            c.send(&head, deadline).await && c.send(body, deadline).await
        }
    }

    /// Reads and parses the next request head.
    async fn read_head<S: Read + Write>(&self, c: &mut Conn<S>) -> Result<Head, Refusal> {
        let l = &self.limits;
        // A kept-alive connection waits for its next request's first byte
        // for the idle timeout; from then on the head must be complete
        // within the head timeout.
        if c.pending().is_empty() {
            let idle = Instant::now() + l.idle_timeout;
            match c.fill(idle).await {
                Ok(_) => {}
                Err(_) => return Err(None),
            }
        }
        let deadline = Instant::now() + l.head_timeout;
        loop {
            // Leading empty lines before a request line are ignored (RFC
            // 9112, 2.2).
            while c.pending().starts_with(b"\r\n") {
                c.start += 2;
            }
            if let Some((head, n)) = try_parse(c.pending(), l.max_headers)? {
                c.start += n;
                return Ok(head);
            }
            if c.start == 0 && c.end == c.buf.len() {
                return Err(Some(431));
            }
            match c.fill(deadline).await {
                Ok(_) => {}
                Err(ReadError::Timeout) => return Err(Some(408)),
                Err(ReadError::Eof | ReadError::Io) => return Err(None),
            }
        }
    }

    /// Reads the body framed by `framing`.
    async fn read_body<S: Read + Write>(
        &self,
        c: &mut Conn<S>,
        framing: Framing,
    ) -> Result<Vec<u8>, Refusal> {
        let l = &self.limits;
        let deadline = Instant::now() + l.body_timeout;
        let mut body = Vec::new();
        match framing {
            Framing::None => {}
            Framing::Length(n) if n > l.max_body => return Err(Some(413)),
            Framing::Length(n) => {
                body = vec![0; n];
                let have = c.pending().len().min(n);
                body[..have].copy_from_slice(&c.pending()[..have]);
                c.start += have;
                let mut got = have;
                while got < n {
                    let left = deadline.duration_since(Instant::now());
                    match morgana::timeout(left, c.io.read(&mut body[got..])).await {
                        Ok(Ok(0)) | Ok(Err(_)) => return Err(None),
                        Ok(Ok(k)) => got += k,
                        Err(_) => return Err(Some(408)),
                    }
                }
            }
            Framing::Chunked => {
                let mut d = Decoder::Size;
                loop {
                    match d.feed(c.pending(), &mut body, l.max_body, l.max_head) {
                        Ok(used) => c.start += used,
                        Err(ChunkError::Malformed) => return Err(Some(400)),
                        Err(ChunkError::TooLarge) => return Err(Some(413)),
                    }
                    if d == Decoder::Done {
                        break;
                    }
                    match c.fill(deadline).await {
                        // The buffer is full of an unfinished line: the
                        // decoder refuses lines longer than it holds.
                        Ok(0) => return Err(Some(400)),
                        Ok(_) => {}
                        Err(ReadError::Timeout) => return Err(Some(408)),
                        Err(ReadError::Eof | ReadError::Io) => return Err(None),
                    }
                }
            }
        }
        Ok(body)
    }
}

/// Parses a head from `buf`: `None` if it is not complete yet.
fn try_parse(buf: &[u8], max_headers: usize) -> Result<Option<(Head, usize)>, Refusal> {
    let mut headers = vec![httparse::EMPTY_HEADER; max_headers];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => Ok(Some((parse_head(&req)?, n))),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(Some(431)),
        Err(httparse::Error::Version) if other_version(buf) => Err(Some(505)),
        Err(_) => Err(Some(400)),
    }
}

/// Whether the request line ends in a well-formed version other than 1.x
/// (`HTTP/2.0`), rather than in garbage.
fn other_version(buf: &[u8]) -> bool {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let v = line.rsplit(|&b| b == b' ').next().unwrap_or(&[]);
    matches!(v, [b'H', b'T', b'T', b'P', b'/', a, b'.', b] if a.is_ascii_digit() && b.is_ascii_digit())
}

/// Takes what the server needs from a parsed head.
fn parse_head(req: &httparse::Request<'_, '_>) -> Result<Head, Refusal> {
    let method = req.method.unwrap_or_default();
    let target = req.path.unwrap_or_default();
    let minor = req.version.unwrap_or(1);
    let mut keep_alive = minor == 1;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut expect_continue = false;
    let mut host = 0;
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = h.name;
        let value = h.value.trim_ascii();
        if name.eq_ignore_ascii_case("content-length") {
            let n = core::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok())
                // Too large to count is too large to take.
                .ok_or(Some(
                    if value.iter().all(u8::is_ascii_digit) && !value.is_empty() {
                        413
                    } else {
                        400
                    },
                ))?;
            // Several Content-Length fields must agree (RFC 9112, 6.3).
            if length.is_some_and(|l| l != n) {
                return Err(Some(400));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Only chunked is understood; it must come last.
            let last = value.rsplit(|&b| b == b',').next().unwrap_or(&[]);
            if !last.trim_ascii().eq_ignore_ascii_case(b"chunked") || chunked {
                return Err(Some(if chunked { 400 } else { 501 }));
            }
            if value
                .split(|&b| b == b',')
                .any(|c| !c.trim_ascii().eq_ignore_ascii_case(b"chunked"))
            {
                return Err(Some(501));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && minor == 0 {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if !value.eq_ignore_ascii_case(b"100-continue") {
                return Err(Some(417));
            }
            expect_continue = true;
        } else if name.eq_ignore_ascii_case("host") {
            host += 1;
        }
        headers.push((String::from(name), Vec::from(h.value)));
    }
    // HTTP/1.1 requires exactly one Host (RFC 9112, 3.2).
    if minor == 1 && host != 1 {
        return Err(Some(400));
    }
    // Both framings at once is how requests are smuggled: refused.
    let framing = match (chunked, length) {
        (true, Some(_)) => return Err(Some(400)),
        (true, None) if minor == 0 => return Err(Some(400)),
        (true, None) => Framing::Chunked,
        (false, Some(0) | None) => Framing::None,
        (false, Some(n)) => Framing::Length(n),
    };
    Ok(Head {
        request: Request {
            method: method.into(),
            target: target.into(),
            minor_version: minor,
            headers,
            body: Vec::new(),
            peer: None,
        },
        framing,
        keep_alive,
        expect_continue,
    })
}

//! A small HTTP/1.1 server on port 80: `GET /` answers a fixed page,
//! anything else 404. Connections are kept alive (HTTP/1.1 default) unless
//! the client asks otherwise.

#![no_std]
#![no_main]

extern crate alloc;

use morgana_net::{Error, Stack, TcpListener, TcpStream};

const PAGE: &[u8] =
    b"<!doctype html>\n<title>Morgana</title>\n<h1>Hello from a Morgana unikernel</h1>\n";
const NOT_FOUND: &[u8] = b"not found\n";

/// A parsed request head.
struct Head<'a> {
    method: &'a [u8],
    path: &'a [u8],
    keep_alive: bool,
    body: usize,
}

fn parse(head: &[u8]) -> Option<Head<'_>> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let mut req = lines.next()?.split(|&b| b == b' ');
    let (method, path, version) = (req.next()?, req.next()?, req.next()?);
    let mut keep_alive = version == b"HTTP/1.1";
    let mut body = 0;
    for l in lines {
        let Some(colon) = l.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&l[..colon], l[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"connection") {
            keep_alive = if value.eq_ignore_ascii_case(b"close") {
                false
            } else {
                value.eq_ignore_ascii_case(b"keep-alive") || keep_alive
            };
        } else if name.eq_ignore_ascii_case(b"content-length") {
            body = core::str::from_utf8(value).ok()?.parse().ok()?;
        }
    }
    Some(Head {
        method,
        path,
        keep_alive,
        body,
    })
}

async fn respond(s: &TcpStream, status: &str, body: &[u8], keep_alive: bool) -> Result<(), Error> {
    let head = alloc::format!(
        "HTTP/1.1 {status}\r\nServer: morgana\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    let mut out = alloc::vec::Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    s.write_all(&out).await
}

async fn serve(s: TcpStream) -> Result<(), Error> {
    let mut buf = alloc::vec![0u8; 8192];
    let mut len = 0;
    loop {
        if let Some(end) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") {
            let Some(h) = parse(&buf[..end]) else {
                respond(&s, "400 Bad Request", b"bad request\n", false).await?;
                return s.close().await;
            };
            // The request ends after its body, which may not all be here.
            let request = end + 4 + h.body;
            if request > buf.len() {
                respond(&s, "413 Content Too Large", b"too large\n", false).await?;
                return s.close().await;
            }
            if len >= request {
                let keep_alive = h.keep_alive;
                if h.method == b"GET" && h.path == b"/" {
                    respond(&s, "200 OK", PAGE, keep_alive).await?;
                } else {
                    respond(&s, "404 Not Found", NOT_FOUND, keep_alive).await?;
                }
                buf.copy_within(request..len, 0);
                len -= request;
                if !keep_alive {
                    return s.close().await;
                }
                continue;
            }
        } else if len == buf.len() {
            respond(
                &s,
                "431 Request Header Fields Too Large",
                b"too large\n",
                false,
            )
            .await?;
            return s.close().await;
        }
        let n = s.read(&mut buf[len..]).await?;
        if n == 0 {
            return s.close().await;
        }
        len += n;
    }
}

#[morgana::main]
async fn main(service: Stack) -> Result<(), Error> {
    let listener = TcpListener::bind(&service, 80)?;
    log::info!("http-hello: listening on port 80");
    loop {
        let (stream, _peer) = listener.accept().await?;
        morgana::spawn(async move {
            let _ = serve(stream).await;
        });
    }
}

//! A response, as handlers build it.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

/// A response: a status, header fields and a body. The server adds
/// `Content-Length`, `Connection` and `Server` itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    pub(crate) body: Cow<'static, [u8]>,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Cow::Borrowed(&[]),
        }
    }

    /// `200 OK` with `body` (no content type).
    pub fn ok(body: impl Into<Cow<'static, [u8]>>) -> Self {
        Self::new(200).with_body(body)
    }

    /// `200 OK` with an HTML body.
    pub fn html(body: impl Into<Cow<'static, str>>) -> Self {
        Self::new(200)
            .with_header("Content-Type", "text/html; charset=utf-8")
            .with_body(str_bytes(body.into()))
    }

    /// `200 OK` with a plain text body.
    pub fn text(body: impl Into<Cow<'static, str>>) -> Self {
        Self::new(200)
            .with_header("Content-Type", "text/plain; charset=utf-8")
            .with_body(str_bytes(body.into()))
    }

    /// `404 Not Found` with a short text body.
    pub fn not_found() -> Self {
        Self::error(404)
    }

    /// `status` with its reason phrase as a text body.
    pub fn error(status: u16) -> Self {
        let mut body = String::from(reason(status));
        body.push('\n');
        Self::new(status)
            .with_header("Content-Type", "text/plain; charset=utf-8")
            .with_body(body.into_bytes())
    }

    /// Adds a header field.
    pub fn with_header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Cow<'static, [u8]>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The first header field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| &**v)
    }

    /// Whether this status has no body (1xx, 204, 304).
    fn bodiless(&self) -> bool {
        matches!(self.status, 100..=199 | 204 | 304)
    }

    /// The head, as sent: status line, the handler's fields, then
    /// `Content-Length` (the body's, also for HEAD) and `Connection`.
    pub(crate) fn head(&self, keep_alive: bool) -> Vec<u8> {
        let mut h = String::with_capacity(128);
        let _ = write!(h, "HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        let mut server = false;
        for (n, v) in &self.headers {
            // The server frames the body itself.
            if n.eq_ignore_ascii_case("content-length")
                || n.eq_ignore_ascii_case("transfer-encoding")
                || n.eq_ignore_ascii_case("connection")
            {
                continue;
            }
            server |= n.eq_ignore_ascii_case("server");
            let _ = write!(h, "{n}: {v}\r\n");
        }
        if !server {
            h.push_str("Server: morgana\r\n");
        }
        if !self.bodiless() {
            let _ = write!(h, "Content-Length: {}\r\n", self.body.len());
        }
        h.push_str(if keep_alive {
            "Connection: keep-alive\r\n\r\n"
        } else {
            "Connection: close\r\n\r\n"
        });
        h.into_bytes()
    }

    /// The body as sent: none for a HEAD request or a bodiless status.
    pub(crate) fn sent_body(&self, head_request: bool) -> &[u8] {
        if head_request || self.bodiless() {
            &[]
        } else {
            &self.body
        }
    }
}

fn str_bytes(s: Cow<'static, str>) -> Cow<'static, [u8]> {
    match s {
        Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
        Cow::Owned(s) => Cow::Owned(s.into_bytes()),
    }
}

/// The reason phrase of a status code (`"Unknown"` for codes it does not
/// know).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_frames_the_body() {
        let r = Response::html("hi").with_header("Content-Length", "99");
        let h = String::from_utf8(r.head(true)).unwrap();
        assert_eq!(
            h,
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nServer: morgana\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"
        );
        assert_eq!(r.sent_body(true), b"");
        assert_eq!(r.sent_body(false), b"hi");
        let h = String::from_utf8(Response::new(204).head(false)).unwrap();
        assert!(!h.contains("Content-Length"), "{h}");
        assert!(h.ends_with("Connection: close\r\n\r\n"), "{h}");
    }
}

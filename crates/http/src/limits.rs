//! Limits on what one request may cost.

use alloc::format;
use alloc::string::String;
use core::time::Duration;

/// What one request may cost: sizes (answered with 431 and 413) and
/// timeouts (408, or the connection is closed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line and header fields), in bytes;
    /// also the connection's read buffer. Default 8 KiB.
    pub max_head: usize,
    /// Most header fields in a request. Default 64.
    pub max_headers: usize,
    /// Largest request body, in bytes (after chunked decoding). Default 1 MiB.
    pub max_body: usize,
    /// Time from a request's first byte to the end of its head. Default 10 s.
    pub head_timeout: Duration,
    /// Time to receive a request's whole body. Default 30 s.
    pub body_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request. Default 60 s.
    pub idle_timeout: Duration,
    /// Time to hand one response to the stream (a client that does not read
    /// stalls it). Default 30 s.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head: 8 << 10,
            max_headers: 64,
            max_body: 1 << 20,
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// The defaults, changed by the unikernel's command line:
    /// `--http-max-head=BYTES`, `--http-max-headers=N`,
    /// `--http-max-body=BYTES`, and `--http-head-timeout=`,
    /// `--http-body-timeout=`, `--http-idle-timeout=`,
    /// `--http-write-timeout=` in seconds. Other arguments are ignored.
    /// A bad value is an error that names it.
    pub fn from_args() -> Result<Self, String> {
        Self::parse(morgana::args())
    }

    /// [`Limits::from_args`] over the given arguments.
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut l = Self::default();
        for arg in args {
            let Some(rest) = arg.strip_prefix("--http-") else {
                continue;
            };
            let (key, value) = rest
                .split_once('=')
                .ok_or_else(|| format!("{arg}: expected --http-NAME=VALUE"))?;
            let num = || -> Result<u64, String> {
                value
                    .parse::<u64>()
                    .ok()
                    .filter(|&v| v > 0)
                    .ok_or_else(|| format!("{arg}: expected a positive whole number"))
            };
            let size = || -> Result<usize, String> {
                usize::try_from(num()?).map_err(|_| format!("{arg}: too large"))
            };
            match key {
                "max-head" => {
                    l.max_head = size()?;
                    if l.max_head < 64 {
                        return Err(format!("{arg}: at least 64 bytes"));
                    }
                }
                "max-headers" => l.max_headers = size()?,
                "max-body" => l.max_body = size()?,
                "head-timeout" => l.head_timeout = Duration::from_secs(num()?),
                "body-timeout" => l.body_timeout = Duration::from_secs(num()?),
                "idle-timeout" => l.idle_timeout = Duration::from_secs(num()?),
                "write-timeout" => l.write_timeout = Duration::from_secs(num()?),
                _ => return Err(format!("{arg}: unknown HTTP option")),
            }
        }
        Ok(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let l = Limits::parse(["--ipv4=10.0.0.2/24", "--http-max-body=5", "x"]).unwrap();
        assert_eq!(l.max_body, 5);
        assert_eq!(l.max_head, Limits::default().max_head);
        let l = Limits::parse(["--http-idle-timeout=3"]).unwrap();
        assert_eq!(l.idle_timeout, Duration::from_secs(3));
        assert!(Limits::parse(["--http-max-body=0"]).is_err());
        assert!(Limits::parse(["--http-max-body=x"]).is_err());
        assert!(Limits::parse(["--http-frob=1"]).is_err());
        assert!(Limits::parse(["--http-max-head=10"]).is_err());
        assert!(Limits::parse(["--http-max-head"]).is_err());
    }
}

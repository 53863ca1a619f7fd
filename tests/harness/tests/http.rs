//! HTTP/1.1 conformance of morgana-http, on every platform, with real
//! traffic through a tap: http-hello (built on morgana-http) answers
//! pipelined requests in order, takes chunked bodies (from curl and in
//! pieces), and refuses oversized heads (431), oversized bodies (413),
//! malformed request lines (400) and a slowloris (408), and keeps serving.

use morgana_tests::net::{Lcg, Netns};
use morgana_tests::{Platform, Running, command};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Limits small enough to test quickly: 2 KiB heads, 1000-byte bodies,
/// 3 s to send a head.
const LIMITS: [&str; 4] = [
    "--ipv4=10.0.0.2/24",
    "--http-max-head=2048",
    "--http-max-body=1000",
    "--http-head-timeout=3",
];

struct Guest {
    run: Running,
    ns: Netns,
}

fn boot(p: Platform, tag: &str, args: &[&str]) -> Guest {
    let ns = Netns::new(tag);
    ns.add_tap("tap0", Some("10.0.0.1/24"));
    let mut run = Running::start(ns.wrap(&command(
        p,
        "http-hello",
        &["--net:service=tap0", "--net-mac:service=02:00:00:00:00:02"],
        args,
    )));
    run.wait_line("listening", Duration::from_secs(60));
    Guest { run, ns }
}

/// One parsed response.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits a byte stream of responses (each framed by Content-Length; the
/// answers to HEAD, listed in `heads`, have no body).
fn parse_responses(mut data: &[u8], heads: &[usize]) -> Result<Vec<Resp>, String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let end = data
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("incomplete head: {:?}", String::from_utf8_lossy(data)))?;
        let head = std::str::from_utf8(&data[..end]).map_err(|e| e.to_string())?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap_or((l, ""));
                (n.to_string(), v.trim().to_string())
            })
            .collect();
        let mut r = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = if heads.contains(&out.len()) {
            0
        } else {
            r.header("content-length").map_or(0, |v| v.parse().unwrap())
        };
        data = &data[end + 4..];
        if data.len() < len {
            return Err(format!("body cut short: {} of {len}", data.len()));
        }
        r.body = data[..len].to_vec();
        data = &data[len..];
        out.push(r);
    }
    Ok(out)
}

/// Sends `request` (in pieces of `piece` bytes, with a pause between
/// them, if given) and reads until the server closes.
fn exchange(request: &[u8], piece: Option<usize>) -> Vec<u8> {
    let mut s =
        TcpStream::connect_timeout(&"10.0.0.2:80".parse().unwrap(), Duration::from_secs(60))
            .expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    match piece {
        None => s.write_all(request).unwrap(),
        Some(n) => {
            for p in request.chunks(n) {
                s.write_all(p).unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    let mut out = Vec::new();
    // A reset after the answer (unread request bytes) ends the stream too.
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read after {} bytes: {e}", out.len()),
        }
    }
    out
}

/// The single answer to `request`, which must close the connection.
fn one(request: &[u8]) -> Resp {
    let data = exchange(request, None);
    let mut r = parse_responses(&data, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.len(), 1, "{r:?}");
    r.pop().unwrap()
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Lcg(seed);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// Encodes `body` as chunks of `size` bytes.
fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(size) {
        out.extend_from_slice(format!("{:x};ext=1\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\nX-Trailer: yes\r\n\r\n");
    out
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    for p in Platform::ALL {
        let mut g = boot(p, "hpipe", &LIMITS);
        let body = random_bytes(700, 5);
        let mut req = Vec::new();
        req.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        req.extend_from_slice(b"GET /nope HTTP/1.1\r\nHost: a\r\n\r\n");
        req.extend_from_slice(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 700\r\n\r\n");
        req.extend_from_slice(&body);
        req.extend_from_slice(
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        req.extend_from_slice(&chunked(&body[..300], 64));
        req.extend_from_slice(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
        req.extend_from_slice(b"DELETE / HTTP/1.1\r\nHost: a\r\n\r\n");
        req.extend_from_slice(b"\r\nGET / HTTP/1.0\r\n\r\n");
        // Twice: all in one write, then byte by byte in small pieces.
        for piece in [None, Some(7)] {
            let data = g.ns.run_in({
                let req = req.clone();
                move || exchange(&req, piece)
            });
            let r = parse_responses(&data, &[4]).unwrap_or_else(|e| panic!("{p:?}: {e}"));
            let statuses: Vec<u16> = r.iter().map(|r| r.status).collect();
            assert_eq!(
                statuses,
                [200, 404, 200, 200, 200, 405, 200],
                "{p:?} {piece:?}"
            );
            assert!(
                String::from_utf8_lossy(&r[0].body).contains("Hello from a Morgana unikernel"),
                "{p:?}"
            );
            assert_eq!(r[2].body, body, "{p:?}: Content-Length body");
            assert_eq!(r[3].body, &body[..300], "{p:?}: chunked body");
            assert_eq!(r[4].header("content-length"), Some("79"), "{p:?}: HEAD");
            assert_eq!(r[5].header("allow"), Some("GET, HEAD"), "{p:?}");
            // HTTP/1.0 without keep-alive: the server closes after it.
            assert_eq!(r[6].header("connection"), Some("close"), "{p:?}");
            assert!(
                r[..6]
                    .iter()
                    .all(|r| r.header("connection") == Some("keep-alive"))
            );
        }
        assert!(g.run.is_running(), "{p:?}");
    }
}

#[test]
fn curl_sends_chunked_and_length_bodies() {
    for p in Platform::ALL {
        let mut g = boot(p, "hcurl", &LIMITS);
        let body = random_bytes(1000, 9);
        let file = morgana_tests::TempFile::with(&body);
        for (what, extra) in [
            ("Content-Length", None),
            ("chunked", Some("Transfer-Encoding: chunked")),
        ] {
            let mut c = g.ns.command("curl");
            c.args(["-sS", "--max-time", "120", "--data-binary"])
                .arg(format!("@{}", file.path()))
                .args(["-H", "Content-Type: application/octet-stream"]);
            if let Some(h) = extra {
                c.args(["-H", h]);
            }
            let o = c.arg("http://10.0.0.2/echo").output().expect("curl");
            assert!(o.status.success(), "{p:?} {what}: {o:?}");
            assert_eq!(o.stdout, body, "{p:?} {what}: body differs");
        }
        assert!(g.run.is_running(), "{p:?}");
    }
}

#[test]
fn oversized_and_malformed_requests_are_refused() {
    for p in Platform::ALL {
        let mut g = boot(p, "hbad", &LIMITS);
        let results = g.ns.run_in(|| {
            let big_header = format!(
                "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
                "a".repeat(4096)
            );
            let many = format!(
                "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
                (0..70).map(|i| format!("X-{i}: 1\r\n")).collect::<String>()
            );
            let big_chunks = {
                let mut r = b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                    .to_vec();
                r.extend_from_slice(&chunked(&[b'x'; 1500], 500));
                r
            };
            let cases: Vec<(&str, Vec<u8>, u16)> = vec![
                ("4 KiB header field", big_header.into_bytes(), 431),
                ("70 header fields", many.into_bytes(), 431),
                (
                    "Content-Length over the limit",
                    b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n".to_vec(),
                    413,
                ),
                ("chunked body over the limit", big_chunks, 413),
                ("garbage request line", b"GARBAGE\r\n\r\n".to_vec(), 400),
                ("no version", b"GET /\r\nHost: a\r\n\r\n".to_vec(), 400),
                ("bad version", b"GET / FOO/1.1\r\nHost: a\r\n\r\n".to_vec(), 400),
                ("two spaces", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), 400),
                ("control character", b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), 400),
                ("header without colon", b"GET / HTTP/1.1\r\nHost a\r\n\r\n".to_vec(), 400),
                ("no Host", b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
                (
                    "bad Content-Length",
                    b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n".to_vec(),
                    400,
                ),
                (
                    "Content-Length and chunked",
                    b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
                    400,
                ),
                (
                    "bad chunk size",
                    b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
                    400,
                ),
                ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n".to_vec(), 505),
            ];
            cases
                .into_iter()
                .map(|(what, req, want)| {
                    let r = one(&req);
                    (what, r.status, want, r.header("connection").map(String::from))
                })
                .collect::<Vec<_>>()
        });
        for (what, got, want, conn) in results {
            assert_eq!(got, want, "{p:?}: {what}");
            assert_eq!(conn.as_deref(), Some("close"), "{p:?}: {what}");
        }
        // A 1 MiB head: refused with 431 after the first 2 KiB.
        let r = g.ns.run_in(|| {
            let mut req = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
            req.resize(1 << 20, b'a');
            let mut s = TcpStream::connect("10.0.0.2:80").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
            // The server stops reading: the rest of the send may fail.
            let _ = s.write_all(&req);
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            out
        });
        assert!(
            r.starts_with(b"HTTP/1.1 431 "),
            "{p:?}: {:?}",
            String::from_utf8_lossy(&r)
        );
        assert!(g.run.is_running(), "{p:?}");
        let ok =
            g.ns.run_in(|| one(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"));
        assert_eq!(ok.status, 200, "{p:?}: after the abuse");
    }
}

#[test]
fn a_slow_client_gets_408_and_others_are_served_meanwhile() {
    for p in Platform::ALL {
        let mut g = boot(p, "hslow", &LIMITS);
        let (slow, fast) = g.ns.run_in(|| {
            let mut s = TcpStream::connect("10.0.0.2:80").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap();
            // While the slow client stalls, another is answered.
            let fast = one(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
            let mut out = Vec::new();
            s.read_to_end(&mut out).unwrap();
            (out, fast.status)
        });
        assert_eq!(fast, 200, "{p:?}");
        assert!(
            slow.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"),
            "{p:?}: {:?}",
            String::from_utf8_lossy(&slow)
        );
        assert!(g.run.is_running(), "{p:?}");
    }
}

#[test]
fn a_bad_http_option_stops_the_unikernel_at_boot() {
    for p in Platform::ALL {
        let ns = Netns::new("hopt");
        ns.add_tap("tap0", None);
        let o = Running::start(ns.wrap(&command(
            p,
            "http-hello",
            &["--net:service=tap0"],
            &["--ipv4=10.0.0.2/24", "--http-max-body=lots"],
        )))
        .finish(Duration::from_secs(60));
        o.expect_status(1);
        o.expect_output("http-hello: --http-max-body=lots: expected a positive whole number");
    }
}

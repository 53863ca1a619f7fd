
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

/// GET `path` from 127.0.0.1:`port`: the status line and the body.
fn get(port: u16, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    let status = r.lines().next().unwrap_or("").to_string();
    let body = r.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

/// Boots the unix image on the host's sockets (`--net:service=socket`: no
/// tap, no root) on a free port, runs `check`, stops it. hvt and spt need a
/// tap (see the README): they are built, not booted, here.
fn with_server(check: impl Fn(u16)) {
    let Some((_, image)) = images().into_iter().find(|(t, _)| t == "unix") else {
        panic!("this test boots the unix build: run `morgana test --target unix`");
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = boot("unix", &image, &["--net:service=socket"], &[&format!("--port={port}")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Stopped even if a check fails.
    struct Server(std::process::Child);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Server(child);
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("listening") => break,
            Some(Ok(_)) => {}
            _ => panic!("{{name}} did not start"),
        }
    }
    check(port);
}

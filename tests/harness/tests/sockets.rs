//! The unix platform on host sockets (`--net:service=socket`): every
//! example that uses the network (echo, http-hello, fetch, kv-server) runs
//! as the unprivileged user `nobody`, with no tap, on the loopback of a
//! network namespace of the test's own (so that its ports collide with
//! nothing; the namespace's `ip_unprivileged_port_start` is 0 so that
//! `nobody` may bind ports 7 and 80, as a sysctl on the host would allow).

use morgana_tests::net::{Lcg, Netns};
use morgana_tests::{Platform, Running, command, run_command};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

const NOBODY: u32 = 65534;

/// A namespace with only its loopback, where unprivileged users may bind
/// any port.
fn namespace(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    let o = ns
        .command("sysctl")
        .args(["-qw", "net.ipv4.ip_unprivileged_port_start=0"])
        .output()
        .expect("sysctl (install procps)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ns
}

/// `cmd` run inside `ns` as `nobody`.
fn as_nobody(ns: &Netns, cmd: &Command) -> Command {
    let mut c = ns.command("setpriv");
    c.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--no-new-privs",
        "--",
    ])
    .arg(cmd.get_program())
    .args(cmd.get_args());
    c
}

/// Starts the unix build of `image` on host sockets as `nobody` in `ns`,
/// and waits for `ready`.
fn start(ns: &Netns, image: &str, opts: &[&str], args: &[&str], ready: &str) -> Running {
    let mut all = vec!["--net:service=socket"];
    all.extend_from_slice(opts);
    let mut run = Running::start(as_nobody(ns, &command(Platform::Unix, image, &all, args)));
    run.wait_line(ready, Duration::from_secs(30));
    assert_eq!(
        uid_of(run.pid()),
        NOBODY,
        "the unikernel must run as nobody"
    );
    run
}

/// The real user id of process `pid`.
fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn echo_over_tcp_and_udp_as_nobody() {
    let ns = namespace("sockecho");
    let mut run = start(&ns, "echo", &[], &[], "listening");
    let r = ns.run_in(|| {
        // 4 MiB of pseudo-random bytes through TCP, checked byte for byte,
        // on 8 connections at once.
        let workers: Vec<_> = (0..8u64)
            .map(|seed| {
                std::thread::spawn(move || -> Result<(), String> {
                    let s = TcpStream::connect("127.0.0.1:7").map_err(|e| e.to_string())?;
                    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                    let mut w = s.try_clone().unwrap();
                    let len = 512 * 1024;
                    let writer = std::thread::spawn(move || {
                        let mut rng = Lcg(seed);
                        let data: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                        w.write_all(&data)
                            .and_then(|()| w.shutdown(Shutdown::Write))
                    });
                    let mut got = Vec::new();
                    (&s).read_to_end(&mut got).map_err(|e| e.to_string())?;
                    writer.join().unwrap().map_err(|e| e.to_string())?;
                    let mut rng = Lcg(seed);
                    let want: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                    if got != want {
                        return Err(format!("{} bytes back, differing", got.len()));
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap()?;
        }
        // UDP, over IPv4 and IPv6 (the stack listens dual-stack).
        for (local, server) in [("127.0.0.1:0", "127.0.0.1:7"), ("[::1]:0", "[::1]:7")] {
            let u = UdpSocket::bind(local).unwrap();
            u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            for i in 0..100u32 {
                let msg = format!("datagram {i} to {server}");
                u.send_to(msg.as_bytes(), server).unwrap();
                let mut buf = [0u8; 128];
                let (n, _) = u
                    .recv_from(&mut buf)
                    .map_err(|e| format!("{server}: {e}"))?;
                if &buf[..n] != msg.as_bytes() {
                    return Err(format!("{server}: datagram {i} differs"));
                }
            }
        }
        Ok::<(), String>(())
    });
    r.unwrap();
    assert!(run.is_running());
}

fn curl(ns: &Netns, url: &str) -> (String, String) {
    let o = ns
        .command("curl")
        .args(["-s", "-m", "10", "--retry", "5", "--retry-connrefused"])
        .args(["-w", "\n%{http_code}", url])
        .output()
        .expect("curl");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = out.rsplit_once('\n').unwrap_or((&out, ""));
    (body.to_string(), code.to_string())
}

#[test]
fn http_hello_answers_curl_and_wrk_as_nobody() {
    let ns = namespace("sockhttp");
    let mut run = start(&ns, "http-hello", &[], &[], "listening");
    let (body, code) = curl(&ns, "http://127.0.0.1/");
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("Hello from a Morgana unikernel"), "{body}");
    let (_, code) = curl(&ns, "http://[::1]/nope");
    assert_eq!(code, "404");
    let o = ns
        .command("wrk")
        .args(["-t", "2", "-c", "50", "-d", "3s", "http://127.0.0.1/"])
        .output()
        .expect("wrk");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains("requests in"), "{out}");
    assert!(!out.contains("Socket errors"), "{out}");
    assert!(!out.contains("Non-2xx"), "{out}");
    assert!(run.is_running());
}

#[test]
fn fetch_resolves_a_name_and_connects_as_nobody() {
    let ns = namespace("sockfetch");
    let mut dns = ns
        .command("dnsmasq")
        .args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--user=root",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--host-record=server.morgana.test,127.0.0.1",
            "--pid-file=",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq (install dnsmasq-base)");
    let server = ns.spawn_in(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:8080").unwrap();
        let (mut s, _) = l.accept().unwrap();
        let mut req = [0u8; 64];
        let n = s.read(&mut req).unwrap();
        s.write_all(b"hello from the namespace\n").unwrap();
        String::from_utf8_lossy(&req[..n]).into_owned()
    });
    // dnsmasq needs a moment to listen; fetch retries its query meanwhile.
    let o = run_command(
        as_nobody(
            &ns,
            &command(
                Platform::Unix,
                "fetch",
                &["--net:service=socket"],
                &["--dns-server=127.0.0.1", "server.morgana.test", "8080"],
            ),
        ),
        Duration::from_secs(60),
    );
    o.expect_status(0);
    o.expect_output("fetch: server.morgana.test is 127.0.0.1");
    o.expect_output("fetch: 25 bytes from 127.0.0.1:8080");
    o.expect_output("hello from the namespace");
    assert!(server.join().unwrap().starts_with("GET / HTTP/1.0"));
    let _ = dns.kill();
    let _ = dns.wait();
}

fn kv(ns: &Netns, requests: &'static [&'static str]) -> Vec<String> {
    ns.run_in(move || {
        let s = TcpStream::connect("127.0.0.1:6380").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        requests
            .iter()
            .map(|q| {
                (&s).write_all(format!("{q}\n").as_bytes()).unwrap();
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                line.trim_end().to_string()
            })
            .collect()
    })
}

#[test]
fn kv_server_keeps_values_across_reboots_as_nobody() {
    let disk = morgana_tests::TempFile::zeroed(1 << 20);
    // nobody must be able to open it.
    std::os::unix::fs::chown(disk.path(), Some(NOBODY), None).unwrap();
    let block = format!("--block:storage={}", disk.path());
    let ns = namespace("sockkv");
    let run = start(&ns, "kv-server", &[&block], &[], "(created)");
    let r = kv(&ns, &["SET greeting hello", "GET greeting", "SET other 1"]);
    assert_eq!(r, ["OK", "VALUE hello", "OK"]);
    drop(run);
    let _run = start(&ns, "kv-server", &[&block], &[], "(opened)");
    assert_eq!(
        kv(&ns, &["GET greeting", "GET other"]),
        ["VALUE hello", "VALUE 1"]
    );
}

#[test]
fn socket_mode_refuses_what_does_not_apply() {
    let ns = namespace("sockbad");
    // Gateways are the host's routes.
    let o = run_command(
        as_nobody(
            &ns,
            &command(
                Platform::Unix,
                "echo",
                &["--net:service=socket"],
                &["--ipv4=10.0.0.2/24", "--ipv4-gateway=10.0.0.1"],
            ),
        ),
        Duration::from_secs(20),
    );
    o.expect_status(1);
    o.expect_output("--ipv4-gateway and --ipv6-gateway do not apply to host sockets");
    // A MAC has no meaning without frames.
    let o = run_command(
        command(
            Platform::Unix,
            "echo",
            &[
                "--net:service=socket",
                "--net-mac:service=02:00:00:00:00:02",
            ],
            &[],
        ),
        Duration::from_secs(20),
    );
    o.expect_one_line_error(Platform::Unix, "`--net-mac` does not apply to it");
    // A program that reads raw frames cannot use host sockets.
    let o = run_command(
        command(Platform::Unix, "t-echo", &["--net:service=socket"], &[]),
        Duration::from_secs(20),
    );
    o.expect_status(1);
    o.expect_output("only a TCP/IP stack (morgana_net::Stack) can use it");
    // Tenders have no host sockets.
    for p in Platform::TENDERS {
        let o = run_command(
            command(p, "echo", &["--net:service=socket"], &[]),
            Duration::from_secs(20),
        );
        o.expect_one_line_error(p, "host sockets are only for unix builds");
    }
    // Port 80 without the privilege to bind it: one line, status 1.
    let plain = Netns::new("sockpriv");
    let o = run_command(
        as_nobody(
            &plain,
            &command(Platform::Unix, "http-hello", &["--net:service=socket"], &[]),
        ),
        Duration::from_secs(20),
    );
    o.expect_status(1);
    o.expect_output("permission denied by the host");
}

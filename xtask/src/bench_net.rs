//! Network benchmarks: wrk against http-hello on each platform and against
//! nginx serving the same page, bulk TCP throughput through the echo
//! example, and the memory of http-hello idle and per connection.
//!
//! Topology: wrk runs in a client namespace. Each unikernel sits behind a
//! tap of that namespace (10.0.0.1 host side, 10.0.0.2 guest); nginx runs
//! in a second namespace reached over a veth pair (10.1.0.1 / 10.1.0.2):
//! both servers are one hop from wrk. The probes below (`__bulk`, `__hold`,
//! `__get`) are this binary run inside the client namespace.

use crate::bench::Section;
use crate::root;
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{LazyLock, mpsc};
use std::time::{Duration, Instant};

// Named after this process, so that benchmark runs of two checkouts never
// share a namespace.
static CLIENT: LazyLock<String> =
    LazyLock::new(|| format!("mgbench-client-{}", std::process::id()));
static SERVER: LazyLock<String> = LazyLock::new(|| format!("mgbench-nginx-{}", std::process::id()));

fn ip(args: &[&str]) -> Result<()> {
    let st = Command::new("ip").args(args).status().context("ip")?;
    if !st.success() {
        bail!("ip {} failed", args.join(" "));
    }
    Ok(())
}

/// A client namespace with tap0 (10.0.0.1/24) and a server namespace
/// joined to it by a veth pair (10.1.0.1 / 10.1.0.2); both deleted, with
/// whatever runs in them, on drop.
pub(crate) struct Net {
    /// The client namespace (tap0, 10.0.0.1/24; veth0, 10.1.0.1/24).
    pub(crate) client: String,
    /// The server namespace (veth1, 10.1.0.2/24).
    pub(crate) server: String,
}

impl Net {
    /// This benchmark's namespaces, the ones [`Guest`], [`wrk`] and
    /// [`xtask_in_client`] run in.
    pub(crate) fn new() -> Result<Self> {
        Self::named(CLIENT.as_str(), SERVER.as_str())
    }

    /// The same topology in namespaces `client` and `server` (deleted
    /// first if they exist).
    pub(crate) fn named(client: &str, server: &str) -> Result<Self> {
        let (c, s) = (client, server);
        for ns in [c, s] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&[
            "-n", c, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", s,
        ])?;
        ip(&["-n", c, "addr", "add", "10.1.0.1/24", "dev", "veth0"])?;
        ip(&["-n", s, "addr", "add", "10.1.0.2/24", "dev", "veth1"])?;
        ip(&["-n", c, "link", "set", "veth0", "up"])?;
        ip(&["-n", s, "link", "set", "veth1", "up"])?;
        ip(&["-n", c, "tuntap", "add", "dev", "tap0", "mode", "tap"])?;
        ip(&["-n", c, "addr", "add", "10.0.0.1/24", "dev", "tap0"])?;
        ip(&["-n", c, "link", "set", "tap0", "up"])?;
        Ok(Self {
            client: client.to_string(),
            server: server.to_string(),
        })
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.client, &self.server] {
            let _ = Command::new("sh")
                .args([
                    "-c",
                    &format!("ip netns pids {ns} | xargs -r kill -9; ip netns del {ns}"),
                ])
                .status();
        }
    }
}

/// `program` run in namespace `ns`.
pub(crate) fn in_ns(ns: &str, program: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, program]);
    c
}

/// This program run with `args` in the client namespace; its output,
/// trimmed, or its error output as the error.
pub(crate) fn xtask_in_client(args: &[&str]) -> Result<String> {
    let me = std::env::current_exe()?;
    let out = in_ns(CLIENT.as_str(), me.to_str().unwrap())
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A unikernel running on tap0, with its output lines.
pub(crate) struct Guest {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Guest {
    /// `image` of `platform` with the guest arguments `args`, once it
    /// prints `listening`.
    pub(crate) fn start(platform: &str, image: &str, args: &[&str]) -> Result<Self> {
        Self::start_with(platform, image, &[], args)
    }

    /// [`Guest::start`] with options for the tender (or the unix build)
    /// before the guest's arguments.
    pub(crate) fn start_with(
        platform: &str,
        image: &str,
        opts: &[&str],
        args: &[&str],
    ) -> Result<Self> {
        let r = root();
        let img = r.join("target/unikernels").join(platform).join(image);
        let mut c = match platform {
            "virtio" => {
                let mut c = in_ns(
                    CLIENT.as_str(),
                    r.join("target/release/morgana").to_str().unwrap(),
                );
                c.args(["run", "--target", "virtio"])
                    .arg(&img)
                    .arg("--net:service=tap0")
                    .arg("--");
                c
            }
            "unix" => {
                let mut c = in_ns(CLIENT.as_str(), img.to_str().unwrap());
                c.arg("--net:service=tap0").args(opts).arg("--");
                c
            }
            p => {
                let mut c = in_ns(
                    CLIENT.as_str(),
                    r.join(format!("target/release/morgana-{p}"))
                        .to_str()
                        .unwrap(),
                );
                c.arg("--net:service=tap0").args(opts).arg(&img);
                c
            }
        };
        let err_path =
            std::env::temp_dir().join(format!("morgana-bench-guest-{}.err", std::process::id()));
        let mut child = c
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&err_path)?)
            .spawn()
            .context("starting the unikernel")?;
        let lines = lines_of(child.stdout.take().unwrap());
        let mut g = Self { child, lines };
        if let Err(e) = g.wait("listening") {
            let err = std::fs::read_to_string(&err_path).unwrap_or_default();
            bail!("{platform} {image} {args:?}: {e}: {}", err.trim());
        }
        Ok(g)
    }

    fn wait(&mut self, s: &str) -> Result<String> {
        wait_line(&self.lines, s, Duration::from_secs(60))
            .with_context(|| format!("no `{s}` from the unikernel"))
    }

    /// The heap's allocated bytes in the next stats line.
    fn allocated(&mut self) -> Result<u64> {
        while self.lines.try_recv().is_ok() {}
        let l = self.wait("stats:")?;
        l.split("allocated=")
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("stats line")
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // morgana-spt's guest is a child of the tender that dies after it,
        // still holding the tap: wait until the namespace is empty, so
        // that the next guest can attach the tap.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let pids = Command::new("ip")
                .args(["netns", "pids", CLIENT.as_str()])
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default();
            if pids.iter().all(|b| b.is_ascii_whitespace()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The lines `out` gives, read on a thread of their own until it ends or
/// the receiver is dropped.
pub(crate) fn lines_of(out: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    lines
}

/// The first line from `lines` that contains `s`, if one comes `within`
/// this time.
pub(crate) fn wait_line(
    lines: &mpsc::Receiver<String>,
    s: &str,
    within: Duration,
) -> Result<String, mpsc::RecvTimeoutError> {
    let deadline = Instant::now() + within;
    loop {
        let l = lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))?;
        if l.contains(s) {
            return Ok(l);
        }
    }
}

/// The options of the benchmarks' wrk runs, before the URL.
pub(crate) const WRK_OPTIONS: [&str; 9] = [
    "-t",
    "2",
    "-c",
    "50",
    "-d",
    "10s",
    "--timeout",
    "30s",
    "--latency",
];

/// `wrk` with [`WRK_OPTIONS`] against `url` from the client namespace:
/// requests per second and the 99th percentile latency.
pub(crate) fn wrk(url: &str) -> Result<(f64, String)> {
    let out = in_ns(CLIENT.as_str(), "wrk")
        .args(WRK_OPTIONS)
        .arg(url)
        .output()
        .context("wrk")?;
    wrk_figures(url, &String::from_utf8_lossy(&out.stdout))
}

/// The requests per second and the 99th percentile latency (empty if it
/// was not asked for) in wrk's output `text` for `url`; an error if wrk
/// saw socket errors or answers other than 2xx.
pub(crate) fn wrk_figures(url: &str, text: &str) -> Result<(f64, String)> {
    let rps = wrk_rps(text)?;
    let p99 = text
        .lines()
        .find(|l| l.trim_start().starts_with("99%"))
        .map(|l| l.trim().trim_start_matches("99%").trim().to_string())
        .unwrap_or_default();
    wrk_failures(url, text)?;
    Ok((rps, p99))
}

/// The requests per second in wrk's output `text`.
pub(crate) fn wrk_rps(text: &str) -> Result<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("wrk output: {text}"))
}

/// An error naming the first line of wrk's output `text` (for `url`) that
/// reports socket errors or answers other than 2xx, if there is one.
pub(crate) fn wrk_failures(url: &str, text: &str) -> Result<()> {
    if let Some(e) = text
        .lines()
        .find(|l| l.contains("Socket errors") || l.contains("Non-2xx"))
    {
        bail!("wrk {url}: {e}");
    }
    Ok(())
}

/// nginx in namespace `ns`, half a second after its start: 1 worker, no
/// access log, unlimited keep-alive requests, serving `page` as the index
/// of `dir`, where its configuration, pid, error log and temporary files
/// go too. `http` is appended to the `http` block's first line, `server`
/// opens the `server` block (its `listen`).
pub(crate) fn nginx(ns: &str, dir: &Path, page: &str, http: &str, server: &str) -> Result<Child> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("index.html"), page)?;
    let conf = format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{ access_log off; keepalive_requests 1000000;{http}\n\
           client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n\
           server {{ {server} root {d}; index index.html; default_type text/html; }} }}\n",
        d = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf)?;
    let child = in_ns(ns, "nginx")
        .args(["-c", dir.join("nginx.conf").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("nginx (install nginx-light)")?;
    std::thread::sleep(Duration::from_millis(500));
    Ok(child)
}

/// The network benchmarks' section.
pub fn section() -> Result<Section> {
    let _net = Net::new()?;
    let mut body = String::new();

    // The page http-hello serves, for nginx to serve too.
    let page = {
        let _g = Guest::start("unix", "http-hello", &["--ipv4=10.0.0.2/24"])?;
        xtask_in_client(&["__get", "10.0.0.2:80"])?
    };
    let dir = std::env::temp_dir().join(format!("morgana-bench-nginx-{}", std::process::id()));
    let mut nginx = nginx(SERVER.as_str(), &dir, &page, "", "listen 10.1.0.2:80;")?;
    let (nginx_rps, nginx_p99) = wrk("http://10.1.0.2/")?;
    let _ = nginx.kill();
    let _ = nginx.wait();

    writeln!(
        body,
        "`wrk -t 2 -c 50 -d 10s --timeout 30s --latency URL` from a client namespace. Unikernels run\n\
         `http-hello --ipv4=10.0.0.2/24` behind a tap of that namespace; nginx (1 worker, Debian\n\
         nginx-light) serves the same page from a second namespace over a veth pair.\n\n\
         | server | requests/s | p99 latency | ratio to nginx |\n|---|---|---|---|\n\
         | nginx | {nginx_rps:.0} | {nginx_p99} | 1.00 |"
    )?;
    // Linux's own TCP on both ends: an echo server in the server
    // namespace, the same client over the veth pair.
    let linux_mbs = {
        let _echo = linux_echo()?;
        let n: u64 = 1 << 30;
        let secs: f64 = xtask_in_client(&["__bulk", "10.1.0.2:7", &n.to_string()])?.parse()?;
        n as f64 / 1e6 / secs
    };
    let mut bulk = format!(
        "\nBulk TCP through the echo example (`echo --ipv4=10.0.0.2/24`): the client sends N bytes and\n\
         reads them back concurrently (`xtask __bulk 10.0.0.2:7 N` in the client namespace). Linux: the\n\
         same client against a Linux echo server (`xtask __echo 10.1.0.2:7`, a thread per connection) in\n\
         the server namespace, over the veth pair (MTU 1500, Linux's default offloads), in the same run.\n\
         The tap's MTU is 1500 throughout. \"offloads\" rows are the default: the stack's frames carry a\n\
         virtio-net header and TCP segments of up to 64 KiB that the host kernel cuts at the MTU (TSO)\n\
         and checksums (README, Networking); \"plain frames\" rows refuse that (`--no-net-offload`), one\n\
         frame per MTU. Rows with `--tcp-buffer` give the stack larger socket buffers (window scaling\n\
         follows).\n\n\
         | platform | configuration | bytes | MB/s each way | ratio to Linux |\n|---|---|---|---|---|\n\
         | Linux | veth, MTU 1500 | 1024 MiB | {linux_mbs:.1} | 1.00 |\n",
    );
    let mut mem = String::from(
        "\nMemory of `http-hello --stats-interval=200` (heap bytes allocated, from its own stats line):\n\
         idle after boot, then with 100 idle keep-alive connections open (`xtask __hold 10.0.0.2:80 100`).\n\n\
         | platform | idle heap | with 100 connections | per connection |\n|---|---|---|---|\n",
    );
    for p in ["hvt", "spt", "unix"] {
        {
            let _g = Guest::start(p, "http-hello", &["--ipv4=10.0.0.2/24"])?;
            let (rps, p99) = wrk("http://10.0.0.2/")?;
            writeln!(
                body,
                "| {p} http-hello | {rps:.0} | {p99} | {:.3} |",
                rps / nginx_rps
            )?;
        }
        const PLAIN: &[&str] = &["--no-net-offload"];
        const BIG: &[&str] = &["--tcp-buffer=1048576"];
        let configs: &[(&str, &[&str], &[&str])] = if p == "hvt" {
            &[
                ("offloads, defaults", &[], &[]),
                ("offloads, `--tcp-buffer=1048576`", &[], BIG),
            ]
        } else {
            &[
                ("plain frames, defaults", PLAIN, &[]),
                ("plain frames, `--tcp-buffer=1048576`", PLAIN, BIG),
                ("offloads, defaults", &[], &[]),
                ("offloads, `--tcp-buffer=1048576`", &[], BIG),
            ]
        };
        for (what, opts, extra) in configs {
            let mut args = vec!["--ipv4=10.0.0.2/24"];
            args.extend_from_slice(extra);
            let _g = Guest::start_with(p, "echo", opts, &args)?;
            let n: u64 = if p == "hvt" { 4 << 20 } else { 256 << 20 };
            let secs: f64 = xtask_in_client(&["__bulk", "10.0.0.2:7", &n.to_string()])?.parse()?;
            let mbs = n as f64 / 1e6 / secs;
            writeln!(
                bulk,
                "| {p} | {what} | {} MiB | {mbs:.1} | {:.3} |",
                n >> 20,
                mbs / linux_mbs
            )?;
        }
        {
            let mut g = Guest::start(
                p,
                "http-hello",
                &["--ipv4=10.0.0.2/24", "--stats-interval=200"],
            )?;
            let idle = g.allocated()?;
            let me = std::env::current_exe()?;
            let mut hold = in_ns(CLIENT.as_str(), me.to_str().unwrap())
                .args(["__hold", "10.0.0.2:80", "100"])
                .stdout(Stdio::piped())
                .spawn()?;
            let mut ready = String::new();
            BufReader::new(hold.stdout.take().unwrap()).read_line(&mut ready)?;
            std::thread::sleep(Duration::from_millis(500));
            let busy = g.allocated()?;
            let _ = hold.kill();
            let _ = hold.wait();
            writeln!(
                mem,
                "| {p} | {} KiB | {} KiB | {:.1} KiB |",
                idle / 1024,
                busy / 1024,
                busy.saturating_sub(idle) as f64 / 100.0 / 1024.0
            )?;
        }
    }
    body.push_str(&bulk);
    body.push_str(&mem);
    body.push_str(
        "\nhvt figures are bounded by this machine's instruction-emulating nested KVM (about 11k guest\n\
         instructions per HTTP request at roughly 1 us each); on hardware KVM the same image runs\n\
         natively.\n",
    );
    Ok(Section {
        title: "Network".into(),
        body,
    })
}

/// A child process, killed (and waited for) on drop.
pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Linux echo server (`__echo`) in the server namespace, once it
/// listens.
fn linux_echo() -> Result<Killed> {
    let me = std::env::current_exe()?;
    let mut child = in_ns(SERVER.as_str(), me.to_str().unwrap())
        .args(["__echo", "10.1.0.2:7"])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the Linux echo server")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
    if !line.contains("listening") {
        let _ = child.kill();
        bail!("the Linux echo server did not start");
    }
    Ok(Killed(child))
}

/// `__echo ADDR`: a TCP echo server on Linux's stack, a thread per
/// connection; prints `listening` once bound.
pub fn echo(addr: &str) -> Result<()> {
    let l = std::net::TcpListener::bind(addr)?;
    println!("listening on {addr}");
    std::io::stdout().flush()?;
    for s in l.incoming() {
        let mut s = s?;
        std::thread::spawn(move || {
            let mut w = match s.try_clone() {
                Ok(w) => w,
                Err(_) => return,
            };
            let mut buf = vec![0u8; 256 * 1024];
            while let Ok(n @ 1..) = s.read(&mut buf) {
                if w.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
    Ok(())
}

/// `__get ADDR`: GET / and print the body.
pub fn get(addr: &str) -> Result<()> {
    let mut s = TcpStream::connect(addr)?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut r = String::new();
    s.read_to_string(&mut r)?;
    let body = r
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .context("no HTTP body")?;
    print!("{body}");
    Ok(())
}

/// `__bulk ADDR BYTES`: echo BYTES through ADDR; print the seconds taken.
pub fn bulk(addr: &str, n: u64) -> Result<()> {
    let s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(600)))?;
    let mut w = s.try_clone()?;
    let start = Instant::now();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let chunk = vec![0x5au8; 64 * 1024];
        let mut left = n;
        while left > 0 {
            let k = left.min(chunk.len() as u64) as usize;
            w.write_all(&chunk[..k])?;
            left -= k as u64;
        }
        w.shutdown(std::net::Shutdown::Write)
    });
    let mut r = s;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    while got < n {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        got += k as u64;
    }
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))??;
    if got != n {
        bail!("{got} bytes echoed of {n}");
    }
    println!("{}", start.elapsed().as_secs_f64());
    Ok(())
}

/// `__hold ADDR N`: open N keep-alive connections, make one request on
/// each, print a line, and hold them until killed.
pub fn hold(addr: &str, n: usize) -> Result<()> {
    let mut conns = Vec::new();
    for _ in 0..n {
        let mut s = TcpStream::connect(addr)?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")?;
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf)?;
        conns.push(s);
    }
    println!("holding {n}");
    std::io::stdout().flush()?;
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

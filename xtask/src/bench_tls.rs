//! TLS benchmarks: full handshakes per second (`openssl s_time -new`) and
//! HTTPS requests per second over keep-alive connections (wrk), against
//! https-hello on each platform and nginx with the same certificate and
//! page, in the same run; and the image size of https-hello.
//!
//! Topology as in the network benchmark: the clients run in a namespace of
//! their own, the unikernel behind its tap (10.0.0.2), nginx in a second
//! namespace over a veth pair (10.1.0.2). The namespaces are named after
//! this process.

use crate::bench::Section;
use crate::bench_net::{self, in_ns, lines_of, wait_line, wrk_failures, wrk_rps};
use crate::root;
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::LazyLock;
use std::time::Duration;

static CLIENT: LazyLock<String> = LazyLock::new(|| format!("mgbtls-client-{}", std::process::id()));
static SERVER: LazyLock<String> = LazyLock::new(|| format!("mgbtls-nginx-{}", std::process::id()));

const PAGE: &str =
    "<!doctype html>\n<title>Morgana</title>\n<h1>Hello from a Morgana unikernel, over TLS</h1>\n";

fn run(program: &str, args: &[&str]) -> Result<()> {
    let o = Command::new(program)
        .args(args)
        .output()
        .with_context(|| program.to_string())?;
    if !o.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}

/// The two namespaces (the network benchmark's topology under this
/// benchmark's names) and a scratch directory, removed on drop in that
/// order.
struct Net {
    _namespaces: bench_net::Net,
    scratch: Scratch,
}

impl Net {
    fn new() -> Result<Self> {
        let namespaces = bench_net::Net::named(CLIENT.as_str(), SERVER.as_str())?;
        let dir = std::env::temp_dir().join(format!("morgana-bench-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            _namespaces: namespaces,
            scratch: Scratch(dir),
        })
    }

    fn dir(&self) -> &Path {
        &self.scratch.0
    }
}

/// A directory, removed with its contents on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A P-256 certificate for 10.0.0.2 and 10.1.0.2 (self-signed: the
/// clients do not verify), as `cert.pem`/`key.pem` and a block image.
fn certificate(dir: &Path) -> Result<PathBuf> {
    let d = dir.to_str().unwrap();
    run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{d}/key.pem"),
            "-out",
            &format!("{d}/cert.pem"),
            "-days",
            "30",
            "-subj",
            "/CN=bench.morgana.test",
            "-addext",
            "subjectAltName=IP:10.0.0.2,IP:10.1.0.2",
        ],
    )?;
    let mut img = std::fs::read(dir.join("cert.pem"))?;
    img.extend(std::fs::read(dir.join("key.pem"))?);
    img.resize(img.len().div_ceil(512) * 512, 0);
    let path = dir.join("tls.img");
    std::fs::write(&path, img)?;
    Ok(path)
}

/// https-hello on `platform`, on tap0.
struct Guest {
    child: Child,
}

impl Guest {
    fn start(platform: &str, img: &Path) -> Result<Self> {
        let r = root();
        let image = r
            .join("target/unikernels")
            .join(platform)
            .join("https-hello");
        let block = format!("--block:tls={}", img.display());
        let mut c = match platform {
            "unix" => in_ns(CLIENT.as_str(), image.to_str().unwrap()),
            p => {
                let t = r.join(format!("target/release/morgana-{p}"));
                in_ns(CLIENT.as_str(), t.to_str().unwrap())
            }
        };
        c.args(["--net:service=tap0", &block, "--"]);
        if platform != "unix" {
            c.arg(&image);
        }
        let mut child = c
            .args(["--ipv4=10.0.0.2/24", "--tls-handshake-timeout=300"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting https-hello")?;
        let lines = lines_of(child.stdout.take().unwrap());
        // hvt loads the key (one scalar multiplication) for tens of seconds.
        wait_line(&lines, "listening", Duration::from_secs(600))
            .context("https-hello did not start listening")?;
        Ok(Self { child })
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // spt's guest is the tender's child: end whatever still runs in the
        // client namespace (ours alone), so the next guest gets the tap.
        let _ = Command::new("sh")
            .args([
                "-c",
                &format!("ip netns pids {} | xargs -r kill -9", CLIENT.as_str()),
            ])
            .status();
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// nginx (1 worker) serving PAGE over TLS on 10.1.0.2:443 with the same
/// certificate.
fn nginx(dir: &Path) -> Result<Child> {
    let server = format!(
        "listen 10.1.0.2:443 ssl; ssl_certificate {d}/cert.pem; ssl_certificate_key {d}/key.pem;\n\
         ssl_protocols TLSv1.2 TLSv1.3;",
        d = dir.display()
    );
    bench_net::nginx(
        SERVER.as_str(),
        dir,
        PAGE,
        " ssl_session_cache off; ssl_session_tickets off;",
        &server,
    )
}

/// Full TLS 1.3 handshakes per second, one connection at a time, for
/// `secs` seconds: `openssl s_time -new`.
fn handshakes(addr: &str, secs: u32) -> Result<f64> {
    let o = in_ns(CLIENT.as_str(), "openssl")
        .args([
            "s_time",
            "-connect",
            addr,
            "-new",
            "-tls1_3",
            "-time",
            &secs.to_string(),
        ])
        .output()
        .context("openssl s_time")?;
    let text = String::from_utf8_lossy(&o.stdout);
    // "N connections in T real seconds, B bytes read per connection"
    let line = text
        .lines()
        .find(|l| l.contains("real seconds"))
        .with_context(|| format!("openssl s_time output: {text}"))?;
    let mut w = line.split_whitespace();
    let n: f64 = w
        .next()
        .and_then(|v| v.parse().ok())
        .context("s_time count")?;
    let t: f64 = w
        .nth(2)
        .and_then(|v| v.parse().ok())
        .context("s_time seconds")?;
    if n == 0.0 {
        bail!("no handshake completed: {text}");
    }
    Ok(n / t)
}

/// HTTPS requests per second over `conns` keep-alive connections for
/// `secs`: wrk.
fn wrk(url: &str, conns: u32, secs: u32) -> Result<f64> {
    let c = conns.to_string();
    let d = format!("{secs}s");
    let t = if conns == 1 { "1" } else { "2" };
    let o = in_ns(CLIENT.as_str(), "wrk")
        .args(["-t", t, "-c", &c, "-d", &d, "--timeout", "120s", url])
        .output()
        .context("wrk")?;
    let text = String::from_utf8_lossy(&o.stdout);
    wrk_failures(url, &text)?;
    wrk_rps(&text)
}

/// The TLS benchmarks' section.
pub fn section() -> Result<Section> {
    let net = Net::new()?;
    let img = certificate(net.dir())?;
    let mut nginx = nginx(net.dir())?;
    let nginx_rps = wrk("https://10.1.0.2/", 50, 10)?;
    let nginx_hs = handshakes("10.1.0.2:443", 10)?;
    let _ = nginx.kill();
    let _ = nginx.wait();

    let mut body = String::new();
    writeln!(
        body,
        "https-hello (`--ipv4=10.0.0.2/24 --tls-handshake-timeout=300`, identity from a block device) against nginx (1 worker,\n\
         Debian nginx-light, session cache and tickets off) with the same P-256 certificate and page,\n\
         in the same run. Handshakes: `openssl s_time -connect ADDR:443 -new -tls1_3 -time 10` (full\n\
         TLS 1.3 handshakes, one at a time). Requests: `wrk -t 2 -c 50 -d 10s --timeout 30s https://ADDR/`\n\
         (keep-alive). hvt: `-time 60` and `wrk -t 1 -c 1 -d 120s` (its handshakes take tens of seconds).\n\
         Clients in a namespace of their own; the unikernel behind its tap, nginx over a veth.\n\n\
         | server | handshakes/s | ratio | HTTPS requests/s | ratio |\n|---|---|---|---|---|\n\
         | nginx | {nginx_hs:.1} | 1.00 | {nginx_rps:.0} | 1.00 |"
    )?;
    for p in ["hvt", "spt", "unix"] {
        let _g = Guest::start(p, &img)?;
        // A handshake takes tens of seconds on this machine's hvt: longer
        // runs, and one connection (each of wrk's would first wait for
        // the handshakes of all the others).
        // wrk first: thousands of handshakes leave as many closing
        // connections, which hold sockets for a while.
        let (rps, hs) = if p == "hvt" {
            (
                wrk("https://10.0.0.2/", 1, 120)?,
                handshakes("10.0.0.2:443", 60)?,
            )
        } else {
            (
                wrk("https://10.0.0.2/", 50, 10)?,
                handshakes("10.0.0.2:443", 10)?,
            )
        };
        writeln!(
            body,
            "| {p} https-hello | {hs:.2} | {:.4} | {rps:.0} | {:.3} |",
            hs / nginx_hs,
            rps / nginx_rps
        )?;
    }
    let dir = root().join("target/unikernels");
    let size = |p: &str, n: &str| std::fs::metadata(dir.join(p).join(n)).map(|m| m.len());
    writeln!(
        body,
        "\nImage sizes (`morgana build`, profile `unikernel`):\n\n\
         | image | hvt | spt |\n|---|---|---|\n\
         | https-hello | {} B | {} B |\n| http-hello | {} B | {} B |",
        size("hvt", "https-hello")?,
        size("spt", "https-hello")?,
        size("hvt", "http-hello")?,
        size("spt", "http-hello")?
    )?;
    body.push_str(
        "\nhvt runs on this machine's instruction-emulating nested KVM: every guest instruction of\n\
         the (soft-float, portable) public-key arithmetic is emulated, so its handshakes are slow.\n",
    );
    Ok(Section {
        title: "TLS".into(),
        body,
    })
}

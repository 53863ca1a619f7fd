//! `cargo xtask bench socket`: wrk against http-hello on the unix platform's
//! host sockets (`--net:service=socket`, run as `nobody`) and against nginx
//! serving the same page, both on the loopback of one namespace of this
//! run's own, measured alternately in the same run.

use crate::bench::Section;
use crate::root;
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn ns_name() -> String {
    format!("mgbench-sock-{}", std::process::id())
}

/// The namespace, deleted (with whatever runs in it) on drop.
struct Ns(String);

impl Ns {
    fn new() -> Result<Self> {
        let ns = Self(ns_name());
        let st = Command::new("ip").args(["netns", "add", &ns.0]).status()?;
        if !st.success() {
            bail!("ip netns add {} failed (the benchmark needs root)", ns.0);
        }
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        // So that `nobody` may bind port 80 in this namespace.
        ns.run(&["sysctl", "-qw", "net.ipv4.ip_unprivileged_port_start=0"])?;
        Ok(ns)
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }

    fn run(&self, argv: &[&str]) -> Result<String> {
        let out = self.cmd(argv[0]).args(&argv[1..]).output()?;
        if !out.status.success() {
            bail!(
                "{}: {}",
                argv.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        if let Ok(o) = Command::new("ip").args(["netns", "pids", &self.0]).output() {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const WRK: [&str; 10] = [
    "wrk",
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

fn wrk(ns: &Ns, url: &str) -> Result<(f64, String)> {
    let mut argv = WRK.to_vec();
    argv.push(url);
    let text = ns.run(&argv)?;
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("wrk output: {text}"))?;
    let p99 = text
        .lines()
        .find(|l| l.trim_start().starts_with("99%"))
        .map(|l| l.trim().trim_start_matches("99%").trim().to_string())
        .unwrap_or_default();
    if let Some(e) = text
        .lines()
        .find(|l| l.contains("Socket errors") || l.contains("Non-2xx"))
    {
        bail!("wrk {url}: {e}");
    }
    Ok((rps, p99))
}

fn http_hello(ns: &Ns) -> Result<Killed> {
    let img = root().join("target/unikernels/unix/http-hello");
    if !img.is_file() {
        bail!(
            "{} is missing: run `target/release/morgana build --target unix -p morgana-examples`",
            img.display()
        );
    }
    let mut child = ns
        .cmd("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(&img)
        .arg("--net:service=socket")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("setpriv (util-linux)")?;
    let out = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(out).lines();
    let start = Instant::now();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("listening") => break,
            Some(Ok(_)) => {}
            _ => bail!("http-hello on host sockets did not start"),
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("http-hello on host sockets did not start within 30 s");
        }
    }
    // Keep reading its output so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(Killed(child))
}

fn nginx(ns: &Ns, page: &str) -> Result<Killed> {
    let dir = std::env::temp_dir().join(format!("morgana-bench-sock-nginx-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("index.html"), page)?;
    let conf = format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{ access_log off; keepalive_requests 1000000;\n\
           client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n\
           server {{ listen 127.0.0.1:8080; root {d}; index index.html; default_type text/html; }} }}\n",
        d = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf)?;
    let child = ns
        .cmd("nginx")
        .args(["-c", dir.join("nginx.conf").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("nginx (install nginx-light)")?;
    std::thread::sleep(Duration::from_millis(500));
    Ok(Killed(child))
}

/// The section: two rounds, each server in turn, medians of the two.
pub fn section() -> Result<Section> {
    let ns = Ns::new()?;
    let _guest = http_hello(&ns)?;
    let page = ns.run(&["curl", "-s", "-m", "10", "http://127.0.0.1/"])?;
    let _nginx = nginx(&ns, &page)?;
    let mut guest = Vec::new();
    let mut ngx = Vec::new();
    for _ in 0..2 {
        guest.push(wrk(&ns, "http://127.0.0.1/")?);
        ngx.push(wrk(&ns, "http://127.0.0.1:8080/")?);
    }
    let best = |v: &[(f64, String)]| -> (f64, String) {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v.last().cloned().unwrap_or((0.0, String::new()))
    };
    let (g_rps, g_p99) = best(&guest);
    let (n_rps, n_p99) = best(&ngx);
    let mut body = String::new();
    writeln!(
        body,
        "`{} URL` on the loopback of one namespace, each server twice in turn (the better run of each\n\
         is shown). http-hello runs on the unix platform's host sockets as `nobody`\n\
         (`setpriv --reuid=nobody target/unikernels/unix/http-hello --net:service=socket`, port 80);\n\
         nginx (1 worker, Debian nginx-light, `listen 127.0.0.1:8080`) serves the same page.\n\
         wrk, the server and the other helpers' builds share the machine's 2 cores.\n\n\
         | server | requests/s | p99 latency | ratio to nginx |\n|---|---|---|---|\n\
         | nginx | {n_rps:.0} | {n_p99} | 1.00 |\n\
         | http-hello, unix, host sockets | {g_rps:.0} | {g_p99} | {:.2} |",
        WRK.join(" "),
        g_rps / n_rps
    )?;
    Ok(Section {
        title: "Network on host sockets (unix platform)".into(),
        body,
    })
}

//! `cargo xtask bench socket`: wrk against http-hello on the unix platform's
//! host sockets (`--net:service=socket`, run as `nobody`) and against nginx
//! serving the same page, both on the loopback of one namespace of this
//! run's own, measured alternately in the same run.

use crate::bench::Section;
use crate::bench_net::{self, Killed, WRK_OPTIONS, wrk_figures};
use crate::root;
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
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

fn wrk(ns: &Ns, url: &str) -> Result<(f64, String)> {
    let mut argv = vec!["wrk"];
    argv.extend(WRK_OPTIONS);
    argv.push(url);
    wrk_figures(url, &ns.run(&argv)?)
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
    let child = bench_net::nginx(&ns.0, &dir, page, "", "listen 127.0.0.1:8080;")?;
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
        "`wrk {} URL` on the loopback of one namespace, each server twice in turn (the better run of each\n\
         is shown). http-hello runs on the unix platform's host sockets as `nobody`\n\
         (`setpriv --reuid=nobody target/unikernels/unix/http-hello --net:service=socket`, port 80);\n\
         nginx (1 worker, Debian nginx-light, `listen 127.0.0.1:8080`) serves the same page.\n\
         wrk, the server and the other helpers' builds share the machine's 2 cores.\n\n\
         | server | requests/s | p99 latency | ratio to nginx |\n|---|---|---|---|\n\
         | nginx | {n_rps:.0} | {n_p99} | 1.00 |\n\
         | http-hello, unix, host sockets | {g_rps:.0} | {g_p99} | {:.2} |",
        WRK_OPTIONS.join(" "),
        g_rps / n_rps
    )?;
    Ok(Section {
        title: "Network on host sockets (unix platform)".into(),
        body,
    })
}

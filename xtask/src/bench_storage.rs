//! Storage benchmarks (`cargo xtask bench storage`): the FAT file system's
//! sequential write and read throughput (the `b-fs` kernel) on spt and
//! unix against `dd` of the same file on the host, and the `website`
//! example's requests/s under wrk against nginx serving the same
//! directory.

use crate::bench::Section;
use crate::root;
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// File size of the throughput runs, in MiB.
const MIB: u64 = 64;

fn run(program: &str, args: &[&str]) -> Result<String> {
    let o = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !o.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    ))
}

/// `cmd` for image `name` on `p` with tender options `opts` and guest
/// arguments `args`.
fn guest(p: &str, name: &str, opts: &[&str], args: &[&str]) -> Command {
    let r = root();
    let img = r.join("target/unikernels").join(p).join(name);
    let mut c = if p == "unix" {
        let mut c = Command::new(&img);
        c.args(opts).arg("--");
        c
    } else {
        let mut c = Command::new(r.join(format!("target/release/morgana-{p}")));
        c.args(opts).arg("--").arg(&img);
        c
    };
    c.args(args);
    c
}

/// MB/s of `mib` MiB in `us` microseconds.
fn mbs(mib: u64, us: f64) -> f64 {
    (mib << 20) as f64 / us
}

/// The microseconds in a `b-fs: OP N MiB in T us` line.
fn micros(out: &str, op: &str) -> Result<f64> {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("b-fs: {op} ")))
        .and_then(|r| r.split(" in ").nth(1))
        .and_then(|r| r.strip_suffix(" us"))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no b-fs {op} line in {out}"))
}

/// `dd`'s elapsed seconds in its summary line.
fn dd_secs(out: &str) -> Result<f64> {
    out.lines()
        .find(|l| l.contains(" copied, "))
        .and_then(|l| l.split(" copied, ").nth(1))
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.replace(',', ".").parse().ok())
        .with_context(|| format!("dd output: {out}"))
}

fn fs_section() -> Result<String> {
    let dir = std::env::temp_dir().join(format!("morgana-bench-fs-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let img = dir.join("fat.img");
    let img_s = img.to_str().unwrap().to_string();
    let host = dir.join("bench.bin");
    let host_s = host.to_str().unwrap().to_string();
    let mut body = format!(
        "Sequential throughput of a {MIB} MiB file on a FAT32 volume (`mkfs.fat -F 32` on a\n\
         {} MiB image): `b-fs write:{MIB} read` writes `/bench.bin` in 1 MiB `write`s and reads it back\n\
         in 1 MiB `read`s, timed by the guest's monotonic clock. Host: the same file copied out by\n\
         `mcopy`, read with `dd if=FILE of=/dev/null bs=1M` (page cache) and written with\n\
         `dd if=/dev/zero of=FILE bs=1M count={MIB} conv=fsync`.\n\n\
         | who | write MB/s | read MB/s |\n|---|---|---|\n",
        2 * MIB + 64
    );
    let dd_w = dd_secs(&run(
        "dd",
        &[
            "if=/dev/zero",
            &format!("of={host_s}"),
            "bs=1M",
            &format!("count={MIB}"),
            "conv=fsync",
        ],
    )?)?;
    let mut rows = Vec::new();
    for p in ["spt", "unix"] {
        let _ = std::fs::remove_file(&img);
        std::fs::File::create(&img)?.set_len((2 * MIB + 64) << 20)?;
        run("mkfs.fat", &["-F", "32", &img_s])?;
        let o = guest(
            p,
            "b-fs",
            &[&format!("--block:disk={img_s}")],
            &[&format!("write:{MIB}"), "read"],
        )
        .output()
        .context("b-fs")?;
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        rows.push((p, micros(&out, "write")?, micros(&out, "read")?));
    }
    let _ = std::fs::remove_file(&host);
    run("mcopy", &["-n", "-i", &img_s, "::/bench.bin", &host_s])?;
    let dd_r = dd_secs(&run(
        "dd",
        &[&format!("if={host_s}"), "of=/dev/null", "bs=1M"],
    )?)?;
    let (hw, hr) = (mbs(MIB, dd_w * 1e6), mbs(MIB, dd_r * 1e6));
    writeln!(body, "| host dd | {hw:.0} | {hr:.0} |")?;
    for (p, w, r) in rows {
        let (w, r) = (mbs(MIB, w), mbs(MIB, r));
        writeln!(
            body,
            "| {p} b-fs | {w:.0} ({:.2} of dd) | {r:.0} ({:.2} of dd) |",
            w / hw,
            r / hr
        )?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(body)
}

/// The net benchmark's topology in namespaces of this benchmark's own: a
/// client namespace with tap0 (10.0.0.1) for the unikernel, and a server
/// namespace for nginx one veth hop away (10.1.0.2); deleted on drop.
fn namespaces() -> Result<crate::bench_net::Net> {
    let id = std::process::id();
    crate::bench_net::Net::named(&format!("mgstor-c-{id}"), &format!("mgstor-s-{id}"))
}

/// `cmd` run in namespace `ns`.
fn wrap(ns: &str, cmd: &Command) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(cmd.get_program());
    c.args(cmd.get_args());
    c
}

/// Starts `cmd` and waits (60 s at most) for a line containing `ready`.
fn start(mut cmd: Command, ready: &str) -> Result<Child> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("start")?;
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let l = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .with_context(|| format!("no `{ready}` line"))?;
        if l.contains(ready) {
            // Keep draining, so the guest never blocks on its console.
            std::thread::spawn(move || while rx.recv().is_ok() {});
            return Ok(child);
        }
    }
}

fn wrk(ns: &str, url: &str) -> Result<f64> {
    let mut c = Command::new("wrk");
    c.args(["-t", "2", "-c", "50", "-d", "10s", "--timeout", "30s", url]);
    let out = wrap(ns, &c).output().context("wrk")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if text.contains("Socket errors") || text.contains("Non-2xx") {
        bail!("wrk {url}: {text}");
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("wrk output: {text}"))
}

fn website_section() -> Result<String> {
    let net = namespaces()?;
    let site = root().join("examples/site");
    let dir = std::env::temp_dir().join(format!("morgana-bench-web-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{ access_log off; keepalive_requests 1000000; include /etc/nginx/mime.types;\n\
           client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n\
           server {{ listen 10.1.0.2:80; root {}; index index.html; etag on; }} }}\n",
        site.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf)?;
    let tar = dir.join("site.tar");
    run(
        "tar",
        &[
            "-C",
            site.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ],
    )?;
    let none = dir.join("none.img");
    std::fs::File::create(&none)?.set_len(512)?;

    let mut nginx_cmd = Command::new("nginx");
    nginx_cmd.args(["-c", dir.join("nginx.conf").to_str().unwrap()]);
    let mut nginx = wrap(&net.server, &nginx_cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("nginx (install nginx-light)")?;
    std::thread::sleep(Duration::from_millis(500));
    let nginx_rps = wrk(&net.client, "http://10.1.0.2/index.html")?;
    let _ = nginx.kill();
    let _ = nginx.wait();

    let mut body = format!(
        "`wrk -t 2 -c 50 -d 10s --timeout 30s http://ADDR/index.html` from a client namespace: the\n\
         `website` example (`--ipv4=10.0.0.2/24 --store=S`) behind a tap of that namespace, and nginx\n\
         (1 worker, Debian nginx-light, `etag on`) serving the same `examples/site` from a second\n\
         namespace over a veth pair.\n\n\
         | server | requests/s | ratio to nginx |\n|---|---|---|\n\
         | nginx | {nginx_rps:.0} | 1.00 |\n"
    );
    for p in ["spt", "unix"] {
        for (store, disk) in [("baked", &none), ("tar", &tar)] {
            let g = guest(
                p,
                "website",
                &[
                    "--net:service=tap0",
                    &format!("--block:files={}", disk.display()),
                ],
                &["--ipv4=10.0.0.2/24", &format!("--store={store}")],
            );
            let mut child = start(wrap(&net.client, &g), "website: serving")?;
            let rps = wrk(&net.client, "http://10.0.0.2/index.html");
            let _ = child.kill();
            let _ = child.wait();
            let rps = rps?;
            writeln!(
                body,
                "| {p} website ({store}) | {rps:.0} | {:.2} |",
                rps / nginx_rps
            )?;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(body)
}

/// The storage benchmarks' section.
pub fn section() -> Result<Section> {
    let mut body = fs_section()?;
    body.push('\n');
    match website_section() {
        Ok(w) => body.push_str(&w),
        Err(e) => writeln!(body, "Website under wrk: not measured ({e:#}).")?,
    }
    Ok(Section {
        title: String::from("Storage: FAT file system throughput, static website"),
        body,
    })
}

//! Morgana's repository tasks:
//!
//! * `cargo xtask setup`: install what the build and the tests need (the
//!   `x86_64-unknown-none` Rust target, Debian packages);
//! * `cargo xtask build`: the tenders, the `morgana` command, and every
//!   unikernel image for every platform;
//! * `cargo xtask demo`: set up, build, and boot the demo unikernel on
//!   `morgana-hvt`;
//! * `cargo xtask test`: the whole test suite (formatting, clippy, docs,
//!   unit tests, then real images on real tenders and real taps);
//! * `cargo xtask bench`: the benchmarks, written to `BENCHMARKS.md`;
//! * `cargo xtask fuzz [TARGET] [SECONDS]`: the fuzz targets, each for
//!   SECONDS, figures written to `BENCHMARKS.md`;
//! * `cargo xtask durability [N]`: kv-server killed N times (1,000 by
//!   default) over spt and unix, and 5 times on hvt, each acknowledged
//!   write checked after every reboot;
//! * `cargo xtask compat SOLO5_DIR`: Solo5 ABI compatibility both ways,
//!   against a built Solo5 tree, written to `COMPAT.md`.

use anyhow::{Context, Result, bail};
use morgana_cli::{BuildOptions, Platform};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod bench;
mod bench_net;
mod bench_sched;
mod bench_socket;
mod bench_storage;
mod bench_tls;
mod bench_trace;
mod bench_virtio;
mod compat;
mod fuzz;

/// Debian packages the tests and benchmarks use.
const PACKAGES: &[(&str, &str)] = &[
    ("iproute2", "ip"),
    ("iputils-ping", "ping"),
    ("gdb", "gdb"),
    ("procps", "sysctl"),
    ("hyperfine", "hyperfine"),
    ("wrk", "wrk"),
    ("dnsmasq-base", "dnsmasq"),
    ("nginx-light", "nginx"),
    ("time", "time"),
    (QEMU_PACKAGE, "qemu-system-x86_64"),
    ("dosfstools", "fsck.fat"),
    ("mtools", "mcopy"),
    ("openssl", "openssl"),
    ("curl", "curl"),
    ("g++", "g++"),
    ("util-linux", "setpriv"),
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    ("podman", "podman"),
];

/// QEMU for the virtio platform: from the distribution's backports (QEMU
/// 10 on Debian 12, whose own 7.2 conflicts with a newer qemu-utils).
const QEMU_PACKAGE: &str = "qemu-system-x86";

/// Installs [`QEMU_PACKAGE`] from `CODENAME-backports`, adding that apt
/// source first when none is configured (same mirror as the system's own
/// Debian source).
fn install_qemu(apt: &dyn Fn(&[&str]) -> Command) -> Result<()> {
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let codename = os
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|c| c.trim_matches('"').to_string())
        .context("/etc/os-release has no VERSION_CODENAME")?;
    let suite = format!("{codename}-backports");
    let mut sources = String::new();
    for f in ["/etc/apt/sources.list".to_string()].into_iter().chain(
        std::fs::read_dir("/etc/apt/sources.list.d")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.path().display().to_string())
            .filter(|p| p.ends_with(".list") || p.ends_with(".sources")),
    ) {
        sources.push_str(&std::fs::read_to_string(&f).unwrap_or_default());
        sources.push('\n');
    }
    if !sources.contains(&suite) {
        // The URI of the system's own Debian archive (deb822 or one-line).
        let uri = sources
            .lines()
            .find_map(|l| {
                l.strip_prefix("URIs:")
                    .map(|u| u.trim().to_string())
                    .filter(|u| !u.contains("security"))
                    .or_else(|| {
                        let w: Vec<&str> = l.split_whitespace().collect();
                        (w.first() == Some(&"deb") && w.get(2) == Some(&codename.as_str()))
                            .then(|| w[1].to_string())
                    })
            })
            .context("no Debian apt source to take the backports mirror from")?;
        let entry = format!(
            "Types: deb\nURIs: {uri}\nSuites: {suite}\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        );
        let path = "/etc/apt/sources.list.d/morgana-backports.sources";
        std::fs::write(path, entry).with_context(|| format!("cannot write {path}"))?;
        eprintln!("+ added {path} ({uri} {suite})");
        run(&mut apt(&["update", "-q"]))?;
    }
    run(&mut apt(&[
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "-t",
        &suite,
        QEMU_PACKAGE,
    ]))
    .with_context(|| format!("installing {QEMU_PACKAGE} from {suite}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let r = match task {
        "setup" => setup(),
        "build" => setup().and_then(|()| build()),
        "demo" => demo(),
        "test" => test(),
        "bench" => setup()
            .and_then(|()| build())
            .and_then(|()| bench::run(&args[1..])),
        "compat" => compat::run(&args[1..]),
        "fuzz" => setup().and_then(|()| fuzz::run(&args[1..])),
        "durability" => setup()
            .and_then(|()| build())
            .and_then(|()| durability(&args[1..])),
        // Probes the network benchmark runs inside its namespace.
        "__get" => bench_net::get(&args[1]),
        "__bulk" => args[2]
            .parse()
            .map_err(anyhow::Error::from)
            .and_then(|n| bench_net::bulk(&args[1], n)),
        "__echo" => bench_net::echo(&args[1]),
        "__hold" => args[2]
            .parse()
            .map_err(anyhow::Error::from)
            .and_then(|n| bench_net::hold(&args[1], n)),

        _ => {
            eprintln!(
                "usage: cargo xtask setup|build|demo|test|bench [NAME...]|fuzz [TARGET] [SECONDS]|durability [N]|compat SOLO5_DIR"
            );
            return ExitCode::from(2);
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs a command in the workspace root; fails on a non-zero status.
pub fn run(cmd: &mut Command) -> Result<()> {
    cmd.current_dir(root());
    eprintln!("+ {}", show(cmd));
    let st = cmd
        .status()
        .with_context(|| format!("cannot run {}", show(cmd)))?;
    if !st.success() {
        bail!("`{}` failed ({st})", show(cmd));
    }
    Ok(())
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Installs the Rust target and the Debian packages that are missing.
fn setup() -> Result<()> {
    if Command::new("rustup").arg("--version").output().is_ok() {
        run(Command::new("rustup").args(["target", "add", morgana_cli::BARE_TARGET]))?;
    }
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(p, _)| !installed(p))
        .map(|(p, _)| *p)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let sudo: &[&str] = if is_root() { &[] } else { &["sudo", "-n"] };
    let apt = |args: &[&str]| {
        let mut v: Vec<&str> = sudo.to_vec();
        v.push("apt-get");
        v.extend_from_slice(args);
        let mut c = Command::new(v[0]);
        c.args(&v[1..]).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    run(&mut apt(&["update", "-q"]))?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(missing.iter().filter(|p| **p != QEMU_PACKAGE));
    if args.len() > 4 {
        run(&mut apt(&args)).with_context(|| format!("installing {}", missing.join(" ")))?;
    }
    if missing.contains(&QEMU_PACKAGE) {
        install_qemu(&apt)?;
    }
    // Services come from the packages, but tests start their own servers.
    let _ = Command::new("sh")
        .args(["-c", "nginx -s stop 2>/dev/null; true"])
        .status();
    Ok(())
}

/// Builds the tenders and the `morgana` command.
///
/// The tenders are linked statically (`crt-static`, still position
/// independent): the dynamic loader's work (libc and libgcc_s, their
/// symbol lookups and relocations) costs about 0.15 ms of a 1 ms spt boot.
/// `cargo rustc` passes the flag to the tender binaries alone, so nothing
/// else is rebuilt; a plain `cargo build -p morgana-tender` still gives
/// working, dynamically linked tenders.
fn build_host_tools() -> Result<()> {
    run(cargo().args(["build", "--release", "-p", "morgana-cli"]))?;
    for bin in ["morgana-hvt", "morgana-spt"] {
        run(cargo().args([
            "rustc",
            "--release",
            "-p",
            "morgana-tender",
            "--bin",
            bin,
            "--",
            "-C",
            "target-feature=+crt-static",
        ]))?;
    }
    Ok(())
}

/// Builds the tenders, the CLI and every image for every platform.
fn build() -> Result<()> {
    build_host_tools()?;
    let built = morgana_cli::build(&BuildOptions {
        platforms: Platform::ALL.to_vec(),
        workspace: Some(root()),
        ..Default::default()
    })?;
    for b in &built {
        eprintln!("  {:<4} {:<14} {:>8} bytes", b.platform, b.name, b.size);
    }
    // Unoptimised hvt test kernels with symbols, for the gdb tests.
    morgana_cli::build(&BuildOptions {
        platforms: vec![Platform::Hvt],
        packages: vec!["morgana-test-kernels".into()],
        debug: true,
        out: Some(root().join("target/unikernels-debug")),
        workspace: Some(root()),
    })?;
    Ok(())
}

/// The main job: set up, build the demo unikernel, boot it on morgana-hvt.
fn demo() -> Result<()> {
    setup()?;
    build_host_tools()?;
    morgana_cli::build(&BuildOptions {
        platforms: vec![Platform::Hvt],
        packages: vec!["morgana-examples".into()],
        workspace: Some(root()),
        ..Default::default()
    })?;
    let target = root().join("target");
    eprintln!("\nBooting the demo unikernel on morgana-hvt:\n");
    run(Command::new(target.join("release/morgana-hvt"))
        .arg("--mem=32")
        .arg(target.join("unikernels/hvt/hello"))
        .args(["from", "the", "Morgana", "demo"]))?;
    eprintln!("\nThe unikernel exited with status 0.");
    Ok(())
}

/// The whole test suite.
fn test() -> Result<()> {
    setup()?;
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    for p in ["hvt", "spt", "virtio"] {
        run(cargo().args([
            "clippy",
            "--target",
            morgana_cli::BARE_TARGET,
            "-p",
            "morgana",
            "-p",
            "morgana-net",
            "-p",
            "morgana-kv",
            "-p",
            "morgana-metrics",
            "-p",
            "morgana-http",
            "-p",
            "morgana-tls",
            "-p",
            "morgana-fs",
            "-p",
            "morgana-kv-ro",
            "-p",
            "morgana-examples",
            "-p",
            "morgana-test-kernels",
            "--features",
            &format!("morgana/{p}"),
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    run(cargo()
        .args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings"))?;
    run(cargo().args(["test", "--workspace", "--exclude", "morgana-tests"]))?;
    // The fuzz targets' replays again, with the `net` target (it needs the
    // runtime's simulated platform, hence a target directory of its own).
    run(cargo()
        .args([
            "test",
            "-p",
            "morgana-fuzz",
            "-p",
            "morgana-fuzz-net",
            "--target-dir",
        ])
        .arg(root().join("target/sim"))
        .env("MORGANA_SIM", "1"))?;
    build()?;
    if !is_root() {
        bail!("the integration tests need root (network namespaces, taps, KVM): run as root");
    }
    run(cargo().args(["test", "-p", "morgana-tests", "--", "--test-threads=2"]))?;
    eprintln!("\nAll tests passed.");
    Ok(())
}

/// The durability test with `N` kills over spt and unix (1,000 unless
/// given), printing its figures.
fn durability(args: &[String]) -> Result<()> {
    let n: u64 = match args.first() {
        Some(a) => a
            .parse()
            .with_context(|| format!("durability: {a:?} is not a number of kills"))?,
        None => 1000,
    };
    if !is_root() {
        bail!("the durability test needs root (network namespaces, taps, KVM): run as root");
    }
    run(cargo()
        .args([
            "test",
            "-p",
            "morgana-tests",
            "--test",
            "durability",
            "--",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MORGANA_DURABILITY", n.to_string()))
}

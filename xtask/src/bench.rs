//! `cargo xtask bench`: measures Morgana and writes `BENCHMARKS.md`, with
//! the command behind every figure. Benchmarks are for figures only; no
//! test depends on a timing measured here.

use crate::root;
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::process::Command;

/// A section of the results file.
pub struct Section {
    /// Title.
    pub title: String,
    /// Markdown body.
    pub body: String,
}

fn sh(cmd: &str) -> Result<String> {
    let o = Command::new("sh")
        .args(["-c", cmd])
        .current_dir(root())
        .output()
        .with_context(|| format!("cannot run {cmd}"))?;
    if !o.status.success() {
        bail!(
            "`{cmd}` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Median of `runs` hyperfine runs of `cmd`, in milliseconds.
pub fn hyperfine_median_ms(cmd: &str, runs: u32) -> Result<f64> {
    let json = std::env::temp_dir().join(format!("morgana-bench-{}.json", std::process::id()));
    let status = Command::new("hyperfine")
        .args([
            "-N",
            "--warmup",
            "3",
            "--runs",
            &runs.to_string(),
            "--export-json",
        ])
        .arg(&json)
        .arg(cmd)
        .current_dir(root())
        .stdout(std::process::Stdio::null())
        .status()
        .context("cannot run hyperfine")?;
    if !status.success() {
        bail!("hyperfine {cmd} failed");
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json)?)?;
    let _ = std::fs::remove_file(&json);
    v["results"][0]["median"]
        .as_f64()
        .map(|s| s * 1000.0)
        .context("hyperfine gave no median")
}

/// Peak resident memory of `cmd` in KiB (median of 5 runs).
fn max_rss_kib(cmd: &str) -> Result<u64> {
    let mut v = Vec::new();
    for _ in 0..5 {
        let out = sh(&format!(
            "/usr/bin/time -f '%M' {cmd} 2>&1 >/dev/null | tail -1"
        ))?;
        v.push(out.trim().parse::<u64>().context("GNU time output")?);
    }
    v.sort_unstable();
    Ok(v[2])
}

const HVT: &str = "target/release/morgana-hvt";
const SPT: &str = "target/release/morgana-spt";

fn boot(cmd_for: impl Fn(&str) -> String) -> Result<Section> {
    let mut body = String::from(
        "Boot-to-exit wall time of `hello` (median of 50 runs after 3 warm-ups, `hyperfine -N`),\n\
         and peak resident memory of the whole process (`/usr/bin/time -f %M`, median of 5).\n\n\
         | platform | command | median boot-to-exit | peak RSS |\n|---|---|---|---|\n",
    );
    for p in ["hvt", "spt", "unix"] {
        let cmd = cmd_for(p);
        let ms = hyperfine_median_ms(&cmd, 50)?;
        let rss = max_rss_kib(&cmd)?;
        writeln!(body, "| {p} | `{cmd}` | {ms:.2} ms | {rss} KiB |")?;
    }
    Ok(Section {
        title: "Boot time and resident memory".into(),
        body,
    })
}

fn sizes() -> Result<Section> {
    let mut body = String::from(
        "Image sizes as built by `morgana build --all-targets` (profile `unikernel`: opt-level s, fat LTO,\n\
         stripped). unix images are ordinary dynamically linked executables.\n\n\
         | image | hvt | spt | unix |\n|---|---|---|---|\n",
    );
    let dir = root().join("target/unikernels");
    let mut names: Vec<String> = std::fs::read_dir(dir.join("hvt"))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    for n in names {
        let size = |p: &str| {
            std::fs::metadata(dir.join(p).join(&n)).map_or("-".into(), |m| format!("{} B", m.len()))
        };
        writeln!(
            body,
            "| {n} | {} | {} | {} |",
            size("hvt"),
            size("spt"),
            size("unix")
        )?;
    }
    Ok(Section {
        title: "Image sizes".into(),
        body,
    })
}

fn machine() -> String {
    let cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2")
        .unwrap_or_default()
        .trim()
        .to_string();
    let kernel = sh("uname -r").unwrap_or_default().trim().to_string();
    let date = sh("date -u +%Y-%m-%dT%H:%MZ")
        .unwrap_or_default()
        .trim()
        .to_string();
    let commit = sh("git rev-parse --short HEAD")
        .unwrap_or_default()
        .trim()
        .to_string();
    format!(
        "Measured {date} at commit {commit} on {cpu}, {} cores, Linux {kernel}.\n\
         /dev/kvm here is a nested, software-assisted KVM: guest instructions are emulated (a register-only\n\
         `dec; jnz` loop runs ~4000 times slower in an hvt guest than in an spt one) and a VM exit costs\n\
         25-30 us, so hvt figures here are far below what hardware KVM gives; spt and unix run natively.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}

/// Runs every benchmark and writes BENCHMARKS.md.
pub fn run(_args: &[String]) -> Result<()> {
    let sections = vec![
        boot(|p| match p {
            "hvt" => format!("{HVT} --mem=32 target/unikernels/hvt/hello"),
            "spt" => format!("{SPT} --mem=32 target/unikernels/spt/hello"),
            _ => "target/unikernels/unix/hello".to_string(),
        })?,
        sizes()?,
        crate::bench_sched::section()?,
        crate::bench_net::section()?,
    ];
    let mut out = String::from(
        "# Benchmarks\n\nWritten by `cargo xtask bench` (do not edit by hand). Every figure lists the command\n\
         that produced it.\n\n",
    );
    out.push_str(&machine());
    for s in sections {
        write!(out, "\n## {}\n\n{}", s.title, s.body)?;
    }
    std::fs::write(root().join("BENCHMARKS.md"), &out)?;
    print!("{out}");
    Ok(())
}

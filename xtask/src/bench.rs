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
        "_Measured {date} at commit {commit} on {cpu}, {} cores, Linux {kernel}._\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}

/// What every hvt figure here must be read with.
const MACHINE_NOTE: &str = "/dev/kvm on the machines these figures come from is a nested, software-assisted KVM: guest\n\
    instructions are emulated (a register-only `dec; jnz` loop runs ~4000 times slower in an hvt guest\n\
    than in an spt one) and a VM exit costs 25-30 us, so hvt figures here are far below what hardware\n\
    KVM gives; spt and unix run natively.\n";

/// A benchmark: its name on the command line and what it measures.
struct Bench {
    /// `cargo xtask bench NAME`.
    name: &'static str,
    /// Produces its sections.
    run: fn() -> Result<Vec<Section>>,
}

fn boot_sections() -> Result<Vec<Section>> {
    let mut sections = vec![boot(|p| match p {
        "hvt" => format!("{HVT} --mem=32 target/unikernels/hvt/hello"),
        "spt" => format!("{SPT} --mem=32 target/unikernels/spt/hello"),
        _ => "target/unikernels/unix/hello".to_string(),
    })?];
    match std::env::var_os("SOLO5_DIR") {
        Some(dir) => sections.push(boot_vs_solo5(std::path::Path::new(&dir))?),
        None => eprintln!(
            "xtask bench: SOLO5_DIR not set, leaving the comparison with Solo5's tenders as it was"
        ),
    }
    Ok(sections)
}

/// Runs of each command in [`boot_vs_solo5`].
const ALTERNATED_RUNS: usize = 500;

/// Medians (ms) of the wall time of each command, run alternately `runs`
/// times after 5 warm-up rounds, so that both see the same machine load.
pub fn alternated_medians_ms(cmds: &[Vec<String>], runs: usize) -> Result<Vec<f64>> {
    let mut times = vec![Vec::with_capacity(runs); cmds.len()];
    for round in 0..runs + 5 {
        for (c, t) in cmds.iter().zip(&mut times) {
            let start = std::time::Instant::now();
            let st = Command::new(&c[0])
                .args(&c[1..])
                .current_dir(root())
                .stdout(std::process::Stdio::null())
                .status()
                .with_context(|| format!("cannot run {}", c[0]))?;
            let ms = start.elapsed().as_secs_f64() * 1e3;
            if !st.success() {
                bail!("`{}` failed: {st}", c.join(" "));
            }
            if round >= 5 {
                t.push(ms);
            }
        }
    }
    Ok(times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect())
}

/// Morgana's tenders next to Solo5's on the very same images.
fn boot_vs_solo5(solo5: &std::path::Path) -> Result<Section> {
    let mut body = format!(
        "`hello` booted to exit on Morgana's and on Solo5's tenders (Solo5 built from its sources with\n\
         `./configure.sh && make`, run with `SOLO5_DIR=DIR cargo xtask bench boot`), the same image for\n\
         both; the two commands alternate, {ALTERNATED_RUNS} runs each after 5 warm-ups, so that they see the same\n\
         machine load; figures are medians of the wall time from spawn to exit.\n\n\
         | platform | Morgana | Solo5 | Morgana / Solo5 |\n|---|---|---|---|\n"
    );
    for (p, runs) in [("spt", ALTERNATED_RUNS), ("hvt", ALTERNATED_RUNS / 5)] {
        let theirs = solo5.join(format!("tenders/{p}/solo5-{p}"));
        if !theirs.is_file() {
            bail!("{} is missing: build Solo5 first", theirs.display());
        }
        let image = format!("target/unikernels/{p}/hello");
        let ours = vec![
            format!("target/release/morgana-{p}"),
            "--mem=32".into(),
            image.clone(),
        ];
        let solo = vec![theirs.display().to_string(), "--mem=32".into(), image];
        let m = alternated_medians_ms(&[ours.clone(), solo.clone()], runs)?;
        writeln!(
            body,
            "| {p} (`{}` / `{}`, {runs} runs each) | {:.3} ms | {:.3} ms | {:.2} |",
            ours.join(" "),
            solo.join(" "),
            m[0],
            m[1],
            m[0] / m[1]
        )?;
    }
    body.push_str(
        "\nBoth of Morgana's tenders are linked statically by `cargo xtask build` and start from a C `main`\n\
         (no Rust runtime start-up); `morgana-spt` forks (the parent reports how the guest ended), maps\n\
         and loads guest memory in the child, and installs the same guest allow-list as before.\n",
    );
    Ok(Section {
        title: "Boot time against Solo5's tenders".into(),
        body,
    })
}

/// Every benchmark, in the order `cargo xtask bench` runs them. A new one
/// is a module with a function returning its sections, listed here.
const BENCHES: &[Bench] = &[
    Bench {
        name: "boot",
        run: boot_sections,
    },
    Bench {
        name: "sizes",
        run: || Ok(vec![sizes()?]),
    },
    Bench {
        name: "sched",
        run: || Ok(vec![crate::bench_sched::section()?]),
    },
    Bench {
        name: "net",
        run: || Ok(vec![crate::bench_net::section()?]),
    },
    Bench {
        name: "virtio",
        run: || Ok(vec![crate::bench_virtio::section()?]),
    },
    Bench {
        name: "tls",
        run: || Ok(vec![crate::bench_tls::section()?]),
    },
    Bench {
        name: "trace",
        run: || Ok(vec![crate::bench_trace::section()?]),
    },
    Bench {
        name: "socket",
        run: || Ok(vec![crate::bench_socket::section()?]),
    },
    Bench {
        name: "storage",
        run: || Ok(vec![crate::bench_storage::section()?]),
    },
];

const HEADER: &str = "# Benchmarks\n\nWritten by `cargo xtask bench` (do not edit by hand). Every figure lists the command\n\
    that produced it. `cargo xtask bench NAME...` reruns only the named benchmarks; sections it does\n\
    not produce are kept as they were, each with the commit and date it was measured at.\n\n";

/// Splits a results file into its sections (`## Title` and the body up to
/// the next one), in order.
fn parse_sections(text: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for line in text.split_inclusive('\n') {
        if let Some(title) = line.strip_prefix("## ") {
            out.push(Section {
                title: title.trim_end().to_string(),
                body: String::new(),
            });
        } else if let Some(s) = out.last_mut() {
            s.body.push_str(line);
        }
    }
    for s in &mut out {
        let trimmed = s.body.trim_matches('\n').len();
        let start = s.body.len() - s.body.trim_start_matches('\n').len();
        s.body = format!("{}\n", &s.body[start..start + trimmed]);
    }
    out
}

/// Replaces the sections of `old` that `new` has (by title), keeps the
/// others in place, and appends the new titles.
fn merge_sections(old: Vec<Section>, new: Vec<Section>) -> Vec<Section> {
    let mut out = old;
    for s in new {
        match out.iter_mut().find(|o| o.title == s.title) {
            Some(o) => *o = s,
            None => out.push(s),
        }
    }
    out
}

/// Runs the named benchmarks (all of them if `args` is empty) and merges
/// their sections into BENCHMARKS.md.
pub fn run(args: &[String]) -> Result<()> {
    for a in args {
        if !BENCHES.iter().any(|b| b.name == a) {
            let names: Vec<&str> = BENCHES.iter().map(|b| b.name).collect();
            bail!("no benchmark `{a}` (there are: {})", names.join(", "));
        }
    }
    let stamp = machine();
    let mut produced = Vec::new();
    for b in BENCHES {
        if !args.is_empty() && !args.iter().any(|a| a == b.name) {
            continue;
        }
        eprintln!("xtask bench: {}", b.name);
        for mut s in (b.run)()? {
            s.body = format!("{stamp}\n{}", s.body);
            produced.push(s);
        }
    }
    let out = write_sections(produced)?;
    print!("{out}");
    Ok(())
}

/// The sections of BENCHMARKS.md as they are now.
pub fn current_sections() -> Vec<Section> {
    parse_sections(&std::fs::read_to_string(root().join("BENCHMARKS.md")).unwrap_or_default())
}

/// Merges `produced` into BENCHMARKS.md (replacing sections of the same
/// title, keeping the others); returns the new text.
pub fn write_sections(produced: Vec<Section>) -> Result<String> {
    let path = root().join("BENCHMARKS.md");
    let sections = merge_sections(current_sections(), produced);
    let mut out = String::from(HEADER);
    out.push_str(MACHINE_NOTE);
    for s in sections {
        write!(out, "\n## {}\n\n{}", s.title, s.body)?;
    }
    std::fs::write(&path, &out)?;
    Ok(out)
}

/// The line that starts every section: when, at which commit, on what.
pub fn stamp() -> String {
    machine()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_sections_the_run_did_not_produce() {
        let old = parse_sections("# B\n\nintro\n\n## A\n\nold a\n\n## K\n\nkept\n| x |\n");
        assert_eq!(old.len(), 2);
        assert_eq!(old[1].body, "kept\n| x |\n");
        let new = vec![
            Section {
                title: "A".into(),
                body: "new a\n".into(),
            },
            Section {
                title: "C".into(),
                body: "c\n".into(),
            },
        ];
        let m = merge_sections(old, new);
        let titles: Vec<&str> = m.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(titles, ["A", "K", "C"]);
        assert_eq!(m[0].body, "new a\n");
        assert_eq!(m[1].body, "kept\n| x |\n");
    }
}

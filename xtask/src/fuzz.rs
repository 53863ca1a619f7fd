//! `cargo xtask fuzz [TARGET] [SECONDS]`: runs the fuzz targets of
//! `morgana-fuzz` (all of them, or TARGET) for SECONDS each (default 60)
//! with libFuzzer, one after the other on one core at `nice 10`, and merges
//! executions and crashes per target into the "Fuzzing" section of
//! BENCHMARKS.md.
//!
//! libFuzzer comes from the `libfuzzer-sys` crate; the coverage
//! instrumentation is rustc's own SanitizerCoverage pass, selected with
//! stable `-C` options (cargo-fuzz would need nightly only for `-Z`
//! sanitizers, which these targets do without: they are safe Rust, and the
//! tenders' `unsafe` blocks are checked by the invariants the targets
//! assert). Overflow checks and debug assertions are on.

use crate::bench::{self, Section};
use crate::root;
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

/// The fuzz targets and what each feeds its input to.
const TARGETS: &[(&str, &str)] = &[
    (
        "elf",
        "an image file: ELF checks and load plan, note and section lookup (offload request, trace buffer), image checks for hvt and spt, load into hvt guest memory",
    ),
    (
        "manifest",
        "a manifest note: `Manifest::decode`/`validate` against the guest's `ManifestView`, re-encoding",
    ),
    (
        "args",
        "a tender command line: option scan, tender and unix parsers, MAC addresses, guest command line",
    ),
    (
        "hypercalls",
        "64 KiB of guest memory and up to 255 hvt hypercalls on it, served by morgana-hvt's handler (block file, socket for the tap)",
    ),
    (
        "net",
        "up to 64 Ethernet frames arriving on a `Net` device (runtime's simulated platform), plain or with network offloads (virtio-net headers, 64 KiB frames), through morgana-net's driver and smoltcp, TCP and UDP echo on port 7",
    ),
    (
        "fs",
        "the start of a 4 MiB disk mounted by morgana-fs (FAT, simulated platform): tree walk, stat, reads, then mkdir/create/write/destroy",
    ),
    (
        "tar",
        "a block device opened by morgana-kv-ro's tar store (simulated platform): list, size, get, read, exists",
    ),
];

const TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// What cargo-fuzz passes, minus the nightly-only sanitizer.
const RUSTFLAGS: &str = "-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks";

fn fuzz_dir() -> PathBuf {
    root().join("target/fuzz")
}

/// Builds the fuzz target binaries with coverage instrumentation.
fn build() -> Result<()> {
    let status = Command::new("cargo")
        .current_dir(root())
        .args([
            "build",
            "--release",
            "-p",
            "morgana-fuzz",
            "--features",
            "libfuzzer",
            "--bins",
            "--target",
            TRIPLE,
            "--target-dir",
        ])
        .arg(fuzz_dir())
        .env_remove("RUSTFLAGS")
        // The `net` target runs the runtime on its simulated platform.
        .env("MORGANA_SIM", "1")
        .env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS", RUSTFLAGS)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("building the fuzz targets failed");
    }
    Ok(())
}

/// One target's run.
struct Run {
    name: &'static str,
    seconds: u64,
    execs: u64,
    crashes: Vec<PathBuf>,
    corpus: usize,
}

fn count_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

fn run_target(name: &'static str, seconds: u64) -> Result<Run> {
    let bin = fuzz_dir().join(TRIPLE).join("release").join(name);
    let corpus = fuzz_dir().join("corpus").join(name);
    let artifacts = fuzz_dir().join("artifacts").join(name);
    let seeds = root().join("fuzz/seeds").join(name);
    std::fs::create_dir_all(&corpus)?;
    std::fs::create_dir_all(&artifacts)?;
    let before: Vec<PathBuf> = std::fs::read_dir(&artifacts)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    let log = fuzz_dir().join(format!("{name}.log"));
    eprintln!(
        "xtask fuzz: {name} for {seconds} s (log in {})",
        log.display()
    );
    let status = Command::new("nice")
        .args(["-n", "10"])
        .arg(&bin)
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1")
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(&corpus)
        .arg(&seeds)
        .stdout(std::fs::File::create(
            fuzz_dir().join(format!("{name}.out")),
        )?)
        .stderr(std::fs::File::create(&log)?)
        .status()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let text = std::fs::read_to_string(&log)?;
    let execs = text
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("{name}: no execution count in {}", log.display()))?;
    let crashes: Vec<PathBuf> = std::fs::read_dir(&artifacts)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !before.contains(p))
        .collect();
    if !status.success() && crashes.is_empty() {
        bail!(
            "{name}: libFuzzer failed ({status}) without an artifact: see {}",
            log.display()
        );
    }
    for c in &crashes {
        eprintln!(
            "xtask fuzz: {name} CRASHED on {}: fix it and copy the input to fuzz/regressions/{name}/",
            c.display()
        );
    }
    Ok(Run {
        name,
        seconds,
        execs,
        crashes,
        corpus: count_files(&corpus),
    })
}

/// A table row of the Fuzzing section: `| target | ... |`.
fn row_target(line: &str) -> Option<&str> {
    let name = line.strip_prefix("| `")?.split('`').next()?;
    TARGETS.iter().any(|(t, _)| *t == name).then_some(name)
}

/// Runs the fuzz targets and merges their figures into BENCHMARKS.md.
pub fn run(args: &[String]) -> Result<()> {
    let mut names: Vec<&'static str> = Vec::new();
    let mut seconds = 60;
    for a in args {
        if let Ok(s) = a.parse::<u64>() {
            if s == 0 {
                bail!("SECONDS must be at least 1");
            }
            seconds = s;
        } else if let Some((t, _)) = TARGETS.iter().find(|(t, _)| t == a) {
            names.push(t);
        } else if a != "all" {
            let all: Vec<&str> = TARGETS.iter().map(|(t, _)| *t).collect();
            bail!("no fuzz target `{a}` (there are: {})", all.join(", "));
        }
    }
    if names.is_empty() {
        names = TARGETS.iter().map(|(t, _)| *t).collect();
    }
    build()?;
    let stamp = bench::stamp();
    let mut rows: Vec<(String, String)> = Vec::new();
    // Rows of targets not run now are kept, with their own date.
    let old = bench::current_sections()
        .into_iter()
        .find(|s| s.title == "Fuzzing")
        .map(|s| s.body)
        .unwrap_or_default();
    for line in old.lines() {
        if let Some(t) = row_target(line) {
            rows.push((t.to_string(), line.to_string()));
        }
    }
    let date = stamp
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let commit = stamp
        .split("at commit ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_default()
        .to_string();
    let mut failed = Vec::new();
    for name in names {
        let r = run_target(name, seconds)?;
        let what = TARGETS.iter().find(|(t, _)| *t == name).map_or("", |t| t.1);
        let line = format!(
            "| `{}` | {what} | {} s | {} | {:.0} | {} | {} | {date}, {commit} |",
            r.name,
            r.seconds,
            r.execs,
            r.execs as f64 / r.seconds as f64,
            r.crashes.len(),
            r.corpus,
        );
        if !r.crashes.is_empty() {
            failed.push(name);
        }
        match rows.iter_mut().find(|(t, _)| t == name) {
            Some(row) => row.1 = line,
            None => rows.push((name.to_string(), line)),
        }
    }
    rows.sort_by_key(|(t, _)| TARGETS.iter().position(|(n, _)| n == t));
    let parse_col = |line: &str, i: usize| -> u64 {
        line.split('|')
            .nth(i)
            .and_then(|c| c.trim().trim_end_matches(" s").parse().ok())
            .unwrap_or(0)
    };
    let total_execs: u64 = rows.iter().map(|(_, l)| parse_col(l, 4)).sum();
    let total_crashes: u64 = rows.iter().map(|(_, l)| parse_col(l, 6)).sum();
    let mut body = format!(
        "{stamp}\n`cargo xtask fuzz [TARGET] [SECONDS]` (default: every target, 60 s each): libFuzzer\n\
         (`libfuzzer-sys`) with rustc's SanitizerCoverage instrumentation on stable Rust, overflow checks\n\
         and debug assertions on, one target at a time on one core at `nice -n 10`. Each run starts from\n\
         the committed seeds (`fuzz/seeds/TARGET`) and the corpus of earlier runs (`target/fuzz/corpus`);\n\
         a crash stops the run and leaves its input in `target/fuzz/artifacts/TARGET`. Inputs that once\n\
         crashed are kept in `fuzz/regressions/TARGET` and replayed by `cargo test -p morgana-fuzz`.\n\n\
         | target | input | time | executions | per second | crashes | corpus | measured |\n\
         |---|---|---|---|---|---|---|---|\n"
    );
    for (_, l) in &rows {
        writeln!(body, "{l}")?;
    }
    writeln!(
        body,
        "\nTotal: {total_execs} executions, {total_crashes} crashes."
    )?;
    // The stamp is in the body already: write the section as it is.
    let out = bench::write_sections(vec![Section {
        title: "Fuzzing".into(),
        body,
    }])?;
    let section = out
        .split("\n## Fuzzing\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .unwrap_or_default();
    print!("{section}");
    if !failed.is_empty() {
        bail!("crashes in: {}", failed.join(", "));
    }
    Ok(())
}

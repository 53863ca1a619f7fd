//! Scheduler costs on the unix platform against tokio's current-thread
//! runtime doing the same work: the `b-sched` unikernel
//! (tests/kernels/src/bin/b-sched.rs) and the `tokio-sched` program
//! (benches/tokio-sched), both built with the same `unikernel` profile
//! settings and run alternately; the median of each figure is reported.

use crate::bench::Section;
use crate::root;
use anyhow::{Context, Result, bail};
use morgana_cli::{BuildOptions, Platform};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Empty tasks spawned, then joined, per run.
const TASKS: u64 = 100_000;
/// `yield_now` switches between two tasks per run.
const SWITCHES: u64 = 1_000_000;
/// Runs of each program (after one warm-up run each).
const RUNS: usize = 7;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// `(spawn+join ns per task, ns per switch)` from one run of `program`.
fn measure(program: &Path) -> Result<(f64, f64)> {
    let out = Command::new(program)
        .args([TASKS.to_string(), SWITCHES.to_string()])
        .current_dir(root())
        .output()
        .with_context(|| format!("cannot run {}", program.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{} failed ({}): {text}{}",
            program.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let figure = |what: &str| -> Result<f64> {
        let line = text
            .lines()
            .find(|l| l.starts_with(what))
            .with_context(|| format!("{} printed no {what} line: {text}", program.display()))?;
        let v = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix("ns_per_op="))
            .with_context(|| format!("no ns_per_op in {line:?}"))?;
        v.parse()
            .with_context(|| format!("bad ns_per_op in {line:?}"))
    };
    Ok((figure("spawn_join ")?, figure("switch ")?))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Builds and runs both programs; the results table.
pub fn section() -> Result<Section> {
    // The unikernel, exactly as `morgana build --target unix` builds it.
    let built = morgana_cli::build(&BuildOptions {
        platforms: vec![Platform::Unix],
        packages: vec!["morgana-test-kernels".into()],
        workspace: Some(root()),
        ..Default::default()
    })?;
    let morgana = built
        .iter()
        .find(|b| b.name == "b-sched")
        .map(|b| b.path.clone())
        .context("morgana build produced no b-sched")?;
    // tokio, with the same profile settings as the unikernel.
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.args(["build", "--profile", "unikernel"]);
    let mut config = String::new();
    for c in morgana_cli::PROFILE_CONFIG {
        cargo.arg("--config").arg(c);
        write!(config, " --config '{c}'")?;
    }
    cargo.args(["-p", "tokio-sched"]);
    crate::run(&mut cargo)?;
    let tokio = target_dir().join("unikernel/tokio-sched");

    measure(&morgana)?;
    measure(&tokio)?;
    let (mut m_spawn, mut m_switch, mut t_spawn, mut t_switch) = (vec![], vec![], vec![], vec![]);
    for _ in 0..RUNS {
        let (a, b) = measure(&morgana)?;
        m_spawn.push(a);
        m_switch.push(b);
        let (a, b) = measure(&tokio)?;
        t_spawn.push(a);
        t_switch.push(b);
    }
    let rows = [
        (
            format!("spawn + join of one empty task ({TASKS} spawned, then all awaited)"),
            median(m_spawn),
            median(t_spawn),
        ),
        (
            format!("task switch: two tasks ping-pong with `yield_now` ({SWITCHES} yields)"),
            median(m_switch),
            median(t_switch),
        ),
    ];
    let args = format!("{TASKS} {SWITCHES}");
    let mut body = format!(
        "Morgana's scheduler on the unix platform against tokio's current-thread runtime (`tokio::spawn`,\n\
         `tokio::task::yield_now`, no I/O or time driver) doing the same work. Both are built with the\n\
         `unikernel` profile settings (opt-level s, fat LTO, one codegen unit) and run alternately,\n\
         {RUNS} runs each after a warm-up; figures are medians of the programs' own clock measurements.\n\n\
         * Morgana: `target/release/morgana build --target unix -p morgana-test-kernels`, then\n  \
         `target/unikernels/unix/b-sched {args}`\n\
         * tokio: `cargo build --profile unikernel{config} -p tokio-sched`, then\n  \
         `target/unikernel/tokio-sched {args}`\n\n\
         | operation | Morgana | tokio | Morgana / tokio |\n|---|---|---|---|\n"
    );
    for (what, m, t) in rows {
        writeln!(body, "| {what} | {m:.1} ns | {t:.1} ns | {:.2} |", m / t)?;
    }
    Ok(Section {
        title: "Scheduler: spawn+join and switch costs against tokio".into(),
        body,
    })
}

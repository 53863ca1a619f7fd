//! What the trace buffer costs: the `b-sched` unikernel (spawn+join and
//! task switches, the paths with the most trace points per instruction)
//!
//! * on unix, with the runtime's trace points compiled in (tracing off, as
//!   every image ships) against a build with them compiled out
//!   (`--cfg morgana_no_trace`): what tracing costs when it is off;
//! * on spt, with and without `--trace=FILE`: what recording costs.
//!
//! Programs run alternately, after a warm-up each; medians are reported.

use crate::bench::Section;
use crate::root;
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::process::Command;

const TASKS: u64 = 100_000;
const SWITCHES: u64 = 1_000_000;
const RUNS: usize = 7;

/// `(spawn+join ns per task, ns per switch)` from one run of `cmd`.
fn measure(cmd: &[String]) -> Result<(f64, f64)> {
    let out = Command::new(&cmd[0])
        .args(&cmd[1..])
        .current_dir(root())
        .output()
        .with_context(|| format!("cannot run {}", cmd[0]))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let figure = |what: &str| -> Result<f64> {
        text.lines()
            .find(|l| l.starts_with(what))
            .and_then(|l| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix("ns_per_op="))
            })
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{cmd:?} printed no {what} figure: {text}"))
    };
    Ok((figure("spawn_join ")?, figure("switch ")?))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Medians of `a` and `b` run alternately.
fn compare(a: &[String], b: &[String]) -> Result<[(f64, f64); 2]> {
    measure(a)?;
    measure(b)?;
    let mut r = [(vec![], vec![]), (vec![], vec![])];
    for _ in 0..RUNS {
        for (i, cmd) in [a, b].into_iter().enumerate() {
            let (s, w) = measure(cmd)?;
            r[i].0.push(s);
            r[i].1.push(w);
        }
    }
    let [x, y] = r;
    Ok([(median(x.0), median(x.1)), (median(y.0), median(y.1))])
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Builds the variants and measures them.
pub fn section() -> Result<Section> {
    let morgana = root().join("target/release/morgana");
    let notrace_dir = root().join("target/bench-notrace");
    let build = |platform: &str, extra_env: Option<(&str, &str)>| -> Result<()> {
        let mut c = Command::new(&morgana);
        c.args(["build", "--target", platform, "-p", "morgana-test-kernels"])
            .current_dir(root());
        if let Some((dir, flags)) = extra_env {
            c.env("CARGO_TARGET_DIR", dir).env("RUSTFLAGS", flags);
        }
        crate::run(&mut c)
    };
    build("unix", None)?;
    build("spt", None)?;
    let nd = notrace_dir.display().to_string();
    build("unix", Some((&nd, "--cfg morgana_no_trace")))?;

    let args = [TASKS.to_string(), SWITCHES.to_string()];
    let with_args = |mut v: Vec<String>| {
        v.extend(args.iter().cloned());
        v
    };
    let unix_on = with_args(strs(&["target/unikernels/unix/b-sched"]));
    let unix_out = with_args(vec![format!("{nd}/unikernels/unix/b-sched")]);
    let trace_file =
        std::env::temp_dir().join(format!("morgana-bench-{}.trace", std::process::id()));
    let spt_off = with_args(strs(&[
        "target/release/morgana-spt",
        "--mem=64",
        "target/unikernels/spt/b-sched",
    ]));
    let spt_on = with_args(vec![
        "target/release/morgana-spt".into(),
        "--mem=64".into(),
        format!("--trace={}", trace_file.display()),
        "target/unikernels/spt/b-sched".into(),
    ]);
    let [u_in, u_out] = compare(&unix_on, &unix_out)?;
    let [s_off, s_on] = compare(&spt_off, &spt_on)?;
    let _ = std::fs::remove_file(&trace_file);

    let a = format!("{TASKS} {SWITCHES}");
    let mut body = format!(
        "What the trace buffer costs, measured with `b-sched` (spawn+join of {TASKS} empty tasks; {SWITCHES}\n\
         `yield_now` switches: four trace points per switch). {RUNS} alternate runs each after a warm-up;\n\
         medians of the programs' own clock measurements. Taken on a shared machine under load.\n\n\
         * trace points compiled in, tracing off (every image): `morgana build --target unix -p morgana-test-kernels`,\n  \
         `target/unikernels/unix/b-sched {a}`\n\
         * compiled out: `CARGO_TARGET_DIR=target/bench-notrace RUSTFLAGS='--cfg morgana_no_trace' morgana build --target unix -p morgana-test-kernels`,\n  \
         `target/bench-notrace/unikernels/unix/b-sched {a}`\n\
         * spt without and with tracing: `morgana-spt --mem=64 [--trace=FILE] target/unikernels/spt/b-sched {a}`\n\n\
         | operation | compiled out | off (default) | off / out | spt, off | spt, `--trace` | on / off |\n\
         |---|---|---|---|---|---|---|\n"
    );
    for (what, o, i, f, n) in [
        ("spawn + join", u_out.0, u_in.0, s_off.0, s_on.0),
        ("task switch", u_out.1, u_in.1, s_off.1, s_on.1),
    ] {
        writeln!(
            body,
            "| {what} | {o:.1} ns | {i:.1} ns | {:.2} | {f:.1} ns | {n:.1} ns | {:.2} |",
            i / o,
            n / f
        )?;
    }
    Ok(Section {
        title: "Trace buffer: cost off and on".into(),
        body,
    })
}

//! The trace buffer: `--trace=FILE` on both tenders, read back with
//! `morgana trace` as text and as Chrome/Perfetto JSON, including after the
//! guest hung and the tender was killed with SIGKILL.

use morgana_tests::{Platform, Running, command, run_command, target_dir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn morgana() -> PathBuf {
    let p = target_dir().join("release/morgana");
    assert!(
        p.is_file(),
        "{} is missing: build it with `cargo xtask build`",
        p.display()
    );
    p
}

/// A fresh trace file path, unique to this test process and `tag`.
fn trace_path(p: Platform, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("morgana-trace-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{}-{tag}.trace", p.name()))
}

fn trace_text(file: &Path) -> String {
    let mut c = Command::new(morgana());
    c.arg("trace").arg(file);
    let o = run_command(c, Duration::from_secs(30));
    o.expect_status(0);
    o.stdout
}

#[test]
fn a_hung_guest_killed_with_sigkill_leaves_its_last_events_in_the_file() {
    for p in Platform::TENDERS {
        let file = trace_path(p, "hang");
        let arg = format!("--trace={}", file.display());
        let mut r = Running::start(command(p, "t-trace", &["--mem=16", &arg], &["hang"]));
        r.wait_line("trace: hanging", Duration::from_secs(60));
        // The guest now loops forever: give it a moment, then kill the
        // tender the hard way (no chance to write anything at exit).
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(r.pid() as i32, libc::SIGKILL) };
        let o = r.finish(Duration::from_secs(30));
        assert_eq!(o.status, 128 + libc::SIGKILL, "{p:?}");

        let text = trace_text(&file);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("the guest had not ended (still running, or the tender was killed)"),
            "{p:?}: {}",
            lines[0]
        );
        // The work before the hang, in order, ending with the last event.
        let last = lines.last().unwrap();
        assert!(
            last.contains("user") && last.contains("hanging = 7"),
            "{p:?}: {text}"
        );
        let pos = |s: &str| {
            lines
                .iter()
                .position(|l| l.contains(s))
                .unwrap_or_else(|| panic!("{p:?}: no {s:?} in\n{text}"))
        };
        assert!(pos("worker-round = 0") < pos("worker-round = 2"), "{text}");
        assert!(
            pos("worker-round = 102") < pos("INFO \"workers done\""),
            "{text}"
        );
        assert!(pos("INFO \"workers done\"") < lines.len() - 1, "{text}");
        for want in ["spawn ", "idle ", "wake ", "run ", "park "] {
            pos(want);
        }
        let _ = std::fs::remove_file(&file);
    }
}

#[test]
fn a_trace_converts_to_chrome_json_with_the_expected_events() {
    for p in Platform::TENDERS {
        let file = trace_path(p, "json");
        let arg = format!("--trace={}", file.display());
        let o = run_command(
            command(p, "t-trace", &["--mem=16", &arg], &[]),
            Duration::from_secs(60),
        );
        o.expect_status(0).expect_output("trace: done");
        assert!(
            trace_text(&file)
                .lines()
                .next()
                .unwrap()
                .ends_with("the guest exited with status 0"),
            "{p:?}"
        );

        let mut c = Command::new(morgana());
        c.arg("trace").arg("--json").arg(&file);
        let o = run_command(c, Duration::from_secs(30));
        o.expect_status(0);
        let v: serde_json::Value = serde_json::from_str(&o.stdout)
            .unwrap_or_else(|e| panic!("{p:?}: not JSON ({e}):\n{}", o.stdout));
        let events = v["traceEvents"].as_array().expect("traceEvents");
        let named = |n: &str| events.iter().filter(|e| e["name"] == n).count();
        // main and two workers.
        assert_eq!(named("spawn"), 3, "{p:?}");
        // Three rounds of two workers, each a user event.
        let rounds: Vec<&str> = events
            .iter()
            .filter(|e| e["name"] == "user")
            .filter_map(|e| e["args"]["details"].as_str())
            .collect();
        assert_eq!(rounds.len(), 6, "{p:?}: {rounds:?}");
        for i in [0, 1, 2, 100, 101, 102] {
            assert!(
                rounds.contains(&format!("worker-round = {i}").as_str()),
                "{p:?}: {rounds:?}"
            );
        }
        // A sleep whose deadline passed before its first poll (slow nested
        // KVM) never waits, so not every round records one.
        assert!(named("sleep") >= 1, "{p:?}");
        assert_eq!(named("log"), 1, "{p:?}");
        assert_eq!(named("exit"), 1, "{p:?}");
        // Task polls are duration events that pair up, on one track per task.
        let b = events.iter().filter(|e| e["ph"] == "B").count();
        let e = events.iter().filter(|e| e["ph"] == "E").count();
        assert!(b >= 3 && b == e, "{p:?}: {b} begins, {e} ends");
        let mut last = 0.0;
        for ev in events.iter().filter(|e| e["ph"] != "M") {
            let ts = ev["ts"].as_f64().expect("ts");
            assert!(ts >= last, "{p:?}: timestamps go back: {ev}");
            last = ts;
        }
        assert_eq!(v["otherData"]["end"], "the guest exited with status 0");
        let _ = std::fs::remove_file(&file);
    }
}

#[test]
fn bad_trace_arguments_are_one_line_and_status_1() {
    for p in Platform::TENDERS {
        let o = run_command(
            command(p, "t-trace", &["--trace=/nonexistent-dir/x.trace"], &[]),
            Duration::from_secs(30),
        );
        o.expect_one_line_error(
            p,
            "--trace: cannot create /nonexistent-dir/x.trace: No such file or directory",
        );
        let o = run_command(
            command(p, "t-trace", &["--trace=/"], &[]),
            Duration::from_secs(30),
        );
        o.expect_one_line_error(p, "--trace: / is not a regular file");
        let o = run_command(
            command(p, "t-trace", &["--trace=/dev/null"], &[]),
            Duration::from_secs(30),
        );
        o.expect_one_line_error(p, "--trace: /dev/null is not a regular file");
        let o = run_command(
            command(p, "t-trace", &["--trace="], &[]),
            Duration::from_secs(30),
        );
        o.expect_one_line_error(p, "missing file name in `--trace='");
    }
    // Not a trace file.
    let mut c = Command::new(morgana());
    c.arg("trace").arg("/proc/version");
    let o = run_command(c, Duration::from_secs(30));
    o.expect_status(1);
    assert_eq!(
        o.stderr.trim_end(),
        "morgana: /proc/version: not a Morgana trace file (no MRGTRACE header)"
    );
}

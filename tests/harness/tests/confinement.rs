//! The tenders really confine themselves while the guest runs: seccomp in
//! filter mode with `no_new_privs`, in morgana-hvt's single process and in
//! both of morgana-spt's processes (the guest and the parent reporting on
//! it). What each filter allows is tested by spt.rs and hvt.rs; this checks
//! that the filters are in force at all, as the kernel reports them.

use morgana_tests::{Platform, Running, command, require_kvm};
use std::time::{Duration, Instant};

/// `Seccomp`, `Seccomp_filters` and `NoNewPrivs` of process `pid`.
fn confinement(pid: u32) -> (String, u32, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
            .trim()
            .to_string()
    };
    let filters = field("Seccomp_filters:").parse().unwrap();
    (field("Seccomp:"), filters, field("NoNewPrivs:"))
}

/// Boots `t-exit 0 3000` on `p`; while the guest sleeps, checks the
/// confinement of the tender's process and of its children.
fn check(p: Platform, processes: usize) {
    let mut run = Running::start(command(p, "t-exit", &[], &["0", "3000"]));
    run.wait_line("holding for 3000 ms", Duration::from_secs(30));
    let pid = run.pid();
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let mut pids = vec![pid];
    pids.extend(
        children
            .split_whitespace()
            .map(|c| c.parse::<u32>().unwrap()),
    );
    assert_eq!(pids.len(), processes, "{p:?}: processes {pids:?}");
    for q in pids {
        // The spt parent confines itself just after forking, while the
        // child may already be running the guest: give it a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        let (mode, filters, nnp) = loop {
            let c = confinement(q);
            if c.0 == "2" || Instant::now() > deadline {
                break c;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(
            mode, "2",
            "{p:?}: process {q} is not in seccomp filter mode"
        );
        assert!(filters >= 1, "{p:?}: process {q} has no seccomp filter");
        assert_eq!(nnp, "1", "{p:?}: process {q} lacks no_new_privs");
    }
    let o = run.finish(Duration::from_secs(30));
    o.expect_status(0).expect_output("exiting with 0");
}

#[test]
fn hvt_tender_runs_the_guest_under_seccomp() {
    require_kvm();
    check(Platform::Hvt, 1);
}

#[test]
fn both_spt_processes_run_under_seccomp() {
    check(Platform::Spt, 2);
}

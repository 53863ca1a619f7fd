//! Booting real images on every platform: output, exit statuses, panics,
//! faults and clocks. One table of cases; where platforms differ the
//! expectation says so (see the README's platform table).

use morgana_tests::{Platform, Running, boot, command};
use std::time::Duration;

#[test]
fn hello_prints_greeting_and_command_line() {
    for p in Platform::ALL {
        let o = boot(p, "hello", &[], &["a", "b", "c"]);
        o.expect_status(0);
        assert_eq!(o.stdout, "Hello, world\nCommand line: a b c\n", "{p:?}");
        assert_eq!(o.stderr, "", "{p:?}");
    }
}

#[test]
fn nothing_does_nothing() {
    for p in Platform::ALL {
        let o = boot(p, "nothing", &[], &[]);
        o.expect_status(0);
        assert_eq!(o.stdout, "", "{p:?}");
        assert_eq!(o.stderr, "", "{p:?}");
    }
}

#[test]
fn chosen_exit_status_is_the_tenders_status() {
    for p in Platform::ALL {
        for status in [0, 7, 254] {
            let o = boot(p, "t-exit", &[], &[&status.to_string()]);
            o.expect_status(status);
            o.expect_output(&format!("exiting with {status}"));
        }
    }
}

#[test]
fn panic_exits_255_with_its_message() {
    for p in Platform::ALL {
        let o = boot(p, "t-panic", &[], &[]);
        o.expect_status(255);
        o.expect_output(
            "morgana: panic: deliberate panic 42 at tests/kernels/src/bin/t-panic.rs:9:5",
        );
    }
}

#[test]
fn write_to_unmapped_memory_is_a_trap() {
    for (mode, cr2) in [("unmapped", "cr2=0x8 "), ("high", "cr2=0x1000000000 ")] {
        for p in Platform::ALL {
            let o = boot(p, "t-fault", &[], &[mode]);
            match p {
                // The guest's own #PF handler reports the trap and aborts.
                Platform::Hvt | Platform::Virtio | Platform::VirtioPci => {
                    o.expect_status(255);
                    o.expect_output("morgana: trap: #PF page fault (vector 14)");
                    o.expect_output(cr2);
                }
                // A process: the kernel delivers SIGSEGV.
                Platform::Spt => {
                    o.expect_status(139);
                    o.expect_output("morgana-spt: guest killed by SIGSEGV");
                }
                Platform::Unix => {
                    o.expect_status(139);
                }
            }
            assert!(!o.stdout.contains("did not fault"), "{p:?}");
        }
    }
}

#[test]
fn write_to_text_is_a_guest_memory_fault() {
    for p in Platform::ALL {
        let o = boot(p, "t-fault", &[], &["text"]);
        match p {
            Platform::Hvt => {
                o.expect_status(1);
                o.expect_output(
                    "morgana-hvt: guest memory fault: access to read-only guest memory at gpa=0x1",
                );
                o.expect_output("rip=0x");
            }
            Platform::Spt => {
                o.expect_status(139);
                o.expect_output("morgana-spt: guest killed by SIGSEGV");
            }
            // The image's text and rodata are mapped read-only by the
            // guest's own page tables: its #PF handler reports the write.
            Platform::Virtio | Platform::VirtioPci => {
                o.expect_status(255);
                o.expect_output("morgana: trap: #PF page fault (vector 14), error code 0x3");
                o.expect_output("(write of a present page)");
            }
            Platform::Unix => {
                o.expect_status(139);
            }
        }
        assert!(!o.stdout.contains("did not fault"), "{p:?}");
    }
}

fn ms_in(line: &str, after: &str) -> u64 {
    let rest = &line[line.find(after).expect(after) + after.len()..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn sleeps_last_as_long_as_asked_and_wall_clock_is_current() {
    for p in Platform::ALL {
        let mut r = Running::start(command(p, "t-time", &[], &[]));
        let (t0, _) = r.wait_line("time: yield start", Duration::from_secs(20));
        let (t1, l) = r.wait_line("time: yield end", Duration::from_secs(5));
        let host = (t1 - t0).as_millis() as u64;
        let guest = ms_in(&l, "after ");
        assert!(
            (80..=120).contains(&host),
            "{p:?}: yield took {host} ms seen from the host"
        );
        assert!(
            (100..=120).contains(&guest),
            "{p:?}: yield took {guest} ms seen from the guest"
        );

        let (t0, _) = r.wait_line("time: sleep start", Duration::from_secs(5));
        let (t1, l) = r.wait_line("time: sleep end", Duration::from_secs(5));
        let host = (t1 - t0).as_millis() as u64;
        let guest = ms_in(&l, "after ");
        assert!(
            (80..=120).contains(&host),
            "{p:?}: sleep took {host} ms seen from the host"
        );
        assert!(
            (100..=120).contains(&guest),
            "{p:?}: sleep took {guest} ms seen from the guest"
        );

        let (_, l) = r.wait_line("time: wall clock", Duration::from_secs(5));
        let year: i32 = l.rsplit(' ').next().unwrap().parse().unwrap();
        // The wall clock is the host's: it reads 2026 or later.
        assert!(year >= 2026, "{p:?}: wall clock says {l}");

        r.finish(Duration::from_secs(5)).expect_status(0);
    }
}

//! The scheduling contract of the `morgana` crate docs, on real images on
//! hvt, spt and unix (exec/tests.rs checks the same rules on a simulated
//! platform): fair alternation of yielding tasks, a net read that blocks
//! only its task and wakes on a frame sent through a tap, scheduled block
//! I/O done one operation per round while tasks are runnable (all at once
//! when idle) and in queue order, atomic I/O never interleaved, 10,000 tasks
//! spawned and joined, cancellation, and sleeps waking in deadline order
//! within 20 ms of their deadlines.

use morgana_tests::net::{Netns, RawSocket};
use morgana_tests::{Platform, Running, TempFile, boot, command};
use std::time::{Duration, Instant};

fn sched(p: Platform, scenario: &str) -> morgana_tests::Output {
    let o = boot(p, "t-sched", &[], &[scenario]);
    o.expect_status(0);
    assert_eq!(o.stderr, "", "{p:?}");
    o
}

/// The value of `key=` in `line`.
fn field<T: std::str::FromStr>(line: &str, key: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    let pat = format!("{key}=");
    let rest = &line[line.find(&pat).unwrap_or_else(|| panic!("{key} in {line}")) + pat.len()..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn cpu_bound_tasks_that_yield_alternate_fairly() {
    let turns =
        |a: char, b: char| -> String { (0..8).map(|i| format!(" {a}{i} {b}{i}")).collect() };
    let want = format!(
        "sched: fair yield_now:{}\nsched: fair expired-sleep:{}\n",
        turns('a', 'b'),
        turns('c', 'd')
    );
    for p in Platform::ALL {
        let o = sched(p, "fair");
        assert_eq!(o.stdout, want, "{p:?}");
    }
}

#[test]
fn ten_thousand_tasks_spawned_and_joined() {
    for p in Platform::ALL {
        let o = sched(p, "spawn");
        let sum: u64 = (0..10_000u64).map(|i| i * 3).sum();
        let want =
            format!("sched: spawn tasks=10000 alive=10001 joined=10000 sum={sum} left=1 in ");
        assert!(o.stdout.starts_with(&want), "{p:?}: {}", o.stdout);
        assert_eq!(o.stdout.lines().count(), 1, "{p:?}: {}", o.stdout);
        eprintln!("{p:?}: {} (boot to exit {:?})", o.stdout.trim(), o.elapsed);
    }
}

#[test]
fn cancellation() {
    for p in Platform::ALL {
        let o = sched(p, "cancel");
        assert_eq!(
            o.stdout,
            "sched: cancel queued=cancelled ran=false sleeping=cancelled dropped=true \
             woke=false finished=ok(7) self=cancelled after=false joiner=cancelled tasks=1\n",
            "{p:?}"
        );
    }
}

#[test]
fn sleeps_wake_in_deadline_order_and_on_time() {
    const TOLERANCE_MS: i64 = 20;
    for p in Platform::ALL {
        let mut r = Running::start(command(p, "t-sched", &[], &["sleep"]));
        let (t0, _) = r.wait_line("sched: sleep start", Duration::from_secs(30));
        // Every line is a "sched: " line: each wait_line takes the next one.
        for (what, ms) in [
            ("sched: woke 100 ", 100),
            ("sched: woke 200 ", 200),
            ("sched: timeout 250 elapsed=true ", 250),
            ("sched: woke 300 ", 300),
        ] {
            let (t, line) = r.wait_line("sched: ", Duration::from_secs(5));
            assert!(
                line.starts_with(what),
                "{p:?}: expected {what:?}, got {line:?}"
            );
            let host = (t - t0).as_millis() as i64;
            assert!(
                (host - ms).abs() <= TOLERANCE_MS,
                "{p:?}: {what}seen by the host after {host} ms"
            );
            let late_us: i64 = field(&line, "late_us");
            eprintln!("{p:?}: {line} (host: after {host} ms)");
            assert!(
                (0..=TOLERANCE_MS * 1000).contains(&late_us),
                "{p:?}: {line}"
            );
        }
        let (_, line) = r.wait_line("sched: ", Duration::from_secs(5));
        assert_eq!(line, "sched: sleep order 100 200 t250 300", "{p:?}");
        r.finish(Duration::from_secs(10)).expect_status(0);
    }
}

const ETHERTYPE: [u8; 2] = [0x88, 0xb5];

/// Sends one broadcast frame of our EtherType carrying `tag` through tap0
/// of `ns`; returns when it was sent.
fn send_tagged(ns: &Netns, tag: &'static str) -> Instant {
    ns.run_in(move || {
        let sock = RawSocket::open("tap0", Duration::from_secs(1));
        let mut f = vec![0u8; 60];
        f[..6].fill(0xff);
        f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&ETHERTYPE);
        f[14..14 + tag.len()].copy_from_slice(tag.as_bytes());
        let t = Instant::now();
        sock.send(&f).expect("send");
        t
    })
}

#[test]
fn a_task_blocked_on_a_net_read_lets_others_run_and_wakes_on_a_frame() {
    for p in Platform::ALL {
        let ns = Netns::new("sched");
        ns.add_tap("tap0", None);
        let st = ns
            .command("sysctl")
            .args(["-qw", "net.ipv6.conf.tap0.disable_ipv6=1"])
            .status()
            .expect("sysctl");
        assert!(st.success());
        let cmd = ns.wrap(&command(p, "t-sched-net", &["--net:service=tap0"], &[]));
        let mut r = Running::start(cmd);
        for phase in ["busy", "idle"] {
            r.wait_line(
                &format!("sched-net: {phase} waiting"),
                Duration::from_secs(30),
            );
            std::thread::sleep(Duration::from_millis(300));
            let sent = send_tagged(&ns, phase);
            let (woke, line) = r.wait_line("sched-net: ", Duration::from_secs(10));
            eprintln!("{p:?}: {line} ({:?} after the frame)", woke - sent);
            assert!(
                line.starts_with(&format!("sched-net: {phase} woke after ")),
                "{p:?}: {line}"
            );
            // The reader woke for our frame, after it was sent.
            assert_eq!(field::<String>(&line, "frame"), phase, "{p:?}: {line}");
            assert!(woke > sent, "{p:?}: woke before the frame was sent");
            assert!(
                woke - sent < Duration::from_secs(2),
                "{p:?}: woke {:?} after the frame",
                woke - sent
            );
            let ms: u64 = line.split_whitespace().nth(4).unwrap().parse().unwrap();
            assert!(ms >= 300, "{p:?}: {line}");
            // The ticker kept running while the reader waited.
            let ticks: u64 = field(&line, "ticks");
            if phase == "busy" {
                assert!(ticks >= 10, "{p:?}: {line}");
            } else {
                // Sleeping 5 ms per tick: at most ms / 5 + 1 ticks, and
                // most of them.
                assert!(ticks >= ms / 10 && ticks <= ms / 5 + 1, "{p:?}: {line}");
            }
        }
        r.finish(Duration::from_secs(10)).expect_status(0);
    }
}

#[test]
fn scheduled_block_io_runs_when_idle_and_in_order_and_atomic_io_is_not_interleaved() {
    const SECTORS: usize = 64;
    for p in Platform::ALL {
        let disk = TempFile::zeroed((SECTORS * 512) as u64);
        let o = boot(
            p,
            "t-sched-block",
            &[&format!("--block:storage={}", disk.path())],
            &[],
        );
        o.expect_status(0);
        assert_eq!(
            o.stdout,
            "sched-block: order w1 w2 r read=[1, 1, 2, 2, 2, 2]\n\
             sched-block: busy 0 1 2 3 4 5 6 7 8 8\n\
             sched-block: idle 0 8\n\
             sched-block: atomic a0 b0 a1 b0 a1 b0 a1 b0 a1 b0 a1 b0 consistent=12 \
             final=7*5,5*11 done=true\n\
             sched-block: cancel result=cancelled written=0\n\
             sched-block: OK block_ops=46\n",
            "{p:?}"
        );
        // The host sees the same marks, and nothing else written.
        let bytes = std::fs::read(&disk.0).unwrap();
        assert_eq!(bytes.len(), SECTORS * 512, "{p:?}");
        let mut want = [0u8; SECTORS];
        want[0..2].fill(1);
        want[2..6].fill(2);
        want[8..16].fill(3);
        want[16..24].fill(4);
        want[24..29].fill(7);
        want[29..40].fill(5);
        for (s, sector) in bytes.chunks(512).enumerate() {
            assert!(
                sector.iter().all(|&b| b == want[s]),
                "{p:?}: sector {s} is not all {}",
                want[s]
            );
        }
    }
}

//! Network devices on every platform, through a real tap in a network
//! namespace of the test's own: 10,000 raw frames of random sizes echoed
//! and verified byte for byte, and a yield that a frame ends early.

use morgana_tests::net::{Lcg, Netns, RawSocket, mac_of};
use morgana_tests::{Platform, Running, command};
use std::time::{Duration, Instant};

const ETHERTYPE: [u8; 2] = [0x88, 0xb5];
const STOP: [u8; 2] = [0x88, 0xb6];

fn parse_mac(line: &str) -> [u8; 6] {
    let s = &line[line.find("mac=").unwrap() + 4..][..17];
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(s.split(':')) {
        *b = u8::from_str_radix(p, 16).unwrap();
    }
    mac
}

fn quiet_tap(ns: &Netns, dev: &str) {
    ns.add_tap(dev, None);
    let o = ns
        .command("sysctl")
        .args(["-qw", &format!("net.ipv6.conf.{dev}.disable_ipv6=1")])
        .status()
        .expect("sysctl");
    assert!(o.success());
}

struct EchoResult {
    sent: usize,
    received: usize,
    mismatched: usize,
}

fn echo_frames(guest: [u8; 6], count: usize) -> EchoResult {
    let sock = RawSocket::open("tap0", Duration::from_secs(2));
    let host = mac_of("tap0");
    let mut rng = Lcg(0x5eed);
    let mut pending = std::collections::VecDeque::new();
    let mut res = EchoResult {
        sent: 0,
        received: 0,
        mismatched: 0,
    };
    let mut buf = vec![0u8; 2048];
    let mut seq = 0u32;
    while res.sent < count || !pending.is_empty() {
        if res.sent < count && pending.len() < 32 {
            let len = rng.range(18, 1514);
            let mut f = vec![0u8; len];
            f[..6].copy_from_slice(&guest);
            f[6..12].copy_from_slice(&host);
            f[12..14].copy_from_slice(&ETHERTYPE);
            f[14..18].copy_from_slice(&seq.to_be_bytes());
            for b in &mut f[18..] {
                *b = rng.next_u64() as u8;
            }
            seq += 1;
            sock.send(&f).expect("send");
            res.sent += 1;
            let mut want = f;
            want[..6].copy_from_slice(&host);
            want[6..12].copy_from_slice(&guest);
            pending.push_back(want);
            continue;
        }
        match sock.recv(&mut buf) {
            Some(n) if buf[12..14] == ETHERTYPE => {
                let want = pending.pop_front().expect("an echo we did not ask for");
                res.received += 1;
                if buf[..n] != want[..] {
                    res.mismatched += 1;
                }
            }
            Some(_) => {} // not ours (nothing else should be on the link)
            None => {
                // Timed out: everything outstanding is lost.
                pending.clear();
            }
        }
    }
    let mut stop = vec![0u8; 60];
    stop[..6].copy_from_slice(&guest);
    stop[6..12].copy_from_slice(&host);
    stop[12..14].copy_from_slice(&STOP);
    sock.send(&stop).expect("send stop");
    res
}

#[test]
fn ten_thousand_random_frames_echoed_byte_for_byte() {
    const FRAMES: usize = 10_000;
    for p in Platform::ALL {
        let ns = Netns::new("echo");
        quiet_tap(&ns, "tap0");
        let cmd = ns.wrap(&command(p, "t-echo", &["--net:service=tap0"], &[]));
        let mut r = Running::start(cmd);
        let (_, ready) = r.wait_line("echo: ready", Duration::from_secs(30));
        assert!(ready.contains("mtu=1500"), "{p:?}: {ready}");
        let guest = parse_mac(&ready);
        let start = Instant::now();
        let res = ns.run_in(move || echo_frames(guest, FRAMES));
        let elapsed = start.elapsed();
        let o = r.finish(Duration::from_secs(30));
        o.expect_status(0);
        eprintln!(
            "{p:?}: {} frames sent, {} echoed, {} lost, {} mismatched in {elapsed:?}",
            res.sent,
            res.received,
            res.sent - res.received,
            res.mismatched
        );
        assert_eq!(res.mismatched, 0, "{p:?}: echoes differ from what was sent");
        assert_eq!(res.received, FRAMES, "{p:?}: frames lost on a quiet link");
        o.expect_output(&format!("echo: {FRAMES} frames echoed"));
    }
}

#[test]
fn a_frame_ends_a_yield_early() {
    for p in Platform::ALL {
        let ns = Netns::new("wake");
        quiet_tap(&ns, "tap0");
        let mut r = Running::start(ns.wrap(&command(p, "t-netwake", &["--net:service=tap0"], &[])));
        let (_, ready) = r.wait_line("netwake: ready", Duration::from_secs(30));
        let handle: u32 = ready.rsplit('=').next().unwrap().parse().unwrap();
        ns.run_in(|| {
            std::thread::sleep(Duration::from_millis(300));
            let sock = RawSocket::open("tap0", Duration::from_secs(1));
            let mut f = vec![0u8; 60];
            f[..6].fill(0xff);
            f[12..14].copy_from_slice(&ETHERTYPE);
            sock.send(&f).unwrap();
        });
        let (_, woke) = r.wait_line("netwake: woke after", Duration::from_secs(10));
        let ms: u64 = woke.split_whitespace().nth(3).unwrap().parse().unwrap();
        let set = u64::from_str_radix(woke.rsplit("0x").next().unwrap(), 16).unwrap();
        assert!(
            (250..2000).contains(&ms),
            "{p:?}: woke after {ms} ms: {woke}"
        );
        assert_ne!(
            set & (1 << handle),
            0,
            "{p:?}: device {handle} not in {woke}"
        );
        r.finish(Duration::from_secs(10)).expect_status(0);
    }
}

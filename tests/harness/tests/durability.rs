//! Durability of the key-value store (morgana-kv) through kv-server: a
//! client sets keys one at a time and records each only after the server
//! acknowledged it; the server is killed with SIGKILL at a random moment
//! and rebooted on the same disk, again and again. After every reboot each
//! key must hold its last acknowledged value (or the value of the one set
//! that was in flight when the server died): zero acknowledged writes
//! lost, zero corrupt values, zero refused disks.
//!
//! The default suite kills the server `MORGANA_DURABILITY` times in all
//! (50 if unset) on spt and on unix each, and 3 times on hvt; `cargo xtask
//! durability 1000` runs 1,000 kills over spt and unix (and 5 on hvt).

use morgana_tests::net::{Lcg, Netns};
use morgana_tests::{Platform, Running, TempFile, command};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEYS: u64 = 200;

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h: u64, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The value of write number `seq` to key `k`: self-checking, so a torn
/// or mixed-up value is told from an old one.
fn value(k: u64, seq: u64) -> String {
    let fill = "x".repeat((seq * 37 % 400) as usize);
    let body = format!("{seq}-k{k}-{fill}");
    format!("{body}-{:016x}", fnv(&body))
}

/// The write number of a well-formed value of key `k`.
fn parse(k: u64, v: &str) -> Option<u64> {
    let (body, sum) = v.rsplit_once('-')?;
    if format!("{:016x}", fnv(body)) != sum {
        return None;
    }
    let (seq, rest) = body.split_once('-')?;
    rest.starts_with(&format!("k{k}-")).then_some(())?;
    seq.parse().ok()
}

/// What the client knows: the last acknowledged write of each key, and
/// the write in flight (sent, not acknowledged) when the server died.
#[derive(Default)]
struct Ledger {
    acked: HashMap<u64, u64>,
    in_flight: Option<(u64, u64)>,
    writes: u64,
    acks: u64,
}

#[derive(Default, Debug)]
struct Tally {
    kills: u64,
    acked_writes: u64,
    lost: u64,
    corrupt: u64,
    refused: u64,
    in_flight_kept: u64,
}

fn connect() -> std::io::Result<TcpStream> {
    let s =
        TcpStream::connect_timeout(&"10.0.0.2:6380".parse().unwrap(), Duration::from_secs(120))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Reads every key back and checks it against the ledger.
fn verify(ledger: &mut Ledger, tally: &mut Tally, p: Platform) {
    let s = connect().unwrap_or_else(|e| panic!("{p:?}: connect after reboot: {e}"));
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut req = String::new();
    for k in 0..KEYS {
        req.push_str(&format!("GET k{k}\n"));
    }
    w.write_all(req.as_bytes()).unwrap();
    let in_flight = ledger.in_flight.take();
    for k in 0..KEYS {
        let mut line = String::new();
        r.read_line(&mut line)
            .unwrap_or_else(|e| panic!("{p:?}: GET k{k}: {e}"));
        let line = line.trim_end();
        let want = ledger.acked.get(&k).copied();
        let got = match line {
            "NONE" => None,
            l => match l.strip_prefix("VALUE ").and_then(|v| parse(k, v)) {
                Some(seq) => Some(seq),
                None => {
                    eprintln!("{p:?}: k{k}: corrupt reply {line:?}");
                    tally.corrupt += 1;
                    continue;
                }
            },
        };
        if got == want {
            continue;
        }
        match (in_flight, got) {
            (Some((fk, fseq)), Some(seq)) if fk == k && fseq == seq => {
                // The write the server died answering reached the disk.
                ledger.acked.insert(k, seq);
                tally.in_flight_kept += 1;
            }
            _ => {
                eprintln!("{p:?}: k{k}: acknowledged write {want:?}, found {got:?}");
                tally.lost += 1;
            }
        }
    }
}

/// Sets keys one at a time until the connection breaks; records each
/// write once acknowledged.
fn writer(ledger: Arc<Mutex<Ledger>>, seed: u64, conn: Arc<Mutex<Option<TcpStream>>>) {
    let Ok(s) = connect() else { return };
    let Ok(mut w) = s.try_clone() else { return };
    *conn.lock().unwrap() = s.try_clone().ok();
    let mut r = BufReader::new(s);
    let mut rng = Lcg(seed);
    loop {
        let k = rng.next_u64() % KEYS;
        let seq = {
            let mut l = ledger.lock().unwrap();
            l.writes += 1;
            let seq = l.writes;
            l.in_flight = Some((k, seq));
            seq
        };
        if w.write_all(format!("SET k{k} {}\n", value(k, seq)).as_bytes())
            .is_err()
        {
            return;
        }
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(n) if n > 0 && line.trim_end() == "OK" => {
                let mut l = ledger.lock().unwrap();
                l.acked.insert(k, seq);
                l.in_flight = None;
                l.acks += 1;
            }
            _ => return,
        }
    }
}

/// Kills the server's process group with SIGKILL, reaps the server and
/// waits until none of the group's processes is left (spt's guest is the
/// tender's child).
fn kill_group(run: Running) {
    let pgid = run.pid() as i32;
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    drop(run);
    let start = Instant::now();
    // SAFETY: as above; signal 0 only checks that the group exists.
    while unsafe { libc::kill(-pgid, 0) } == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "group {pgid} survives SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Kills kv-server `kills` times on `p` and checks the store after each
/// reboot.
fn run(p: Platform, kills: u64, seed: u64) -> Tally {
    let ns = Netns::new(&format!("dur{}", p.name()));
    ns.add_tap("tap0", Some("10.0.0.1/24"));
    let disk = TempFile::zeroed(1 << 20);
    let block = format!("--block:storage={}", disk.path());
    let mut tally = Tally::default();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = Lcg(seed);
    // How long writes run before the kill: longer on hvt, whose guest is
    // slow here.
    let max_ms = if p == Platform::Hvt { 20_000 } else { 400 };
    for round in 0..=kills {
        let mut cmd = ns.wrap(&command(
            p,
            "kv-server",
            &["--net:service=tap0", &block],
            &["--ipv4=10.0.0.2/24"],
        ));
        cmd.process_group(0);
        let mut run = Running::start(cmd);
        let early = round > 0 && round < kills && rng.next_u64().is_multiple_of(10);
        if early {
            // Now and then, a kill while the store is being opened.
            std::thread::sleep(Duration::from_millis(rng.next_u64() % 30));
            if run.is_running() {
                kill_group(run);
                tally.kills += 1;
                continue;
            }
        }
        // A disk the store refuses shows here: the server exits 1.
        run.wait_line("kv-server: listening", Duration::from_secs(120));
        if !run.is_running() {
            tally.refused += 1;
            continue;
        }
        let l = std::mem::take(&mut *ledger.lock().unwrap());
        let t = std::mem::take(&mut tally);
        let (l, t) = ns.run_in(move || {
            let (mut l, mut t) = (l, t);
            verify(&mut l, &mut t, p);
            (l, t)
        });
        *ledger.lock().unwrap() = l;
        tally = t;
        if round == kills {
            break;
        }
        let conn = Arc::new(Mutex::new(None));
        let w = ns.spawn_in({
            let l = ledger.clone();
            let s = rng.next_u64();
            let c = conn.clone();
            move || writer(l, s, c)
        });
        // The kill falls while writes are going on (the client is
        // connected first).
        while conn.lock().unwrap().is_none() && !w.is_finished() {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(rng.next_u64() % max_ms));
        kill_group(run);
        tally.kills += 1;
        // The dead server answers nothing: end the client's connection
        // (what it sent without an answer stays in flight).
        if let Some(c) = conn.lock().unwrap().take() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        w.join().unwrap();
    }
    tally.acked_writes = ledger.lock().unwrap().acks;
    tally
}

/// Kills on spt and on unix each: half of `MORGANA_DURABILITY` (100 if
/// unset, so 50 each).
fn count() -> u64 {
    let all: u64 = std::env::var("MORGANA_DURABILITY")
        .ok()
        .map(|v| v.parse().expect("MORGANA_DURABILITY: a number of kills"))
        .unwrap_or(100);
    all.div_ceil(2)
}

fn check(p: Platform, kills: u64, seed: u64) {
    let start = Instant::now();
    let t = run(p, kills, seed);
    println!(
        "durability {}: {} kills, {} acknowledged writes, {} lost, {} corrupt, {} refused disks, \
         {} in-flight writes found on disk, {:.0} s",
        p.name(),
        t.kills,
        t.acked_writes,
        t.lost,
        t.corrupt,
        t.refused,
        t.in_flight_kept,
        start.elapsed().as_secs_f64()
    );
    assert_eq!(t.kills, kills, "{p:?}");
    assert!(t.acked_writes > 0, "{p:?}: no write was acknowledged");
    assert_eq!((t.lost, t.corrupt, t.refused), (0, 0, 0), "{p:?}: {t:?}");
}

#[test]
fn kv_server_killed_at_random_keeps_every_acknowledged_write_spt() {
    check(Platform::Spt, count(), 1);
}

#[test]
fn kv_server_killed_at_random_keeps_every_acknowledged_write_unix() {
    check(Platform::Unix, count(), 2);
}

#[test]
fn kv_server_killed_at_random_keeps_every_acknowledged_write_hvt() {
    let kills = if count() > 50 { 5 } else { 3 };
    check(Platform::Hvt, kills, 3);
}

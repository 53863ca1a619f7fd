//! `cargo xtask compat SOLO5_DIR`: checks Solo5 ABI compatibility both ways
//! against a Solo5 source tree built with `./configure.sh && make`, and
//! writes the results to `COMPAT.md`.
//!
//! * Morgana's own images (`target/unikernels/{hvt,spt}/`) run on Solo5's
//!   `solo5-hvt`/`solo5-spt` and on `morgana-hvt`/`morgana-spt`, with the
//!   arguments the integration tests use;
//! * Solo5's test unikernels (`SOLO5_DIR/tests/test_*/test_*.{hvt,spt}`) run
//!   on both pairs of tenders, with the arguments and expectations of Solo5's
//!   own `tests/tests.bats`.
//!
//! Every case runs once on each tender (with fresh disk images, a timeout
//! and its output captured); a case is the *same* when both tenders give the
//! same exit status and the same outcome for each output check. Tenders'
//! own error messages are never compared: Solo5's wording differs from
//! Morgana's. A difference that is known and explained (a note) is recorded
//! as expected; any other difference makes the command fail, after the
//! results are written.

use crate::root;
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long any one subprocess may run before it is killed.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A platform with a tender.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Plat {
    /// KVM: `solo5-hvt`, `morgana-hvt`.
    Hvt,
    /// seccomp process: `solo5-spt`, `morgana-spt`.
    Spt,
}

impl Plat {
    /// Its name, as in image suffixes and tender names.
    fn name(self) -> &'static str {
        match self {
            Plat::Hvt => "hvt",
            Plat::Spt => "spt",
        }
    }
}

/// Whose images a case boots.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Morgana's images from `target/unikernels/`.
    Morgana,
    /// Solo5's test unikernels from `SOLO5_DIR/tests/`.
    Solo5,
}

/// A check of a run's output (stdout and stderr together) or of its disk.
enum Check {
    /// The output contains this text.
    Seen(String),
    /// The output does not contain this text.
    NotSeen(String),
    /// The line containing `after` goes on with a number of milliseconds in
    /// `lo..=hi` (durations the guest measured and printed).
    Millis {
        /// The text just before the number.
        after: &'static str,
        /// Least acceptable value.
        lo: u64,
        /// Greatest acceptable value.
        hi: u64,
    },
    /// After the run, disk `disk` of the case holds `t-block`'s pattern in
    /// sectors of `sector` bytes.
    Pattern {
        /// Index in [`Case::disks`].
        disk: usize,
        /// Sector size the guest used.
        sector: usize,
    },
}

impl Check {
    /// How the check reads in the results table.
    fn describe(&self) -> String {
        match self {
            Check::Seen(s) => format!("`{s}`"),
            Check::NotSeen(s) => format!("no `{s}`"),
            Check::Millis { after, lo, hi } => format!("`{}` {lo}-{hi} ms", after.trim_end()),
            Check::Pattern { .. } => "pattern on disk".into(),
        }
    }

    /// Whether `run` passes the check.
    fn holds(&self, run: &Run, disks: &[PathBuf]) -> bool {
        let out = run.output();
        match self {
            Check::Seen(s) => out.contains(s.as_str()),
            Check::NotSeen(s) => !out.contains(s.as_str()),
            Check::Millis { after, lo, hi } => out
                .lines()
                .find_map(|l| {
                    let rest = &l[l.find(after)? + after.len()..];
                    rest.split_whitespace().next()?.parse::<u64>().ok()
                })
                .is_some_and(|ms| (*lo..=*hi).contains(&ms)),
            Check::Pattern { disk, sector } => {
                std::fs::read(&disks[*disk]).is_ok_and(|bytes| has_block_pattern(&bytes, *sector))
            }
        }
    }
}

/// Whether `bytes` is what `t-block` writes: in sector `s`, the 64-bit
/// little-endian words `s << 32 | word index`.
fn has_block_pattern(bytes: &[u8], sector: usize) -> bool {
    bytes.len().is_multiple_of(sector)
        && bytes.chunks(sector).enumerate().all(|(s, data)| {
            data.chunks_exact(8).enumerate().all(|(w, word)| {
                u64::from_le_bytes(word.try_into().unwrap()) == ((s as u64) << 32 | w as u64)
            })
        })
}

/// A zeroed disk image a case needs, created afresh before each run.
struct Disk {
    /// Its path in the temporary directory.
    path: PathBuf,
    /// Its size in bytes.
    size: u64,
}

/// A network peer for a case: the case runs inside a network namespace with
/// a tap, and this command runs in the namespace after a second.
struct Peer {
    /// The tap's name.
    tap: &'static str,
    /// The peer command and its arguments.
    argv: Vec<String>,
}

/// One row of the results: an image, the tender arguments, and what to
/// expect.
struct Case {
    /// Whose image.
    origin: Origin,
    /// Which platform.
    plat: Plat,
    /// Short name (`hello`, `t-fault high`, `blk 4096`).
    name: String,
    /// Arguments after the tender: options, the image, its arguments.
    argv: Vec<String>,
    /// Disks to create before each run.
    disks: Vec<Disk>,
    /// The status the harness (Morgana's images) or `tests.bats` (Solo5's)
    /// expects.
    status: i32,
    /// Output checks, the same for both tenders.
    checks: Vec<Check>,
    /// The status Solo5's tender is known to give where it differs from
    /// Morgana's (explained by `note`).
    solo5_status: Option<i32>,
    /// Why the case may not go as expected; listed in the notes when it
    /// does not.
    note: Option<&'static str>,
    /// The network peer, if the case needs a network.
    peer: Option<Peer>,
    /// Time limit of each run.
    timeout: Duration,
}

impl Case {
    /// A case with no disks, notes or peer.
    fn new(origin: Origin, plat: Plat, name: impl Into<String>, argv: Vec<String>) -> Self {
        Self {
            origin,
            plat,
            name: name.into(),
            argv,
            disks: Vec::new(),
            status: 0,
            checks: Vec::new(),
            solo5_status: None,
            note: None,
            peer: None,
            timeout: TIMEOUT,
        }
    }

    /// Sets the expected status.
    fn status(mut self, status: i32) -> Self {
        self.status = status;
        self
    }

    /// Adds a check that `s` appears in the output.
    fn seen(mut self, s: impl Into<String>) -> Self {
        self.checks.push(Check::Seen(s.into()));
        self
    }

    /// Adds a check that `s` does not appear in the output.
    fn not_seen(mut self, s: impl Into<String>) -> Self {
        self.checks.push(Check::NotSeen(s.into()));
        self
    }

    /// Attaches a note.
    fn note(mut self, note: &'static str) -> Self {
        self.note = Some(note);
        self
    }
}

/// How a process ended.
#[derive(Clone, PartialEq, Eq)]
enum Status {
    /// Exit status, `128 + signal` if killed by a signal (as shells report).
    Exit(i32),
    /// Killed after the time limit.
    Timeout,
    /// Could not be started.
    Failed(String),
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Exit(n) => write!(f, "{n}"),
            Status::Timeout => write!(f, "timeout"),
            Status::Failed(_) => write!(f, "not started"),
        }
    }
}

/// One run of a case on one tender.
struct Run {
    /// How it ended.
    status: Status,
    /// Standard output.
    stdout: String,
    /// Standard error.
    stderr: String,
    /// Wall time.
    elapsed: Duration,
}

impl Run {
    /// Standard output and standard error, one after the other.
    fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// The last `n` lines of standard output and the first two of standard
    /// error that are neither empty nor Solo5's boot banner, for the details
    /// section.
    fn tail(&self, n: usize) -> Vec<String> {
        const BANNER: [&str; 7] = [
            "Solo5: Bindings",
            "Solo5: Memory map",
            "Solo5:   ",
            "|",
            "__|",
            "\\__",
            "____/",
        ];
        let keep = |l: &&str| {
            let t = l.trim();
            !t.is_empty() && !BANNER.iter().any(|b| t.starts_with(b))
        };
        let mut v: Vec<String> = self
            .stdout
            .lines()
            .filter(keep)
            .map(|l| format!("stdout: {}", clean(l)))
            .collect();
        v = v.split_off(v.len().saturating_sub(n));
        v.extend(
            self.stderr
                .lines()
                .filter(keep)
                .take(2)
                .map(|l| format!("stderr: {}", clean(l))),
        );
        if let Status::Failed(e) = &self.status {
            v.push(format!("xtask: {e}"));
        }
        v
    }
}

/// `l` without control characters (test_ssp prints NUL bytes), at most 160
/// characters.
fn clean(l: &str) -> String {
    let s: String = l
        .chars()
        .map(|c| if c.is_control() { '.' } else { c })
        .collect();
    if s.chars().count() > 160 {
        s.chars().take(157).chain("...".chars()).collect()
    } else {
        s
    }
}

/// The two runs of a case and how they compare.
struct Row {
    /// The case.
    case: Case,
    /// The run on Solo5's tender.
    solo5: Run,
    /// The run on Morgana's tender.
    morgana: Run,
    /// Check outcomes on Solo5's tender, one per check.
    solo5_checks: Vec<bool>,
    /// Check outcomes on Morgana's tender.
    morgana_checks: Vec<bool>,
    /// The verdict.
    verdict: Verdict,
}

/// How the two runs of a case compare.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Same status, same check outcomes.
    Same,
    /// Different, in the known and explained way.
    Expected,
    /// Different, unexpectedly.
    Different,
}

/// A temporary directory, removed with everything in it when dropped.
struct TempDir(PathBuf);

impl TempDir {
    /// Creates `morgana-compat-PID` in the system's temporary directory.
    fn new() -> Result<Self> {
        let p = std::env::temp_dir().join(format!("morgana-compat-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))?;
        Ok(Self(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A network namespace of our own with one tap, deleted when dropped (also
/// when a run fails).
struct Netns {
    /// Its name, `morgana-compat-PID`.
    name: String,
}

impl Netns {
    /// Creates the namespace, its loopback, and tap `tap` with address
    /// `addr`, up.
    fn new(tap: &str, addr: &str) -> Result<Self> {
        let ns = Self {
            name: format!("morgana-compat-{}", std::process::id()),
        };
        ip(&["netns", "add", &ns.name])?;
        for args in [
            &["link", "set", "lo", "up"][..],
            &["tuntap", "add", "dev", tap, "mode", "tap"],
            &["addr", "add", addr, "dev", tap],
        ] {
            let mut v = vec!["-n", ns.name.as_str()];
            v.extend_from_slice(args);
            ip(&v)?;
        }
        // No IPv6 on the tap: the host's neighbour discovery would send
        // frames of its own when the tender opens it.
        let mut sysctl = ns.command("sysctl");
        sysctl.args(["-qw", &format!("net.ipv6.conf.{tap}.disable_ipv6=1")]);
        checked(sysctl)?;
        ip(&["-n", &ns.name, "link", "set", tap, "up"])?;
        Ok(ns)
    }

    /// `program` to be run inside the namespace.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "delete", &self.name]);
    }
}

/// Runs `ip ARGS`, failing with its error message.
fn ip(args: &[&str]) -> Result<()> {
    let mut c = Command::new("ip");
    c.args(args);
    checked(c)
}

/// Runs `cmd` (with the usual time limit), failing with its error output
/// unless it succeeds.
fn checked(cmd: Command) -> Result<()> {
    let shown = crate::show(&cmd);
    let r = execute(cmd, TIMEOUT, None);
    match r.status {
        Status::Exit(0) => Ok(()),
        Status::Failed(e) => bail!("{e}"),
        s => bail!("`{shown}` failed ({s}): {}", r.stderr.trim()),
    }
}

/// Where everything is.
struct Env {
    /// The workspace root.
    root: PathBuf,
    /// The Solo5 tree.
    solo5: PathBuf,
    /// The temporary directory.
    tmp: TempDir,
}

impl Env {
    /// The tender of `plat` from `origin`: `$SOLO5/tenders/hvt/solo5-hvt` or
    /// `target/release/morgana-hvt`.
    fn tender(&self, origin: Origin, plat: Plat) -> PathBuf {
        let p = plat.name();
        match origin {
            Origin::Solo5 => self.solo5.join(format!("tenders/{p}/solo5-{p}")),
            Origin::Morgana => self.root.join(format!("target/release/morgana-{p}")),
        }
    }

    /// Morgana's image `name` for `plat`.
    fn image(&self, plat: Plat, name: &str) -> String {
        path_str(
            &self
                .root
                .join(format!("target/unikernels/{}/{name}", plat.name())),
        )
    }

    /// Solo5's test unikernel `test` (`hello` for `test_hello`) for `plat`.
    fn solo5_test(&self, plat: Plat, test: &str) -> String {
        path_str(
            &self
                .solo5
                .join(format!("tests/test_{test}/test_{test}.{}", plat.name())),
        )
    }

    /// A path in the temporary directory.
    fn temp(&self, name: &str) -> PathBuf {
        self.tmp.0.join(name)
    }

    /// `s` with the Solo5 tree shown as `$SOLO5`, the temporary directory
    /// as `$TMP` and workspace paths relative to the workspace.
    fn show(&self, s: &str) -> String {
        s.replace(&path_str(&self.tmp.0), "$TMP")
            .replace(&path_str(&self.solo5), "$SOLO5")
            .replace(&format!("{}/", path_str(&self.root)), "")
    }

    /// The command line of `case` as shown in the table (Markdown), with
    /// `TENDER` for the tender and its network peer if any; long runs of
    /// `--block:` options are elided.
    fn show_case(&self, case: &Case) -> String {
        let blocks = case
            .argv
            .iter()
            .filter(|a| a.starts_with("--block:"))
            .count();
        let mut parts = vec!["TENDER".to_string()];
        let mut seen_blocks = 0;
        for a in &case.argv {
            if blocks > 4 && a.starts_with("--block:") {
                seen_blocks += 1;
                if seen_blocks == 2 {
                    parts.push("…".into());
                }
                if seen_blocks != 1 && seen_blocks != blocks {
                    continue;
                }
            }
            parts.push(self.show(a));
        }
        let mut shown = format!("`{}`", parts.join(" "));
        if let Some(peer) = &case.peer {
            write!(
                shown,
                " in a new network namespace with {} at 10.0.0.1/24; after 1 s, in it: `{}`",
                peer.tap,
                peer.argv.join(" ")
            )
            .unwrap();
        }
        shown
    }
}

/// `p` as a string (paths here are UTF-8).
fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Morgana's images, with the arguments and expectations of the
/// integration tests (`tests/harness/tests/`).
fn morgana_cases(env: &Env) -> Vec<Case> {
    let mut v = Vec::new();
    for plat in [Plat::Hvt, Plat::Spt] {
        let c = |name: &str, argv: Vec<String>| Case::new(Origin::Morgana, plat, name, argv);
        let img = |n: &str| env.image(plat, n);
        v.push(
            c(
                "hello",
                vec![
                    "--".into(),
                    img("hello"),
                    "a".into(),
                    "b".into(),
                    "c".into(),
                ],
            )
            .seen("Hello, world")
            .seen("Command line: a b c"),
        );
        for status in [0, 7, 254] {
            v.push(
                c(
                    &format!("t-exit {status}"),
                    vec!["--".into(), img("t-exit"), status.to_string()],
                )
                .status(status)
                .seen(format!("exiting with {status}")),
            );
        }
        v.push(
            c("t-panic", vec!["--".into(), img("t-panic")])
                .status(255)
                .seen("morgana: panic: deliberate panic 42 at tests/kernels/src/bin/t-panic.rs"),
        );
        for (mode, cr2) in [("unmapped", "cr2=0x8 "), ("high", "cr2=0x1000000000 ")] {
            let case = c(
                &format!("t-fault {mode}"),
                vec!["--".into(), img("t-fault"), mode.into()],
            )
            .not_seen("did not fault");
            v.push(match plat {
                // The guest's own #PF handler reports the trap and aborts.
                Plat::Hvt => case
                    .status(255)
                    .seen("morgana: trap: #PF page fault")
                    .seen(cr2),
                // A process: the kernel delivers SIGSEGV.
                Plat::Spt => case.status(139),
            });
        }
        v.push(
            c(
                "t-fault text",
                vec!["--".into(), img("t-fault"), "text".into()],
            )
            .status(if plat == Plat::Hvt { 1 } else { 139 })
            .not_seen("did not fault"),
        );
        let mut time = c("t-time", vec!["--".into(), img("t-time")]);
        for after in ["time: yield end after ", "time: sleep end after "] {
            time.checks.push(Check::Millis {
                after,
                lo: 100,
                hi: 120,
            });
        }
        v.push(time.seen("time: wall clock"));
        for ss in [512usize, 4096] {
            const SIZE: u64 = 4 << 20;
            let disk = env.temp(&format!("t-block-{}-{ss}.img", plat.name()));
            let mut case = c(
                &format!("t-block {ss}"),
                vec![
                    format!("--block:storage={}", path_str(&disk)),
                    format!("--block-sector-size:storage={ss}"),
                    "--".into(),
                    img("t-block"),
                ],
            )
            .seen(format!(
                "block: {} sectors written and read back",
                SIZE / ss as u64
            ))
            .seen("block: scheduled read of 8 sectors OK")
            .seen("block: misaligned write: EINVAL");
            case = match plat {
                // Then raw hypercalls that bypass the guest's own checks.
                Plat::Hvt => {
                    case.solo5_status = Some(3);
                    case.note(
                        "`t-block` on hvt ends with raw BLOCK_READ/BLOCK_WRITE hypercalls that bypass the \
                         guest's own checks (misaligned offset, short read, misaligned write, out of range), \
                         and exits 3 unless the tender refuses each with EINVAL. `morgana-hvt` refuses all of \
                         them; `solo5-hvt` checks only the range in the tender (alignment and length are \
                         checked by Solo5's guest bindings, `bindings/hvt/block.c`, before the hypercall) and \
                         performs the misaligned read, so t-block stops at `block: tender: misaligned offset: \
                         expected EINVAL, got 0`. Everything before that (every sector written and read back, \
                         scheduled reads, the guest-side EINVALs, the pattern on disk) is the same. Morgana's \
                         tender is stricter than Solo5's (it enforces the ABI's one-aligned-block rule \
                         itself); no guest using the ABI as specified can tell.",
                    )
                }
                Plat::Spt => case.seen("block: OK"),
            };
            case.disks.push(Disk {
                path: disk,
                size: SIZE,
            });
            case.checks.push(Check::Pattern {
                disk: 0,
                sector: ss,
            });
            v.push(case);
        }
        // A frame arriving (the ARP request of a ping) ends a yield early.
        let mut wake = c(
            "t-netwake",
            vec!["--net:service=tap100".into(), "--".into(), img("t-netwake")],
        )
        .seen("ready_set=0x2");
        wake.checks.push(Check::Millis {
            after: "netwake: woke after ",
            lo: 300,
            hi: 3000,
        });
        wake.peer = Some(Peer {
            tap: "tap100",
            argv: ["ping", "-c", "3", "10.0.0.2"].map(String::from).to_vec(),
        });
        v.push(wake);
        if plat == Plat::Hvt {
            for mode in [
                "data-past-end",
                "len-overflow",
                "arg-past-end",
                "arg-straddles-end",
                "cookie-past-end",
                "arg-read-only",
            ] {
                let mut case = c(
                    &format!("t-wild {mode}"),
                    vec!["--mem=32".into(), "--".into(), img("t-wild"), mode.into()],
                )
                .status(1)
                .seen(format!("wild: {mode}"))
                .not_seen("the tender accepted it");
                if mode == "arg-read-only" {
                    case.solo5_status = Some(139);
                    case = case.note(
                        "`t-wild arg-read-only` hands the tender a WALLTIME argument in the image's read-only \
                         data. `morgana-hvt` refuses it (invalid guest access, status 1); `solo5-hvt` writes the \
                         time there, through its own mapping of that page which it made read-only when loading \
                         the image, and dies of SIGSEGV in its WALLTIME handler (status 139). Either way the \
                         guest is stopped and nothing outside it is written; Morgana's tender stops it with an \
                         error instead of crashing.",
                    );
                }
                v.push(case);
            }
        }
    }
    v
}

/// Solo5's test unikernels, with the arguments and expectations of Solo5's
/// `tests/tests.bats` (`--mem=4096` on hvt, `--mem=2` on spt).
fn solo5_cases(env: &Env) -> Vec<Case> {
    let mut v = Vec::new();
    for plat in [Plat::Hvt, Plat::Spt] {
        let mem = match plat {
            Plat::Hvt => "--mem=4096",
            Plat::Spt => "--mem=2",
        };
        // A case running `test_NAME` with tender options `opts`, then (if
        // `dashes`) `--`, the image and `args`.
        let c = |name: &str, test: &str, opts: &[String], dashes: bool, args: &[&str]| {
            let mut argv = vec![mem.to_string()];
            argv.extend(opts.iter().cloned());
            if dashes {
                argv.push("--".into());
            }
            argv.push(env.solo5_test(plat, test));
            argv.extend(args.iter().map(|a| a.to_string()));
            Case::new(Origin::Solo5, plat, name, argv)
        };
        let hvt = plat == Plat::Hvt;
        // expect_success / expect_abort / a segfault, as tests.bats says.
        let success = |case: Case| case.status(0).seen("SUCCESS");
        let abort = |case: Case| case.status(255).seen("ABORT");
        let segv = |case: Case| case.status(139);

        v.push(success(c("hello", "hello", &[], false, &["Hello_Solo5"])));
        v.push(success(c("quiet", "quiet", &[], true, &["--solo5:quiet"])).not_seen("Solo5:"));
        v.push(c("output", "output", &[], false, &["Output_Solo5"]));
        v.push(success(c("globals", "globals", &[], false, &[])));
        for t in ["exception", "zeropage", "notls"] {
            let case = c(t, t, &[], false, &[]);
            v.push(if hvt { abort(case) } else { segv(case) });
        }
        if hvt {
            v.push(
                c("xnow", "xnow", &[], false, &[])
                    .status(1)
                    .not_seen("FAILURE"),
            );
        } else {
            for t in ["xnow", "wnox"] {
                v.push(segv(c(t, t, &[], false, &[])));
            }
        }
        v.push(success(c("tls", "tls", &[], false, &[])));
        v.push(abort(c("ssp", "ssp", &[], false, &[])));
        let fpu = success(c("fpu", "fpu", &[], false, &[]));
        v.push(if hvt {
            fpu.note(
                "`fpu` on hvt: where /dev/kvm is a nested KVM that emulates guest instructions (see the \
                 README, \"This machine's KVM\"), the guest's SSE instructions end the VM with a KVM \
                 internal error on both tenders (status 1 instead of 0). On hardware KVM both succeed.",
            )
        } else {
            fpu
        });
        v.push(success(c("time", "time", &[], false, &[])));
        if !hvt {
            v.push(
                c("seccomp", "seccomp", &[], false, &[])
                    .status(159)
                    .not_seen("FAILURE"),
            );
        }
        // Block devices: a 4 MiB disk, then disks the tenders must refuse.
        let p = plat.name();
        for (name, size, ss, status) in [
            ("blk", 4u64 << 20, None, 0),
            ("blk 4096", 4 << 20, Some(4096), 0),
            ("blk misaligned", 3 * 2048, Some(4096), 1),
            ("blk odd", 3 * 521, Some(521), 1),
            ("blk too small", 256, Some(256), 1),
        ] {
            let disk = env.temp(&format!("storage-{p}-{}.img", name.replace(' ', "-")));
            let mut opts = vec![format!("--block:storage={}", path_str(&disk))];
            if let Some(ss) = ss {
                opts.push(format!("--block-sector-size:storage={ss}"));
            }
            let mut case = c(name, "blk", &opts, true, &[]);
            case = if status == 0 {
                success(case)
            } else {
                case.status(status).not_seen("SUCCESS")
            };
            case.disks.push(Disk { path: disk, size });
            v.push(case);
        }
        // 63 devices: the most a manifest holds.
        let mut opts = Vec::new();
        let mut disks = Vec::new();
        for n in 0..63 {
            let disk = env.temp(&format!("storage{n}-{p}.img"));
            opts.push(format!("--block:storage{n}={}", path_str(&disk)));
            disks.push(Disk {
                path: disk,
                size: 4096,
            });
        }
        let mut case = success(c("mft_maxdevices", "mft_maxdevices", &opts, true, &[]));
        case.disks = disks;
        v.push(case);
        if hvt {
            let bad = Case::new(
                Origin::Solo5,
                plat,
                "buggyelf",
                vec![
                    mem.to_string(),
                    path_str(&env.solo5.join("tests/test_buggyelf/buggyelf.hvt")),
                ],
            )
            .status(1)
            .not_seen("SUCCESS");
            v.push(bad);
        }
        // Network: test_net answers a flood of pings, in a namespace of our own.
        v.push(net_case(env, plat, mem));
    }
    v
}

/// Solo5's `test_net limit`: answers 100,000 flood pings then succeeds.
fn net_case(env: &Env, plat: Plat, mem: &str) -> Case {
    let mut case = Case::new(
        Origin::Solo5,
        plat,
        "net",
        vec![
            mem.to_string(),
            "--net:service0=tap100".into(),
            "--".into(),
            env.solo5_test(plat, "net"),
            "limit".into(),
        ],
    )
    .status(0)
    .seen("SUCCESS");
    case.peer = Some(Peer {
        tap: "tap100",
        argv: ["ping", "-fq", "-c", "100000", "10.0.0.2"]
            .map(String::from)
            .to_vec(),
    });
    // 100,000 pings take two minutes on a nested KVM.
    case.timeout = Duration::from_secs(300);
    case
}

/// Starts `cmd` in a process group of its own, output captured.
fn spawn(cmd: &mut Command) -> std::io::Result<Child> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
}

/// Kills the process group of `child` (which [`spawn`] started) and reaps
/// the child.
fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Reads `r` to the end on a thread.
fn reader(r: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs `cmd` to completion, killed after `limit`, output captured; with a
/// peer, starts it a second in and stops it when `cmd` ends.
fn execute(mut cmd: Command, limit: Duration, mut peer: Option<Command>) -> Run {
    let start = Instant::now();
    let mut child = match spawn(&mut cmd) {
        Ok(c) => c,
        Err(e) => {
            return Run {
                status: Status::Failed(format!("cannot start {}: {e}", crate::show(&cmd))),
                stdout: String::new(),
                stderr: String::new(),
                elapsed: start.elapsed(),
            };
        }
    };
    let out = reader(child.stdout.take());
    let err = reader(child.stderr.take());
    let mut peer_child = None;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => {
                break Status::Exit(s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)));
            }
            Ok(None) => {}
            Err(e) => {
                kill_group(&mut child);
                break Status::Failed(format!("wait: {e}"));
            }
        }
        if start.elapsed() > limit {
            kill_group(&mut child);
            break Status::Timeout;
        }
        if start.elapsed() > Duration::from_secs(1)
            && let Some(mut p) = peer.take()
        {
            peer_child = spawn(p.stdout(Stdio::null()).stderr(Stdio::null())).ok();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if let Some(mut p) = peer_child {
        kill_group(&mut p);
    }
    // Output pipes close when the group is gone.
    Run {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed: start.elapsed(),
    }
}

/// Runs `case` on the tender of `origin`.
fn run_on(env: &Env, case: &Case, origin: Origin) -> Result<Run> {
    for d in &case.disks {
        let f = std::fs::File::create(&d.path)
            .with_context(|| format!("cannot create {}", d.path.display()))?;
        f.set_len(d.size)?;
    }
    let tender = path_str(&env.tender(origin, case.plat));
    let run = match &case.peer {
        None => {
            let mut cmd = Command::new(&tender);
            cmd.args(&case.argv).current_dir(&env.tmp.0);
            execute(cmd, case.timeout, None)
        }
        Some(peer) => {
            let ns = Netns::new(peer.tap, "10.0.0.1/24")?;
            let mut cmd = ns.command(&tender);
            cmd.args(&case.argv).current_dir(&env.tmp.0);
            let mut p = ns.command(&peer.argv[0]);
            p.args(&peer.argv[1..]);
            execute(cmd, case.timeout, Some(p))
        }
    };
    Ok(run)
}

/// Runs `case` on both tenders and compares.
fn compare(env: &Env, case: Case) -> Result<Row> {
    let solo5 = run_on(env, &case, Origin::Solo5)?;
    let disks: Vec<PathBuf> = case.disks.iter().map(|d| d.path.clone()).collect();
    let solo5_checks: Vec<bool> = case
        .checks
        .iter()
        .map(|c| c.holds(&solo5, &disks))
        .collect();
    let morgana = run_on(env, &case, Origin::Morgana)?;
    let morgana_checks: Vec<bool> = case
        .checks
        .iter()
        .map(|c| c.holds(&morgana, &disks))
        .collect();
    let verdict = if solo5.status == morgana.status && solo5_checks == morgana_checks {
        Verdict::Same
    } else if solo5_checks == morgana_checks
        && case
            .solo5_status
            .is_some_and(|s| solo5.status == Status::Exit(s))
        && morgana.status == Status::Exit(case.status)
    {
        Verdict::Expected
    } else {
        Verdict::Different
    };
    Ok(Row {
        case,
        solo5,
        morgana,
        solo5_checks,
        morgana_checks,
        verdict,
    })
}

/// Whether `row` went exactly as expected on both tenders.
fn as_expected(row: &Row) -> bool {
    let want = Status::Exit(row.case.status);
    row.solo5.status == want
        && row.morgana.status == want
        && row.solo5_checks.iter().all(|&b| b)
        && row.morgana_checks.iter().all(|&b| b)
}

/// What `cmd` printed (standard output, then standard error; trimmed) if it
/// succeeded, or an empty string.
fn output_of(cmd: Command) -> String {
    let r = execute(cmd, TIMEOUT, None);
    match r.status {
        Status::Exit(0) => format!("{}\n{}", r.stdout.trim(), r.stderr.trim())
            .trim()
            .to_string(),
        _ => String::new(),
    }
}

/// Solo5's commit and version: `commit 469c1a8 (v0.12.1-7-g469c1a8)`, from
/// `git` in the tree and the tender's `--version` (printed on standard
/// error).
fn solo5_version(env: &Env) -> String {
    let mut git = Command::new("git");
    git.arg("-C")
        .arg(&env.solo5)
        .args(["rev-parse", "--short", "HEAD"]);
    let commit = output_of(git);
    let mut tender = Command::new(env.tender(Origin::Solo5, Plat::Hvt));
    tender.arg("--version");
    let version = output_of(tender)
        .lines()
        .find_map(|l| l.split(" version ").nth(1).map(str::trim))
        .unwrap_or("")
        .to_string();
    match (commit.is_empty(), version.is_empty()) {
        (false, false) => format!("commit {commit} ({version})"),
        (false, true) => format!("commit {commit}"),
        (true, false) => format!("version {version}"),
        (true, true) => "of unknown version".into(),
    }
}

/// The header's date, commits and machine lines.
fn machine(env: &Env) -> String {
    let sh = |c: &str| {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", c]).current_dir(&env.root);
        output_of(cmd)
    };
    let date = sh("date -u +%Y-%m-%dT%H:%MZ");
    let commit = sh("git rev-parse --short HEAD");
    let dirty = if sh("git status --porcelain --untracked-files=no").is_empty() {
        ""
    } else {
        " (with uncommitted changes)"
    };
    let cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2");
    let kernel = sh("uname -r");
    format!(
        "Run {date} at Morgana commit {commit}{dirty} against Solo5 {} on {cpu}, {} cores, Linux {kernel}.\n",
        solo5_version(env),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}

/// A table cell for one run: status and check outcome.
fn cell(run: &Run, checks: &[bool], case: &Case) -> String {
    let failed: Vec<String> = checks
        .iter()
        .zip(&case.checks)
        .filter(|(ok, _)| !**ok)
        .map(|(_, c)| c.describe())
        .collect();
    if case.checks.is_empty() {
        format!("{}", run.status)
    } else if failed.is_empty() {
        format!("{}, ✓", run.status)
    } else {
        format!("{}, ✗ {}", run.status, failed.join(", "))
    }
}

/// Renders COMPAT.md.
fn render(env: &Env, rows: &[Row], skipped: &[String]) -> Result<String> {
    let mut out = String::from(
        "# Solo5 compatibility\n\n\
         Written by `cargo xtask compat SOLO5_DIR` (do not edit by hand), with SOLO5_DIR a Solo5 source\n\
         tree built with `./configure.sh && make` (shown as `$SOLO5`).\n\n",
    );
    out.push_str(&machine(env));
    let n = |v: Verdict| rows.iter().filter(|r| r.verdict == v).count();
    write!(
        out,
        "\n{} cases: {} the same on both tenders, {} different in a known way (see the notes), {} different.\n",
        rows.len(),
        n(Verdict::Same),
        n(Verdict::Expected),
        n(Verdict::Different)
    )?;
    out.push_str(
        "\nEach case runs on Solo5's tender and on Morgana's (`TENDER` in the command: `$SOLO5/tenders/P/solo5-P`\n\
         or `target/release/morgana-P`), with fresh disk images, a time limit and its output captured\n\
         (`$TMP` is a temporary directory). A cell gives the exit status (`128 + signal` when killed by a\n\
         signal) and whether every output check held (✓) or which did not (✗). A case is the same when\n\
         both tenders give the same status and the same check outcomes; the tenders' own error messages\n\
         are not compared, since Solo5's wording differs from Morgana's.\n",
    );
    let mut notes: Vec<String> = Vec::new();
    for (origin, title, intro) in [
        (
            Origin::Morgana,
            "Morgana's images on Solo5's tenders",
            "Images from `target/unikernels/`, with the arguments and expectations of the integration\n\
             tests (`tests/harness/tests/`).",
        ),
        (
            Origin::Solo5,
            "Solo5's test unikernels on Morgana's tenders",
            "Solo5's tests from `$SOLO5/tests/`, with the arguments and expected statuses and output of\n\
             Solo5's own `tests/tests.bats`.",
        ),
    ] {
        write!(
            out,
            "\n## {title}\n\n{intro}\n\n| platform | case | command | expected | Solo5's tender | Morgana's tender | verdict |\n\
             |---|---|---|---|---|---|---|\n"
        )?;
        for row in rows.iter().filter(|r| r.case.origin == origin) {
            let case = &row.case;
            let mut expected = case.status.to_string();
            for c in &case.checks {
                write!(expected, ", {}", c.describe())?;
            }
            let mut note_ref = String::new();
            if row.verdict != Verdict::Same || !as_expected(row) {
                let text = match case.note {
                    Some(t) => t.to_string(),
                    None => format!(
                        "`{}` on {}: not as expected; the output of both runs is under \"Details\".",
                        case.name,
                        case.plat.name()
                    ),
                };
                let i = match notes.iter().position(|t| *t == text) {
                    Some(i) => i,
                    None => {
                        notes.push(text);
                        notes.len() - 1
                    }
                };
                note_ref = format!(" (note {})", i + 1);
            }
            let verdict = match row.verdict {
                Verdict::Same => format!("same{note_ref}"),
                Verdict::Expected => format!("different, known{note_ref}"),
                Verdict::Different => format!("**DIFFERENT**{note_ref}"),
            };
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                case.plat.name(),
                case.name,
                env.show_case(case),
                expected,
                cell(&row.solo5, &row.solo5_checks, case),
                cell(&row.morgana, &row.morgana_checks, case),
                verdict
            )?;
        }
    }
    out.push_str("\n## Notes\n\n");
    let general = [
        "Tenders' own messages differ (Solo5: `solo5-hvt: hvt/hvt_core.c:141: Invalid guest access: ...`, \
         Morgana: `morgana-hvt: invalid guest access: PUTS data: ...`); guest output is identical, since it \
         comes from the image. Only statuses and the checks listed are compared."
            .to_string(),
        "Where tests.bats also checks a message of Solo5's tender, only the status is compared (with the \
         check that the test did not report SUCCESS or FAILURE): `xnow` on hvt (`host/guest translation \
         fault`, which `solo5-hvt` prints when KVM_RUN fails with EFAULT; on a KVM that reports the write \
         as an MMIO exit instead it prints `KVM: unhandled exit: exit_reason=0x6`), `blk misaligned`, \
         `blk odd`, `blk too small` (`Backing storage size must be block aligned`, `Block size must be a \
         multiple of 2 ...`) and `buggyelf` (`note does not fall within valid size`)."
            .to_string(),
        "On spt a guest killed by a signal ends `solo5-spt` itself (the guest is the tender process), while \
         `morgana-spt` forks and exits with `128 + signal` for its child: both read as 139 (SIGSEGV) or 159 \
         (SIGSYS) here."
            .to_string(),
    ];
    for (i, t) in notes.iter().chain(&general).chain(skipped).enumerate() {
        writeln!(out, "{}. {t}", i + 1)?;
    }
    let odd: Vec<&Row> = rows
        .iter()
        .filter(|r| r.verdict != Verdict::Same || !as_expected(r))
        .collect();
    if !odd.is_empty() {
        out.push_str(
            "\n## Details\n\nThe last lines of output (Solo5's banner left out) of the cases above that differ or\n\
             did not go as expected.\n",
        );
        for row in odd {
            let p = row.case.plat.name();
            write!(out, "\n{} `{}`:\n\n```text\n", p, row.case.name)?;
            for (who, run) in [
                (format!("solo5-{p}"), &row.solo5),
                (format!("morgana-{p}"), &row.morgana),
            ] {
                writeln!(
                    out,
                    "{who} (status {}, {:.1} s):",
                    run.status,
                    run.elapsed.as_secs_f64()
                )?;
                for l in run.tail(3) {
                    writeln!(out, "  {l}")?;
                }
            }
            out.push_str("```\n");
        }
    }
    Ok(out)
}

/// `cargo xtask compat SOLO5_DIR`.
pub fn run(args: &[String]) -> Result<()> {
    let [dir] = args else {
        bail!(
            "usage: cargo xtask compat SOLO5_DIR (a Solo5 source tree built with ./configure.sh && make)"
        );
    };
    let solo5 =
        std::fs::canonicalize(dir).with_context(|| format!("SOLO5_DIR {dir} does not exist"))?;
    let root = root();
    for p in [Plat::Hvt, Plat::Spt] {
        let t = solo5.join(format!("tenders/{0}/solo5-{0}", p.name()));
        if !t.is_file() {
            bail!(
                "{dir} has no {}: give a Solo5 source tree built with ./configure.sh && make",
                t.strip_prefix(&solo5).unwrap_or(&t).display()
            );
        }
    }
    if !crate::is_root() {
        bail!("the compatibility checks need root (KVM, network namespaces, taps): run as root");
    }
    if let Err(e) = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        bail!("the hvt checks need KVM, and /dev/kvm cannot be opened: {e}");
    }
    for p in ["target/release/morgana-hvt", "target/release/morgana-spt"] {
        if !root.join(p).is_file() {
            bail!("{p} is missing: build the tenders with `cargo xtask build`");
        }
    }
    let env = Env {
        root,
        solo5,
        tmp: TempDir::new()?,
    };
    let mut cases = morgana_cases(&env);
    cases.extend(solo5_cases(&env));
    for case in &cases {
        // Every argument that is an image path (in the Solo5 tree or among
        // Morgana's images) must name an existing file.
        for a in &case.argv {
            let p = Path::new(a);
            if (a.starts_with(&path_str(&env.solo5)) || a.contains("/target/unikernels/"))
                && !p.is_file()
            {
                bail!(
                    "{} is missing: build it (`cargo xtask build` for Morgana's images, make in SOLO5_DIR for Solo5's)",
                    env.show(a)
                );
            }
        }
    }
    let skipped = vec![
        "Not run: Solo5's `net_2if`, `net_mtu` and `net_ring` (more taps and MTUs than this check sets up), \
         `dumpcore` (needs `solo5-hvt-debug`), the OpenBSD-only `rnow`, `xnor`, `rnox`, `wnox` on hvt, \
         tests for other targets (virtio, xen, elftool), and Morgana's `t-echo` (its peer sends and checks \
         raw Ethernet frames; the integration tests run it on Morgana's tenders)."
            .to_string(),
    ];
    let mut rows = Vec::new();
    for case in cases {
        eprint!(
            "compat: {:<6} {} {:<28} ",
            match case.origin {
                Origin::Morgana => "morgana",
                Origin::Solo5 => "solo5",
            },
            case.plat.name(),
            case.name
        );
        let row = compare(&env, case)?;
        eprintln!(
            "solo5 {:<8} morgana {:<8} {}",
            row.solo5.status.to_string(),
            row.morgana.status.to_string(),
            match row.verdict {
                Verdict::Same => "same",
                Verdict::Expected => "different (known)",
                Verdict::Different => "DIFFERENT",
            }
        );
        rows.push(row);
    }
    let text = render(&env, &rows, &skipped)?;
    let path = env.root.join("COMPAT.md");
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("compat: wrote {}", path.display());
    let different: Vec<String> = rows
        .iter()
        .filter(|r| r.verdict == Verdict::Different)
        .map(|r| format!("{} {}", r.case.plat.name(), r.case.name))
        .collect();
    if !different.is_empty() {
        bail!(
            "{} case(s) differ unexpectedly between Solo5's and Morgana's tenders: {} (see COMPAT.md)",
            different.len(),
            different.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_pattern_is_t_blocks() {
        let mut disk = vec![0u8; 2 * 512];
        for (i, word) in disk.chunks_exact_mut(8).enumerate() {
            let (s, w) = (i / 64, i % 64);
            word.copy_from_slice(&(((s as u64) << 32) | w as u64).to_le_bytes());
        }
        assert!(has_block_pattern(&disk, 512));
        assert!(!has_block_pattern(&disk, 1024));
        disk[600] ^= 1;
        assert!(!has_block_pattern(&disk, 512));
    }

    #[test]
    fn runs_are_timed_out_and_captured() {
        let mut c = Command::new("sh");
        c.args(["-c", "echo out; echo err >&2; exec sleep 30"]);
        let r = execute(c, Duration::from_millis(300), None);
        assert!(r.status == Status::Timeout);
        assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("out\n", "err\n"));
        assert!(r.elapsed < Duration::from_secs(5));
        let mut c = Command::new("sh");
        c.args(["-c", "kill -SEGV $$"]);
        assert!(execute(c, TIMEOUT, None).status == Status::Exit(139));
    }
}

//! Helpers for Morgana's integration tests: boot real images on the real
//! tenders (or as unix processes), and build real networks of network
//! namespaces, taps and veth pairs to send real packets through.
//!
//! Images are expected in `target/unikernels/<platform>/<name>` and tenders
//! in `target/release/` (`cargo xtask build` puts them there). Anything
//! missing, and missing root or KVM, fails the test with a message: nothing
//! is skipped.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod net;
pub mod packets;
pub mod site;
pub mod storage;
pub mod tree;

/// A platform images run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    /// `morgana-hvt` (KVM).
    Hvt,
    /// `morgana-spt` (seccomp process).
    Spt,
    /// QEMU `-M microvm` with virtio-mmio devices, through `morgana run`.
    Virtio,
    /// QEMU `-M q35` with virtio-pci devices (the same images as
    /// [`Platform::Virtio`]; not in [`Platform::ALL`]: a subset of the
    /// tests runs on it).
    VirtioPci,
    /// A Linux process.
    Unix,
}

impl Platform {
    /// Every platform, in the order tests run them.
    pub const ALL: [Platform; 4] = [
        Platform::Hvt,
        Platform::Spt,
        Platform::Virtio,
        Platform::Unix,
    ];
    /// The platforms with a tender.
    pub const TENDERS: [Platform; 2] = [Platform::Hvt, Platform::Spt];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hvt => "hvt",
            Self::Spt => "spt",
            Self::Virtio | Self::VirtioPci => "virtio",
            Self::Unix => "unix",
        }
    }

    /// Whether it runs on QEMU.
    pub fn is_virtio(self) -> bool {
        matches!(self, Self::Virtio | Self::VirtioPci)
    }
}

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
    }
}

/// The tender of `p` (`None` for unix; `morgana`, which runs QEMU, for
/// virtio).
pub fn tender(p: Platform) -> Option<PathBuf> {
    let name = match p {
        Platform::Hvt => "morgana-hvt",
        Platform::Spt => "morgana-spt",
        Platform::Virtio | Platform::VirtioPci => "morgana",
        Platform::Unix => return None,
    };
    let path = target_dir().join("release").join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo xtask build`",
        path.display()
    );
    if p == Platform::Hvt {
        require_kvm();
    }
    Some(path)
}

/// The image `name` built for `p`.
pub fn image(p: Platform, name: &str) -> PathBuf {
    let path = target_dir().join("unikernels").join(p.name()).join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the images with `cargo xtask build`",
        path.display()
    );
    path
}

/// The unoptimised image `name` with symbols, built for `p` by `cargo
/// xtask build` (`morgana build --debug`) into
/// `target/unikernels-debug/<platform>/<name>`.
pub fn debug_image(p: Platform, name: &str) -> PathBuf {
    let path = target_dir()
        .join("unikernels-debug")
        .join(p.name())
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the debug images with `cargo xtask build`",
        path.display()
    );
    path
}

/// Fails the test unless /dev/kvm can be opened.
pub fn require_kvm() {
    if let Err(e) = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        panic!("the hvt tests need KVM, and /dev/kvm cannot be opened: {e}");
    }
}

/// Fails the test unless running as root (network namespaces, taps).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test needs root (network namespaces and tap devices)");
    }
}

/// The command that boots `name` on `p`: the tender with `opts` and the
/// image, `morgana run --target virtio IMAGE` with `opts` (virtio, on
/// QEMU), or (unix) the program itself with `opts`; then `guest` arguments.
pub fn command(p: Platform, name: &str, opts: &[&str], guest: &[&str]) -> Command {
    let img = image(p, name);
    let mut c = match tender(p) {
        Some(t) if p.is_virtio() => {
            let mut c = Command::new(t);
            c.args(["run", "--target", "virtio"]).arg(img);
            if p == Platform::VirtioPci {
                c.args(["--machine", "q35"]);
            }
            c.args(opts).arg("--");
            c
        }
        Some(t) => {
            let mut c = Command::new(t);
            c.args(opts).arg("--").arg(img);
            c
        }
        None => {
            let mut c = Command::new(img);
            c.args(opts).arg("--");
            c
        }
    };
    c.args(guest);
    c
}

/// How a run ended.
#[derive(Debug)]
pub struct Output {
    /// Exit status; `128 + signal` if killed by a signal.
    pub status: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Wall time from start to exit.
    pub elapsed: Duration,
}

impl Output {
    /// Asserts the status, showing both streams on failure.
    #[track_caller]
    pub fn expect_status(&self, status: i32) -> &Self {
        assert_eq!(
            self.status, status,
            "unexpected exit status\n--- stdout\n{}--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Checks for exit status 1 with exactly one line on stderr containing
    /// `msg`, and no output from the guest.
    #[track_caller]
    pub fn expect_one_line_error(&self, p: Platform, msg: &str) -> &Self {
        self.expect_status(1);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "{p:?}: expected one line, got {:?}",
            self.stderr
        );
        assert!(
            lines[0].contains(msg),
            "{p:?}: {:?} lacks {msg:?}",
            lines[0]
        );
        assert_eq!(self.stdout, "", "{p:?}: the guest must not have run");
        self
    }

    /// Asserts that stdout or stderr contains `s`.
    #[track_caller]
    pub fn expect_output(&self, s: &str) -> &Self {
        assert!(
            self.stdout.contains(s) || self.stderr.contains(s),
            "output lacks {s:?}\n--- stdout\n{}--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

fn status_of(s: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
}

/// Runs `cmd` to completion (killed after `limit`), capturing its output.
pub fn run_command(mut cmd: Command, limit: Duration) -> Output {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let out = reader(child.stdout.take().unwrap());
    let err = reader(child.stderr.take().unwrap());
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let elapsed = start.elapsed();
    Output {
        status: status_of(status),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        elapsed,
    }
}

fn reader(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// Boots `name` on `p` and waits for it (at most 60 s).
pub fn boot(p: Platform, name: &str, opts: &[&str], guest: &[&str]) -> Output {
    run_command(command(p, name, opts, guest), Duration::from_secs(60))
}

/// A running unikernel whose output lines arrive as they are printed.
pub struct Running {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
    seen: Vec<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Running {
    /// Starts `cmd`.
    pub fn start(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send((Instant::now(), l)).is_err() {
                    break;
                }
            }
        });
        let stderr = Some(reader(child.stderr.take().unwrap()));
        Self {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Waits (at most `limit`) for a line containing `s`; returns it and
    /// when it arrived.
    #[track_caller]
    pub fn wait_line(&mut self, s: &str, limit: Duration) -> (Instant, String) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((t, l)) => {
                    self.seen.push(l.clone());
                    if l.contains(s) {
                        return (t, l);
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    let status = self.child.wait().map(status_of).unwrap_or(-1);
                    let err = self
                        .stderr
                        .take()
                        .map(|h| h.join().unwrap())
                        .unwrap_or_default();
                    panic!(
                        "no line containing {s:?} within {limit:?} (exit status {status})\n--- stdout\n{}\n--- stderr\n{err}",
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits (at most `limit`) for the process to exit; returns its status,
    /// the rest of its stdout, and its stderr.
    pub fn finish(mut self, limit: Duration) -> Output {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break status_of(s);
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "process did not exit within {limit:?}\n--- stdout\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let mut stdout = self.seen.join("\n");
        while let Ok((_, l)) = self.lines.recv_timeout(Duration::from_millis(200)) {
            stdout.push('\n');
            stdout.push_str(&l);
        }
        stdout.push('\n');
        Output {
            status,
            stdout,
            stderr: self
                .stderr
                .take()
                .map(|h| h.join().unwrap())
                .unwrap_or_default(),
            elapsed: start.elapsed(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary file that is removed when dropped.
pub struct TempFile(pub PathBuf);

impl TempFile {
    /// A new file of `len` zero bytes.
    pub fn zeroed(len: u64) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "morgana-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let f = std::fs::File::create(&p).expect("create temp file");
        f.set_len(len).expect("size temp file");
        Self(p)
    }

    /// A new file with `bytes`.
    pub fn with(bytes: &[u8]) -> Self {
        let f = Self::zeroed(0);
        std::fs::write(&f.0, bytes).expect("write temp file");
        f
    }

    /// Its path as a string.
    pub fn path(&self) -> &str {
        self.0.to_str().expect("UTF-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

//! `morgana new`: for each template, a crate created in an empty temporary
//! directory outside the repository is built for hvt, spt and unix with
//! `morgana build`, run with `morgana run` on each (HTTP checked with curl,
//! behind a tap for hvt and spt, on host sockets for unix), and its own
//! tests pass under `morgana test`. Bad input: a non-empty directory.
//!
//! The crates share one target directory (`target/new-test`) so Morgana's
//! crates are compiled once per platform.

use morgana_tests::net::Netns;
use morgana_tests::storage::TempDir;
use morgana_tests::{Platform, Running, run_command, target_dir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The platforms a new crate is built for and run on here.
const PLATFORMS: [Platform; 3] = [Platform::Hvt, Platform::Spt, Platform::Unix];

fn morgana() -> PathBuf {
    let p = target_dir().join("release/morgana");
    assert!(
        p.is_file(),
        "{} is missing: build it with `cargo xtask build`",
        p.display()
    );
    p
}

/// `morgana ARGS` in `dir`, with the shared target directory.
fn cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(morgana());
    c.current_dir(dir)
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir().join("new-test"));
    c
}

/// Creates crate `name` from `template` in a fresh directory and builds it
/// for every platform; returns the directory holding it and its path.
fn create_and_build(template: &str, name: &str) -> (TempDir, PathBuf) {
    let tmp = TempDir::new(template);
    let o = run_command(
        cmd(&tmp.0, &["new", name, "--template", template]),
        Duration::from_secs(30),
    );
    o.expect_status(0);
    let dir = tmp.0.join(name);
    for f in ["Cargo.toml", "README.md", "src/main.rs", "tests/boot.rs"] {
        assert!(dir.join(f).is_file(), "{template}: no {f}");
    }
    let toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(toml.contains("morgana = { path = \"/"), "{toml}");
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    for c in ["morgana build", "morgana run", "morgana test"] {
        assert!(readme.contains(c), "{template}: README lacks {c}");
    }
    let o = run_command(
        cmd(
            &dir,
            &[
                "build", "--target", "hvt", "--target", "spt", "--target", "unix",
            ],
        ),
        Duration::from_secs(1800),
    );
    o.expect_status(0);
    for p in PLATFORMS {
        o.expect_output(&format!("{} {name}", p.name()));
    }
    (tmp, dir)
}

/// `morgana test` in `dir` for `targets`.
fn self_test(dir: &Path, targets: &[&str]) {
    let mut args = vec!["test"];
    for t in targets {
        args.extend(["--target", t]);
    }
    let o = run_command(cmd(dir, &args), Duration::from_secs(1800));
    o.expect_status(0);
    o.expect_output("test result: ok. 1 passed");
}

fn run_args(p: Platform, name: &str, rest: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "run".into(),
        "--target".into(),
        p.name().into(),
        name.into(),
    ];
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

#[test]
fn hello_template() {
    let (_tmp, dir) = create_and_build("hello", "greeter");
    for p in PLATFORMS {
        let args = run_args(p, "greeter", &["--", "one", "two"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run_command(cmd(&dir, &args), Duration::from_secs(60));
        o.expect_status(0);
        o.expect_output(&format!("Hello from greeter on {}", p.name()));
        o.expect_output("Command line: one two");
    }
    self_test(&dir, &["hvt", "spt", "unix"]);
}

#[test]
fn kv_template() {
    let (_tmp, dir) = create_and_build("kv", "counter");
    for p in PLATFORMS {
        let disk = morgana_tests::TempFile::zeroed(1 << 20);
        let block = format!("--block:storage={}", disk.path());
        for n in 1..=2 {
            let args = run_args(p, "counter", &[&block]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            // A new store on an emulated hvt guest takes a while under load.
            let o = run_command(cmd(&dir, &args), Duration::from_secs(300));
            o.expect_status(0);
            o.expect_output(&format!("counter: boot number {n}"));
        }
    }
    self_test(&dir, &["hvt", "spt", "unix"]);
}

/// Boots `name` on `p` in a namespace of its own (hvt and spt behind a tap
/// as 10.0.0.2, unix on host sockets), waits until it listens on 8080, and
/// returns `curl -s URL` for each path.
fn curl_on(p: Platform, dir: &Path, name: &str, paths: &[&str]) -> Vec<String> {
    let ns = Netns::new("new");
    let (opts, host) = if p == Platform::Unix {
        (
            vec!["--net:service=socket", "--", "--port=8080"],
            "127.0.0.1",
        )
    } else {
        ns.add_tap("tap0", Some("10.0.0.1/24"));
        (
            vec![
                "--net:service=tap0",
                "--",
                "--ipv4=10.0.0.2/24",
                "--port=8080",
            ],
            "10.0.0.2",
        )
    };
    // By path: the namespace wrapper keeps neither the directory nor the
    // environment.
    let image = target_dir()
        .join("new-test/unikernels")
        .join(p.name())
        .join(name);
    let args = run_args(p, image.to_str().unwrap(), &opts);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut run = Running::start(ns.wrap(&cmd(dir, &args)));
    run.wait_line("listening on port 8080", Duration::from_secs(60));
    let out = paths
        .iter()
        .map(|path| {
            let o = ns
                .command("curl")
                .args(["-s", "-m", "60", "--retry", "5", "--retry-connrefused"])
                .args(["-w", "%{http_code}"])
                .arg(format!("http://{host}:8080{path}"))
                .output()
                .expect("curl");
            String::from_utf8_lossy(&o.stdout).into_owned()
        })
        .collect();
    assert!(run.is_running(), "{p:?}");
    out
}

#[test]
fn http_template() {
    let (_tmp, dir) = create_and_build("http", "web");
    for p in PLATFORMS {
        let r = curl_on(p, &dir, "web", &["/", "/hello/curl", "/nope"]);
        assert!(
            r[0].contains("<h1>Hello from web</h1>") && r[0].ends_with("200"),
            "{p:?}: {}",
            r[0]
        );
        assert_eq!(r[1], "Hello, curl!\n200", "{p:?}");
        assert!(r[2].ends_with("404"), "{p:?}: {}", r[2]);
    }
    self_test(&dir, &["unix"]);
}

#[test]
fn website_template() {
    let (_tmp, dir) = create_and_build("website", "site");
    let index = std::fs::read_to_string(dir.join("site/index.html")).unwrap();
    let css = std::fs::read_to_string(dir.join("site/style.css")).unwrap();
    for p in PLATFORMS {
        let r = curl_on(p, &dir, "site", &["/", "/style.css", "/missing"]);
        assert_eq!(r[0], format!("{index}200"), "{p:?}");
        assert_eq!(r[1], format!("{css}200"), "{p:?}");
        assert!(r[2].ends_with("404"), "{p:?}: {}", r[2]);
    }
    self_test(&dir, &["unix"]);
}

#[test]
fn new_refuses_a_non_empty_directory_and_leaves_it_alone() {
    let tmp = TempDir::new("full");
    let dir = tmp.0.join("taken");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let o = run_command(cmd(&tmp.0, &["new", "taken"]), Duration::from_secs(30));
    o.expect_status(1);
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{:?}", o.stderr);
    assert!(lines[0].contains("is not empty"), "{}", lines[0]);
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "mine"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    // And a name that is not a crate name.
    let o = run_command(cmd(&tmp.0, &["new", "2fast"]), Duration::from_secs(30));
    o.expect_status(1);
    assert_eq!(o.stderr.lines().count(), 1, "{:?}", o.stderr);
    assert!(!tmp.0.join("2fast").exists());
}

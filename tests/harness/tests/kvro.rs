//! The read-only stores (morgana-kv-ro) on every platform: every file of
//! the test directory (an empty file, a 3 MiB file, nested paths,
//! non-ASCII names) reads back identical from the store baked into t-kvro
//! at build time and from a tar archive of the same directory on a block
//! device (GNU and pax formats); an unknown key gives the unknown-key
//! error; a device that is not a tar archive is refused with one line.

use morgana_tests::storage::{TempDir, test_tree, tool, walk_lines};
use morgana_tests::{Platform, TempFile, command, run_command};
use std::time::Duration;

/// Checks for exit status 1 and one line of output in all containing
/// `msg` (on hvt the guest prints it on its console, elsewhere the
/// process on stderr).
#[track_caller]
fn one_line_error(o: &morgana_tests::Output, p: Platform, msg: &str) {
    o.expect_status(1);
    let all = format!("{}{}", o.stdout, o.stderr);
    let lines: Vec<&str> = all.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].contains(msg),
        "{p:?}: expected one line with {msg:?}, got {all:?}"
    );
}

/// A tar archive (`--format=gnu` or `pax`) of the test directory.
fn archive(format: &str) -> TempFile {
    let tree = TempDir::new("kvro-tree");
    test_tree(&tree.0);
    let tar = TempFile::zeroed(0);
    tool(
        "tar",
        &[
            &format!("--format={format}"),
            "-C",
            tree.0.to_str().unwrap(),
            "-cf",
            tar.path(),
            ".",
        ],
    );
    tar
}

/// The `F` lines of the test directory.
fn files() -> Vec<String> {
    let tree = TempDir::new("kvro-want");
    test_tree(&tree.0);
    let want: Vec<String> = walk_lines(&tree.0)
        .into_iter()
        .filter(|l| l.starts_with("F "))
        .collect();
    assert_eq!(want.len(), 8, "the test tree changed");
    want
}

/// The lines of `store` in a t-kvro output, without the store's name.
fn lines(stdout: &str, store: &str) -> Vec<String> {
    let prefix = format!("{store} F ");
    let mut v: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix).map(|r| format!("F {r}")))
        .collect();
    v.sort();
    v
}

#[test]
fn baked_and_tar_stores_read_back_the_test_directory() {
    let want = files();
    for p in Platform::ALL {
        for format in ["gnu", "pax"] {
            let tar = archive(format);
            // hvt's guest compute is slow here: the two walks hash every
            // byte of both stores, which is the comparison.
            let ops: &[&str] = match p {
                Platform::Hvt => &["walk:baked", "walk:tar", "unknown"],
                _ => &["walk:baked", "walk:tar", "compare", "unknown"],
            };
            let o = run_command(
                command(
                    p,
                    "t-kvro",
                    &[&format!("--block:files={}", tar.path())],
                    ops,
                ),
                Duration::from_secs(600),
            );
            o.expect_status(0);
            assert_eq!(lines(&o.stdout, "baked"), want, "{p:?}: baked");
            assert_eq!(lines(&o.stdout, "tar"), want, "{p:?}: tar {format}");
            if p != Platform::Hvt {
                o.expect_output("compare: 8 keys identical");
            }
            o.expect_output("baked: error unknown key \"no/such/key\"");
            o.expect_output("tar: error unknown key \"no/such/key\"");
            o.expect_output("kvro: unknown: ok");
            if p == Platform::Hvt {
                // One archive format is enough on the slow platform.
                break;
            }
        }
    }
}

#[test]
fn a_device_that_is_not_a_tar_archive_is_refused() {
    for p in Platform::ALL {
        let mut tar = std::fs::read(archive("gnu").path()).unwrap();
        for (bytes, why) in [
            (vec![0u8; 64 << 10], "the device starts with a zero block"),
            (
                vec![0x5au8; 64 << 10],
                "no tar header at the start of the device",
            ),
            (
                {
                    // Cut inside big.bin's data (the first entry's data
                    // follows its header).
                    tar.truncate(1 << 20);
                    tar.clone()
                },
                "the archive is cut short",
            ),
        ] {
            let d = TempFile::with(&bytes);
            let o = run_command(
                command(
                    p,
                    "t-kvro",
                    &[&format!("--block:files={}", d.path())],
                    &["unknown"],
                ),
                Duration::from_secs(120),
            );
            one_line_error(
                &o,
                p,
                &format!(
                    "cannot connect device 'files': the device does not hold a tar archive ({why}"
                ),
            );
            assert!(bytes == std::fs::read(&d.0).unwrap(), "{p:?}: modified");
        }
    }
}

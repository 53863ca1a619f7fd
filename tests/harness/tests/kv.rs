//! The key-value store (morgana-kv) on a real block device, on every
//! platform: values written in one boot are read back in the next ones,
//! with both sector sizes; a device holding other data, a truncated image
//! and a too-small device are refused at boot with one clear line, and
//! left exactly as they were.

use morgana_tests::{Platform, TempFile, boot};

const NOT_A_STORE: &str =
    "cannot connect device 'storage': the device holds data that is not a Morgana key-value store";

fn opts(disk: &TempFile, ss: u64) -> [String; 2] {
    [
        format!("--block:storage={}", disk.path()),
        format!("--block-sector-size:storage={ss}"),
    ]
}

#[test]
fn values_persist_across_boots_with_both_sector_sizes() {
    let boots: [(&[&str], &str); 4] = [
        (&["write:1"], "(created)"),
        (&["check:1", "write:2"], "(opened)"),
        (&["check:2", "drop-odd", "check-even:2"], "(opened)"),
        (&["check-even:2"], "(opened)"),
    ];
    for p in Platform::ALL {
        for ss in [512u64, 4096] {
            let disk = TempFile::zeroed(1 << 20);
            let [b, s] = opts(&disk, ss);
            for (ops, how) in boots {
                let o = boot(p, "t-kv", &[&b, &s], ops);
                o.expect_status(0);
                // 1 MiB less the superblock's 16 KiB page: 63 pages.
                o.expect_output(&format!("kv: 63 pages of 16384 bytes {how}"));
                for op in ops {
                    let n = match *op {
                        "drop-odd" | "check-even:2" => 50,
                        _ => 100,
                    };
                    o.expect_output(&format!("kv: {op}: {n} keys"));
                }
                o.expect_output("kv: ticker ran");
            }
            let bytes = std::fs::read(&disk.0).unwrap();
            assert_eq!(bytes.len(), 1 << 20, "{p:?}: the disk changed size");
            assert_eq!(&bytes[..16], b"MORGANA-KV-STORE", "{p:?}: no superblock");
        }
    }
}

/// Boots t-kv on `disk` and expects a refusal containing `why`, with the
/// disk unchanged.
fn refused(p: Platform, disk: &TempFile, why: &str) {
    let before = std::fs::read(&disk.0).unwrap();
    let [b, s] = opts(disk, 512);
    let o = boot(p, "t-kv", &[&b, &s], &["write:1"]);
    o.expect_status(1);
    o.expect_output(why);
    assert!(
        !o.stdout.contains("kv: write"),
        "{p:?}: the program ran:\n{}",
        o.stdout
    );
    let after = std::fs::read(&disk.0).unwrap();
    assert!(before == after, "{p:?}: the disk was modified");
}

#[test]
fn foreign_truncated_and_small_devices_are_refused_and_untouched() {
    for p in Platform::ALL {
        // Another program's data: pseudo-random bytes.
        let mut x: u32 = 12345;
        let junk: Vec<u8> = (0..1 << 20)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        refused(p, &TempFile::with(&junk), NOT_A_STORE);

        // Zero first sector, data further in (an unpartitioned file system
        // with an empty boot sector).
        let mut fs = vec![0u8; 1 << 20];
        fs[300 << 10] = 0xEF;
        refused(p, &TempFile::with(&fs), NOT_A_STORE);

        // A store whose image was cut short.
        let disk = TempFile::zeroed(1 << 20);
        let [b, s] = opts(&disk, 512);
        boot(p, "t-kv", &[&b, &s], &[]).expect_status(0);
        let mut short = std::fs::read(&disk.0).unwrap();
        short.truncate(512 << 10);
        refused(
            p,
            &TempFile::with(&short),
            "the device has 524288 bytes but the store on it needs 1048576 (truncated image?)",
        );

        refused(
            p,
            &TempFile::zeroed(32 << 10),
            "the device has 32768 bytes, a store needs at least 49152",
        );
    }
}

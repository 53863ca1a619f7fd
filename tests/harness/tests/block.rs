//! Block devices on every platform: a 4 MiB image written and read back
//! sector by sector with 512- and 4096-byte sectors (checked from the host
//! too), and EINVAL for misaligned and out-of-range requests.

use morgana_tests::{Platform, TempFile, boot};

/// What t-block writes to `sector`.
fn pattern(sector: u64, buf: &mut [u8]) {
    for (w, chunk) in buf.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&((sector << 32) | w as u64).to_le_bytes());
    }
}

#[test]
fn four_mib_written_and_read_back_with_both_sector_sizes() {
    const SIZE: u64 = 4 << 20;
    for p in Platform::ALL {
        for ss in [512u64, 4096] {
            let disk = TempFile::zeroed(SIZE);
            let block = format!("--block:storage={}", disk.path());
            let size = format!("--block-sector-size:storage={ss}");
            let o = boot(p, "t-block", &[&block, &size], &[]);
            o.expect_status(0);
            o.expect_output(&format!("block: {} sectors of {ss} bytes", SIZE / ss));
            o.expect_output(&format!(
                "block: {} sectors written and read back",
                SIZE / ss
            ));
            o.expect_output("block: scheduled read of 8 sectors OK");
            for what in [
                "misaligned offset",
                "out-of-range offset",
                "out-of-range write",
                "short read",
                "misaligned write",
            ] {
                o.expect_output(&format!("block: {what}: EINVAL"));
            }
            if p == Platform::Hvt {
                // The tender refuses them too, when the guest's own checks
                // are bypassed.
                for what in [
                    "misaligned offset",
                    "out-of-range offset",
                    "short read",
                    "misaligned write",
                    "out-of-range write",
                ] {
                    o.expect_output(&format!("block: tender: {what}: EINVAL"));
                }
            }
            o.expect_output("block: OK");
            // The host sees exactly what the guest wrote.
            let bytes = std::fs::read(&disk.0).unwrap();
            assert_eq!(bytes.len() as u64, SIZE, "{p:?}: the disk changed size");
            let mut want = vec![0u8; ss as usize];
            for (s, got) in bytes.chunks(ss as usize).enumerate() {
                pattern(s as u64, &mut want);
                assert_eq!(
                    got,
                    &want[..],
                    "{p:?} ss={ss}: sector {s} differs on the host"
                );
            }
        }
    }
}

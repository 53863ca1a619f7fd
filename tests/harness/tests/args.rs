//! Bad command lines get exit status 1 and the same one-line error on every
//! platform (unix builds parse the tenders' options themselves).

use morgana_tests::{Platform, TempFile, boot};

#[test]
fn undeclared_device() {
    for p in Platform::ALL {
        let o = boot(p, "hello", &["--net:service=tap0"], &[]);
        o.expect_one_line_error(
            p,
            "device 'service' is not declared by the unikernel (it declares: no devices)",
        );
    }
}

#[test]
fn declared_but_not_attached_device() {
    for p in Platform::ALL {
        let o = boot(p, "t-block", &[], &[]);
        o.expect_one_line_error(
            p,
            "declared but not attached: 'storage' (BLOCK_BASIC, use --block:storage=PATH)",
        );
    }
}

#[test]
fn missing_tap() {
    for p in Platform::ALL {
        let o = boot(p, "t-echo", &["--net:service=nosuchtap0"], &[]);
        o.expect_one_line_error(
            p,
            "cannot attach tap interface 'nosuchtap0' as 'service': no such network interface",
        );
    }
}

#[test]
fn block_image_not_a_multiple_of_the_sector_size() {
    for p in Platform::ALL {
        let disk = TempFile::zeroed(1000);
        let o = boot(
            p,
            "t-block",
            &[&format!("--block:storage={}", disk.path())],
            &[],
        );
        o.expect_one_line_error(
            p,
            "size 1000 is not a positive multiple of the sector size 512",
        );
        let disk = TempFile::zeroed(4096 + 512);
        let o = boot(
            p,
            "t-block",
            &[
                &format!("--block:storage={}", disk.path()),
                "--block-sector-size:storage=4096",
            ],
            &[],
        );
        o.expect_one_line_error(
            p,
            "size 4608 is not a positive multiple of the sector size 4096",
        );
        let o = boot(
            p,
            "t-block",
            &["--block:storage=/nonexistent/disk.img"],
            &[],
        );
        o.expect_one_line_error(
            p,
            "cannot open block device 'storage' at /nonexistent/disk.img",
        );
    }
}

#[test]
fn invalid_sector_sizes() {
    for p in Platform::ALL {
        let disk = TempFile::zeroed(1 << 20);
        let block = format!("--block:storage={}", disk.path());
        for bad in ["256", "521", "0", "70000"] {
            let opt = format!("--block-sector-size:storage={bad}");
            let o = boot(p, "t-block", &[&block, &opt], &[]);
            o.expect_one_line_error(p, &format!("invalid sector size in `{opt}'"));
        }
    }
}

#[test]
fn malformed_options() {
    for p in Platform::ALL {
        boot(p, "hello", &["--frobnicate"], &[])
            .expect_one_line_error(p, "invalid option: `--frobnicate'");
        boot(p, "hello", &["--net:bad_name=tap0"], &[])
            .expect_one_line_error(p, "invalid device name");
        boot(p, "t-echo", &["--net-mac:service=zz:00:00:00:00:00"], &[])
            .expect_one_line_error(p, "malformed MAC address");
    }
    for p in Platform::TENDERS {
        boot(p, "hello", &["--mem=0"], &[]).expect_one_line_error(p, "malformed argument to --mem");
        boot(p, "hello", &["--mem=lots"], &[])
            .expect_one_line_error(p, "malformed argument to --mem");
    }
}

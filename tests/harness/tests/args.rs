//! Bad command lines get exit status 1 and the same one-line error on every
//! platform (unix builds parse the tenders' options themselves).

use morgana_tests::{Output, Platform, TempFile, boot};

#[track_caller]
fn one_line_error(o: &Output, p: Platform, msg: &str) {
    o.expect_status(1);
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{p:?}: expected one line, got {:?}",
        o.stderr
    );
    assert!(
        lines[0].contains(msg),
        "{p:?}: {:?} lacks {msg:?}",
        lines[0]
    );
    assert_eq!(o.stdout, "", "{p:?}: the guest must not have run");
}

#[test]
fn undeclared_device() {
    for p in Platform::ALL {
        let o = boot(p, "hello", &["--net:service=tap0"], &[]);
        one_line_error(
            &o,
            p,
            "device 'service' is not declared by the unikernel (it declares: no devices)",
        );
    }
}

#[test]
fn declared_but_not_attached_device() {
    for p in Platform::ALL {
        let o = boot(p, "t-block", &[], &[]);
        one_line_error(
            &o,
            p,
            "declared but not attached: 'storage' (BLOCK_BASIC, use --block:storage=PATH)",
        );
    }
}

#[test]
fn missing_tap() {
    for p in Platform::ALL {
        let o = boot(p, "t-echo", &["--net:service=nosuchtap0"], &[]);
        one_line_error(
            &o,
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
        one_line_error(
            &o,
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
        one_line_error(
            &o,
            p,
            "size 4608 is not a positive multiple of the sector size 4096",
        );
        let o = boot(
            p,
            "t-block",
            &["--block:storage=/nonexistent/disk.img"],
            &[],
        );
        one_line_error(
            &o,
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
            one_line_error(&o, p, &format!("invalid sector size in `{opt}'"));
        }
    }
}

#[test]
fn malformed_options() {
    for p in Platform::ALL {
        one_line_error(
            &boot(p, "hello", &["--frobnicate"], &[]),
            p,
            "invalid option: `--frobnicate'",
        );
        one_line_error(
            &boot(p, "hello", &["--net:bad_name=tap0"], &[]),
            p,
            "invalid device name",
        );
        one_line_error(
            &boot(p, "t-echo", &["--net-mac:service=zz:00:00:00:00:00"], &[]),
            p,
            "malformed MAC address",
        );
    }
    for p in Platform::TENDERS {
        one_line_error(
            &boot(p, "hello", &["--mem=0"], &[]),
            p,
            "malformed argument to --mem",
        );
        one_line_error(
            &boot(p, "hello", &["--mem=lots"], &[]),
            p,
            "malformed argument to --mem",
        );
    }
}

//! hvt only: a guest that hands the tender wild pointers and lengths makes
//! it exit 1 with "invalid guest access", touching nothing outside the guest.

use morgana_tests::{Platform, boot};

#[test]
fn wild_pointers_are_invalid_guest_accesses() {
    for (mode, what) in [
        ("data-past-end", "PUTS data: gpa=0x1fffff8, len=0x40"),
        (
            "len-overflow",
            "PUTS data: gpa=0x100000, len=0xfffffffffffff000",
        ),
        ("arg-past-end", "PUTS argument: gpa=0xfffff000, len=0x10"),
        (
            "arg-straddles-end",
            "POLL argument: gpa=0x1fffff8, len=0x18",
        ),
        ("cookie-past-end", "HALT cookie: gpa=0x1fffff0, len=0x200"),
    ] {
        let o = boot(Platform::Hvt, "t-wild", &["--mem=32"], &[mode]);
        o.expect_status(1);
        assert_eq!(
            o.stderr.trim_end(),
            format!(
                "morgana-hvt: invalid guest access: {what} lies outside guest memory (0x2000000 bytes)"
            ),
        );
        assert!(!o.stdout.contains("accepted"), "{mode}: {}", o.stdout);
    }
}

#[test]
fn results_are_never_written_into_read_only_guest_memory() {
    // The argument structure lies in the image's rodata, which the tender
    // maps read-only: writing the result there would fault the tender.
    let o = boot(Platform::Hvt, "t-wild", &["--mem=32"], &["arg-read-only"]);
    o.expect_status(1);
    let err = o.stderr.trim_end();
    assert!(
        err.starts_with("morgana-hvt: invalid guest access: WALLTIME argument: gpa=0x1")
            && err.contains(", len=0x8 overlaps read-only guest memory [0x1"),
        "{err}"
    );
    assert!(!o.stdout.contains("accepted"), "{}", o.stdout);
}

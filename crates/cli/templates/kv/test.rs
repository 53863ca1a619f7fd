
#[test]
fn the_boot_count_survives_reboots_on_every_target() {
    for (target, image) in images() {
        let disk = std::env::temp_dir().join(format!("{{name}}-test-{}-{target}.img", std::process::id()));
        std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
        let opt = format!("--block:storage={}", disk.display());
        for n in 1..=2 {
            let o = run(boot(&target, &image, &[&opt], &[]));
            assert!(o.status.success(), "{target}: {o:?}");
            let out = stdout(&o);
            assert!(out.contains(&format!("{{name}}: boot number {n}")), "{target}: {out}");
        }
        std::fs::remove_file(&disk).unwrap();
    }
}

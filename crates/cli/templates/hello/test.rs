
#[test]
fn it_greets_on_every_target() {
    for (target, image) in images() {
        let o = run(boot(&target, &image, &[], &["one", "two"]));
        assert!(o.status.success(), "{target}: {o:?}");
        let out = stdout(&o);
        assert!(out.contains(&format!("Hello from {{name}} on {target}")), "{target}: {out}");
        assert!(out.contains("Command line: one two"), "{target}: {out}");
    }
}

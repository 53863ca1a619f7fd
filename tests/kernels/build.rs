//! Exposes the runtime's platform as `cfg(morgana_platform = "...")`, and
//! bakes the storage tests' directory (made here, the same as the harness
//! makes it) into the store `tree` for t-kvro.

#[path = "../harness/src/tree.rs"]
#[allow(dead_code)]
mod tree;

fn main() {
    println!(
        "cargo::rustc-check-cfg=cfg(morgana_platform, values(\"hvt\", \"spt\", \"virtio\", \"unix\"))"
    );
    let p = std::env::var("DEP_MORGANA_PLATFORM").expect("morgana sets its platform");
    println!("cargo::rustc-cfg=morgana_platform=\"{p}\"");

    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=../harness/src/tree.rs");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let dir = out.join("tree");
    // Made once per version of tree.rs, so that the files keep their
    // times and the build script is not rerun every time.
    let stamp = out.join("tree.stamp");
    let version = include_str!("../harness/src/tree.rs").len().to_string();
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(&version) {
        let _ = std::fs::remove_dir_all(&dir);
        tree::test_tree(&dir);
        std::fs::write(&stamp, version).unwrap();
    }
    morgana_crunch::bake("tree", &dir).expect("bake the test tree");
}

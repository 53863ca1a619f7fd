//! Exposes the runtime's platform as `cfg(morgana_platform = "...")`.

fn main() {
    println!(
        "cargo::rustc-check-cfg=cfg(morgana_platform, values(\"hvt\", \"spt\", \"virtio\", \"unix\"))"
    );
    let p = std::env::var("DEP_MORGANA_PLATFORM").expect("morgana sets its platform");
    println!("cargo::rustc-cfg=morgana_platform=\"{p}\"");
}

//! Selects the platform (`cfg(morgana_platform = "hvt" | "spt" | "virtio" | "unix")`)
//! and, for bare builds, puts the linker script on the link search path.

use std::env;
use std::path::PathBuf;

fn main() {
    println!(
        "cargo::rustc-check-cfg=cfg(morgana_platform, values(\"hvt\", \"spt\", \"virtio\", \"unix\"))"
    );
    println!("cargo::rerun-if-changed=link/morgana.ld");
    println!("cargo::rerun-if-changed=link/virtio.ld");
    // `--cfg morgana_no_trace` compiles the trace points out (to measure
    // what they cost when tracing is off: `cargo xtask bench trace`).
    println!("cargo::rustc-check-cfg=cfg(morgana_no_trace)");
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let hvt = env::var_os("CARGO_FEATURE_HVT").is_some();
    let spt = env::var_os("CARGO_FEATURE_SPT").is_some();
    let virtio = env::var_os("CARGO_FEATURE_VIRTIO").is_some();
    let platform = match (os.as_str(), hvt, spt, virtio) {
        ("linux", ..) => "unix",
        ("none", true, false, false) => "hvt",
        ("none", false, true, false) => "spt",
        ("none", false, false, true) => "virtio",
        ("none", ..) => panic!(
            "morgana: a bare (x86_64-unknown-none) build needs exactly one platform feature, \
             `morgana/hvt`, `morgana/spt` or `morgana/virtio` \
             (use `morgana build --target hvt|spt|virtio`)"
        ),
        (os, ..) => panic!("morgana: unsupported target OS `{os}`"),
    };
    println!("cargo::rustc-cfg=morgana_platform=\"{platform}\"");
    // Dependents' build scripts see this as DEP_MORGANA_PLATFORM.
    println!("cargo::metadata=platform={platform}");
    if os == "none" {
        let out = PathBuf::from(env::var("OUT_DIR").unwrap());
        // Every bare image links with `-Tmorgana.ld`; virtio images get
        // the PVH layout under that name.
        let script = if platform == "virtio" {
            "link/virtio.ld"
        } else {
            "link/morgana.ld"
        };
        std::fs::copy(script, out.join("morgana.ld")).unwrap();
        println!("cargo::rustc-link-search=native={}", out.display());
    }
}

//! Selects the platform (`cfg(morgana_platform = "hvt" | "spt" | "unix")`)
//! and, for bare builds, puts the linker script on the link search path.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(morgana_platform, values(\"hvt\", \"spt\", \"unix\"))");
    println!("cargo::rerun-if-changed=link/morgana.ld");
    // `MORGANA_SIM=1` (set by `cargo xtask fuzz` for its own build): a
    // host build runs on the unit tests' simulated platform instead of
    // unix, so that a fuzzer can feed devices from memory.
    println!("cargo::rustc-check-cfg=cfg(morgana_sim)");
    println!("cargo::rerun-if-env-changed=MORGANA_SIM");
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let hvt = env::var_os("CARGO_FEATURE_HVT").is_some();
    let spt = env::var_os("CARGO_FEATURE_SPT").is_some();
    let platform = match (os.as_str(), hvt, spt) {
        ("linux", _, _) => "unix",
        ("none", true, false) => "hvt",
        ("none", false, true) => "spt",
        ("none", _, _) => panic!(
            "morgana: a bare (x86_64-unknown-none) build needs exactly one platform feature, \
             `morgana/hvt` or `morgana/spt` (use `morgana build --target hvt|spt`)"
        ),
        (os, _, _) => panic!("morgana: unsupported target OS `{os}`"),
    };
    println!("cargo::rustc-cfg=morgana_platform=\"{platform}\"");
    if platform == "unix" && env::var_os("MORGANA_SIM").is_some() {
        println!("cargo::rustc-cfg=morgana_sim");
    }
    // Dependents' build scripts see this as DEP_MORGANA_PLATFORM.
    println!("cargo::metadata=platform={platform}");
    if os == "none" {
        let out = PathBuf::from(env::var("OUT_DIR").unwrap());
        std::fs::copy("link/morgana.ld", out.join("morgana.ld")).unwrap();
        println!("cargo::rustc-link-search=native={}", out.display());
    }
}

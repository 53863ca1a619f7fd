//! `cfg(morgana_sim)` when `MORGANA_SIM` is set, as the runtime's build
//! script does: the `net` target exists only on the simulated platform.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(morgana_sim)");
    println!("cargo::rerun-if-env-changed=MORGANA_SIM");
    if std::env::var_os("MORGANA_SIM").is_some() {
        println!("cargo::rustc-cfg=morgana_sim");
    }
}

//! `morgana-hvt`: the Solo5-compatible KVM tender. See `--help`.

fn main() {
    morgana_tender::main::<morgana_tender::hvt::Hvt>()
}

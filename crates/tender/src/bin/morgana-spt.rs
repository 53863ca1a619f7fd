//! `morgana-spt`: the Solo5-compatible seccomp process tender. See `--help`.

fn main() {
    morgana_tender::main::<morgana_tender::spt::Spt>()
}

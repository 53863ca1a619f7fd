//! Bakes `site/` into the `website` example's image (`include_baked!("site")`).

fn main() {
    morgana_crunch::bake("site", "site").expect("bake examples/site");
}

//! Bakes `site/` into the images of the `website` and `https-website`
//! examples (`include_baked!("site")` in `src/site.rs`).

fn main() {
    morgana_crunch::bake("site", "site").expect("bake examples/site");
}

//! Boots {{name}}'s images and checks what they do. Run through
//! `morgana test [--target hvt|spt|unix]...`, which builds the images first
//! and tells this test where they are (MORGANA_UNIKERNELS, MORGANA_TARGETS,
//! and the tenders in MORGANA_HVT / MORGANA_SPT).

use std::path::PathBuf;
use std::process::{Command, Output};

/// The targets `morgana test` built, with each image's path.
fn images() -> Vec<(String, PathBuf)> {
    let dir = std::env::var("MORGANA_UNIKERNELS")
        .expect("run these tests with `morgana test` (it builds the images first)");
    let targets = std::env::var("MORGANA_TARGETS").unwrap_or_else(|_| "unix".into());
    targets
        .split(',')
        .map(|t| (t.to_string(), PathBuf::from(&dir).join(t).join("{{name}}")))
        .collect()
}

/// The command booting `image` built for `target` with tender options
/// `opts`, then the unikernel's arguments `args`.
fn boot(target: &str, image: &PathBuf, opts: &[&str], args: &[&str]) -> Command {
    let mut c = match target {
        "unix" => Command::new(image),
        t => {
            let var = format!("MORGANA_{}", t.to_uppercase());
            let tender = std::env::var(&var).unwrap_or_else(|_| panic!("{var} is not set"));
            let mut c = Command::new(tender);
            c.args(opts).arg("--").arg(image);
            c.args(args);
            return c;
        }
    };
    c.args(opts).arg("--").args(args);
    c
}

fn run(mut c: Command) -> Output {
    c.output().unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

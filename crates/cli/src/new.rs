//! `morgana new`: a new unikernel crate, outside this repository, from a
//! template (the files under `crates/cli/templates/`, built into the
//! `morgana` command).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// What a new crate starts as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    /// Prints a greeting and its command line (no devices).
    Hello,
    /// An HTTP/1.1 server (morgana-http over morgana-net).
    Http,
    /// Counts its boots in a persistent key-value store (morgana-kv).
    Kv,
    /// A static site baked into the image, served over HTTP.
    Website,
}

impl Template {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hello => "hello",
            Self::Http => "http",
            Self::Kv => "kv",
            Self::Website => "website",
        }
    }

    /// The Morgana crates it depends on (directories under `crates/`).
    fn crates(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Hello => &[("morgana", "rt")],
            Self::Kv => &[("morgana", "rt"), ("morgana-kv", "kv")],
            Self::Http | Self::Website => &[
                ("morgana", "rt"),
                ("morgana-net", "net"),
                ("morgana-http", "http"),
            ],
        }
    }

    /// Its files: path in the crate and contents (with `{{name}}`).
    fn files(self) -> Vec<(&'static str, String)> {
        const COMMON_TEST: &str = include_str!("../templates/common_test.rs");
        const HTTP_TEST: &str = include_str!("../templates/http_test.rs");
        let (main, test) = match self {
            Self::Hello => (
                include_str!("../templates/hello/main.rs"),
                include_str!("../templates/hello/test.rs"),
            ),
            Self::Kv => (
                include_str!("../templates/kv/main.rs"),
                include_str!("../templates/kv/test.rs"),
            ),
            Self::Http => (
                include_str!("../templates/http/main.rs"),
                include_str!("../templates/http/test.rs"),
            ),
            Self::Website => (
                include_str!("../templates/website/main.rs"),
                include_str!("../templates/website/test.rs"),
            ),
        };
        let mut test_file = String::from(COMMON_TEST);
        if matches!(self, Self::Http | Self::Website) {
            test_file.push_str(HTTP_TEST);
        }
        test_file.push_str(test);
        let mut v = vec![
            ("src/main.rs", main.to_string()),
            ("tests/boot.rs", test_file),
            (".gitignore", "/target\n".to_string()),
        ];
        if self == Self::Website {
            v.push((
                "site/index.html",
                include_str!("../templates/website/site/index.html").into(),
            ));
            v.push((
                "site/style.css",
                include_str!("../templates/website/site/style.css").into(),
            ));
        }
        v
    }

    /// How to run it, for the README.
    fn run_lines(self, name: &str) -> String {
        match self {
            Self::Hello => format!(
                "morgana run {name} -- some arguments                  # on morgana-hvt (KVM)\n\
                 morgana run --target unix {name} -- some arguments    # as a Linux process"
            ),
            Self::Kv => format!(
                "truncate -s 1M disk.img                               # a zero-filled disk: a new store\n\
                 morgana run {name} --block:storage=disk.img           # on morgana-hvt\n\
                 morgana run --target unix {name} --block:storage=disk.img"
            ),
            Self::Http | Self::Website => format!(
                "# unix, on the host's sockets: no tap, no root\n\
                 morgana run --target unix {name} --net:service=socket -- --port=8080 &\n\
                 curl http://127.0.0.1:8080/\n\
                 # hvt (or spt) behind a tap, as root\n\
                 ip tuntap add dev tap0 mode tap && ip addr add 10.0.0.1/24 dev tap0 && ip link set tap0 up\n\
                 morgana run {name} --net:service=tap0 -- --ipv4=10.0.0.2/24 &\n\
                 curl http://10.0.0.2:8080/"
            ),
        }
    }
}

/// Where this `morgana` command's repository is (the crates a new crate
/// depends on): the directory it was built from.
pub fn default_morgana_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn valid_crate_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Creates the crate `dir` (its last component is its name) from
/// `template`, depending on the Morgana repository at `morgana` by absolute
/// path. `dir` must not exist or be empty; nothing is written otherwise.
/// Returns the files written.
pub fn create(dir: &Path, template: Template, morgana: &Path) -> Result<Vec<PathBuf>> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: not a directory name", dir.display()))?;
    if !valid_crate_name(name) {
        bail!("`{name}` is not a valid crate name (a letter, then letters, digits, `-` or `_`)");
    }
    if let Ok(mut entries) = std::fs::read_dir(dir) {
        if entries.next().is_some() {
            bail!(
                "{} is not empty: `morgana new` only writes into a new or empty directory",
                dir.display()
            );
        }
    } else if dir.exists() {
        bail!("{} exists and is not a directory", dir.display());
    }
    let morgana = morgana.canonicalize().with_context(|| {
        format!(
            "cannot find the Morgana repository at {}",
            morgana.display()
        )
    })?;
    if !morgana.join("crates/rt/Cargo.toml").is_file() {
        bail!(
            "{} is not a Morgana repository (no crates/rt/Cargo.toml): give it with --morgana DIR",
            morgana.display()
        );
    }
    let mut deps = String::new();
    for (krate, sub) in template.crates() {
        deps.push_str(&format!(
            "{krate} = {{ path = \"{}\" }}\n",
            morgana.join("crates").join(sub).display()
        ));
    }
    let cargo = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
         [dependencies]\n{deps}log = \"0.4\"\n\n\
         # The image: no test harness of its own (`tests/` boots the image).\n\
         [[bin]]\nname = \"{name}\"\npath = \"src/main.rs\"\ntest = false\nbench = false\n\n\
         # A workspace of its own, wherever it is created.\n[workspace]\n"
    );
    let readme = format!(
        "# {name}\n\n\
         A [Morgana](file://{m}) unikernel (template `{t}`), depending on Morgana at\n\
         `{m}` by path. `morgana` is `{m}/target/release/morgana`\n\
         (`cargo build --release -p morgana-cli -p morgana-tender` there builds it and the tenders).\n\n\
         ## Build\n\n```sh\n\
         morgana build --target hvt     # or --target spt, --target unix, --all-targets\n```\n\n\
         Images go to `target/unikernels/<platform>/{name}`.\n\n\
         ## Run\n\n```sh\n{run}\n```\n\n\
         ## Test\n\n```sh\n\
         morgana test --target unix{extra}\n```\n\n\
         `morgana test` builds the images for the given targets, then runs `cargo test`, whose\n\
         tests in `tests/boot.rs` boot each image and check what it does.{note}\n",
        m = morgana.display(),
        t = template.name(),
        run = template.run_lines(name),
        extra = match template {
            Template::Hello | Template::Kv => " --target spt --target hvt",
            _ => "",
        },
        note = match template {
            Template::Http | Template::Website => {
                " The HTTP test boots the unix build on the host's sockets (no tap, no root);\n\
                 hvt and spt need a tap (see Run)."
            }
            _ => "",
        }
    );
    let mut files = vec![("Cargo.toml", cargo), ("README.md", readme)];
    files.extend(template.files());
    let mut written = Vec::new();
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (path, text) in files {
        let p = dir.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, text.replace("{{name}}", name))
            .with_context(|| format!("cannot write {}", p.display()))?;
        written.push(p);
    }
    // The versions Morgana is tested with.
    let lock = morgana.join("Cargo.lock");
    if lock.is_file() {
        std::fs::copy(&lock, dir.join("Cargo.lock"))?;
        written.push(dir.join("Cargo.lock"));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_names_are_checked() {
        assert!(valid_crate_name("my-unikernel_2"));
        assert!(!valid_crate_name("2fast"));
        assert!(!valid_crate_name("a b"));
        assert!(!valid_crate_name(""));
    }

    #[test]
    fn every_template_has_a_main_and_a_test() {
        for t in [
            Template::Hello,
            Template::Http,
            Template::Kv,
            Template::Website,
        ] {
            let f = t.files();
            assert!(
                f.iter()
                    .any(|(p, s)| *p == "src/main.rs" && s.contains("#[morgana::main]"))
            );
            assert!(
                f.iter()
                    .any(|(p, s)| *p == "tests/boot.rs" && s.contains("#[test]"))
            );
        }
    }
}

//! `morgana`: build Morgana unikernels, run them, inspect them.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use morgana_cli::{BuildOptions, Platform};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

#[derive(Parser)]
#[command(
    name = "morgana",
    version,
    about = "Build, run and inspect Morgana unikernels"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build unikernel images into `<target dir>/unikernels/<platform>/<name>`.
    Build {
        /// Platform(s) to build for (default: hvt).
        #[arg(long = "target", value_enum)]
        targets: Vec<Platform>,
        /// Build for every platform.
        #[arg(long, conflicts_with = "targets")]
        all_targets: bool,
        /// Package(s) to build (default: every package that depends on `morgana`).
        #[arg(short, long = "package")]
        packages: Vec<String>,
        /// Unoptimised build with debug symbols (for gdb on unix).
        #[arg(long)]
        debug: bool,
        /// Output directory (default: `<target dir>/unikernels`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run an image on its platform's tender (QEMU for virtio, directly for unix).
    ///
    /// Everything after IMAGE is passed to the tender: device options first
    /// (`--net:NAME=TAP`, `--block:NAME=FILE`, `--mem=MiB`), then `--` and
    /// the unikernel's own arguments. virtio also takes `--machine
    /// microvm|q35` and `--accel kvm|tcg` (default: KVM if it works, else TCG).
    Run {
        /// Platform of the image (default: read from the image; unix if it has none).
        #[arg(long = "target", value_enum)]
        target: Option<Platform>,
        /// Wait for gdb on 127.0.0.1:PORT before the first guest instruction (hvt).
        #[arg(long, value_name = "PORT")]
        gdb: Option<u16>,
        /// Write the guest's trace buffer to FILE (hvt, spt; see `morgana trace`).
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
        /// Image path, or a name built by `morgana build` (e.g. `hello`).
        image: String,
        /// Tender options and unikernel arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print a trace file written by `--trace=FILE` (as text, or as
    /// Chrome/Perfetto trace-event JSON for a timeline view).
    Trace {
        /// Print Chrome/Perfetto trace-event JSON (open it in ui.perfetto.dev
        /// or chrome://tracing).
        #[arg(long)]
        json: bool,
        /// The trace file.
        file: PathBuf,
    },
    /// Create a new unikernel crate in directory NAME (new or empty).
    New {
        /// Directory to create; its last component is the crate's name.
        name: PathBuf,
        /// What the crate starts as.
        #[arg(long, value_enum, default_value = "hello")]
        template: morgana_cli::new::Template,
        /// The Morgana repository to depend on (default: the one this
        /// command was built from).
        #[arg(long)]
        morgana: Option<PathBuf>,
    },
    /// Build the images, then run `cargo test` with their location
    /// (MORGANA_UNIKERNELS, MORGANA_TARGETS, MORGANA_HVT, MORGANA_SPT), for
    /// tests that boot them.
    Test {
        /// Platform(s) to build and test (default: unix).
        #[arg(long = "target", value_enum)]
        targets: Vec<Platform>,
        /// Every platform.
        #[arg(long, conflicts_with = "targets")]
        all_targets: bool,
        /// Package(s) (default: every package that depends on `morgana`).
        #[arg(short, long = "package")]
        packages: Vec<String>,
        /// Arguments for `cargo test` (after `--`).
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// Write an OCI image holding IMAGE and urunc's metadata (to run it on
    /// Kubernetes with urunc).
    Package {
        /// Image path, or a name built by `morgana build`.
        image: String,
        /// The image's target: urunc's monitor (`hvt`, `spt`, `qemu` for virtio).
        #[arg(long = "target", value_enum)]
        target: morgana_cli::package::OciTarget,
        /// Write an OCI image layout into this (new or empty) directory.
        #[arg(short = 'o', long = "output", required_unless_present = "tag")]
        output: Option<PathBuf>,
        /// The image's name (`NAME[:TAG]`): its reference in the layout
        /// (default `latest`), and without `-o`, the name it is copied to
        /// local container storage under (with skopeo).
        #[arg(long)]
        tag: Option<String>,
        /// The unikernel's command line (urunc adds `--ipv4=`/`--ipv4-gateway=`).
        #[arg(long, default_value = "", allow_hyphen_values = true)]
        cmdline: String,
        /// A disk image to ship in the image and attach as its block device.
        #[arg(long)]
        block: Option<PathBuf>,
    },
    /// Print an image's ABI target and its manifest (Solo5 JSON format).
    Manifest {
        /// Image path.
        image: PathBuf,
    },
}

fn main() {
    if let Err(e) = run() {
        eprintln!("morgana: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    match Cli::parse().command {
        Cmd::Build {
            targets,
            all_targets,
            packages,
            debug,
            out,
        } => {
            let opts = BuildOptions {
                platforms: if all_targets {
                    Platform::ALL.to_vec()
                } else {
                    targets
                },
                packages,
                debug,
                out,
                workspace: None,
            };
            for b in morgana_cli::build(&opts)? {
                println!(
                    "{:<4} {:<16} {:>8} bytes  {}",
                    b.platform,
                    b.name,
                    b.size,
                    b.path.display()
                );
            }
            Ok(())
        }
        Cmd::Run {
            target,
            gdb,
            trace,
            image,
            mut args,
        } => {
            // clap swallows a `--` right after IMAGE: it still means that
            // everything after it is the unikernel's.
            let raw: Vec<String> = std::env::args().collect();
            if let Some(i) = raw.iter().position(|a| *a == image)
                && raw.get(i + 1).is_some_and(|a| a == "--")
                && args.first().is_none_or(|a| a != "--")
            {
                args.insert(0, "--".into());
            }
            let (platform, path) = resolve(target, &image)?;
            if gdb.is_some() && platform != Platform::Hvt {
                bail!(
                    "--gdb needs an hvt image ({} is {platform}); debug unix builds with `gdb --args IMAGE ...`",
                    path.display()
                );
            }
            if trace.is_some() && platform.tender().is_none() {
                bail!(
                    "--trace needs an hvt or spt image ({} is {platform})",
                    path.display()
                );
            }
            if platform == Platform::Virtio {
                let (machine, accel, args) = morgana_cli::virtio::take_run_flags(&args)?;
                let status = morgana_cli::virtio::run(&morgana_cli::virtio::RunOptions {
                    image: path,
                    machine,
                    accel,
                    args,
                })?;
                std::process::exit(status);
            }
            let mut tender_args = Vec::new();
            if let Some(port) = gdb {
                tender_args.push(format!("--gdb={port}"));
            }
            if let Some(file) = trace {
                tender_args.push(format!("--trace={}", file.display()));
            }
            tender_args.extend(split_options(&args, &path));
            let err = match platform.tender() {
                Some(t) => Command::new(morgana_cli::find_tender(t)?)
                    .args(tender_args)
                    .exec(),
                None => Command::new(&path).args(&args).exec(),
            };
            Err(err).with_context(|| format!("cannot run {}", path.display()))
        }
        Cmd::Trace { json, file } => {
            let tr = morgana_cli::trace::read(&file)?;
            if json {
                println!("{}", morgana_cli::trace::to_json(&tr));
            } else {
                print!("{}", morgana_cli::trace::to_text(&tr));
            }
            Ok(())
        }
        Cmd::New {
            name,
            template,
            morgana,
        } => {
            let m = morgana.unwrap_or_else(morgana_cli::new::default_morgana_dir);
            morgana_cli::new::create(&name, template, &m)?;
            println!(
                "created {} (template {}): see its README.md",
                name.display(),
                template.name()
            );
            Ok(())
        }
        Cmd::Test {
            targets,
            all_targets,
            packages,
            cargo_args,
        } => {
            let platforms = if all_targets {
                Platform::ALL.to_vec()
            } else if targets.is_empty() {
                vec![Platform::Unix]
            } else {
                targets
            };
            let opts = BuildOptions {
                platforms: platforms.clone(),
                packages: packages.clone(),
                ..BuildOptions::default()
            };
            let built = morgana_cli::build(&opts)?;
            let dir = built
                .first()
                .and_then(|b| b.path.parent()?.parent().map(PathBuf::from))
                .context("nothing was built")?;
            let mut cmd = Command::new("cargo");
            cmd.arg("test");
            for p in &packages {
                cmd.arg("-p").arg(p);
            }
            cmd.args(&cargo_args).env("MORGANA_UNIKERNELS", &dir).env(
                "MORGANA_TARGETS",
                platforms
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(","),
            );
            for p in &platforms {
                if let Some(t) = p.tender() {
                    cmd.env(
                        format!("MORGANA_{}", p.name().to_uppercase()),
                        morgana_cli::find_tender(t)?,
                    );
                }
            }
            let status = cmd.status().context("cannot run `cargo test`")?;
            if !status.success() {
                bail!("the tests failed");
            }
            Ok(())
        }
        Cmd::Package {
            image,
            target,
            output,
            tag,
            cmdline,
            block,
        } => {
            let path = resolve(Some(target.platform()), &image)?.1;
            // The whole name is the reference (as podman and skopeo read it).
            let reference = tag.clone().unwrap_or_else(|| "latest".into());
            let opts = morgana_cli::package::PackageOptions {
                image: path,
                target,
                cmdline,
                block,
                tag: reference.clone(),
            };
            let (dir, temporary) = match output {
                Some(d) => (d, false),
                None => (
                    std::env::temp_dir().join(format!("morgana-package-{}", std::process::id())),
                    true,
                ),
            };
            let done = morgana_cli::package::package(&opts, &dir);
            let r = done.and_then(|p| {
                if temporary {
                    let name = tag.clone().unwrap_or_default();
                    let status = Command::new("skopeo")
                        .arg("copy")
                        .arg(format!("oci:{}:{reference}", dir.display()))
                        .arg(format!("containers-storage:{name}"))
                        .stdout(std::process::Stdio::null())
                        .status()
                        .context("cannot run skopeo (install it) to store the image")?;
                    if !status.success() {
                        bail!("skopeo could not copy the image to containers-storage:{name}");
                    }
                    println!("{name} {}", p.manifest_digest);
                } else {
                    println!("{} {}", dir.display(), p.manifest_digest);
                }
                Ok(())
            });
            if temporary {
                let _ = std::fs::remove_dir_all(&dir);
            }
            r
        }
        Cmd::Manifest { image } => {
            let info = morgana_cli::inspect(&image)?;
            if let Some(abi) = info.abi {
                println!("# target {} (ABI version {})", info.target(), abi.version);
            } else {
                println!("# no Solo5 ABI note");
            }
            println!("{}", info.manifest_json());
            Ok(())
        }
    }
}

/// Tender options come before the image, unikernel arguments after it.
fn split_options(args: &[String], image: &std::path::Path) -> Vec<String> {
    // Without `--`, the unikernel's arguments start at the first argument
    // that is not an option (tender options all start with `-`).
    let (split, skip) = match args.iter().position(|a| a == "--") {
        Some(i) => (i, 1),
        None => (
            args.iter()
                .position(|a| !a.starts_with('-'))
                .unwrap_or(args.len()),
            0,
        ),
    };
    let mut v: Vec<String> = args[..split].to_vec();
    v.push("--".into());
    v.push(image.display().to_string());
    v.extend(args[split..].iter().skip(skip).cloned());
    v
}

fn resolve(target: Option<Platform>, image: &str) -> Result<(Platform, PathBuf)> {
    let as_path = PathBuf::from(image);
    if as_path.is_file() {
        let platform = match target {
            Some(p) => p,
            None => match morgana_cli::inspect(&as_path).ok().map(|i| i.target()) {
                Some("hvt") => Platform::Hvt,
                Some("spt") => Platform::Spt,
                Some("virtio") => Platform::Virtio,
                _ => Platform::Unix,
            },
        };
        return Ok((platform, as_path));
    }
    let platform = target.unwrap_or(Platform::Hvt);
    let out = Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("cannot run `cargo metadata` to find the target directory")?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let dir = v["target_directory"].as_str().unwrap_or("target");
    let p = PathBuf::from(dir)
        .join("unikernels")
        .join(platform.name())
        .join(image);
    if !p.is_file() {
        bail!(
            "no image `{image}`: not a file, and {} does not exist (run `morgana build --target {platform}`)",
            p.display()
        );
    }
    Ok((platform, p))
}

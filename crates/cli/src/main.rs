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
    /// Run an image on its platform's tender (or directly, for unix).
    ///
    /// Everything after IMAGE is passed to the tender: device options first
    /// (`--net:NAME=TAP`, `--block:NAME=FILE`, `--mem=MiB`), then `--` and
    /// the unikernel's own arguments.
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
            args,
        } => {
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
            let mut tender_args = Vec::new();
            if let Some(port) = gdb {
                tender_args.push(format!("--gdb={port}"));
            }
            if let Some(file) = trace {
                tender_args.push(format!("--trace={}", file.display()));
            }
            // clap drops a `--` that comes right after IMAGE: then every
            // argument is the unikernel's.
            let raw: Vec<String> = std::env::args().collect();
            let args = match raw.iter().rposition(|a| *a == image) {
                Some(i)
                    if raw.get(i + 1).is_some_and(|a| a == "--")
                        && args.first() != Some(&"--".to_string()) =>
                {
                    let mut v = vec!["--".to_string()];
                    v.extend(args);
                    v
                }
                _ => args,
            };
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
    let split = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let mut v: Vec<String> = args[..split].to_vec();
    v.push("--".into());
    v.push(image.display().to_string());
    v.extend(args[split.min(args.len())..].iter().skip(1).cloned());
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

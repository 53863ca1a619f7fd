//! `cargo xtask bench virtio`: the virtio platform on QEMU next to the
//! others, in one run: boot-to-exit of `hello` (QEMU microvm with the
//! accelerator `morgana run` picks, next to hvt and spt), wrk against
//! http-hello and bulk TCP through echo (virtio next to hvt, spt, unix).

use crate::bench::{Section, hyperfine_median_ms};
use crate::bench_net::{Guest, Net, wrk, xtask_in_client};
use anyhow::Result;
use std::fmt::Write as _;

/// The section.
pub fn section() -> Result<Section> {
    let accel = if morgana_cli::virtio::kvm_works() {
        "kvm"
    } else {
        "tcg"
    };
    let mut body = format!(
        "QEMU {}, accelerator `{accel}` (what `morgana run --target virtio` chose here by its KVM probe).\n\n\
         Boot-to-exit wall time of `hello` (median of 20 runs after 3 warm-ups, `hyperfine -N`). The\n\
         virtio figure includes `morgana run` (reading the image, starting QEMU) and QEMU's own start-up\n\
         and firmware; the raw QEMU line is the same boot without `morgana`.\n\n\
         | platform | command | median boot-to-exit | ratio to hvt |\n|---|---|---|---|\n",
        qemu_version()
    );
    let cmds = [
        ("hvt", "target/release/morgana-hvt --mem=32 target/unikernels/hvt/hello".to_string()),
        ("spt", "target/release/morgana-spt --mem=32 target/unikernels/spt/hello".to_string()),
        (
            "virtio (microvm)",
            "target/release/morgana run --target virtio target/unikernels/virtio/hello --mem=32".to_string(),
        ),
        (
            "virtio, raw QEMU microvm",
            format!(
                "qemu-system-x86_64 -accel {accel} -cpu {} -M microvm,acpi=off -m 32 -nodefaults \
                 -no-user-config -display none -no-reboot -serial null \
                 -device isa-debug-exit,iobase=0x501,iosize=2 -kernel target/unikernels/virtio/hello",
                if accel == "kvm" { "host" } else { "max" }
            ),
        ),
        (
            "virtio (q35)",
            "target/release/morgana run --target virtio target/unikernels/virtio/hello --machine q35 --mem=32".to_string(),
        ),
    ];
    let mut hvt_ms = 0.0;
    for (name, cmd) in &cmds {
        // The raw QEMU run exits 1 (status 0 through isa-debug-exit).
        let shown = if name.contains("raw") {
            format!("sh -c '{cmd}; test $? = 1'")
        } else {
            cmd.clone()
        };
        let ms = hyperfine_median_ms(&shown, 20)?;
        if *name == "hvt" {
            hvt_ms = ms;
        }
        writeln!(
            body,
            "| {name} | `{shown}` | {ms:.1} ms | {:.1} |",
            ms / hvt_ms
        )?;
    }

    let _net = Net::new()?;
    let mut web = String::from(
        "\n`wrk -t 2 -c 50 -d 10s --timeout 30s --latency http://10.0.0.2/` from a client namespace against\n\
         `http-hello --ipv4=10.0.0.2/24` behind a tap (virtio: `morgana run --target virtio`, microvm,\n\
         virtio-net on the tap), and bulk TCP through `echo --ipv4=10.0.0.2/24` (`xtask __bulk\n\
         10.0.0.2:7 N`: N bytes sent and read back concurrently).\n\n\
         | platform | requests/s | p99 latency | ratio to virtio | bulk bytes | MB/s each way |\n\
         |---|---|---|---|---|---|\n",
    );
    let mut virtio_rps = 0.0;
    for p in ["virtio", "hvt", "spt", "unix"] {
        let (rps, p99) = {
            let _g = Guest::start(p, "http-hello", &["--ipv4=10.0.0.2/24"])?;
            wrk("http://10.0.0.2/")?
        };
        if p == "virtio" {
            virtio_rps = rps;
        }
        let n: u64 = match p {
            "hvt" => 4 << 20,
            "virtio" => 64 << 20,
            _ => 256 << 20,
        };
        let secs: f64 = {
            let _g = Guest::start(p, "echo", &["--ipv4=10.0.0.2/24"])?;
            xtask_in_client(&["__bulk", "10.0.0.2:7", &n.to_string()])?.parse()?
        };
        writeln!(
            web,
            "| {p} | {rps:.0} | {p99} | {:.2} | {} MiB | {:.1} |",
            rps / virtio_rps,
            n >> 20,
            n as f64 / 1e6 / secs
        )?;
    }
    body.push_str(&web);
    body.push_str(
        "\nWith TCG, QEMU translates every guest instruction (no KVM here: the nested KVM refuses\n\
         QEMU's MSR set-up); hvt's figures are bounded by the same machine's instruction-emulating\n\
         KVM.\n",
    );
    Ok(Section {
        title: "virtio platform (QEMU)".into(),
        body,
    })
}

fn qemu_version() -> String {
    std::process::Command::new(morgana_cli::virtio::qemu())
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim_start_matches("QEMU emulator version ").to_string())
        })
        .unwrap_or_else(|| "(unknown version)".into())
}

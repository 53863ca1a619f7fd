//! `morgana package`: OCI images for urunc. skopeo and umoci read the
//! layout, podman loads it, and the files of the unpacked bundle boot on
//! morgana-hvt and morgana-spt with the command line, devices and monitor
//! the image records, put together as urunc does for a `mirage`-type
//! unikernel (`--net:DEV=TAP --block:DEV=PATH -- BINARY --ipv4=... CMDLINE`),
//! and a networked virtio image on QEMU with urunc's `-append`
//! (`--ipv4=... --ipv4-gateway=... CMDLINE`).
//! urunc itself is not run here (no Kubernetes node).

use base64::Engine as _;
use morgana_tests::net::Netns;
use morgana_tests::storage::TempDir;
use morgana_tests::{Platform, Running, image, run_command, target_dir, tender};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn morgana(args: &[&str]) -> morgana_tests::Output {
    let mut c = Command::new(target_dir().join("release/morgana"));
    c.args(args);
    run_command(c, Duration::from_secs(60))
}

fn tool(program: &str, args: &[&str]) -> String {
    let o = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (install it): {e}"));
    assert!(
        o.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// Packages `name` for `p` into a layout in `dir`; returns its path.
fn package(p: Platform, name: &str, dir: &Path, extra: &[&str]) -> PathBuf {
    let out = dir.join(format!("{name}-{}", p.name()));
    let img = image(p, name);
    let mut args = vec![
        "package",
        img.to_str().unwrap(),
        "--target",
        p.name(),
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    morgana(&args).expect_status(0);
    out
}

/// urunc's view of an unpacked bundle: `urunc.json` decoded.
fn urunc_json(rootfs: &Path) -> BTreeMap<String, String> {
    let raw: BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(rootfs.join("urunc.json")).unwrap()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    raw.into_iter()
        .map(|(k, v)| (k, String::from_utf8(b64.decode(v).unwrap()).unwrap()))
        .collect()
}

/// Unpacks `layout` with umoci into `dir/bundle`; returns the bundle's
/// runtime config and urunc.json.
fn unpack(layout: &Path, dir: &Path) -> (PathBuf, serde_json::Value, BTreeMap<String, String>) {
    let bundle = dir.join("bundle");
    let _ = std::fs::remove_dir_all(&bundle);
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:latest", layout.display()),
            bundle.to_str().unwrap(),
        ],
    );
    let config = json(&std::fs::read_to_string(bundle.join("config.json")).unwrap());
    let u = urunc_json(&bundle.join("rootfs"));
    (bundle, config, u)
}

/// The tender command urunc builds for a `mirage` unikernel from the
/// image's metadata: device options, `--`, the binary, then the network
/// arguments and the command line.
fn urunc_command(
    bundle: &Path,
    u: &BTreeMap<String, String>,
    tap: Option<&str>,
    net_args: &[&str],
) -> Command {
    assert_eq!(u["com.urunc.unikernel.unikernelType"], "mirage");
    let monitor = &u["com.urunc.unikernel.hypervisor"];
    let p = match monitor.as_str() {
        "hvt" => Platform::Hvt,
        "spt" => Platform::Spt,
        m => panic!("unexpected monitor {m}"),
    };
    let rootfs = bundle.join("rootfs");
    let mut c = Command::new(tender(p).unwrap());
    if let Some(t) = tap {
        let dev = u
            .get("com.urunc.unikernel.solo5NetDev")
            .map_or("service", String::as_str);
        c.arg(format!("--net:{dev}={t}"));
    }
    if let Some(b) = u.get("com.urunc.unikernel.block") {
        let dev = u
            .get("com.urunc.unikernel.solo5BlkDev")
            .map_or("storage", String::as_str);
        c.arg(format!(
            "--block:{dev}={}",
            rootfs.join(b.trim_start_matches('/')).display()
        ));
    }
    c.arg("--")
        .arg(rootfs.join(u["com.urunc.unikernel.binary"].trim_start_matches('/')));
    c.args(net_args);
    c.args(u["com.urunc.unikernel.cmdline"].split_whitespace());
    c
}

#[test]
fn images_are_read_by_skopeo_umoci_and_podman_and_boot_from_the_bundle() {
    let tmp = TempDir::new("hello");
    for p in Platform::TENDERS {
        let layout = package(p, "hello", &tmp.0, &["--cmdline", "one two --three"]);
        assert!(layout.join("oci-layout").is_file() && layout.join("index.json").is_file());

        let inspect = json(&tool(
            "skopeo",
            &["inspect", &format!("oci:{}:latest", layout.display())],
        ));
        let labels = &inspect["Labels"];
        assert_eq!(labels["com.urunc.unikernel.hypervisor"], p.name());
        assert_eq!(labels["com.urunc.unikernel.unikernelType"], "mirage");
        assert_eq!(
            labels["com.urunc.unikernel.binary"],
            format!("/unikernel/hello.{}", p.name())
        );
        assert_eq!(labels["com.urunc.unikernel.cmdline"], "one two --three");
        // The manifest carries them as annotations too.
        let raw = json(&tool(
            "skopeo",
            &[
                "inspect",
                "--raw",
                &format!("oci:{}:latest", layout.display()),
            ],
        ));
        assert_eq!(
            raw["annotations"]["com.urunc.unikernel.hypervisor"],
            p.name()
        );
        assert_eq!(
            raw["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );

        let (bundle, config, u) = unpack(&layout, &tmp.0);
        assert_eq!(
            config["process"]["args"],
            json(r#"["one","two","--three"]"#)
        );
        assert_eq!(
            config["annotations"]["com.urunc.unikernel.hypervisor"],
            p.name()
        );
        assert_eq!(u["com.urunc.unikernel.hypervisor"], p.name());
        let o = run_command(
            urunc_command(&bundle, &u, None, &[]),
            Duration::from_secs(60),
        );
        o.expect_status(0);
        o.expect_output("Command line: one two --three");

        // podman loads the layout as an oci-archive.
        let archive = tmp.0.join("image.tar");
        tool(
            "tar",
            &[
                "-C",
                layout.to_str().unwrap(),
                "-cf",
                archive.to_str().unwrap(),
                ".",
            ],
        );
        let name = format!(
            "localhost/morgana-oci-test-{}-{}",
            p.name(),
            std::process::id()
        );
        let tagged = package(
            p,
            "hello",
            &tmp.0.join("tagged"),
            &["--tag", &format!("{name}:v1"), "--cmdline", "x"],
        );
        tool(
            "tar",
            &[
                "-C",
                tagged.to_str().unwrap(),
                "-cf",
                archive.to_str().unwrap(),
                ".",
            ],
        );
        let loaded = tool("podman", &["load", "-i", archive.to_str().unwrap()]);
        assert!(loaded.contains(&format!("{name}:v1")), "{loaded}");
        let pi = json(&tool(
            "podman",
            &["image", "inspect", &format!("{name}:v1")],
        ));
        let _ = Command::new("podman")
            .args(["rmi", "-f", &format!("{name}:v1")])
            .output();
        assert_eq!(
            pi[0]["Config"]["Labels"]["com.urunc.unikernel.hypervisor"],
            p.name()
        );
        assert_eq!(pi[0]["Config"]["Cmd"], json(r#"["x"]"#));
        std::fs::remove_dir_all(tmp.0.join("tagged")).unwrap();

        // --tag without -o: straight into local container storage.
        let stored = format!("{name}-stored:v2");
        let img = image(p, "hello");
        morgana(&[
            "package",
            img.to_str().unwrap(),
            "--target",
            p.name(),
            "--tag",
            &stored,
        ])
        .expect_status(0);
        let pi = json(&tool("podman", &["image", "inspect", &stored]));
        let _ = Command::new("podman").args(["rmi", "-f", &stored]).output();
        assert_eq!(
            pi[0]["Config"]["Labels"]["com.urunc.unikernel.binary"],
            format!("/unikernel/hello.{}", p.name())
        );
    }
}

#[test]
fn a_block_device_travels_in_the_image() {
    let tmp = TempDir::new("block");
    let disk = tmp.0.join("disk.img");
    std::fs::write(&disk, vec![0u8; 64 * 1024]).unwrap();
    for p in Platform::TENDERS {
        let layout = package(p, "t-block", &tmp.0, &["--block", disk.to_str().unwrap()]);
        let (bundle, _, u) = unpack(&layout, &tmp.0);
        assert_eq!(u["com.urunc.unikernel.solo5BlkDev"], "storage");
        assert_eq!(u["com.urunc.unikernel.block"], "/unikernel/block.img");
        let o = run_command(
            urunc_command(&bundle, &u, None, &[]),
            Duration::from_secs(120),
        );
        o.expect_status(0);
        o.expect_output("block: 128 sectors written and read back");
    }
}

#[test]
fn a_network_unikernel_serves_from_the_bundle_as_urunc_starts_it() {
    let tmp = TempDir::new("net");
    let layout = package(Platform::Spt, "echo", &tmp.0, &[]);
    let (bundle, _, u) = unpack(&layout, &tmp.0);
    assert_eq!(u["com.urunc.unikernel.solo5NetDev"], "service");
    let ns = Netns::new("oci");
    ns.add_tap("tap0", Some("10.0.0.1/24"));
    let cmd = urunc_command(
        &bundle,
        &u,
        Some("tap0"),
        &["--ipv4=10.0.0.2/24", "--ipv4-gateway=10.0.0.1"],
    );
    let mut run = Running::start(ns.wrap(&cmd));
    run.wait_line("listening", Duration::from_secs(60));
    let got = ns.run_in(|| {
        let mut s = std::net::TcpStream::connect("10.0.0.2:7").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(b"through the bundle\n").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r
    });
    assert_eq!(got, "through the bundle\n");
    assert!(run.is_running());
}

#[test]
fn packaging_what_is_not_an_image_fails_with_one_line() {
    let tmp = TempDir::new("bad");
    let text = tmp.0.join("notes.txt");
    std::fs::write(&text, "not an image").unwrap();
    let out = tmp.0.join("out");
    let cases: Vec<(String, &str, &str)> = vec![
        (
            text.display().to_string(),
            "hvt",
            "is not a unikernel image",
        ),
        (
            image(Platform::Unix, "hello").display().to_string(),
            "hvt",
            "is not a unikernel image",
        ),
        (
            image(Platform::Hvt, "hello").display().to_string(),
            "spt",
            "is a hvt image, not spt",
        ),
        ("no-such-image".into(), "hvt", "no image `no-such-image`"),
    ];
    for (img, target, msg) in cases {
        let o = morgana(&[
            "package",
            &img,
            "--target",
            target,
            "-o",
            out.to_str().unwrap(),
        ]);
        o.expect_status(1);
        let lines: Vec<&str> = o.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{img}: {:?}", o.stderr);
        assert!(lines[0].contains(msg), "{img}: {}", lines[0]);
        assert!(!out.exists(), "{img}: output written");
    }
}

#[test]
fn a_virtio_image_records_qemu_and_boots_from_the_bundle() {
    let tmp = TempDir::new("virtio");
    let out = tmp.0.join("layout");
    let img = target_dir().join("unikernels/virtio/hello");
    assert!(
        img.is_file(),
        "{} is missing: build the images with `cargo xtask build`",
        img.display()
    );
    morgana(&[
        "package",
        img.to_str().unwrap(),
        "--target",
        "virtio",
        "--cmdline",
        "one two",
        "-o",
        out.to_str().unwrap(),
    ])
    .expect_status(0);
    let (bundle, config, u) = unpack(&out, &tmp.0);
    assert_eq!(u["com.urunc.unikernel.hypervisor"], "qemu");
    assert_eq!(u["com.urunc.unikernel.binary"], "/unikernel/hello.virtio");
    // No devices: no bindings, just the end of them.
    assert_eq!(u["com.urunc.unikernel.cmdline"], "-- one two");
    assert_eq!(config["process"]["args"], json(r#"["--","one","two"]"#));
    // QEMU boots the bundle's binary (through `morgana run`, which adds the
    // same `--` itself).
    let bin = bundle.join("rootfs/unikernel/hello.virtio");
    let mut args = vec!["run", "--target", "virtio", bin.to_str().unwrap()];
    let recorded = u["com.urunc.unikernel.cmdline"].clone();
    args.extend(recorded.split_whitespace());
    let mut c = Command::new(target_dir().join("release/morgana"));
    c.args(&args);
    let o = run_command(c, Duration::from_secs(120));
    o.expect_status(0);
    o.expect_output("Command line: one two");
}

/// A networked virtio image as urunc starts it on QEMU (its `qemu`
/// monitor, `mirage` type): the bundle's binary as `-kernel` on the default
/// machine, the tap behind `virtio-net-pci`, and `-append` with urunc's
/// `--ipv4=... --ipv4-gateway=...` before the recorded command line (which
/// starts with the bindings). The guest binds its device and serves.
#[test]
fn a_networked_virtio_image_serves_from_the_bundle_as_urunc_starts_it() {
    let tmp = TempDir::new("virtio-net");
    let layout = package(Platform::Virtio, "echo", &tmp.0, &[]);
    let (bundle, _, u) = unpack(&layout, &tmp.0);
    assert_eq!(u["com.urunc.unikernel.hypervisor"], "qemu");
    assert_eq!(u["com.urunc.unikernel.solo5NetDev"], "service");
    assert_eq!(u["com.urunc.unikernel.cmdline"], "--net:service=virtio0 --");
    let ns = Netns::new("ocivirtio");
    ns.add_tap("tap0", Some("10.0.0.1/24"));
    let mut c = ns.command("qemu-system-x86_64");
    c.args([
        "-m",
        "128",
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-display",
        "none",
        "-vga",
        "none",
        "-monitor",
        "null",
        "-serial",
        "stdio",
        "-nodefaults",
        "-no-user-config",
        "-kernel",
    ]);
    c.arg(
        bundle
            .join("rootfs")
            .join(u["com.urunc.unikernel.binary"].trim_start_matches('/')),
    );
    c.args([
        "-netdev",
        "tap,id=net0,script=no,downscript=no,ifname=tap0",
        "-device",
        "virtio-net-pci,netdev=net0,host_mtu=1500,mac=52:54:00:12:34:56",
        "-append",
    ]);
    c.arg(format!(
        "--ipv4=10.0.0.2/24 --ipv4-gateway=10.0.0.1 {}",
        u["com.urunc.unikernel.cmdline"]
    ));
    let mut run = Running::start(c);
    run.wait_line("listening", Duration::from_secs(60));
    let got = ns.run_in(|| {
        let mut s = std::net::TcpStream::connect("10.0.0.2:7").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(b"through the virtio bundle\n").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r
    });
    assert_eq!(got, "through the virtio bundle\n");
    assert!(run.is_running());
}

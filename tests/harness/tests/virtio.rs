//! The virtio platform beyond the cross-platform table (which runs on QEMU
//! microvm): the same images on QEMU q35 over virtio-pci (hello, block,
//! TCP echo, http-hello), and the unikernel's own checks of its command
//! line when it runs on a bare QEMU, without `morgana run` checking the
//! devices first: a device it does not declare, a declared device with no
//! virtio device, a command line naming a missing virtio device, a block
//! device that is not a whole number of sectors. Each is one line and
//! status 1 (QEMU's `isa-debug-exit` status 3). And the command line in
//! urunc's order (its network options before the bindings) on QEMU `pc`.

use morgana_tests::net::Netns;
use morgana_tests::{Output, Platform, Running, TempFile, boot, command, image, run_command};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::time::Duration;

const Q35: Platform = Platform::VirtioPci;

#[test]
fn q35_hello() {
    let o = boot(Q35, "hello", &[], &["a", "b", "c"]);
    o.expect_status(0);
    assert_eq!(o.stdout, "Hello, world\nCommand line: a b c\n");
    assert_eq!(o.stderr, "");
    for status in [0, 7, 254] {
        boot(Q35, "t-exit", &[], &[&status.to_string()]).expect_status(status);
    }
}

#[test]
fn q35_block_with_both_sector_sizes() {
    const SIZE: u64 = 4 << 20;
    for ss in [512u64, 4096] {
        let disk = TempFile::zeroed(SIZE);
        let block = format!("--block:storage={}", disk.path());
        let size = format!("--block-sector-size:storage={ss}");
        let o = boot(Q35, "t-block", &[&block, &size], &[]);
        o.expect_status(0);
        o.expect_output(&format!("block: {} sectors of {ss} bytes", SIZE / ss));
        o.expect_output("block: OK");
        let bytes = std::fs::read(&disk.0).unwrap();
        // t-block's pattern: word w of sector s is s << 32 | w.
        let last = SIZE / ss - 1;
        let at = (last * ss + 8) as usize;
        let word = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        assert_eq!(word, (last << 32) | 1, "the host sees what the guest wrote");
    }
}

/// Boots `image` on q35 in a namespace of its own with tap0 = 10.0.0.1/24.
fn q35_net(tag: &str, image: &str, ready: &str) -> (Running, Netns) {
    let ns = Netns::new(tag);
    ns.add_tap("tap0", Some("10.0.0.1/24"));
    let cmd = command(Q35, image, &["--net:service=tap0"], &["--ipv4=10.0.0.2/24"]);
    let mut run = Running::start(ns.wrap(&cmd));
    run.wait_line(ready, Duration::from_secs(60));
    (run, ns)
}

#[test]
fn q35_tcp_echo_of_one_mib() {
    let (_run, ns) = q35_net("vq35echo", "echo", "listening");
    let n = ns.run_in(|| {
        let s = TcpStream::connect_timeout(&"10.0.0.2:7".parse().unwrap(), Duration::from_secs(60))
            .expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let data: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut w = s.try_clone().unwrap();
        let sent = data.clone();
        let writer = std::thread::spawn(move || {
            w.write_all(&sent).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut back = Vec::new();
        (&s).read_to_end(&mut back).expect("read");
        writer.join().unwrap();
        assert!(back == data, "the echo differs ({} bytes back)", back.len());
        back.len()
    });
    assert_eq!(n, 1 << 20);
}

#[test]
fn q35_http_hello_answers_keep_alive_requests() {
    let (_run, ns) = q35_net("vq35http", "http-hello", "listening");
    ns.run_in(|| {
        let mut s =
            TcpStream::connect_timeout(&"10.0.0.2:80".parse().unwrap(), Duration::from_secs(60))
                .expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        for path in ["/", "/", "/nope"] {
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut b).expect("response");
                head.push(b[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("Content-Length: ")
                        .or(l.strip_prefix("content-length: "))
                })
                .expect("a Content-Length")
                .trim()
                .parse()
                .unwrap();
            let mut body = vec![0u8; len];
            s.read_exact(&mut body).unwrap();
            let want = if path == "/" {
                "HTTP/1.1 200"
            } else {
                "HTTP/1.1 404"
            };
            assert!(head.starts_with(want), "{path}: {head}");
        }
    });
}

/// Runs `image` on a bare QEMU microvm (no host channel, so the guest's
/// errors go to its console) with `devices` and command line `append`.
fn bare_qemu(image_name: &str, devices: &[String], append: &str) -> Output {
    let mut c = Command::new("qemu-system-x86_64");
    qemu_tcg_args(&mut c, "microvm,acpi=off", image_name);
    c.args(devices).arg("-append").arg(append);
    run_command(c, Duration::from_secs(60))
}

/// Adds to `c`, a QEMU command, a TCG guest on `machine` with 128 MiB, no
/// default devices, the console on stdio, `isa-debug-exit`, and the
/// virtio image `image_name` as its kernel.
fn qemu_tcg_args(c: &mut Command, machine: &str, image_name: &str) {
    c.args([
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-M",
        machine,
        "-m",
        "128",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-serial",
        "stdio",
        "-device",
        "isa-debug-exit,iobase=0x501,iosize=2",
        "-kernel",
    ]);
    c.arg(image(Platform::Virtio, image_name));
}

fn blk(path: &str, sector: u32) -> Vec<String> {
    vec![
        "-drive".into(),
        format!("id=d0,file={path},format=raw,if=none,file.locking=off"),
        "-device".into(),
        format!(
            "virtio-blk-device,drive=d0,logical_block_size={sector},physical_block_size={sector}"
        ),
    ]
}

/// One line on the console, `morgana: ` and `msg`, and QEMU's status 3
/// (the guest's 1 through isa-debug-exit).
#[track_caller]
fn expect_guest_error(o: &Output, msg: &str) {
    assert_eq!(
        o.status, 3,
        "status\n--- stdout\n{}--- stderr\n{}",
        o.stdout, o.stderr
    );
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {:?}", o.stdout);
    assert!(lines[0].starts_with("morgana: "), "{:?}", lines[0]);
    assert!(lines[0].contains(msg), "{:?} lacks {msg:?}", lines[0]);
}

#[test]
fn guest_refuses_a_command_line_naming_a_missing_virtio_device() {
    let disk = TempFile::zeroed(1 << 20);
    let o = bare_qemu("t-block", &blk(disk.path(), 512), "--block:storage=virtio3");
    expect_guest_error(
        &o,
        "--block:storage=virtio3: there is no virtio device 'virtio3' (found: virtio0 (block, mmio@0x",
    );
    // A device of the wrong kind.
    let o = bare_qemu("t-echo", &blk(disk.path(), 512), "--net:service=virtio0");
    expect_guest_error(
        &o,
        "--net:service=virtio0: virtio0 is a block device, not a net device",
    );
}

#[test]
fn guest_refuses_undeclared_and_unattached_devices() {
    let disk = TempFile::zeroed(1 << 20);
    let o = bare_qemu("hello", &blk(disk.path(), 512), "--block:storage=virtio0");
    expect_guest_error(
        &o,
        "device 'storage' is not declared by the unikernel (it declares: no devices)",
    );
    let o = bare_qemu("t-block", &[], "");
    expect_guest_error(
        &o,
        "declared but not attached: storage (BLOCK_BASIC) (every declared device must be attached; virtio devices found: none)",
    );
}

#[test]
fn guest_refuses_a_block_device_that_is_not_whole_sectors() {
    // 1 MiB and 512 bytes: whole 512-byte sectors for QEMU, not 4096-byte ones.
    let disk = TempFile::zeroed((1 << 20) + 512);
    let o = bare_qemu("t-block", &blk(disk.path(), 4096), "");
    expect_guest_error(
        &o,
        "block device 'storage' (virtio0): size 1049088 is not a positive multiple of the sector size 4096",
    );
    // Nothing was written.
    assert!(std::fs::read(&disk.0).unwrap().iter().all(|&b| b == 0));
}

/// urunc's order: for a `mirage` image on QEMU, urunc appends
/// `--ipv4=ADDR/N --ipv4-gateway=GW` and then the image's command line,
/// which `morgana package --target virtio` starts with the bindings and
/// `--`; QEMU is its default machine (`pc`) with a tap behind a
/// virtio-net-pci device. The guest binds `service`, takes its address
/// from the options before the bindings, and gets the arguments after
/// `--`: `fetch 10.0.0.1 PORT` reaches a server on the tap. Then the same
/// with a second NIC, on a tap nobody answers, in front (virtio0): the
/// binding `--net:service=virtio1`, not the fallback to the first net
/// device, must pick the live one.
#[test]
fn guest_binds_devices_after_urunc_network_options() {
    urunc_fetch(false);
    urunc_fetch(true);
}

fn urunc_fetch(dead_nic_first: bool) {
    let ns = Netns::new("vurunc");
    ns.add_tap("tap0", Some("10.0.0.1/24"));
    let listener = ns.run_in(|| std::net::TcpListener::bind("10.0.0.1:0").expect("bind"));
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut req = Vec::new();
        let mut b = [0u8; 1];
        while !req.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).expect("request");
            req.push(b[0]);
        }
        s.write_all(b"HTTP/1.0 200 OK\r\n\r\nhello from the host\n")
            .unwrap();
        (peer, String::from_utf8_lossy(&req).into_owned())
    });
    let mut c = ns.command("qemu-system-x86_64");
    qemu_tcg_args(&mut c, "pc", "fetch");
    let mut live = "virtio0";
    if dead_nic_first {
        ns.add_tap("tap1", None);
        c.args([
            "-netdev",
            "tap,id=dead,script=no,downscript=no,ifname=tap1",
            "-device",
            "virtio-net-pci,netdev=dead,mac=52:54:00:12:34:57",
        ]);
        live = "virtio1";
    }
    c.args([
        "-netdev",
        "tap,id=net0,script=no,downscript=no,ifname=tap0",
        "-device",
        "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56",
        "-append",
    ]);
    c.arg(format!(
        "--ipv4=10.0.0.2/24 --ipv4-gateway=10.0.0.1 --net:service={live} -- 10.0.0.1 {port}"
    ));
    let o = run_command(c, Duration::from_secs(120));
    assert_eq!(
        o.status, 1,
        "fetch's status 0 (isa-debug-exit 1)\n--- stdout\n{}--- stderr\n{}",
        o.stdout, o.stderr
    );
    o.expect_output("fetch: my address is 10.0.0.2");
    o.expect_output("hello from the host");
    let (peer, req) = server.join().unwrap();
    assert_eq!(peer.ip().to_string(), "10.0.0.2");
    assert!(req.starts_with("GET / HTTP/1.0"), "{req:?}");
}

/// The program sees the leading options that are not bindings, in order,
/// and the arguments after `--`; a binding after another option is still
/// read as a binding (`hello` declares no devices, so it is refused), and
/// one after `--` is an argument.
#[test]
fn guest_takes_bindings_out_of_the_leading_options_only() {
    let o = bare_qemu(
        "hello",
        &[],
        "--ipv4=10.0.0.2/24 --x=1 -- a --net:service=virtio0 b",
    );
    assert_eq!(o.status, 1, "{}{}", o.stdout, o.stderr);
    assert_eq!(
        o.stdout,
        "Hello, world\nCommand line: --ipv4=10.0.0.2/24 --x=1 a --net:service=virtio0 b\n"
    );
    let disk = TempFile::zeroed(1 << 20);
    let o = bare_qemu(
        "hello",
        &blk(disk.path(), 512),
        "--ipv4=10.0.0.2/24 --block:storage=virtio0 -- a",
    );
    expect_guest_error(
        &o,
        "device 'storage' is not declared by the unikernel (it declares: no devices)",
    );
    // Without `--`, the first word that is not an option ends them.
    let o = bare_qemu("hello", &[], "--ipv4=10.0.0.2/24 a --net:service=virtio0");
    assert_eq!(
        o.stdout,
        "Hello, world\nCommand line: --ipv4=10.0.0.2/24 a --net:service=virtio0\n"
    );
}

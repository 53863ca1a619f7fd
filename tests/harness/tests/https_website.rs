//! The `https-website` example (website over TLS) with real traffic
//! through a tap: `curl --cacert` fetches every file of `examples/site`
//! byte for byte over TLS 1.3 from the baked store and from a FAT disk (on
//! spt, virtio and unix; on hvt, whose emulated handshake takes seconds
//! to tens of seconds under load, one small file); a curl that does not
//! trust the CA is refused; a mismatched certificate and key stop it at
//! boot with one line.

use morgana_tests::net::Netns;
use morgana_tests::site::{files, site, url, want_type};
use morgana_tests::storage::{TempDir, mcopy_in, mkfs, tool};
use morgana_tests::{Platform, Running, TempFile, command, run_command};
use std::path::{Path, PathBuf};
use std::time::Duration;

const MAC: &str = "02:00:00:00:00:02";

/// A CA (`ca.pem`) and a P-256 certificate it signed for 10.0.0.2
/// (`srv.pem`, `srv.key`) in `dir`; a second key (`other.key`).
fn make_pki(dir: &Path) {
    let d = dir.to_str().unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let (cakey, capem) = (format!("{d}/ca.key"), format!("{d}/ca.pem"));
    let mut a = vec!["req", "-x509"];
    a.extend(ec);
    a.extend(["-keyout", &cakey, "-out", &capem, "-days", "30"]);
    a.extend(["-subj", "/CN=https-website test CA"]);
    a.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
    a.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    tool("openssl", &a);
    for name in ["srv", "other"] {
        let mut a = vec!["req"];
        a.extend(ec);
        let (k, c) = (format!("{d}/{name}.key"), format!("{d}/{name}.csr"));
        a.extend(["-keyout", &k, "-out", &c, "-subj", "/CN=10.0.0.2"]);
        tool("openssl", &a);
    }
    std::fs::write(
        dir.join("srv.ext"),
        "subjectAltName=IP:10.0.0.2\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    tool(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &format!("{d}/srv.csr"),
            "-CA",
            &format!("{d}/ca.pem"),
            "-CAkey",
            &format!("{d}/ca.key"),
            "-CAcreateserial",
            "-out",
            &format!("{d}/srv.pem"),
            "-days",
            "30",
            "-extfile",
            &format!("{d}/srv.ext"),
        ],
    );
}

/// `parts` concatenated and zero-padded to whole sectors, as `dir/name`.
fn image_of(dir: &TempDir, name: &str, parts: &[&str]) -> String {
    let mut img = Vec::new();
    for p in parts {
        img.extend(std::fs::read(dir.join(p)).unwrap());
    }
    img.resize(img.len().div_ceil(512) * 512, 0);
    let p = dir.join(name);
    std::fs::write(&p, img).unwrap();
    p.display().to_string()
}

/// Boots https-website on `p` in a namespace of its own.
fn boot(p: Platform, files: &str, tls: &str, store: &str) -> (Netns, Running) {
    let ns = Netns::new("hweb");
    ns.add_tap("tap0", Some("10.0.0.1/24"));
    // A fixed neighbour entry: a slow (hvt) guest may answer ARP after
    // curl has given up on the address.
    ns.ip(&[
        "neigh",
        "add",
        "10.0.0.2",
        "lladdr",
        MAC,
        "dev",
        "tap0",
        "nud",
        "permanent",
    ]);
    let mut guest = vec!["--ipv4=10.0.0.2/24".to_string(), format!("--store={store}")];
    if p == Platform::Hvt {
        guest.push("--tls-handshake-timeout=300".into());
    }
    let guest: Vec<&str> = guest.iter().map(String::as_str).collect();
    let mut run = Running::start(ns.wrap(&command(
        p,
        "https-website",
        &[
            "--net:service=tap0",
            &format!("--net-mac:service={MAC}"),
            &format!("--block:files={files}"),
            &format!("--block:tls={tls}"),
        ],
        &guest,
    )));
    let wait = if p == Platform::Hvt { 600 } else { 120 };
    run.wait_line(
        &format!("https-website: serving the {store} store on port 443"),
        Duration::from_secs(wait),
    );
    (ns, run)
}

#[test]
fn https_website_serves_every_file_byte_for_byte() {
    let dir = TempDir::new("hweb");
    make_pki(&dir.0);
    let ca = dir.join("ca.pem").display().to_string();
    let tls = image_of(&dir, "tls.img", &["srv.pem", "srv.key"]);
    let none = TempFile::zeroed(512);
    let fat = TempFile::zeroed(16 << 20);
    mkfs(fat.path(), 16);
    mcopy_in(fat.path(), &site());
    let mut all = Vec::new();
    files(&site(), "", &mut all);
    assert!(all.len() >= 9, "examples/site changed");
    for p in Platform::ALL {
        let hvt = p == Platform::Hvt;
        let stores: &[(&str, &str)] = if hvt {
            &[("baked", none.path())]
        } else {
            &[("baked", none.path()), ("fat", fat.path())]
        };
        for &(store, disk) in stores {
            let (ns, mut run) = boot(p, disk, &tls, store);
            // Every file (on hvt one) in one curl run: one TLS 1.3
            // handshake, the transfers over the kept-alive connection.
            let want: Vec<&(String, PathBuf)> = if hvt {
                all.iter().filter(|(k, _)| k == "index.html").collect()
            } else {
                all.iter().collect()
            };
            let mut c = ns.command("curl");
            c.args(["-sS", "--max-time", "900", "--tlsv1.3", "--cacert", &ca]);
            c.args(["-w", "%{http_code} %{content_type}\\n"]);
            for (i, (key, _)) in want.iter().enumerate() {
                c.arg("-o")
                    .arg(dir.join(&format!("{store}{i}")))
                    .arg(url("https://10.0.0.2/", key));
            }
            let t = std::time::Instant::now();
            let o = c.output().expect("run curl");
            eprintln!(
                "{p:?} {store}: {} file(s) over one TLS connection in {:?}",
                want.len(),
                t.elapsed()
            );
            assert!(
                o.status.success(),
                "{p:?} {store}: curl: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let meta = String::from_utf8(o.stdout).unwrap();
            let meta: Vec<&str> = meta.lines().collect();
            assert_eq!(meta.len(), want.len(), "{p:?} {store}: {meta:?}");
            for (i, (key, path)) in want.iter().enumerate() {
                assert_eq!(
                    meta[i],
                    format!("200 {}", want_type(key)),
                    "{p:?} {store}: {key}"
                );
                assert!(
                    std::fs::read(dir.join(&format!("{store}{i}"))).unwrap()
                        == std::fs::read(path).unwrap(),
                    "{p:?} {store}: {key}: bytes differ"
                );
            }
            if !hvt {
                // A client that does not trust the CA gets no page.
                let o = ns
                    .command("curl")
                    .args(["-sS", "--max-time", "60", "https://10.0.0.2/index.html"])
                    .output()
                    .expect("run curl");
                assert!(
                    !o.status.success(),
                    "{p:?}: an untrusted certificate passed"
                );
                assert!(o.stdout.is_empty(), "{p:?}");
                // A missing file is 404 over TLS too.
                let o = ns
                    .command("curl")
                    .args(["-sS", "--max-time", "60", "--cacert", &ca])
                    .args(["-o", "/dev/null", "-w", "%{http_code}"])
                    .arg("https://10.0.0.2/no/such.html")
                    .output()
                    .expect("run curl");
                assert_eq!(o.stdout, b"404", "{p:?} {store}");
            }
            assert!(run.is_running(), "{p:?} {store}: https-website died");
        }
    }
}

#[test]
fn a_mismatched_identity_or_bad_store_is_refused_with_one_line() {
    let dir = TempDir::new("hwebbad");
    make_pki(&dir.0);
    let good = image_of(&dir, "good.img", &["srv.pem", "srv.key"]);
    let bad = image_of(&dir, "bad.img", &["srv.pem", "other.key"]);
    let none = TempFile::zeroed(512);
    for p in [Platform::Spt, Platform::Unix] {
        let ns = Netns::new("hwebbad");
        ns.add_tap("tap0", Some("10.0.0.1/24"));
        for (tls, store, msg) in [
            (&bad, "baked", "does not match"),
            (
                &good,
                "zip",
                "https-website: --store=zip: expected baked, tar or fat",
            ),
        ] {
            let o = run_command(
                ns.wrap(&command(
                    p,
                    "https-website",
                    &[
                        "--net:service=tap0",
                        &format!("--block:files={}", none.path()),
                        &format!("--block:tls={tls}"),
                    ],
                    &["--ipv4=10.0.0.2/24", &format!("--store={store}")],
                )),
                Duration::from_secs(120),
            );
            o.expect_status(1);
            let all = format!("{}{}", o.stdout, o.stderr);
            let errs: Vec<&str> = all.lines().filter(|l| l.contains(msg)).collect();
            assert!(
                errs.len() == 1,
                "{p:?}: expected one line with {msg:?}:\n{all}"
            );
            assert!(
                !all.contains("serving the"),
                "{p:?}: it served with {msg:?}:\n{all}"
            );
        }
    }
}

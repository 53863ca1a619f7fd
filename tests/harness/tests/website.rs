//! The `website` example on every platform and from every store (baked
//! into the image, a tar archive, a FAT file system): curl fetches every
//! file of `examples/site` and compares the bytes and content types;
//! `HEAD`, `If-None-Match`/`ETag` (304), 404, 405 and keep-alive behave;
//! a bad `--store` is refused with one line.

use morgana_tests::net::Netns;
use morgana_tests::site::{files, site, url, want_type};
use morgana_tests::storage::{TempDir, mcopy_in, mkfs, tool};
use morgana_tests::{Platform, Running, TempFile, command, run_command};
use std::time::Duration;

const MAC: &str = "02:00:00:00:00:02";

/// Runs curl in `ns` with `args`; returns (stdout, stderr).
fn curl(ns: &Netns, args: &[&str]) -> (Vec<u8>, String) {
    let o = ns
        .command("curl")
        .args(["-sS", "--max-time", "120"])
        .args(args)
        .output()
        .expect("run curl (install curl)");
    assert!(
        o.status.success(),
        "curl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.stdout, String::from_utf8_lossy(&o.stderr).into_owned())
}

/// The value of header `name` in a curl `-D -` dump.
fn header(dump: &str, name: &str) -> Option<String> {
    dump.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

fn check_site(p: Platform, ns: &Netns, store: &str) {
    let mut all = Vec::new();
    files(&site(), "", &mut all);
    assert!(all.len() >= 9, "examples/site changed");
    let out = TempDir::new("website");
    for (i, (key, path)) in all.iter().enumerate() {
        let file = out.join(&format!("f{i}"));
        let (meta, _) = curl(
            ns,
            &[
                "-o",
                file.to_str().unwrap(),
                "-w",
                "%{http_code} %{content_type}",
                &url("http://10.0.0.2/", key),
            ],
        );
        let meta = String::from_utf8(meta).unwrap();
        assert_eq!(
            meta,
            format!("200 {}", want_type(key)),
            "{p:?} {store}: {key}"
        );
        assert!(
            std::fs::read(&file).unwrap() == std::fs::read(path).unwrap(),
            "{p:?} {store}: {key}: bytes differ"
        );
    }
    // A directory path answers its index.html.
    let (body, _) = curl(ns, &["http://10.0.0.2/docs/"]);
    assert_eq!(body, std::fs::read(site().join("docs/index.html")).unwrap());

    // HEAD: the headers of GET, no body.
    let (dump, _) = curl(ns, &["-I", "http://10.0.0.2/index.html"]);
    let dump = String::from_utf8(dump).unwrap();
    let len = std::fs::metadata(site().join("index.html")).unwrap().len();
    assert!(dump.starts_with("HTTP/1.1 200"), "{p:?} {store}: {dump}");
    assert_eq!(
        header(&dump, "Content-Length"),
        Some(len.to_string()),
        "{dump}"
    );
    let tag = header(&dump, "ETag").expect("an ETag");

    // If-None-Match with the tag: 304; with another: the file.
    let (code, _) = curl(
        ns,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &format!("If-None-Match: {tag}"),
            "http://10.0.0.2/index.html",
        ],
    );
    assert_eq!(code, b"304", "{p:?} {store}");
    let (code, _) = curl(
        ns,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "If-None-Match: \"other\"",
            "http://10.0.0.2/index.html",
        ],
    );
    assert_eq!(code, b"200", "{p:?} {store}");

    // 404 and 405.
    for (args, want) in [
        (vec!["http://10.0.0.2/no/such/file.html"], b"404"),
        (
            vec!["http://10.0.0.2/../etc/passwd", "--path-as-is"],
            b"404",
        ),
        (vec!["-X", "POST", "http://10.0.0.2/index.html"], b"405"),
    ] {
        let mut a = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        a.extend(args);
        let (code, _) = curl(ns, &a);
        assert_eq!(code, want, "{p:?} {store}: {a:?}");
    }

    // Keep-alive: three requests in one curl run share one connection.
    let (body, err) = curl(
        ns,
        &[
            "-v",
            "http://10.0.0.2/style.css",
            "http://10.0.0.2/app.js",
            "http://10.0.0.2/data.json",
        ],
    );
    assert!(
        err.matches("Connected to").count() == 1 && err.contains("existing connection"),
        "{p:?} {store}: not kept alive:\n{err}"
    );
    assert_eq!(
        body.len() as u64,
        ["style.css", "app.js", "data.json"]
            .iter()
            .map(|f| std::fs::metadata(site().join(f)).unwrap().len())
            .sum::<u64>()
    );
}

/// A tar archive and a FAT image of examples/site.
fn disks() -> (TempFile, TempFile) {
    let tar = TempFile::zeroed(0);
    tool(
        "tar",
        &["-C", site().to_str().unwrap(), "-cf", tar.path(), "."],
    );
    let fat = TempFile::zeroed(16 << 20);
    mkfs(fat.path(), 16);
    mcopy_in(fat.path(), &site());
    (tar, fat)
}

#[test]
fn website_serves_every_file_from_every_store() {
    let (tar, fat) = disks();
    let none = TempFile::zeroed(512);
    for p in Platform::ALL {
        for (store, disk) in [("baked", &none), ("tar", &tar), ("fat", &fat)] {
            let ns = Netns::new("web");
            ns.add_tap("tap0", Some("10.0.0.1/24"));
            // A fixed neighbour entry: a slow (hvt) guest may answer ARP
            // after curl has given up on the address.
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
            let mut run = Running::start(ns.wrap(&command(
                p,
                "website",
                &[
                    "--net:service=tap0",
                    &format!("--net-mac:service={MAC}"),
                    &format!("--block:files={}", disk.path()),
                ],
                &["--ipv4=10.0.0.2/24", &format!("--store={store}")],
            )));
            run.wait_line(
                &format!("website: serving the {store} store"),
                Duration::from_secs(120),
            );
            check_site(p, &ns, store);
            assert!(run.is_running(), "{p:?} {store}: the website died");
        }
    }
}

#[test]
fn a_bad_store_switch_or_disk_is_refused_with_one_line() {
    let (tar, _fat) = disks();
    for p in Platform::ALL {
        let ns = Netns::new("webbad");
        ns.add_tap("tap0", Some("10.0.0.1/24"));
        for (disk, store, msg) in [
            (
                tar.path(),
                "zip",
                "website: --store=zip: expected baked, tar or fat",
            ),
            (
                tar.path(),
                "fat",
                "website: files: the device does not hold a FAT file system",
            ),
        ] {
            let o = run_command(
                ns.wrap(&command(
                    p,
                    "website",
                    &["--net:service=tap0", &format!("--block:files={disk}")],
                    &["--ipv4=10.0.0.2/24", &format!("--store={store}")],
                )),
                Duration::from_secs(120),
            );
            o.expect_status(1);
            let all = format!("{}{}", o.stdout, o.stderr);
            let errs: Vec<&str> = all.lines().filter(|l| l.contains("website:")).collect();
            assert!(
                errs.len() == 1 && errs[0].contains(msg),
                "{p:?}: expected one line with {msg:?}:\n{all}"
            );
        }
    }
}

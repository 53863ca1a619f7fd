//! The metrics endpoint (`morgana_metrics::spawn(&stack, 9100)`) of the
//! `t-metrics` kernel, scraped with curl before and while wrk loads its
//! HTTP server: the format is Prometheus text, and the counters rise.

use morgana_tests::net::Netns;
use morgana_tests::{Platform, Running, command};
use std::collections::BTreeMap;
use std::time::Duration;

/// Scrapes the endpoint with curl from inside `ns`; the samples by name.
fn scrape(ns: &Netns) -> (String, BTreeMap<String, f64>) {
    let o = ns
        .command("curl")
        .args([
            "-sS",
            "--max-time",
            "60",
            "-D",
            "-",
            "http://10.0.0.2:9100/metrics",
        ])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "curl failed: {text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (head, body) = text.split_once("\r\n\r\n").expect("headers and body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let mut samples = BTreeMap::new();
    for line in body.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name, value) = line.split_once(' ').expect("name value");
        samples.insert(name.to_string(), value.parse::<f64>().expect(line));
    }
    (body.to_string(), samples)
}

#[test]
fn metrics_scraped_with_curl_rise_under_wrk_load() {
    for p in Platform::ALL {
        let ns = Netns::new("metrics");
        ns.add_tap("tap0", Some("10.0.0.1/24"));
        let mut run = Running::start(ns.wrap(&command(
            p,
            "t-metrics",
            &["--net:service=tap0"],
            &["--ipv4=10.0.0.2/24"],
        )));
        run.wait_line("listening", Duration::from_secs(60));

        let (body, before) = scrape(&ns);
        for name in [
            "morgana_net_rx_frames_total",
            "morgana_net_tx_bytes_total",
            "morgana_net_sockets",
            "morgana_heap_allocated_bytes",
            "morgana_tasks",
            "morgana_scheduler_polls_total",
            "morgana_scheduler_wakeups_total",
            "morgana_block_ops_total",
            "morgana_clock_monotonic_seconds",
        ] {
            assert!(before.contains_key(name), "{p:?}: no {name} in\n{body}");
        }
        assert!(
            body.contains("# TYPE morgana_net_rx_frames_total counter"),
            "{body}"
        );
        assert!(body.contains("# TYPE morgana_tasks gauge"), "{body}");

        // Load the HTTP server, and scrape while it runs.
        let wrk = ns
            .command("wrk")
            .args([
                "-t",
                "1",
                "-c",
                "4",
                "-d",
                "6s",
                "--timeout",
                "30s",
                "http://10.0.0.2/",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("wrk");
        std::thread::sleep(Duration::from_secs(3));
        let (_, during) = scrape(&ns);
        let out = wrk.wait_with_output().expect("wrk");
        let wrk_out = String::from_utf8_lossy(&out.stdout);
        let requests: u64 = wrk_out
            .lines()
            .find_map(|l| {
                l.trim()
                    .split_once(" requests in ")
                    .map(|(n, _)| n.trim().parse().ok())
            })
            .flatten()
            .unwrap_or_else(|| panic!("{p:?}: wrk output: {wrk_out}"));
        assert!(requests > 0, "{p:?}: {wrk_out}");
        let (after_body, after) = scrape(&ns);
        eprintln!(
            "{p:?}: wrk {requests} requests; rx frames {} -> {} -> {}, tx bytes {} -> {} -> {}, \
             polls {} -> {} -> {}, sockets {} -> {}, tasks {} -> {}",
            before["morgana_net_rx_frames_total"],
            during["morgana_net_rx_frames_total"],
            after["morgana_net_rx_frames_total"],
            before["morgana_net_tx_bytes_total"],
            during["morgana_net_tx_bytes_total"],
            after["morgana_net_tx_bytes_total"],
            before["morgana_scheduler_polls_total"],
            during["morgana_scheduler_polls_total"],
            after["morgana_scheduler_polls_total"],
            before["morgana_net_sockets"],
            during["morgana_net_sockets"],
            before["morgana_tasks"],
            during["morgana_tasks"],
        );
        if p == Platform::Spt {
            eprintln!("{after_body}");
        }

        let rises = |name: &str, min: f64| {
            let (a, b, c) = (before[name], during[name], after[name]);
            assert!(a < b && b < c, "{p:?}: {name} does not rise: {a} {b} {c}");
            assert!(c - a >= min, "{p:?}: {name} rose by {} only", c - a);
        };
        // Every request is at least one frame in and one out.
        rises("morgana_net_rx_frames_total", requests as f64);
        rises("morgana_net_tx_frames_total", requests as f64);
        rises("morgana_net_rx_bytes_total", (requests * 40) as f64);
        rises("morgana_net_tx_bytes_total", (requests * 40) as f64);
        rises("morgana_scheduler_polls_total", requests as f64);
        rises("morgana_scheduler_wakeups_total", 1.0);
        rises("morgana_net_frames_processed_total", requests as f64);
        rises("morgana_clock_monotonic_seconds", 3.0);
        // wrk's connections are open while it runs.
        assert!(
            during["morgana_net_sockets"] > before["morgana_net_sockets"],
            "{p:?}: sockets {} then {}",
            before["morgana_net_sockets"],
            during["morgana_net_sockets"]
        );
        assert!(during["morgana_tasks"] > before["morgana_tasks"], "{p:?}");
        assert_eq!(after["morgana_block_ops_total"], 0.0);
        drop(run);
    }
}

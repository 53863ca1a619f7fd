//! `morgana-metrics`: the counters Morgana's runtime and TCP/IP stack
//! already keep, exposed in the Prometheus text format (0.0.4) by an HTTP
//! endpoint (`GET /metrics`, served by `morgana-http`), enabled in one line:
//!
//! ```no_run
//! # async fn f(stack: morgana_net::Stack) {
//! morgana_metrics::spawn(&stack, 9100);
//! # }
//! ```
//!
//! What is exported:
//!
//! | metric | type | what |
//! |---|---|---|
//! | `morgana_net_rx_frames_total`, `morgana_net_rx_bytes_total` | counter | frames and bytes received by the stack's device |
//! | `morgana_net_tx_frames_total`, `morgana_net_tx_bytes_total` | counter | frames and bytes sent |
//! | `morgana_net_sockets` | gauge | sockets alive (TCP, UDP, listening, internal) |
//! | `morgana_net_driver_runs_total` | counter | runs of the stack's driver task |
//! | `morgana_net_frames_processed_total` | counter | frames the stack processed |
//! | `morgana_net_syns_dropped_total` | counter | SYNs dropped on a full backlog |
//! | `morgana_net_handshakes_timed_out_total` | counter | half-open connections dropped |
//! | `morgana_net_device_errors_total` | counter | frames the device refused |
//! | `morgana_heap_size_bytes`, `morgana_heap_allocated_bytes` | gauge | the heap |
//! | `morgana_tasks` | gauge | tasks alive |
//! | `morgana_scheduler_polls_total` | counter | task polls |
//! | `morgana_scheduler_rounds_total` | counter | scheduler rounds |
//! | `morgana_scheduler_wakeups_total` | counter | yields to the platform (each ends in a wake-up) |
//! | `morgana_block_ops_total` | counter | scheduled block operations performed |
//! | `morgana_clock_monotonic_seconds` | gauge | the monotonic clock (epoch: boot on hvt, the host's on spt and unix) |

#![no_std]

extern crate alloc;

use alloc::string::String;
use core::fmt::Write;
use morgana_http::{Request, Response, Router, Server};
use morgana_net::Stack;

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
    );
}

/// The counters now, in the Prometheus text format.
pub fn render(stack: &Stack) -> String {
    let mut o = String::with_capacity(2048);
    let net = stack.net_stats();
    let st = stack.stats();
    let sched = morgana::stats();
    let mem = morgana::mem_stats();
    let c = "counter";
    let g = "gauge";
    metric(
        &mut o,
        "morgana_net_rx_frames_total",
        c,
        "Frames received.",
        net.rx_packets,
    );
    metric(
        &mut o,
        "morgana_net_rx_bytes_total",
        c,
        "Bytes received.",
        net.rx_bytes,
    );
    metric(
        &mut o,
        "morgana_net_tx_frames_total",
        c,
        "Frames sent.",
        net.tx_packets,
    );
    metric(
        &mut o,
        "morgana_net_tx_bytes_total",
        c,
        "Bytes sent.",
        net.tx_bytes,
    );
    metric(
        &mut o,
        "morgana_net_sockets",
        g,
        "Sockets alive (TCP, UDP, listening, internal).",
        st.sockets as u64,
    );
    metric(
        &mut o,
        "morgana_net_driver_runs_total",
        c,
        "Runs of the stack's driver task.",
        st.driver_runs,
    );
    metric(
        &mut o,
        "morgana_net_frames_processed_total",
        c,
        "Frames the stack processed.",
        st.frames_in,
    );
    metric(
        &mut o,
        "morgana_net_syns_dropped_total",
        c,
        "SYNs dropped because a listener's backlog was full.",
        st.syns_dropped,
    );
    metric(
        &mut o,
        "morgana_net_handshakes_timed_out_total",
        c,
        "Half-open connections dropped after the handshake timeout.",
        st.handshakes_timed_out,
    );
    metric(
        &mut o,
        "morgana_net_device_errors_total",
        c,
        "Frames the device refused.",
        st.device_errors,
    );
    metric(
        &mut o,
        "morgana_heap_size_bytes",
        g,
        "Bytes the heap can hand out in all (0 on unix).",
        mem.heap_size,
    );
    metric(
        &mut o,
        "morgana_heap_allocated_bytes",
        g,
        "Bytes allocated on the heap.",
        mem.allocated,
    );
    metric(&mut o, "morgana_tasks", g, "Tasks alive.", sched.tasks);
    metric(
        &mut o,
        "morgana_scheduler_polls_total",
        c,
        "Task polls.",
        sched.polls,
    );
    metric(
        &mut o,
        "morgana_scheduler_rounds_total",
        c,
        "Scheduler rounds.",
        sched.rounds,
    );
    metric(
        &mut o,
        "morgana_scheduler_wakeups_total",
        c,
        "Yields to the platform, each ended by a wake-up.",
        sched.yields,
    );
    metric(
        &mut o,
        "morgana_block_ops_total",
        c,
        "Scheduled block operations performed.",
        sched.block_ops,
    );
    let up = morgana::Instant::now().as_nanos();
    let _ = write!(
        o,
        "# HELP morgana_clock_monotonic_seconds The monotonic clock (its epoch is the platform's: boot on hvt, the host's on spt and unix).\n\
         # TYPE morgana_clock_monotonic_seconds gauge\n\
         morgana_clock_monotonic_seconds {}.{:09}\n",
        up / 1_000_000_000,
        up % 1_000_000_000
    );
    o
}

/// The router of the endpoint: `GET /metrics` (and `HEAD`); anything else
/// is a 404.
pub fn router(stack: &Stack) -> Router {
    let s = stack.clone();
    Router::new().get("/metrics", move |_: Request| {
        let body = render(&s);
        async move {
            Response::new(200)
                .with_header("Content-Type", CONTENT_TYPE)
                .with_body(body.into_bytes())
        }
    })
}

/// Serves the endpoint on TCP `port` of `stack`; returns only on an error
/// (the port cannot be bound).
pub async fn serve(stack: Stack, port: u16) -> Result<(), morgana_net::Error> {
    Server::new(router(&stack)).serve(&stack, port).await
}

/// Starts the endpoint on TCP `port` of `stack` in a task of its own: the
/// one line that enables metrics. An error binding the port is logged.
pub fn spawn(stack: &Stack, port: u16) -> morgana::JoinHandle<()> {
    let stack = stack.clone();
    morgana::spawn(async move {
        if let Err(e) = serve(stack, port).await {
            morgana::println!("morgana-metrics: cannot serve on port {port}: {e:?}");
        }
    })
}

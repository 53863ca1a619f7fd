//! `morgana trace FILE [--json]`: a trace file written by `--trace=FILE`,
//! as text or as Chrome/Perfetto trace-event JSON.

use anyhow::{Context, Result};
use morgana_abi::trace::{self as t, Event, Header, Kind};
use serde_json::{Value, json};
use std::fmt::Write;
use std::path::Path;

/// A trace file, read back.
pub struct Trace {
    /// Its header.
    pub header: Header,
    /// The events it still holds, oldest first.
    pub events: Vec<Event>,
}

/// Reads the trace file at `path`.
pub fn read(path: &Path) -> Result<Trace> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let header = t::header(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let events = t::events(&bytes, &header).collect();
    Ok(Trace { header, events })
}

fn text_of(e: &Event, from: usize, words: usize) -> String {
    let b = e.text(from, words);
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn level_name(l: u32) -> &'static str {
    match l {
        1 => "ERROR",
        2 => "WARN",
        3 => "INFO",
        4 => "DEBUG",
        5 => "TRACE",
        _ => "?",
    }
}

/// The details of an event, in words.
pub fn details(e: &Event) -> String {
    let d = e.data;
    let rel = |deadline: u64| {
        if deadline == 0 {
            "a poll (no wait)".to_string()
        } else {
            format!(
                "+{:.3} ms",
                deadline.saturating_sub(e.ts) as f64 / 1_000_000.0
            )
        }
    };
    match Kind::from_raw(e.kind) {
        Some(Kind::Spawn) | Some(Kind::Wake) | Some(Kind::Run) => format!("task {}", e.arg),
        Some(Kind::Park) => format!(
            "task {}{}",
            e.arg,
            if d[0] == 1 { " (finished)" } else { "" }
        ),
        Some(Kind::NetRx) | Some(Kind::NetTx) => format!("net {}, {} bytes", e.arg, d[0]),
        Some(Kind::BlockRequest) => format!(
            "block {}, {} at offset {}",
            e.arg,
            if d[1] == 1 { "write" } else { "read" },
            d[0]
        ),
        Some(Kind::BlockComplete) => format!(
            "block {}, offset {}, {}",
            e.arg,
            d[0],
            if d[1] == 0 { "ok" } else { "error" }
        ),
        Some(Kind::Sleep) => format!("until {}", rel(d[0])),
        Some(Kind::Idle) => format!("until {}", rel(d[0])),
        Some(Kind::Ready) => format!("ready set {:#x}", d[0]),
        Some(Kind::Panic) => format!("{:?}", text_of(e, 0, 3)),
        Some(Kind::User) => format!("{} = {}", text_of(e, 0, 2), d[2]),
        Some(Kind::Log) => format!("{} {:?}", level_name(e.arg), text_of(e, 0, 3)),
        Some(Kind::Exit) => format!("status {}", e.arg),
        None => format!("kind {} arg {} data {:x?}", e.kind, e.arg, d),
    }
}

/// How the guest ended, in words.
pub fn ending(h: &Header) -> String {
    match h.end & 0xff {
        t::END_RUNNING => {
            "the guest had not ended (still running, or the tender was killed)".into()
        }
        t::END_EXITED => format!("the guest exited with status {}", (h.end >> 8) & 0xff),
        t::END_ERROR => "the tender stopped the guest on an error".into(),
        t::END_SIGNAL => format!("the guest was killed by signal {}", (h.end >> 8) & 0xff),
        _ => format!("unknown end state {:#x}", h.end),
    }
}

fn kind_name(e: &Event) -> String {
    Kind::from_raw(e.kind).map_or_else(|| format!("kind-{}", e.kind), |k| k.name().into())
}

/// The trace as text: a summary line, then one line per event with its
/// time since the first event kept.
pub fn to_text(tr: &Trace) -> String {
    let h = &tr.header;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} events recorded, the last {} kept (capacity {}); {}",
        h.head,
        tr.events.len(),
        h.capacity,
        ending(h)
    );
    let t0 = tr.events.first().map_or(0, |e| e.ts);
    for e in &tr.events {
        let _ = writeln!(
            s,
            "{:>14.6} ms  {:<14}  {}",
            e.ts.saturating_sub(t0) as f64 / 1_000_000.0,
            kind_name(e),
            details(e)
        );
    }
    s
}

/// The trace as Chrome/Perfetto trace-event JSON: task polls as duration
/// events (`B`/`E`, one track per task), everything else as instant events
/// on the scheduler's track (tid 0) with the details as arguments.
pub fn to_json(tr: &Trace) -> Value {
    let t0 = tr.events.first().map_or(0, |e| e.ts);
    let us = |ts: u64| ts.saturating_sub(t0) as f64 / 1000.0;
    let mut out = Vec::new();
    out.push(json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": 0,
                    "args": {"name": "scheduler"}}));
    for e in &tr.events {
        let kind = Kind::from_raw(e.kind);
        let ev = match kind {
            Some(Kind::Run) => json!({
                "name": format!("task {}", e.arg), "cat": "task", "ph": "B",
                "ts": us(e.ts), "pid": 1, "tid": e.arg + 1,
            }),
            Some(Kind::Park) => json!({
                "name": format!("task {}", e.arg), "cat": "task", "ph": "E",
                "ts": us(e.ts), "pid": 1, "tid": e.arg + 1,
                "args": {"finished": e.data[0] == 1},
            }),
            _ => json!({
                "name": kind_name(e), "cat": "runtime", "ph": "i", "s": "t",
                "ts": us(e.ts), "pid": 1, "tid": 0,
                "args": {"details": details(e), "arg": e.arg},
            }),
        };
        out.push(ev);
    }
    json!({
        "traceEvents": out,
        "displayTimeUnit": "ms",
        "otherData": {
            "recorded": tr.header.head,
            "kept": tr.events.len(),
            "capacity": tr.header.capacity,
            "end": ending(&tr.header),
        },
    })
}

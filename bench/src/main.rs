//! `lockstep-bench`: lockstep jobs side by side with hand-written timely
//! programs doing the same work, in one run.
//!
//! ```text
//! cargo run --release -p lockstep-bench              # the full set (10M Nexmark events)
//! cargo run --release -p lockstep-bench -- --quick   # a small smoke run
//! cargo run --release -p lockstep-bench -- --rss     # q1 at 10M and 100M events: is memory flat?
//! ```
//!
//! Every measurement runs in a child process of its own, so that its peak
//! RSS (`VmHWM`) is its own. Figures go to stdout as a table.

mod baseline;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use lockstep::{GraphBuilder, Registry, RunOptions};

/// What one child process measured.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Measured {
    records: u64,
    output: u64,
    seconds: f64,
    peak_rss_kib: u64,
    epoch_latency_p50_ms: Option<f64>,
    epoch_latency_p99_ms: Option<f64>,
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// The JSON-lines bids file of the file job: `n` bids, 10 per ms.
fn bids_file(n: u64) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
        .join("bench-data");
    std::fs::create_dir_all(&dir).expect("bench-data dir");
    let path = dir.join(format!("bids-{n}.jsonl"));
    let path = std::path::absolute(&path).unwrap_or(path);
    if path.is_file() {
        return path;
    }
    let tmp = dir.join(format!("bids-{n}.jsonl.tmp"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).expect("create"));
    let cfg = nexmark::config::NexmarkConfig {
        base_time: 1_700_000_000_000,
        ..Default::default()
    };
    let gen = nexmark::EventGenerator::new(cfg).with_type_filter(nexmark::event::EventType::Bid);
    for (i, ev) in gen.take(usize::try_from(n).expect("n")).enumerate() {
        if let nexmark::event::Event::Bid(b) = ev {
            // 10 bids per millisecond, in order.
            let ts = 1_700_000_000_000 + i as u64 / 10;
            use std::io::Write;
            writeln!(
                out,
                "{{\"auction\":{},\"bidder\":{},\"price\":{},\"channel\":\"{}\",\"date_time\":{ts},\"extra\":\"{}\"}}",
                b.auction, b.bidder, b.price, b.channel, b.extra
            )
            .expect("write");
        }
    }
    drop(out);
    std::fs::rename(&tmp, &path).expect("rename");
    path
}

fn file_job_graph(file: &Path, out_dir: &Path) -> lockstep::Graph {
    GraphBuilder::new("file-q1")
        .epoch_ms(1000)
        .base_dir(out_dir)
        .source(
            "bids",
            json!({"type": "file", "path": file, "split": 2,
                   "schema": {"auction": "int", "bidder": "int", "price": "int", "channel": "string", "date_time": "timestamp", "extra": "string"},
                   "event_time": {"field": "date_time"}}),
        )
        .node("keep", json!({"type": "filter", "input": "bids", "where": "auction % 123 = 0"}))
        .node("q", json!({"type": "map", "input": "keep",
               "select": {"auction": "auction", "price": "price * 908 / 1000", "bidder": "bidder", "date_time": "date_time"}}))
        .sink("out", json!({"type": "file", "input": "q", "path": "lockstep-out.jsonl"}))
        .build(&Registry::builtin())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn nexmark_graph(query: &str, events: u64) -> lockstep::Graph {
    let b = GraphBuilder::new(query)
        .epoch_ms(1000)
        .source("bid", json!({"type": "nexmark", "events": "bid", "count": events, "base_time": 1_700_000_000_000u64, "partitions": 2}));
    let (b, last) = match query {
        "q0" => (b.node("q", json!({"type": "map", "input": "bid", "select": {"auction": "auction", "bidder": "bidder", "price": "price", "date_time": "date_time", "extra": "extra"}})), "q"),
        "q1" => (b.node("q", json!({"type": "map", "input": "bid", "select": {"auction": "auction", "bidder": "bidder", "price": "price * 908 / 1000", "date_time": "date_time", "extra": "extra"}})), "q"),
        "q2" => (
            b.node("f", json!({"type": "filter", "input": "bid", "where": "auction % 123 = 0"}))
                .node("q", json!({"type": "map", "input": "f", "select": {"auction": "auction", "price": "price"}})),
            "q",
        ),
        other => panic!("unknown query {other}"),
    };
    b.sink("out", json!({"type": "null", "input": last}))
        .build(&Registry::builtin())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Child process: run one measurement and print it as JSON.
fn child(args: &[String]) {
    let (job, imp, workers, n) = (
        &args[0],
        &args[1],
        args[2].parse::<usize>().expect("workers"),
        args[3].parse::<u64>().expect("n"),
    );
    let started = Instant::now();
    let (records, output, p50, p99) = match (job.as_str(), imp.as_str()) {
        ("file", "lockstep") => {
            let file = bids_file(n);
            let dir = tempfile::tempdir().expect("tmp");
            let s = lockstep::run(
                Arc::new(file_job_graph(&file, dir.path())),
                &RunOptions { workers },
            )
            .expect("run");
            (
                s.sources[0].1,
                s.sinks[0].1,
                s.epoch_latency_ms(0.5),
                s.epoch_latency_ms(0.99),
            )
        }
        ("file", "timely") => {
            let file = bids_file(n);
            let dir = tempfile::tempdir().expect("tmp");
            let (r, o) = baseline::file_job(&file, &dir.path().join("out.jsonl"), workers);
            (r, o, None, None)
        }
        (q, "lockstep") => {
            let s =
                lockstep::run(Arc::new(nexmark_graph(q, n)), &RunOptions { workers }).expect("run");
            (
                s.sources[0].1,
                s.sinks[0].1,
                s.epoch_latency_ms(0.5),
                s.epoch_latency_ms(0.99),
            )
        }
        (q, "timely") => {
            let (r, o) = baseline::nexmark(q, n, workers);
            (r, o, None, None)
        }
        _ => panic!("bad child args {args:?}"),
    };
    let m = Measured {
        records,
        output,
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_kib: peak_rss_kib(),
        epoch_latency_p50_ms: p50,
        epoch_latency_p99_ms: p99,
    };
    println!("{}", serde_json::to_string(&m).expect("json"));
}

/// The fastest of `runs` (each made in its own process), so that one
/// disturbed run does not decide a figure; peak RSS is the largest seen.
fn best(runs: Vec<Measured>) -> Measured {
    let peak = runs.iter().map(|m| m.peak_rss_kib).max().unwrap_or(0);
    let mut best = runs
        .into_iter()
        .min_by(|a, b| a.seconds.total_cmp(&b.seconds))
        .expect("at least one run");
    best.peak_rss_kib = peak;
    best
}

/// Runs per figure.
const REPEAT: usize = 3;

fn measure_once(job: &str, imp: &str, workers: usize, n: u64) -> Measured {
    let exe = std::env::current_exe().expect("exe");
    let out = Command::new(exe)
        .args(["--child", job, imp, &workers.to_string(), &n.to_string()])
        .output()
        .expect("spawn child");
    assert!(
        out.status.success(),
        "{job} {imp} -w{workers}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("child output")
}

fn row(job: &str, workers: usize, n: u64) {
    // Alternate the two sides, so that the machine's drift over minutes
    // affects both alike.
    let (mut ls, mut ts) = (Vec::new(), Vec::new());
    for _ in 0..REPEAT {
        ls.push(measure_once(job, "lockstep", workers, n));
        ts.push(measure_once(job, "timely", workers, n));
    }
    let (l, t) = (best(ls), best(ts));
    assert_eq!(
        l.records, t.records,
        "{job}: both sides must read the same records"
    );
    assert_eq!(
        l.output, t.output,
        "{job}: both sides must produce the same number of records"
    );
    #[allow(clippy::cast_precision_loss)]
    let per = |m: &Measured| m.records as f64 / m.seconds / workers as f64;
    let lat = match (l.epoch_latency_p50_ms, l.epoch_latency_p99_ms) {
        (Some(a), Some(b)) => format!("{a:.1}/{b:.1}"),
        _ => "-".to_string(),
    };
    // Nexmark jobs also in Nexmark events (all event numbers the source
    // covered, of which it emits the bids) per second per worker.
    #[allow(clippy::cast_precision_loss)]
    let events = if job == "file" {
        "-".to_string()
    } else {
        format!("{:.2}M", n as f64 / l.seconds / workers as f64 / 1e6)
    };
    println!(
        "| {job:<8} | {workers} | {:>11} | {:>9.2}M | {:>9.2}M | {:>5.2} | {events:>8} | {:>6.1} | {:>6.1} | {lat:>11} |",
        l.records,
        per(&l) / 1e6,
        per(&t) / 1e6,
        per(&l) / per(&t),
        l.peak_rss_kib as f64 / 1024.0,
        t.peak_rss_kib as f64 / 1024.0,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        child(&args[1..]);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let rss = args.iter().any(|a| a == "--rss");
    let (file_n, nex_n) = if quick {
        (200_000, 1_000_000)
    } else {
        (2_000_000, 10_000_000)
    };
    bids_file(file_n);
    println!(
        "lockstep {} vs hand-written timely; records/s per worker (best of {REPEAT}); peak RSS in MiB; epoch latency p50/p99 in ms",
        env!("CARGO_PKG_VERSION")
    );
    println!("| job      | w | records     | lockstep   | timely     | ratio | events l | RSS l  | RSS t  | latency l   |");
    println!("|----------|---|-------------|------------|------------|-------|----------|--------|--------|-------------|");
    if rss {
        for n in [10_000_000, 100_000_000] {
            row("q1", 1, n);
        }
        return;
    }
    for workers in [1, 2] {
        row("file", workers, file_n);
        for q in ["q0", "q1", "q2"] {
            row(q, workers, nex_n);
        }
    }
}

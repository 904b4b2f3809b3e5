//! `lockstep-bench`: lockstep jobs side by side with hand-written timely
//! programs doing the same work, in one run.
//!
//! ```text
//! cargo run --release -p lockstep-bench              # the full set (10M Nexmark events)
//! cargo run --release -p lockstep-bench -- --quick   # a small smoke run
//! cargo run --release -p lockstep-bench -- --rss     # q1 at 10M and 100M events: is memory flat?
//! cargo run --release -p lockstep-bench -- --help    # every flag
//! ```
//!
//! Every measurement runs in a child process of its own, so that its peak
//! RSS (`VmHWM`) is its own. Figures go to stdout as a table.

mod baseline;
mod kafka;
mod stateful;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use lockstep::{GraphBuilder, Registry, RunOptions};

/// Both sides run on mimalloc, the allocator the `lockstep` binary ships
/// with, so that the ratio measures the engine, not two allocators.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What one child process measured.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Measured {
    records: u64,
    output: u64,
    seconds: f64,
    peak_rss_kib: u64,
    epoch_latency_p50_ms: Option<f64>,
    epoch_latency_p99_ms: Option<f64>,
    /// With checkpoints: what they cost.
    checkpoints: Option<CheckpointCost>,
    /// CPU seconds (user + system) of the whole process.
    #[serde(default)]
    cpu_seconds: f64,
}

/// What a run's checkpoints cost.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct CheckpointCost {
    /// Checkpoints (decided epochs, and the final one).
    count: u64,
    /// Bytes of all workers' write batches.
    bytes: u64,
    /// Per worker batch: write time (sync of sinks and the batch) p50, p99, ms.
    p50_ms: f64,
    p99_ms: f64,
    /// Epochs the job covered (to give a per-epoch size).
    epochs: u64,
    /// The checkpoint resumed after, on a restart.
    resumed: Option<u64>,
    /// Time until the state was restored, and until the first output, ms.
    ready_ms: f64,
    first_output_ms: Option<f64>,
    /// Keys held by the stateful nodes at the end.
    keys: i64,
}

/// CPU seconds (user + system, all threads) this process used so far, from
/// /proc/self/stat (in clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime and
    // stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    #[allow(clippy::cast_precision_loss)]
    let ticks = f.iter().sum::<u64>() as f64;
    ticks / 100.0
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

/// The windowed twin of the file job: bids per auction per 10 s tumbling
/// window over the same file, to a `null` sink.
fn file_window_graph(file: &Path) -> lockstep::Graph {
    GraphBuilder::new("file-window")
        .epoch_ms(1000)
        .source(
            "bids",
            json!({"type": "file", "path": file, "split": 2,
                   "schema": {"auction": "int", "bidder": "int", "price": "int", "channel": "string", "date_time": "timestamp", "extra": "string"},
                   "event_time": {"field": "date_time"}}),
        )
        .node("w", json!({"type": "window", "input": "bids", "key": ["auction"],
               "window": {"tumbling_ms": 10000}, "allowed_lateness_ms": 0,
               "aggregate": {"n": "count(*)"}}))
        .sink("out", json!({"type": "null", "input": "w"}))
        .build(&Registry::builtin())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The graphs of `examples/nexmark` for the stateful queries.
fn nexmark_example(query: &str) -> &'static str {
    match query {
        "q3" => include_str!("../../examples/nexmark/q3.json"),
        "q5" => include_str!("../../examples/nexmark/q5.json"),
        "q7" => include_str!("../../examples/nexmark/q7.json"),
        "q8" => include_str!("../../examples/nexmark/q8.json"),
        "q11" => include_str!("../../examples/nexmark/q11.json"),
        other => panic!("unknown query {other}"),
    }
}

/// A graph of `examples/nexmark` with every source's `count` set to
/// `events` and a `null` sink in place of each file sink.
fn nexmark_example_graph(query: &str, events: u64) -> lockstep::Graph {
    let mut g: serde_json::Value =
        serde_json::from_str(nexmark_example(query)).expect("example graph");
    for source in g["sources"].as_object_mut().expect("sources").values_mut() {
        source["count"] = json!(events);
    }
    for sink in g["sinks"].as_object_mut().expect("sinks").values_mut() {
        *sink = json!({"type": "null", "input": sink["input"].clone()});
    }
    lockstep::Graph::from_json_str(&g.to_string(), query, Path::new("."), &Registry::builtin())
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
        other => return nexmark_example_graph(other, events),
    };
    b.sink("out", json!({"type": "null", "input": last}))
        .build(&Registry::builtin())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// What a lockstep run measured: (records read by all sources, records
/// written, epoch latency p50 and p99).
fn lockstep_run(graph: lockstep::Graph, workers: usize) -> (u64, u64, Option<f64>, Option<f64>) {
    let s = lockstep::run(Arc::new(graph), &RunOptions::workers(workers)).expect("run");
    (
        s.sources.iter().map(|(_, r, _)| r).sum(),
        s.sinks[0].1,
        s.epoch_latency_ms(0.5),
        s.epoch_latency_ms(0.99),
    )
}

/// A run as `lockstep run --metrics --ui --events` makes it, with a
/// dashboard open (the SSE stream read) and Prometheus scraping once a
/// second: the cost of observing a job.
fn lockstep_observed(
    graph: lockstep::Graph,
    workers: usize,
) -> (u64, u64, Option<f64>, Option<f64>) {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tmp");
    let graph = Arc::new(graph);
    let observer = lockstep::observe::Observer::new(
        Arc::clone(&graph),
        Some(&dir.path().join("events.jsonl")),
        true,
    )
    .expect("observer");
    let addr = lockstep::observe::serve("127.0.0.1:0", Arc::clone(&observer), true).expect("serve");
    let get = move |path: &'static str, stream: bool| {
        std::thread::spawn(move || loop {
            let Ok(mut s) = std::net::TcpStream::connect(addr) else {
                return;
            };
            let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
            let mut buf = vec![0u8; 1 << 16];
            if stream {
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
                return;
            }
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            std::thread::sleep(std::time::Duration::from_secs(1));
        })
    };
    get("/api/stream", true);
    get("/metrics", false);
    let opts = RunOptions {
        observer: Some(Arc::clone(&observer)),
        ..RunOptions::workers(workers)
    };
    let s = lockstep::run(graph, &opts).expect("run");
    (
        s.sources.iter().map(|(_, r, _)| r).sum(),
        s.sinks[0].1,
        s.epoch_latency_ms(0.5),
        s.epoch_latency_ms(0.99),
    )
}

/// q1 and q5 plain, observed, and hand-written, alternating.
#[allow(clippy::cast_precision_loss)]
fn observe_row(job: &str, workers: usize, n: u64, repeat: usize) {
    let (mut plain, mut obs, mut base) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..repeat {
        plain.push(measure_once(job, "lockstep", workers, n));
        obs.push(measure_once(job, "observed", workers, n));
        base.push(measure_once(job, "timely", workers, n));
    }
    // Medians too: on a noisy machine the best of a few runs moves by
    // several percent. CPU time counts every thread (the HTTP server's,
    // the events writer's) and is less disturbed by other processes.
    let median = |v: &[Measured], f: &dyn Fn(&Measured) -> f64| {
        let mut s: Vec<f64> = v.iter().map(f).collect();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    };
    let wall = |m: &Measured| m.seconds;
    let cpu = |m: &Measured| m.cpu_seconds;
    let (wp, wo) = (median(&plain, &wall), median(&obs, &wall));
    let (cp, co) = (median(&plain, &cpu), median(&obs, &cpu));
    let (p, o, t) = (best(plain), best(obs), best(base));
    assert_eq!(
        p.output, o.output,
        "{job}: observing changed the output count"
    );
    let per = |m: &Measured| m.records as f64 / m.seconds / workers as f64;
    println!(
        "| {job:<4} | {workers} | {:>9.2}M | {:>9.2}M | {:>+7.1}% | {:>+7.1}% | {:>5.2}/{:<5.2} | {:>+7.1}% | {:>9.2}M | {:>6.1} | {:>6.1} |",
        per(&p) / 1e6,
        per(&o) / 1e6,
        (per(&p) / per(&o) - 1.0) * 100.0,
        (wo / wp - 1.0) * 100.0,
        cp,
        co,
        (co / cp - 1.0) * 100.0,
        per(&t) / 1e6,
        p.peak_rss_kib as f64 / 1024.0,
        o.peak_rss_kib as f64 / 1024.0,
    );
}

/// A run with checkpoints in `dir`: what it measured, and what its
/// checkpoints cost.
#[allow(clippy::cast_precision_loss)]
fn lockstep_checkpointed(
    graph: lockstep::Graph,
    workers: usize,
    dir: &Path,
) -> (Measured, CheckpointCost) {
    let opts = RunOptions {
        cluster: None,
        workers,
        state: Some(dir.to_path_buf()),
        fresh: false,
        observer: None,
    };
    let s = lockstep::run(Arc::new(graph), &opts).expect("run");
    let c = &s.checkpoints;
    let cost = CheckpointCost {
        count: c.checkpoints,
        bytes: c.bytes,
        p50_ms: c.write.quantile_ms(0.5).unwrap_or(0.0),
        p99_ms: c.write.quantile_ms(0.99).unwrap_or(0.0),
        epochs: s.epoch_latency.count() as u64,
        resumed: s.resumed,
        ready_ms: s.ready_after.as_secs_f64() * 1000.0,
        first_output_ms: s.first_output_after.map(|d| d.as_secs_f64() * 1000.0),
        keys: s.state.iter().map(|(_, _, end)| end).sum(),
    };
    let m = Measured {
        records: s.sources.iter().map(|(_, r, _)| r).sum(),
        output: s.sinks.first().map_or(0, |x| x.1),
        epoch_latency_p50_ms: s.epoch_latency_ms(0.5),
        epoch_latency_p99_ms: s.epoch_latency_ms(0.99),
        ..Measured::default()
    };
    (m, cost)
}

/// The restart job: an aggregate over `n` distinct keys (a generator's
/// sequence), 20 epochs per partition, written to a file in
/// `dir`.
fn restart_graph(n: u64, dir: &Path) -> lockstep::Graph {
    GraphBuilder::new("restart")
        .epoch_records((n / 40).max(1))
        .base_dir(dir)
        .source(
            "g",
            json!({"type": "generator", "count": n, "partitions": 2, "seed": 1,
                   "fields": {"k": {"sequence": {"start": 0, "step": 1}}, "v": {"random": {"min": 0, "max": 1000}}}}),
        )
        .node("a", json!({"type": "aggregate", "input": "g", "key": ["k"], "aggregate": {"n": "count(*)", "s": "sum(v)"}}))
        .sink("out", json!({"type": "file", "input": "a", "path": "out.jsonl"}))
        .build(&Registry::builtin())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The broker and the bids topic the parent set up.
fn kafka_env() -> (String, String) {
    (
        std::env::var("LOCKSTEP_KAFKA_BROKERS").expect("LOCKSTEP_KAFKA_BROKERS"),
        std::env::var("LOCKSTEP_BENCH_TOPIC").expect("LOCKSTEP_BENCH_TOPIC"),
    )
}

/// The nisshi binary (scripts/setup.sh installs it).
fn nisshi_bin() -> String {
    std::env::var("NISSHI_BIN").unwrap_or_else(|_| {
        format!(
            "{}/.cache/lockstep/nisshi/bin/nisshi",
            std::env::var("HOME").expect("HOME")
        )
    })
}

/// The Kafka benchmarks (`--kafka`): the broker named by
/// `LOCKSTEP_KAFKA_BROKERS`, else a nisshi of our own on loopback.
#[allow(clippy::cast_precision_loss)]
fn kafka_bench(n: u64, repeat: usize, live_only: bool, rate: u64) {
    let mut own = None;
    let brokers = match std::env::var("LOCKSTEP_KAFKA_BROKERS") {
        Ok(b) => b,
        Err(_) => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("port")
                .port();
            let dir = tempfile::tempdir().expect("dir");
            let child = Command::new(nisshi_bin())
                .args([
                    "broker",
                    "--listener-url",
                    &format!("tcp://127.0.0.1:{port}"),
                ])
                .args([
                    "--advertised-listener-url",
                    &format!("tcp://127.0.0.1:{port}"),
                ])
                .args([
                    "--storage-engine",
                    "memory://nisshi/",
                    "--group-initial-rebalance-delay",
                    "0s",
                    "--silent",
                ])
                .current_dir(dir.path())
                .spawn()
                .expect("start nisshi (install it with scripts/setup.sh)");
            let t = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(t.elapsed().as_secs() < 10, "nisshi did not start");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            own = Some((child, dir));
            format!("127.0.0.1:{port}")
        }
    };
    std::env::set_var("LOCKSTEP_KAFKA_BROKERS", &brokers);
    let topic = format!("bench-bids-{}", std::process::id());
    kafka::create_topic(&nisshi_bin(), &brokers, &topic, kafka::PARTITIONS);
    let t = Instant::now();
    let bids = kafka::fill(&brokers, &topic, &bids_file(n));
    println!(
        "lockstep {}: Kafka (nisshi 0.8.1, memory storage, on loopback; {bids} bids from {n} Nexmark events in {} partitions, produced at {:.0}K/s), best of {repeat}; records/s per worker",
        env!("CARGO_PKG_VERSION"),
        kafka::PARTITIONS,
        bids as f64 / t.elapsed().as_secs_f64() / 1e3
    );
    std::env::set_var("LOCKSTEP_BENCH_TOPIC", &topic);
    println!("| job      | w | records     | lockstep   | timely     | ratio | events l | RSS l  | RSS t  | latency l   | out l     | out t     |");
    println!("|----------|---|-------------|------------|------------|-------|----------|--------|--------|-------------|-----------|-----------|");
    for workers in [1, 2] {
        for job in ["kafka-null", "kafka-win"] {
            if !live_only {
                row(job, workers, n, repeat);
            }
        }
    }
    // Latency, live: bids produced at a fixed rate, an unbounded job.
    println!();
    println!("live latency: bids produced at a fixed rate with event time = produce time; an unbounded job (epoch 100 ms, 100 ms windows per auction, Kafka sink); latency = time a window's result is readable from the output topic - the window's end");
    println!("| w | rate/s  | bids      | results   | p50 ms  | p99 ms  |");
    println!("|---|---------|-----------|-----------|---------|---------|");
    for workers in [1, 2] {
        let (input, out) = (
            format!("live-in-{}-{workers}", std::process::id()),
            format!("live-out-{}-{workers}", std::process::id()),
        );
        kafka::create_topic(&nisshi_bin(), &brokers, &input, kafka::PARTITIONS);
        kafka::create_topic(&nisshi_bin(), &brokers, &out, kafka::PARTITIONS);
        let exe = std::env::current_exe().expect("exe");
        let mut child = Command::new(exe)
            .args([
                "--child",
                "kafka-live",
                "lockstep",
                &workers.to_string(),
                "0",
            ])
            .env("LOCKSTEP_BENCH_TOPIC", &input)
            .env("LOCKSTEP_BENCH_OUT", &out)
            .spawn()
            .expect("spawn");
        std::thread::sleep(std::time::Duration::from_secs(2));
        let (mut lat, sent) = kafka::live(&brokers, &input, &out, rate, 10);
        let _ = child.kill();
        let _ = child.wait();
        lat.sort_by(f64::total_cmp);
        let q = |p: f64| {
            lat.get(((lat.len() as f64 - 1.0) * p) as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        println!(
            "| {workers} | {rate:>7} | {sent:>9} | {:>9} | {:>7.1} | {:>7.1} |",
            lat.len(),
            q(0.5),
            q(0.99)
        );
    }
    if let Some((mut child, _dir)) = own {
        let _ = child.kill();
        let _ = child.wait();
    }
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
            lockstep_run(file_job_graph(&file, dir.path()), workers)
        }
        ("file", "timely") => {
            let file = bids_file(n);
            let dir = tempfile::tempdir().expect("tmp");
            let (r, o) = baseline::file_job(&file, &dir.path().join("out.jsonl"), workers);
            (r, o, None, None)
        }
        ("file-win", "lockstep") => lockstep_run(file_window_graph(&bids_file(n)), workers),
        ("kafka-null", imp) => {
            let (b, topic) = kafka_env();
            match imp {
                "lockstep" => lockstep_run(kafka::null_graph(&b, &topic), workers),
                _ => {
                    let (r, o) = kafka::null_job(&b, &topic, workers);
                    (r, o, None, None)
                }
            }
        }
        ("kafka-win", imp) => {
            let (b, topic) = kafka_env();
            let out = format!("bench-out-{}", std::process::id());
            kafka::create_topic(&nisshi_bin(), &b, &out, kafka::PARTITIONS);
            match imp {
                "lockstep" => lockstep_run(kafka::window_graph(&b, &topic, &out), workers),
                _ => {
                    let (r, o) = kafka::window_job(&b, &topic, &out, workers);
                    (r, o, None, None)
                }
            }
        }
        ("kafka-live", _) => {
            // Unbounded: runs until the parent kills it.
            let (b, topic) = kafka_env();
            let out = std::env::var("LOCKSTEP_BENCH_OUT").expect("LOCKSTEP_BENCH_OUT");
            let _ = lockstep::run(
                Arc::new(kafka::live_graph(&b, &topic, &out)),
                &RunOptions::workers(workers),
            );
            return;
        }
        ("file-win", "timely") => {
            let (r, o) = stateful::file_windowed(&bids_file(n), workers);
            (r, o, None, None)
        }
        (q, "checkpointed") => {
            let dir = tempfile::tempdir().expect("tmp");
            let (mut m, cost) =
                lockstep_checkpointed(nexmark_graph(q, n), workers, &dir.path().join("state"));
            m.seconds = started.elapsed().as_secs_f64();
            m.peak_rss_kib = peak_rss_kib();
            m.checkpoints = Some(cost);
            println!("{}", serde_json::to_string(&m).expect("json"));
            return;
        }
        ("restart", phase) => {
            // The parent gives the directory; "crash" aborts inside the
            // final checkpoint, "resume" restarts from the one before.
            let dir =
                PathBuf::from(std::env::var("LOCKSTEP_BENCH_DIR").expect("LOCKSTEP_BENCH_DIR"));
            let (mut m, cost) =
                lockstep_checkpointed(restart_graph(n, &dir), workers, &dir.join("state"));
            assert_eq!(phase, "resume", "the crash phase must not finish");
            m.seconds = started.elapsed().as_secs_f64();
            m.peak_rss_kib = peak_rss_kib();
            m.checkpoints = Some(cost);
            println!("{}", serde_json::to_string(&m).expect("json"));
            return;
        }
        (q, "lockstep") => lockstep_run(nexmark_graph(q, n), workers),
        (q, "observed") => lockstep_observed(nexmark_graph(q, n), workers),
        (q, "timely") => {
            let (r, o) = match q {
                "q5" => stateful::q5(n, workers),
                "q7" => stateful::q7(n, workers),
                _ => baseline::nexmark(q, n, workers),
            };
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
        checkpoints: None,
        cpu_seconds: cpu_seconds(),
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

/// Runs per figure, unless `--repeat` says otherwise.
const REPEAT: usize = 3;

/// The jobs that have a hand-written timely program beside them.
fn has_baseline(job: &str) -> bool {
    !matches!(job, "q3" | "q8" | "q11")
}

fn measure_once(job: &str, imp: &str, workers: usize, n: u64) -> Measured {
    // This very binary, even if a build has replaced the file meanwhile, so
    // that all figures of one run come from the same code.
    let exe = Path::new("/proc/self/exe");
    let exe = if exe.exists() {
        exe.to_path_buf()
    } else {
        std::env::current_exe().expect("exe")
    };
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

#[allow(clippy::cast_precision_loss)]
fn row(job: &str, workers: usize, n: u64, repeat: usize) {
    // Alternate the two sides, so that the machine's drift over minutes
    // affects both alike.
    let baseline = has_baseline(job);
    let (mut ls, mut ts) = (Vec::new(), Vec::new());
    for _ in 0..repeat {
        ls.push(measure_once(job, "lockstep", workers, n));
        if baseline {
            ts.push(measure_once(job, "timely", workers, n));
        }
    }
    let l = best(ls);
    let t = baseline.then(|| best(ts));
    if let Some(t) = &t {
        assert_eq!(
            l.records, t.records,
            "{job}: both sides must read the same records"
        );
        assert_eq!(
            l.output, t.output,
            "{job}: both sides must produce the same number of records (lockstep {}, hand-written {})",
            l.output, t.output
        );
    }
    let per = |m: &Measured| m.records as f64 / m.seconds / workers as f64;
    let lat = match (l.epoch_latency_p50_ms, l.epoch_latency_p99_ms) {
        (Some(a), Some(b)) => format!("{a:.1}/{b:.1}"),
        _ => "-".to_string(),
    };
    // Nexmark jobs also in Nexmark events (all event numbers the sources
    // covered, of which they emit those of their types) per second per
    // worker.
    let events = if job.starts_with("file") || job.starts_with("kafka") {
        "-".to_string()
    } else {
        format!("{:.2}M", n as f64 / l.seconds / workers as f64 / 1e6)
    };
    let mib = |m: &Measured| format!("{:.1}", m.peak_rss_kib as f64 / 1024.0);
    let (timely, ratio, rss_t, out_t) = match &t {
        Some(t) => (
            format!("{:.2}M", per(t) / 1e6),
            format!("{:.2}", per(&l) / per(t)),
            mib(t),
            t.output.to_string(),
        ),
        None => ("-".into(), "-".into(), "-".into(), "-".into()),
    };
    println!(
        "| {job:<8} | {workers} | {:>11} | {:>9.2}M | {timely:>10} | {ratio:>5} | {events:>8} | {:>6} | {rss_t:>6} | {lat:>11} | {:>9} | {out_t:>9} |",
        l.records,
        per(&l) / 1e6,
        mib(&l),
        l.output,
    );
}

/// q5 or q7 with and without checkpoints (every epoch), alternating.
#[allow(clippy::cast_precision_loss)]
fn checkpoint_row(job: &str, workers: usize, n: u64, repeat: usize) {
    let (mut plain, mut ck) = (Vec::new(), Vec::new());
    for _ in 0..repeat {
        plain.push(measure_once(job, "lockstep", workers, n));
        ck.push(measure_once(job, "checkpointed", workers, n));
    }
    let p = best(plain);
    let c = best(ck);
    assert_eq!(
        p.records, c.records,
        "{job}: both runs read the same records"
    );
    let cost = c.checkpoints.clone().unwrap_or_default();
    let per = |m: &Measured| m.records as f64 / m.seconds / workers as f64;
    println!(
        "| {job:<4} | {workers} | {:>9.2}M | {:>9.2}M | {:>+8.1}% | {:>5} | {:>9.1} | {:>10.2} | {:>5.1} / {:>5.1} | {:>6.1} / {:>6.1} |",
        per(&p) / 1e6,
        per(&c) / 1e6,
        (c.seconds / p.seconds - 1.0) * 100.0,
        cost.count,
        cost.bytes as f64 / 1024.0 / 1024.0,
        cost.bytes as f64 / 1024.0 / cost.count.max(1) as f64,
        cost.p50_ms,
        cost.p99_ms,
        p.peak_rss_kib as f64 / 1024.0,
        c.peak_rss_kib as f64 / 1024.0,
    );
}

/// The restart measurement: a job with `n` keys of state is killed inside
/// its final checkpoint, then restarted; how long until its state is back
/// and until its first new output.
#[allow(clippy::cast_precision_loss)]
fn restart_row(workers: usize, n: u64) {
    let dir = tempfile::tempdir().expect("tmp");
    let exe = std::env::current_exe().expect("exe");
    let crash = Command::new(&exe)
        .args([
            "--child",
            "restart",
            "crash",
            &workers.to_string(),
            &n.to_string(),
        ])
        .env("LOCKSTEP_BENCH_DIR", dir.path())
        .env("LOCKSTEP_CRASH_AT_CHECKPOINT", "final:before")
        .output()
        .expect("spawn");
    assert!(
        !crash.status.success(),
        "the crash phase should have aborted"
    );
    let t = Instant::now();
    let out = Command::new(&exe)
        .args([
            "--child",
            "restart",
            "resume",
            &workers.to_string(),
            &n.to_string(),
        ])
        .env("LOCKSTEP_BENCH_DIR", dir.path())
        .output()
        .expect("spawn");
    let wall = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: Measured = serde_json::from_slice(&out.stdout).expect("child output");
    let c = m.checkpoints.unwrap_or_default();
    println!(
        "| {workers} | {n:>9} | {:>9} | {:>12} | {:>8.0} | {:>10} | {:>8.2} | {:>6.1} |",
        c.keys,
        c.resumed.map_or("-".to_string(), |r| r.to_string()),
        c.ready_ms,
        c.first_output_ms
            .map_or("-".to_string(), |f| format!("{f:.0}")),
        wall,
        m.peak_rss_kib as f64 / 1024.0,
    );
}

const HELP: &str = "\
lockstep-bench: lockstep jobs beside hand-written timely programs

usage: lockstep-bench [--quick] [--rss] [--checkpoints] [--observe] [--only JOBS] [--repeat N] [--events N]

  (no flags)    the full set: file, file-win (2M bids) and Nexmark q0 q1 q2 q3 q5
                q7 q8 q11 (10M events), at 1 and 2 workers, best of 3
  --quick       small inputs (200K bids, 1M events): a smoke run
  --rss         q1 at 10M and 100M events, 1 worker: is memory flat?
  --checkpoints q5 and q7 with and without checkpoints (--state, one per 1 s
                epoch), at 1 and 2 workers; then the restart of a job with
                1M keys of state killed inside its final checkpoint
  --observe     q1 and q5 plain, observed (metrics, dashboard, events) and
                hand-written: the cost of observability
  --kafka       Kafka source -> null and Kafka -> 10 s windows -> Kafka beside
                hand-written timely+rdkafka, at 1 and 2 workers (1M Nexmark
                events' bids; a nisshi broker of its own unless
                LOCKSTEP_KAFKA_BROKERS names one); then live latency
                (--rate N bids/s, default 20000; --only live: latency only)
  --only JOBS   only these jobs, comma-separated (e.g. --only q5,q7)
  --repeat N    runs per figure (default 3); the best counts
  --events N    Nexmark events per job (default 10M, 1M with --quick)
  --help        this text

Each run is a child process of its own; lockstep and hand-written runs
alternate. Throughput is records (or Nexmark events) per second per worker;
ratio is lockstep / hand-written; RSS is peak resident memory in MiB; out is
the number of records each side wrote (they must be equal).";

/// All jobs, in table order.
const JOBS: &[&str] = &[
    "file", "file-win", "q0", "q1", "q2", "q3", "q5", "q7", "q8", "q11",
];

fn flag_value(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).map(|i| {
        args.get(i + 1)
            .cloned()
            .unwrap_or_else(|| panic!("{name} needs a value"))
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        child(&args[1..]);
        return;
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{HELP}");
        return;
    }
    let known = [
        "--quick",
        "--rss",
        "--checkpoints",
        "--kafka",
        "--observe",
        "--rate",
        "--only",
        "--repeat",
        "--events",
    ];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        assert!(known.contains(&a.as_str()), "unknown flag {a} (see --help)");
        if matches!(a.as_str(), "--only" | "--repeat" | "--events" | "--rate") {
            it.next();
        }
    }
    let quick = args.iter().any(|a| a == "--quick");
    let rss = args.iter().any(|a| a == "--rss");
    let repeat = flag_value(&args, "--repeat").map_or(REPEAT, |v| v.parse().expect("--repeat N"));
    let only: Option<Vec<String>> =
        flag_value(&args, "--only").map(|v| v.split(',').map(str::to_string).collect());
    if let Some(only) = only
        .as_ref()
        .filter(|_| !args.iter().any(|a| a == "--kafka"))
    {
        for j in only {
            assert!(
                JOBS.contains(&j.as_str()),
                "unknown job {j} (jobs: {JOBS:?})"
            );
        }
    }
    let (file_n, mut nex_n) = if quick {
        (200_000, 1_000_000)
    } else {
        (2_000_000, 10_000_000)
    };
    if let Some(v) = flag_value(&args, "--events") {
        nex_n = v.parse().expect("--events N");
    }
    if args.iter().any(|a| a == "--kafka") {
        let n = flag_value(&args, "--events")
            .map_or(if quick { 200_000 } else { 1_000_000 }, |v| {
                v.parse().expect("--events N")
            });
        let rate = flag_value(&args, "--rate").map_or(20_000, |v| v.parse().expect("--rate N"));
        kafka_bench(
            n,
            repeat,
            only.as_ref().is_some_and(|o| o.iter().any(|j| j == "live")),
            rate,
        );
        return;
    }
    if args.iter().any(|a| a == "--observe") {
        println!(
            "lockstep {}: the cost of observing (--metrics, --ui with the dashboard open, --events, Prometheus scraping 1/s); {nex_n} events, {repeat} runs each, alternating; records/s per worker of the best run; overhead = extra time, of the best runs and of the median runs",
            env!("CARGO_PKG_VERSION")
        );
        println!(
            "| job  | w | plain      | observed   | best     | median   | CPU s p/o   | CPU      | timely     | RSS p  | RSS o  |"
        );
        println!(
            "|------|---|------------|------------|----------|----------|-------------|----------|------------|--------|--------|"
        );
        for workers in [1, 2] {
            for job in ["q1", "q5"] {
                observe_row(job, workers, nex_n, repeat);
            }
        }
        return;
    }
    if args.iter().any(|a| a == "--checkpoints") {
        println!(
            "lockstep {}: Nexmark with and without checkpoints ({nex_n} events, best of {repeat}); records/s per worker; overhead = extra time; size = all workers' batches; write = per worker batch",
            env!("CARGO_PKG_VERSION")
        );
        println!("| job  | w | no ckpt    | ckpt       | overhead  | ckpts | size MiB  | KiB/ckpt   | write ms p50/p99 | RSS MiB no/ckpt |");
        println!("|------|---|------------|------------|-----------|-------|-----------|------------|------------------|-----------------|");
        for workers in [1, 2] {
            for job in ["q5", "q7"] {
                checkpoint_row(job, workers, nex_n, repeat);
            }
        }
        let keys = if quick { 100_000 } else { 1_000_000 };
        println!();
        println!("restart after a kill inside the final checkpoint (state restored = settle, sink rollback, key groups loaded; wall = whole restarted process)");
        println!("| w | keys in   | keys end  | resumed after | state ms | 1st out ms | wall s   | RSS    |");
        println!("|---|-----------|-----------|---------------|----------|------------|----------|--------|");
        for workers in [1, 2] {
            restart_row(workers, keys);
        }
        return;
    }
    bids_file(file_n);
    println!(
        "lockstep {} vs hand-written timely; records/s per worker (best of {repeat}); peak RSS in MiB; epoch latency p50/p99 in ms",
        env!("CARGO_PKG_VERSION")
    );
    println!("| job      | w | records     | lockstep   | timely     | ratio | events l | RSS l  | RSS t  | latency l   | out l     | out t     |");
    println!("|----------|---|-------------|------------|------------|-------|----------|--------|--------|-------------|-----------|-----------|");
    if rss {
        for n in [10_000_000, 100_000_000] {
            row("q1", 1, n, repeat);
        }
        return;
    }
    for workers in [1, 2] {
        for job in JOBS {
            if only.as_ref().is_some_and(|o| !o.iter().any(|j| j == job)) {
                continue;
            }
            let n = if job.starts_with("file") {
                file_n
            } else {
                nex_n
            };
            row(job, workers, n, repeat);
        }
    }
}

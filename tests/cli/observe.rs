//! Observability: the Prometheus endpoint scraped during a run has the
//! documented series and ends at the job's actual counts; events; taps;
//! the progress bar; JSON logs; the dashboard in a real browser; and
//! observing never changes a byte of output.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::common::*;

/// A job on standard input: filter, a map that fails on v = 0 (errors), a
/// 1 s window per key; two file sinks.
const GRAPH: &str = r#"{
  "version": 1, "name": "obs", "time": { "epoch_ms": 1000 },
  "sources": { "in": { "type": "stdin", "schema": { "k": "string", "v": "int", "t": "timestamp" },
                       "event_time": { "field": "t" } } },
  "nodes": {
    "pos": { "type": "filter", "input": "in", "where": "v >= 0" },
    "inv": { "type": "map", "input": "pos", "select": { "k": "k", "r": "100 / v", "t": "t" } },
    "per_k": { "type": "window", "input": "inv", "key": ["k"], "window": { "tumbling_ms": 1000 },
               "aggregate": { "n": "count(*)", "s": "sum(r)" } }
  },
  "sinks": {
    "out": { "type": "file", "input": "per_k", "path": "out.jsonl" },
    "errs": { "type": "file", "input": "inv.errors", "path": "errs.jsonl" }
  }
}"#;

/// Input line `i`: keys a–d, v in -3..=96 (v = 0 every 100 lines), 10 ms apart.
fn line(i: u64) -> String {
    let k = ["a", "b", "c", "d"][(i % 4) as usize];
    let v = (i * 7) % 100;
    let v = v as i64 - 3;
    format!(
        "{{\"k\":\"{k}\",\"v\":{v},\"t\":{}}}\n",
        1_700_000_000_000u64 + i * 10
    )
}

fn input(n: u64) -> String {
    (0..n).map(line).collect()
}

/// GET `path` from `port`: (status line, body).
fn get(port: u16, path: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

/// The value of the sample `name{...labels...}` (labels given as they
/// print after `job="obs",`).
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let sep = if labels.is_empty() { "" } else { "," };
    let prefix = format!("{name}{{job=\"obs\"{sep}{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.parse().ok())
}

fn spawn(dir: &Path, args: &[&str]) -> Child {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lockstep")
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn lines(path: &Path) -> f64 {
    read_text(path).lines().count() as f64
}

/// The series docs/observability.md documents, each checked present.
const SERIES: &[&str] = &[
    "lockstep_up",
    "lockstep_records_in_total",
    "lockstep_records_out_total",
    "lockstep_errors_total",
    "lockstep_late_records_total",
    "lockstep_state_keys",
    "lockstep_source_epoch",
    "lockstep_source_watermark_ms",
    "lockstep_source_records_total",
    "lockstep_source_position",
    "lockstep_frontier_epoch",
    "lockstep_epochs_completed_total",
    "lockstep_epoch_latency_seconds",
    "lockstep_checkpoints_total",
    "lockstep_checkpoint_bytes_total",
];

#[test]
fn metrics_scraped_during_a_run_have_the_series_and_end_at_the_actual_counts() {
    let dir = tempdir();
    write(dir.path(), "obs.json", GRAPH);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = spawn(
        dir.path(),
        &[
            "run",
            "obs.json",
            "-w",
            "2",
            "--metrics",
            &addr,
            "--linger",
            "30",
            "--events",
            "events.jsonl",
        ],
    );
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input(1000).as_bytes()).unwrap();
    stdin.flush().unwrap();
    // While the job runs (its input is still open): every series is there,
    // and the source has counted the records of the epochs its input
    // closed (the last epoch's records wait for more input or its end).
    let mut during = String::new();
    wait_until(
        "the first 900 records to be counted",
        Duration::from_secs(20),
        || {
            during = get(port, "/metrics").map(|r| r.1).unwrap_or_default();
            sample(
                &during,
                "lockstep_records_out_total",
                "node=\"in\",kind=\"source\"",
            )
            .is_some_and(|n| n >= 900.0)
        },
    );
    let counted = sample(
        &during,
        "lockstep_records_out_total",
        "node=\"in\",kind=\"source\"",
    )
    .unwrap();
    assert!(counted <= 1000.0, "{counted} counted of 1000 given");
    for s in SERIES {
        assert!(
            during.contains(&format!("# TYPE {s} ")),
            "no {s} in\n{during}"
        );
    }
    assert_eq!(
        sample(&during, "lockstep_up", "status=\"running\""),
        Some(1.0)
    );
    // The watermark is at least where the last epoch begins.
    let wm = sample(
        &during,
        "lockstep_source_watermark_ms",
        "source=\"in\",partition=\"0\"",
    )
    .unwrap();
    assert!(
        (1_700_000_009_000.0..=1_700_000_009_990.0).contains(&wm),
        "{wm}"
    );
    assert!(
        sample(&during, "lockstep_frontier_epoch", "").is_some(),
        "{during}"
    );
    let rest: String = (1000..6000).map(line).collect();
    stdin.write_all(rest.as_bytes()).unwrap();
    drop(stdin);
    // After the end, the endpoint lingers with the final numbers.
    let mut fin = String::new();
    wait_until("the job to finish", Duration::from_secs(60), || {
        fin = get(port, "/metrics").map(|r| r.1).unwrap_or_default();
        fin.contains("lockstep_up{job=\"obs\",status=\"finished\"} 0")
    });
    let out = dir.path().join("out.jsonl");
    let errs = dir.path().join("errs.jsonl");
    let read = |node: &str, kind: &str, what: &str| {
        sample(&fin, what, &format!("node=\"{node}\",kind=\"{kind}\"")).unwrap_or(-1.0)
    };
    let n_in = 6000.0;
    let negative = (0..6000u64).filter(|i| ((i * 7) % 100) < 3).count() as f64;
    assert_eq!(read("in", "source", "lockstep_records_out_total"), n_in);
    assert_eq!(read("pos", "node", "lockstep_records_in_total"), n_in);
    assert_eq!(
        read("pos", "node", "lockstep_records_out_total"),
        n_in - negative
    );
    assert_eq!(read("inv", "node", "lockstep_errors_total"), lines(&errs));
    assert_eq!(
        read("inv", "node", "lockstep_records_out_total") + lines(&errs),
        n_in - negative
    );
    assert_eq!(
        read("per_k", "node", "lockstep_records_out_total"),
        lines(&out)
    );
    assert_eq!(
        read("out", "sink", "lockstep_records_out_total"),
        lines(&out)
    );
    assert_eq!(
        read("errs", "sink", "lockstep_records_out_total"),
        lines(&errs)
    );
    assert!(lines(&errs) > 0.0 && lines(&out) > 0.0);
    // The JSON API agrees.
    let (status, body) = get(port, "/api/metrics").unwrap();
    assert!(status.contains("200"), "{status}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "finished");
    assert_eq!(v["nodes"][0]["records_out"], 6000);
    let _ = child.kill();
    let _ = child.wait();

    // Events: started first, finished last with the sinks' counts; epochs
    // in increasing order; the errors reported.
    let events: Vec<serde_json::Value> = read_text(&dir.path().join("events.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(events.first().unwrap()["event"], "job_started");
    let last = events.last().unwrap();
    assert_eq!(last["event"], "job_finished");
    assert_eq!(last["status"], "finished");
    assert_eq!(last["sinks"][0]["records"].as_f64(), Some(lines(&out)));
    let epochs: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "epoch_completed")
        .map(|e| e["epoch"].as_u64().unwrap())
        .collect();
    assert!(epochs.len() > 10, "{epochs:?}");
    // Each epoch completes once, and the metric counts the same epochs.
    assert_eq!(
        sample(&fin, "lockstep_epochs_completed_total", ""),
        Some(epochs.len() as f64)
    );
    assert!(epochs.windows(2).all(|w| w[0] < w[1]), "{epochs:?}");
    assert!(events
        .iter()
        .any(|e| e["event"] == "node_error" && e["node"] == "inv"));
}

/// Runs GRAPH on `input` with `args`; returns the output files' bytes.
fn outputs_of(args: &[&str], text: &str) -> (Vec<u8>, Vec<u8>, String) {
    let dir = tempdir();
    write(dir.path(), "obs.json", GRAPH);
    let mut all = vec!["run", "obs.json"];
    all.extend_from_slice(args);
    let r = lockstep_stdin(dir.path(), &all, text);
    assert_eq!(r.code, 0, "{}", r.stderr);
    (
        read(&dir.path().join("out.jsonl")),
        read(&dir.path().join("errs.jsonl")),
        r.stdout,
    )
}

#[test]
fn observing_a_job_never_changes_its_output() {
    let text = input(20_000);
    let plain = outputs_of(&["-q"], &text);
    for w in ["1", "2", "4"] {
        let port = free_port().to_string();
        let ui = free_port().to_string();
        let observed = outputs_of(
            &[
                "-w",
                w,
                "--metrics",
                &format!("127.0.0.1:{port}"),
                "--ui",
                &format!("127.0.0.1:{ui}"),
                "--events",
                "ev.jsonl",
                "--log-format",
                "json",
            ],
            &text,
        );
        assert_same(
            &plain.0,
            &observed.0,
            &format!("out.jsonl at {w} workers, observed"),
        );
        assert_same(
            &plain.1,
            &observed.1,
            &format!("errs.jsonl at {w} workers, observed"),
        );
    }
}

#[test]
fn tap_prints_a_nodes_records_with_epochs_and_leaves_the_sinks_alone() {
    let text = input(3000);
    let plain = outputs_of(&["-q"], &text);
    let dir = tempdir();
    write(dir.path(), "obs.json", GRAPH);
    let r = lockstep_stdin(
        dir.path(),
        &["tap", "obs.json", "--node", "inv.errors", "-w", "2"],
        &text,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_same(
        &plain.0,
        &read(&dir.path().join("out.jsonl")),
        "out.jsonl under tap",
    );
    assert_same(
        &plain.1,
        &read(&dir.path().join("errs.jsonl")),
        "errs.jsonl under tap",
    );
    // Each tapped record is the errors sink's record, with its epoch.
    let errs = read_text(&dir.path().join("errs.jsonl"));
    let tapped: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(tapped.len(), errs.lines().count());
    let mut records: Vec<String> = tapped.iter().map(|t| t["record"].to_string()).collect();
    let mut want: Vec<String> = errs
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap()
                .to_string()
        })
        .collect();
    records.sort();
    want.sort();
    assert_eq!(records, want);
    // The first record tapped is the first v = 0, in its epoch.
    let first_zero = (0..3000u64).find(|i| (i * 7) % 100 == 3).unwrap();
    let epoch = (1_700_000_000_000 + first_zero * 10) / 1000;
    assert_eq!(tapped[0]["epoch"].as_u64(), Some(epoch), "{}", r.stdout);
    // The same at 1 worker, byte for byte; --limit prints a prefix.
    let one = lockstep_stdin(
        dir.path(),
        &["tap", "obs.json", "--node", "inv.errors"],
        &text,
    );
    assert_eq!(one.stdout, r.stdout);
    let lim = lockstep_stdin(
        dir.path(),
        &["tap", "obs.json", "--node", "inv.errors", "--limit", "2"],
        &text,
    );
    let prefix: String = r.stdout.lines().take(2).map(|l| format!("{l}\n")).collect();
    assert_eq!(lim.stdout, prefix);
    assert!(lim.stderr.contains("(2 printed)"), "{}", lim.stderr);
    // A name that is no output.
    let bad = lockstep_stdin(dir.path(), &["tap", "obs.json", "--node", "inv.late"], "");
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr
            .contains("--node inv.late: \"inv\" has no output \"late\"; its outputs: inv.errors"),
        "{}",
        bad.stderr
    );
}

#[test]
fn tap_attaches_to_a_running_jobs_endpoint() {
    let dir = tempdir();
    write(dir.path(), "obs.json", GRAPH);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = spawn(dir.path(), &["run", "obs.json", "--metrics", &addr]);
    let mut stdin = child.stdin.take().unwrap();
    wait_until("the endpoint", Duration::from_secs(20), || {
        get(port, "/api/metrics").is_some()
    });
    // A source's output has no pass-through in a running job.
    let refused = lockstep(dir.path(), &["tap", "--attach", &addr, "--node", "in"]);
    assert_eq!(refused.code, 1);
    assert!(
        refused
            .stderr
            .contains("\"in\" cannot be tapped while the job runs"),
        "{}",
        refused.stderr
    );
    let tap = Command::new(bin())
        .args(["tap", "--attach", &addr, "--node", "pos", "--limit", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // Feed until the tap has its 5 records.
    let feeder = std::thread::spawn(move || {
        for i in 0..200u64 {
            let chunk: String = (i * 100..(i + 1) * 100).map(line).collect();
            if stdin.write_all(chunk.as_bytes()).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let out = tap.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let recs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 5, "{text}");
    for r in &recs {
        assert!(r["epoch"].as_u64().unwrap() >= 1_700_000_000);
        assert!(
            r["record"]["v"].as_i64().unwrap() >= 0,
            "pos passes only v >= 0: {r}"
        );
    }
    feeder.join().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    // No job at the address: a clear error.
    let r = lockstep(
        dir.path(),
        &["tap", "--attach", "127.0.0.1:1", "--node", "pos"],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("cannot reach a job at 127.0.0.1:1"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_progress_bar_shows_on_a_terminal_only() {
    let dir = tempdir();
    write(
        dir.path(),
        "gen.json",
        r#"{"version": 1, "name": "gen", "time": { "epoch_records": 1000 },
            "sources": { "g": { "type": "generator", "count": 3000000, "partitions": 2,
                                "fields": { "n": { "sequence": {} } } } },
            "nodes": { "even": { "type": "filter", "input": "g", "where": "n % 2 = 0" } },
            "sinks": { "out": { "type": "null", "input": "even" } } }"#,
    );
    // `script` gives the job a pseudo-terminal.
    let cmd = format!("{} run gen.json", bin().display());
    let tty = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(dir.path())
        .output()
        .expect("script (util-linux) runs");
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{shown}");
    assert!(shown.contains("records, "), "no progress line in {shown:?}");
    assert!(shown.contains("%"), "no percentage in {shown:?}");
    let plain = lockstep(dir.path(), &["run", "gen.json"]);
    assert!(
        !plain.stderr.contains('\r') && !plain.stderr.contains("records, "),
        "{}",
        plain.stderr
    );
}

#[test]
fn logs_can_be_json_objects() {
    let dir = tempdir();
    write(dir.path(), "obs.json", GRAPH);
    let r = lockstep_stdin(
        dir.path(),
        &["run", "obs.json", "--log-format", "json"],
        &input(100),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let msgs: Vec<serde_json::Value> = r
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!msgs.is_empty());
    assert!(msgs
        .iter()
        .all(|m| m["level"].is_string() && m["timestamp"].is_string()));
    assert!(msgs.iter().any(|m| m["fields"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("job \"obs\" finished")));
    // A duration that is no number of seconds is a usage error.
    let r = lockstep_stdin(dir.path(), &["run", "obs.json", "--linger", "inf"], "");
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("--linger inf: give a number of seconds"),
        "{}",
        r.stderr
    );
    // A failure is an ERROR object.
    let bad = GRAPH.replace(
        "\"path\": \"out.jsonl\"",
        "\"path\": \"no/such/dir/out.jsonl\"",
    );
    write(dir.path(), "bad.json", &bad);
    let r = lockstep_stdin(
        dir.path(),
        &["run", "bad.json", "--log-format", "json"],
        &input(10),
    );
    assert_eq!(r.code, 1);
    let m: serde_json::Value = serde_json::from_str(r.stderr.lines().last().unwrap()).unwrap();
    assert_eq!(m["level"], "ERROR");
    assert!(
        m["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot create"),
        "{m}"
    );
}

#[test]
fn schema_prints_the_json_schema_of_the_graph_format() {
    let r = run_ok(&root(), &["schema"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert!(v["properties"]["sources"].is_object());
    assert!(v["properties"]["tests"].is_object());
}

/// The dashboard in headless Chromium: the graph's node names render, a
/// rate counter increases; a screenshot is saved as a test artifact.
#[test]
fn the_dashboard_renders_live_in_a_real_browser() {
    let driver = root().join("tests/browser/ui.mjs");
    assert!(
        root().join("tests/browser/node_modules/playwright-core").exists()
            && Path::new(&std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into())).exists(),
        "the browser test needs Chromium and playwright-core: run `bash scripts/test.sh` (it installs them), or `source scripts/setup.sh && ensure_browser`"
    );
    let dir = tempdir();
    write(dir.path(), "obs.json", GRAPH);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = spawn(dir.path(), &["run", "obs.json", "-w", "2", "--ui", &addr]);
    let mut stdin = child.stdin.take().unwrap();
    // Input keeps coming for the whole test: 500 records every 100 ms.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&stop);
    let feeder = std::thread::spawn(move || {
        let mut i = 0u64;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            let chunk: String = (i..i + 500).map(line).collect();
            if stdin.write_all(chunk.as_bytes()).is_err() {
                break;
            }
            i += 500;
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    wait_until("the dashboard", Duration::from_secs(20), || {
        get(port, "/").is_some()
    });
    let artifacts = std::env::var("LOCKSTEP_ARTIFACTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root().join("target/test-artifacts"));
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let out = Command::new("node")
        .arg(&driver)
        .arg(format!("http://{addr}/"))
        .arg(&shot)
        .output()
        .expect("node runs");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    feeder.join().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["ok"], true);
    let nodes: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    for n in ["in", "pos", "inv", "per_k", "out", "errs"] {
        assert!(nodes.contains(&n), "{n} not rendered: {nodes:?}");
    }
    assert!(v["out_second"].as_f64() > v["out_first"].as_f64(), "{v}");
    let png = std::fs::read(&shot).expect("the screenshot was saved");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    eprintln!("dashboard screenshot: {}", shot.display());
}

/// A job on standard input finishes epochs while its input is still open
/// (the reader waits for lines on a thread of its own, not in a worker).
#[test]
fn a_stdin_job_writes_closed_epochs_before_its_input_ends() {
    use std::io::BufRead;
    let dir = tempdir();
    write(
        dir.path(),
        "s.json",
        r#"{"version": 1, "name": "s", "time": { "epoch_ms": 1000 },
            "sources": { "in": { "type": "stdin", "schema": { "k": "string", "t": "timestamp" },
                                 "event_time": { "field": "t" } } },
            "sinks": { "out": { "type": "stdout", "input": "in" } } }"#,
    );
    let mut child = spawn(dir.path(), &["run", "s.json", "-q"]);
    let mut stdin = child.stdin.take().unwrap();
    // Epoch 0, then one record of epoch 2 closes it; stdin stays open.
    stdin
        .write_all(b"{\"k\":\"a\",\"t\":100}\n{\"k\":\"b\",\"t\":900}\n{\"k\":\"c\",\"t\":2000}\n")
        .unwrap();
    stdin.flush().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for _ in 0..2 {
            let mut l = String::new();
            if out.read_line(&mut l).unwrap_or(0) == 0 {
                break;
            }
            lines.push(l);
        }
        let _ = tx.send(lines);
        // The rest, so that the job's stdout stays open.
        let mut rest = String::new();
        let _ = out.read_to_string(&mut rest);
    });
    let got = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("epoch 0 was not written while stdin was open");
    assert_eq!(
        got,
        ["{\"k\":\"a\",\"t\":100}\n", "{\"k\":\"b\",\"t\":900}\n"]
    );
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success());
}

/// With --state, a keyed node's state size is estimated from what its
/// checkpoints encode; without, only keys are known.
#[test]
fn state_bytes_are_estimated_from_checkpoints() {
    let dir = tempdir();
    let graph = r#"{
  "version": 1, "name": "obs", "time": { "epoch_ms": 1000 }, "checkpoint": { "every_epochs": 1 },
  "sources": { "in": { "type": "file", "path": "in.jsonl",
                       "schema": { "k": "string", "v": "int", "t": "timestamp" },
                       "event_time": { "field": "t" } } },
  "nodes": { "per_k": { "type": "aggregate", "input": "in", "key": ["k"],
                        "aggregate": { "n": "count(*)", "s": "sum(v)" } } },
  "sinks": { "out": { "type": "file", "input": "per_k", "path": "out.jsonl" } }
}"#;
    write(dir.path(), "agg.json", graph);
    write(dir.path(), "in.jsonl", &input(3000));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = spawn(
        dir.path(),
        &[
            "run",
            "agg.json",
            "--state",
            "st",
            "--metrics",
            &addr,
            "--linger",
            "30",
        ],
    );
    let mut fin = String::new();
    wait_until("the job to finish", Duration::from_secs(60), || {
        fin = get(port, "/metrics").map(|r| r.1).unwrap_or_default();
        fin.contains("status=\"finished\"")
    });
    let _ = child.kill();
    let _ = child.wait();
    let keys = sample(&fin, "lockstep_state_keys", "node=\"per_k\",kind=\"node\"");
    let bytes = sample(&fin, "lockstep_state_bytes", "node=\"per_k\",kind=\"node\"");
    assert_eq!(keys, Some(4.0), "{fin}");
    // Four keys of one letter, each with a count and a sum: a few dozen
    // bytes each as bincode encodes them.
    let b = bytes.expect("a state_bytes sample");
    assert!((4.0 * 8.0..=4.0 * 200.0).contains(&b), "{b}");
    // Without --state there is no estimate.
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = spawn(
        dir.path(),
        &["run", "agg.json", "--metrics", &addr, "--linger", "30"],
    );
    wait_until("the job to finish", Duration::from_secs(60), || {
        fin = get(port, "/metrics").map(|r| r.1).unwrap_or_default();
        fin.contains("status=\"finished\"")
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        sample(&fin, "lockstep_state_keys", "node=\"per_k\",kind=\"node\""),
        Some(4.0)
    );
    assert_eq!(
        sample(&fin, "lockstep_state_bytes", "node=\"per_k\",kind=\"node\""),
        None
    );
}

/// A CSV record from standard input whose quoted field spans lines that
/// arrive apart is read whole (the reader waits for the next line without
/// blocking its worker), with the line numbers of a file.
#[test]
fn a_stdin_csv_record_split_across_writes_is_read_whole() {
    let dir = tempdir();
    write(
        dir.path(),
        "c.json",
        r#"{"version": 1, "name": "c", "time": { "epoch_records": 1 },
            "sources": { "in": { "type": "stdin", "format": "csv", "schema": { "a": "int", "b": "string" } } },
            "sinks": { "out": { "type": "stdout", "input": "in" },
                       "bad": { "type": "file", "input": "in.errors", "path": "bad.jsonl" } } }"#,
    );
    let mut child = spawn(dir.path(), &["run", "c.json", "-q"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"a,b\n1,\"x\n").unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stdin.write_all(b"y\"\n2,z\nnot,a number\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"a\":1,\"b\":\"x\\ny\"}\n{\"a\":2,\"b\":\"z\"}\n"
    );
    // The bad record is on line 5 (the quoted field took lines 2 and 3).
    let bad = read_text(&dir.path().join("bad.jsonl"));
    assert!(bad.contains("\"line\":5"), "{bad}");
}

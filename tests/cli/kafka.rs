//! Kafka sources and sinks on a real broker (nisshi on loopback, started by
//! scripts/test.sh; `LOCKSTEP_KAFKA_BROKERS` names it): the same output
//! partitions for any layout, the records of the same job over files,
//! exactly once across kill -9 of one process of a cluster, a broker that
//! goes away and comes back, idle partitions, and clear errors.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::common::{
    bin, free_port, hosts_file, lockstep, run_cluster, run_ok, spawn_process, tempdir, wait_all,
    write,
};

/// The test broker's address.
fn brokers() -> String {
    std::env::var("LOCKSTEP_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!(
            "the Kafka tests need a broker: run `bash scripts/test.sh`, which installs and starts one, \
             or start nisshi on loopback and set LOCKSTEP_KAFKA_BROKERS=127.0.0.1:PORT"
        )
    })
}

/// The nisshi binary scripts/setup.sh installed.
fn nisshi() -> PathBuf {
    std::env::var_os("NISSHI_BIN").map_or_else(
        || {
            PathBuf::from(std::env::var("HOME").expect("HOME"))
                .join(".cache/lockstep/nisshi/bin/nisshi")
        },
        PathBuf::from,
    )
}

static TOPICS: AtomicU64 = AtomicU64::new(0);

/// Creates a new topic with `partitions` partitions on `brokers`.
fn topic_on(brokers: &str, prefix: &str, partitions: u32) -> String {
    let name = format!(
        "{prefix}-{}-{}",
        std::process::id(),
        TOPICS.fetch_add(1, Ordering::SeqCst)
    );
    let out = Command::new(nisshi())
        .args(["topic", "create", &name, "--partitions"])
        .arg(partitions.to_string())
        .args(["--broker", &format!("tcp://{brokers}")])
        .output()
        .expect("nisshi topic create");
    assert!(
        out.status.success(),
        "nisshi topic create {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    name
}

fn topic(prefix: &str, partitions: u32) -> String {
    topic_on(&brokers(), prefix, partitions)
}

/// A topic's records per partition: (key, value, position header).
type Partitions = Vec<Vec<(Option<String>, String, String)>>;

fn read_topic(brokers: &str, topic: &str) -> Partitions {
    lockstep::kafka::read_topic(brokers, topic)
        .expect("read topic")
        .into_iter()
        .map(|p| {
            p.into_iter()
                .map(|r| {
                    let pos = r
                        .headers
                        .iter()
                        .find(|(k, _)| k == "lockstep-position")
                        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default();
                    (
                        r.key.map(|k| String::from_utf8(k).expect("utf-8 key")),
                        String::from_utf8(r.value).expect("utf-8 value"),
                        pos,
                    )
                })
                .collect()
        })
        .collect()
}

/// Produces plain records (no lockstep headers, as another program would):
/// (partition, or the key's; key; value).
fn produce_plain(brokers: &str, topic: &str, records: &[(Option<i32>, String, String)]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let p: BaseProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer");
    for (part, k, v) in records {
        let mut r = BaseRecord::to(topic).key(k).payload(v);
        if let Some(part) = part {
            r = r.partition(*part);
        }
        p.send(r).expect("send");
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

/// Feeds `count` generated records into `topic` (keyed by `id`).
fn feed(dir: &Path, brokers: &str, topic: &str, count: u64) {
    write(
        dir,
        "feed.json",
        &format!(
            r#"{{"version": 1, "name": "feed", "time": {{"epoch_records": 1000}},
  "sources": {{"g": {{"type": "generator", "count": {count}, "partitions": 2, "seed": 5,
    "fields": {{"id": {{"sequence": {{}}}},
               "user": {{"choice": ["ann", "bob", "cy", "dee", "eve", "fay", "gus"]}},
               "amount": {{"random": {{"min": 1, "max": 500}}}},
               "ts": {{"timestamp": {{"start": 1700000000000, "step_ms": 3}}}}}}}}}},
  "nodes": {{}},
  "sinks": {{"k": {{"type": "kafka", "input": "g", "brokers": "{brokers}", "topic": "{topic}", "key": ["id"]}}}}}}"#
        ),
    );
    run_ok(dir, &["run", "feed.json", "-q"]);
}

const SCHEMA: &str = r#"{"id": "int", "user": "string", "amount": "int", "ts": "timestamp"}"#;

/// The windowed job: a tumbling and a sliding window per user.
fn nodes() -> &'static str {
    r#"{"big": {"type": "filter", "input": "src", "where": "amount > 20"},
        "tumble": {"type": "window", "input": "big", "key": ["user"], "window": {"tumbling_ms": 2000},
                   "aggregate": {"n": "count(*)", "total": "sum(amount)", "top": "max(amount)"}},
        "slide": {"type": "window", "input": "src", "key": ["user"],
                  "window": {"sliding": {"size_ms": 3000, "slide_ms": 1000}}, "allowed_lateness_ms": 500,
                  "aggregate": {"n": "count(*)"}},
        "both": {"type": "union", "inputs": ["tumble_m", "slide_m"]},
        "tumble_m": {"type": "map", "input": "tumble", "select": {"kind": "'tumble'", "user": "user",
                     "window_end": "window_end", "n": "n", "v": "total"}},
        "slide_m": {"type": "map", "input": "slide", "select": {"kind": "'slide'", "user": "user",
                    "window_end": "window_end", "n": "n", "v": "n * 10"}}}"#
}

/// The job from Kafka topic `input` to Kafka topic `output`.
fn kafka_job(dir: &Path, brokers: &str, input: &str, output: &str) {
    kafka_job_with(dir, brokers, input, output, "{}");
}

/// The job, with producer `properties` for its sink.
fn kafka_job_with(dir: &Path, brokers: &str, input: &str, output: &str, properties: &str) {
    write(
        dir,
        "job.json",
        &format!(
            r#"{{"version": 1, "name": "win", "time": {{"epoch_ms": 500}},
  "sources": {{"src": {{"type": "kafka", "brokers": "{brokers}", "topic": "{input}", "until": "end",
    "schema": {SCHEMA}, "event_time": {{"field": "ts", "max_out_of_order_ms": 200}}}}}},
  "nodes": {},
  "sinks": {{"out": {{"type": "kafka", "input": "both", "brokers": "{brokers}", "topic": "{output}", "key": ["user", "window_end"],
             "properties": {properties}}},
            "late": {{"type": "null", "input": "slide.late"}}}}}}"#,
            nodes()
        ),
    );
}

/// The same job over files (one per input partition) into a file.
fn file_job(dir: &Path, files: &[String]) {
    let paths = serde_json::to_string(files).expect("json");
    write(
        dir,
        "file.json",
        &format!(
            r#"{{"version": 1, "name": "win", "time": {{"epoch_ms": 500}},
  "sources": {{"src": {{"type": "file", "paths": {paths}, "format": "jsonl",
    "schema": {SCHEMA}, "event_time": {{"field": "ts", "max_out_of_order_ms": 200}}}}}},
  "nodes": {},
  "sinks": {{"out": {{"type": "file", "input": "both", "path": "out.jsonl"}},
            "late": {{"type": "null", "input": "slide.late"}}}}}}"#,
            nodes()
        ),
    );
}

fn values(parts: &Partitions) -> Vec<String> {
    let mut v: Vec<String> = parts.iter().flatten().map(|r| r.1.clone()).collect();
    v.sort();
    v
}

#[test]
fn a_kafka_job_writes_the_same_partitions_for_any_layout_and_the_records_of_its_file_twin() {
    let b = brokers();
    let dir = tempdir();
    let input = topic("in", 4);
    feed(dir.path(), &b, &input, 30_000);
    let layouts: [(usize, usize); 3] = [(1, 1), (1, 4), (2, 2)];
    let mut outs = Vec::new();
    for (n, w) in layouts {
        let output = topic("out", 3);
        kafka_job(dir.path(), &b, &input, &output);
        if n == 1 {
            run_ok(
                dir.path(),
                &["run", "job.json", "-q", "--workers", &w.to_string()],
            );
        } else {
            for r in run_cluster(dir.path(), "job.json", n, w, &["-q"]) {
                assert_eq!(r.code, 0, "{}", r.stderr);
            }
        }
        outs.push(((n, w), read_topic(&b, &output)));
    }
    let (_, first) = &outs[0];
    assert_eq!(first.len(), 3);
    assert!(
        first.iter().all(|p| p.len() > 20),
        "every partition gets records"
    );
    for ((n, w), got) in &outs[1..] {
        for (p, (a, g)) in first.iter().zip(got).enumerate() {
            assert!(
                a == g,
                "{n} processes × {w} workers: partition {p} differs from 1 × 1 ({} vs {} records)",
                a.len(),
                g.len()
            );
        }
    }
    // Keys are the key fields, the partition is Kafka's murmur2 of the key,
    // and positions increase within each partition.
    for (p, recs) in first.iter().enumerate() {
        let mut last: Option<(u64, u64)> = None;
        for (k, v, pos) in recs {
            let k = k.as_ref().expect("keyed");
            let user: serde_json::Value = serde_json::from_str(v).expect("json");
            assert_eq!(
                *k,
                format!(
                    "{{\"user\":{},\"window_end\":{}}}",
                    user["user"], user["window_end"]
                )
            );
            assert_eq!(
                lockstep::kafka::murmur2_partition(k.as_bytes(), 3) as usize,
                p
            );
            let (e, s) = pos.split_once('.').expect("position");
            let pos = (e.parse().expect("epoch"), s.parse().expect("seq"));
            assert!(last.is_none_or(|l| l < pos), "positions increase");
            last = Some(pos);
        }
    }
    // The same records from files give the same records, as a multiset.
    let input_parts = read_topic(&b, &input);
    let mut files = Vec::new();
    for (p, recs) in input_parts.iter().enumerate() {
        let name = format!("in{p}.jsonl");
        let text: String = recs.iter().map(|r| format!("{}\n", r.1)).collect();
        fs::write(dir.path().join(&name), text).expect("write");
        files.push(name);
    }
    file_job(dir.path(), &files);
    run_ok(dir.path(), &["run", "file.json", "-q", "--workers", "2"]);
    let mut from_files: Vec<String> = fs::read_to_string(dir.path().join("out.jsonl"))
        .expect("out")
        .lines()
        .map(str::to_string)
        .collect();
    from_files.sort();
    assert_eq!(values(first), from_files);
}

/// The crash-free output of the job over `input`, on one worker.
fn reference(dir: &Path, b: &str, input: &str) -> Partitions {
    let output = topic_on(b, "ref", 3);
    kafka_job(dir, b, input, &output);
    run_ok(dir, &["run", "job.json", "-q"]);
    read_topic(b, &output)
}

#[test]
fn kill_9_of_one_process_leaves_every_record_in_the_output_topic_exactly_once() {
    let b = brokers();
    let dir = tempdir();
    let input = topic("in", 4);
    feed(dir.path(), &b, &input, 200_000);
    let want = reference(dir.path(), &b, &input);
    let output = topic("out", 3);
    kafka_job(dir.path(), &b, &input, &output);
    // How long a crash-free cluster run takes: kills land inside it.
    let calib = tempdir();
    let calib_out = topic("calib", 3);
    kafka_job(calib.path(), &b, &input, &calib_out);
    let t = Instant::now();
    for r in run_cluster(calib.path(), "job.json", 2, 2, &["-q"]) {
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let full = t.elapsed().as_millis() as u64;
    let hosts = hosts_file(dir.path(), 2);
    let (mut kills, mut starts, mut seed) = (0, 0, 3u64);
    loop {
        starts += 1;
        assert!(starts < 60, "no progress after {starts} starts");
        let mut children: Vec<Child> = (0..2)
            .map(|i| {
                let state = format!("state{i}");
                spawn_process(
                    dir.path(),
                    "job.json",
                    2,
                    i,
                    &hosts,
                    &[
                        "--workers",
                        "2",
                        "--state",
                        &state,
                        "-q",
                        "--connect-timeout",
                        "10",
                    ],
                )
            })
            .collect();
        if kills < 6 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Within the first 40% of a crash-free run (plus start-up): the
            // first two starts are always killed inside the run (a resumed
            // run redoes at least the 60% left), later ones usually.
            let delay = Duration::from_millis(600 + (seed >> 33) % (full * 2 / 5).max(1));
            let t = Instant::now();
            while t.elapsed() < delay
                && children
                    .iter_mut()
                    .all(|c| c.try_wait().expect("wait").is_none())
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            let victim = (seed >> 20) as usize % 2;
            if children[victim].try_wait().expect("wait").is_none() {
                children[victim].kill().expect("kill -9");
                kills += 1;
                // The peer stops too (or had just finished): no hang.
                wait_all(children, Duration::from_secs(60));
                continue;
            }
        }
        let runs = wait_all(children, Duration::from_secs(120));
        for (i, r) in runs.iter().enumerate() {
            assert_eq!(r.code, 0, "process {i}, start {starts}: {}", r.stderr);
        }
        // The job finished: after 6 kills, or earlier when a resumed run
        // completed before its kill was due (its remaining work can be
        // shorter than the delay); a finished job is not started again.
        break;
    }
    assert!(kills >= 2, "only {kills} kills landed inside the run");
    let got = read_topic(&b, &output);
    for (p, (w, g)) in want.iter().zip(&got).enumerate() {
        let (wl, gl) = (w.len(), g.len());
        assert!(
            w == g,
            "partition {p} after {kills} kills: {gl} records, want {wl} (duplicates or gaps)"
        );
    }
    eprintln!(
        "kafka crash test: {kills} kills, {starts} starts, {} records",
        values(&got).len()
    );
}

/// A TCP proxy to a broker that can be cut (every connection closed, new
/// ones refused) and restored: the broker is unreachable meanwhile, as
/// when it is down, while its in-memory data survives.
struct Proxy {
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(listen: u16, to: u16) -> Proxy {
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let l = TcpListener::bind(("127.0.0.1", listen)).expect("proxy bind");
        let (u, c) = (Arc::clone(&up), Arc::clone(&conns));
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(client) = s else { continue };
                if !u.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                for s in [&client, &server] {
                    if let Ok(s) = s.try_clone() {
                        c.lock().expect("lock").push(s);
                    }
                }
                for (mut from, mut into) in [
                    (
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                    ),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 65536];
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if into.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = into.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy { up, conns }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.conns.lock().expect("lock").drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// A broker of the test's own, stopped when dropped.
struct OwnBroker {
    child: Child,
    _dir: tempfile::TempDir,
}

impl OwnBroker {
    /// Listens on `port`, advertising `advertised` to clients.
    fn start(port: u16, advertised: u16) -> OwnBroker {
        let dir = tempdir();
        let child = Command::new(nisshi())
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://127.0.0.1:{port}"),
            ])
            .args([
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{advertised}"),
            ])
            .args(["--storage-engine", "memory://nisshi/"])
            .args(["--group-initial-rebalance-delay", "0s", "--silent"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nisshi");
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "nisshi did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnBroker { child, _dir: dir }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_broker_that_goes_away_mid_run_and_comes_back_loses_and_doubles_nothing() {
    let (port, front) = (free_port(), free_port());
    let _broker = OwnBroker::start(port, front);
    let proxy = Proxy::start(front, port);
    let b = format!("127.0.0.1:{front}");
    let dir = tempdir();
    let input = topic_on(&b, "in", 4);
    feed(dir.path(), &b, &input, 200_000);
    let want = reference(dir.path(), &b, &input);
    // Compare against the reference via the same broker.
    let output = topic_on(&b, "out", 3);
    // A small producer queue with some linger spreads the output over a few
    // seconds, so that the broker goes away while records are in flight.
    kafka_job_with(
        dir.path(),
        &b,
        &input,
        &output,
        r#"{"queue.buffering.max.messages": "100", "linger.ms": "50"}"#,
    );
    let mut child = Command::new(bin())
        .args(["run", "job.json", "--workers", "2"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait for the first output, then take the broker away for 3 s.
    let direct = format!("127.0.0.1:{port}");
    let t = Instant::now();
    loop {
        let n: i64 = match lockstep::kafka::high_watermarks(&direct, &output) {
            Ok(p) => p.iter().sum(),
            Err(e) => {
                eprintln!("watermarks: {e}");
                0
            }
        };
        if n > 0 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "no output");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the job ended before the cut"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    proxy.cut();
    std::thread::sleep(Duration::from_secs(3));
    if child.try_wait().expect("wait").is_some() {
        let out = child.wait_with_output().expect("output");
        panic!(
            "the job must wait for the broker, but it ended: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    proxy.restore();
    let runs = wait_all(vec![child], Duration::from_secs(120));
    assert_eq!(runs[0].code, 0, "{}", runs[0].stderr);
    // The outage was reported while the job waited.
    assert!(
        runs[0].stderr.contains("retrying, nothing is dropped"),
        "{}",
        runs[0].stderr
    );
    let got = read_topic(&direct, &output);
    for (p, (w, g)) in want.iter().zip(&got).enumerate() {
        assert!(
            w == g,
            "partition {p}: {} records, want {}",
            g.len(),
            w.len()
        );
    }
}

#[test]
fn a_missing_topic_is_an_error_naming_it() {
    let b = brokers();
    let dir = tempdir();
    let output = topic("out", 1);
    kafka_job(dir.path(), &b, "no-such-input", &output);
    let r = lockstep(dir.path(), &["run", "job.json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("source \"src\": topic \"no-such-input\" does not exist")
            && r.stderr.contains("create it first"),
        "{}",
        r.stderr
    );
    let input = topic("in", 2);
    kafka_job(dir.path(), &b, &input, "no-such-output");
    let r = lockstep(dir.path(), &["run", "job.json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("sink \"out\": topic \"no-such-output\" does not exist"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_fresh_run_writes_only_into_empty_partitions_of_its_own() {
    let b = brokers();
    let dir = tempdir();
    let input = topic("in", 2);
    feed(dir.path(), &b, &input, 5_000);
    let output = topic("out", 1);
    kafka_job(dir.path(), &b, &input, &output);
    run_ok(dir.path(), &["run", "job.json", "-q"]);
    let first = read_topic(&b, &output);
    // Again without state: refused, and nothing is added.
    let r = lockstep(dir.path(), &["run", "job.json", "-q"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("already holds records of this job's sink"),
        "{}",
        r.stderr
    );
    assert_eq!(read_topic(&b, &output), first);
    // Another writer's records are refused too.
    let other = topic("other", 1);
    feed(dir.path(), &b, &other, 10);
    kafka_job(dir.path(), &b, &input, &other);
    let r = lockstep(dir.path(), &["run", "job.json", "-q"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("holds records of another writer (lockstep-writer \"feed/k\""),
        "{}",
        r.stderr
    );
    // With --state, a finished run is not repeated and the topic stays.
    let output = topic("out", 1);
    kafka_job(dir.path(), &b, &input, &output);
    run_ok(dir.path(), &["run", "job.json", "-q", "--state", "st"]);
    let once = read_topic(&b, &output);
    let r = run_ok(dir.path(), &["run", "job.json", "--state", "st"]);
    assert!(r.stderr.contains("had already finished"), "{}", r.stderr);
    assert_eq!(read_topic(&b, &output), once);
}

#[test]
fn an_idle_partition_does_not_stall_an_unbounded_job() {
    let b = brokers();
    let dir = tempdir();
    let input = topic("in", 3);
    // Records with event times around now, all in partition 0 (by key).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    write(
        dir.path(),
        "feed.json",
        &format!(
            r#"{{"version": 1, "name": "feed", "time": {{"epoch_records": 100}},
  "sources": {{"g": {{"type": "generator", "count": 50,
    "fields": {{"k": {{"step": {{"values": [7]}}}}, "ts": {{"timestamp": {{"start": {}, "step_ms": 10}}}}}}}}}},
  "nodes": {{}},
  "sinks": {{"k": {{"type": "kafka", "input": "g", "brokers": "{b}", "topic": "{input}", "key": ["k"]}}}}}}"#,
            now - 5_000
        ),
    );
    run_ok(dir.path(), &["run", "feed.json", "-q"]);
    let parts = read_topic(&b, &input);
    assert_eq!(
        parts.iter().filter(|p| !p.is_empty()).count(),
        1,
        "one busy partition"
    );
    write(
        dir.path(),
        "job.json",
        &format!(
            r#"{{"version": 1, "name": "idle", "time": {{"epoch_ms": 100}},
  "sources": {{"src": {{"type": "kafka", "brokers": "{b}", "topic": "{input}", "idle_ms": 200,
    "schema": {{"k": "int", "ts": "timestamp"}}, "event_time": {{"field": "ts"}}}}}},
  "nodes": {{"w": {{"type": "window", "input": "src", "key": [], "window": {{"tumbling_ms": 1000}},
                  "aggregate": {{"n": "count(*)"}}}}}},
  "sinks": {{"out": {{"type": "file", "input": "w", "path": "out.jsonl"}},
            "late": {{"type": "null", "input": "w.late"}}}}}}"#
        ),
    );
    let mut child = Command::new(bin())
        .args(["run", "job.json", "--workers", "2", "--state", "st"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Without heartbeats the two empty partitions would hold every window
    // open forever; with them, all 50 records come out within seconds.
    let t = Instant::now();
    let total = loop {
        let text = fs::read_to_string(dir.path().join("out.jsonl")).unwrap_or_default();
        let n: i64 = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["n"].as_i64())
            .sum();
        if n >= 50 || t.elapsed() > Duration::from_secs(20) {
            break n;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(total, 50, "windows over the busy partition fired");
    // The heartbeats were logged for replay.
    let r = run_ok(dir.path(), &["state", "st", "checkpoints"]);
    assert!(!r.stdout.is_empty());
}

#[test]
fn two_sinks_on_one_topic_and_a_sink_into_its_own_input_are_rejected() {
    let dir = tempdir();
    write(
        dir.path(),
        "g.json",
        r#"{"version": 1, "name": "t", "time": {"epoch_ms": 1000},
  "sources": {"src": {"type": "kafka", "brokers": "127.0.0.1:1", "topic": "a",
                      "schema": {"x": "int"}, "event_time": {"field": "x"}, "start": "yesterday"}},
  "nodes": {},
  "sinks": {"one": {"type": "kafka", "input": "src", "brokers": "127.0.0.1:1", "topic": "b"},
            "two": {"type": "kafka", "input": "src", "brokers": "127.0.0.1:1", "topic": "b"},
            "three": {"type": "kafka", "input": "src", "brokers": "127.0.0.1:1", "topic": "a"},
            "four": {"type": "kafka", "input": "src", "brokers": "127.0.0.1:1", "topic": "c", "format": "csv"}}}"#,
    );
    let r = lockstep(dir.path(), &["validate", "g.json"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    for want in [
        "sources.src.start: start \"yesterday\" is not",
        "sinks.two.topic: sink \"one\" writes topic \"b\" too",
        "sinks.three.topic: topic \"a\" is read by source \"src\"",
        "sinks.four.format: a kafka sink writes jsonl",
    ] {
        assert!(r.stderr.contains(want), "missing {want:?} in\n{}", r.stderr);
    }
}

#[test]
fn the_kafka_partitioned_example_reproduces_its_checked_in_output_as_a_cluster() {
    let b = brokers();
    let dir = tempdir();
    let ex = super::common::root().join("examples/kafka-partitioned");
    let (clicks, out) = (topic("clicks", 4), topic("per-user", 2));
    for g in ["producer", "job"] {
        let text = fs::read_to_string(ex.join(format!("{g}.json"))).expect("graph");
        write(
            dir.path(),
            &format!("{g}.json"),
            &text
                .replace("@BROKERS@", &b)
                .replace("@CLICKS@", &clicks)
                .replace("@OUT@", &out),
        );
    }
    run_ok(dir.path(), &["run", "producer.json", "-q"]);
    for r in run_cluster(dir.path(), "job.json", 2, 2, &["-q"]) {
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let want = fs::read_to_string(ex.join("expected/per_user.out.jsonl")).expect("expected");
    let got = fs::read_to_string(dir.path().join("per_user.out.jsonl")).expect("output");
    assert_eq!(got, want);
    let mut lines: Vec<String> = want.lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(values(&read_topic(&b, &out)), lines);
}

#[test]
fn a_commit_group_gets_the_offsets_read_for_monitoring() {
    let b = brokers();
    let dir = tempdir();
    let input = topic("in", 3);
    feed(dir.path(), &b, &input, 3_000);
    let output = topic("out", 1);
    let group = format!("monitor-{}", std::process::id());
    kafka_job(dir.path(), &b, &input, &output);
    let text = fs::read_to_string(dir.path().join("job.json")).expect("job");
    write(
        dir.path(),
        "job.json",
        &text.replace(
            "\"until\": \"end\",",
            &format!("\"until\": \"end\", \"commit_group\": \"{group}\","),
        ),
    );
    run_ok(dir.path(), &["run", "job.json", "-q", "--workers", "2"]);
    let ends = lockstep::kafka::high_watermarks(&b, &input).expect("watermarks");
    let got = lockstep::kafka::committed(&b, &group, &input).expect("committed");
    assert_eq!(got, ends.into_iter().map(Some).collect::<Vec<_>>());
}

#[test]
fn start_latest_or_at_a_time_skips_what_came_before() {
    let b = brokers();
    let dir = tempdir();
    let input = topic("in", 2);
    // Plain records (no lockstep headers), as another program would write.
    let feed_ids = |first: i64| {
        let records: Vec<(Option<i32>, String, String)> = (first..first + 100)
            .map(|id| (None, id.to_string(), format!("{{\"id\":{id}}}")))
            .collect();
        produce_plain(&b, &input, &records);
    };
    feed_ids(0);
    std::thread::sleep(Duration::from_millis(1500));
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    std::thread::sleep(Duration::from_millis(200));
    feed_ids(1000);
    let ids = |start: &str| -> Vec<i64> {
        write(
            dir.path(),
            "job.json",
            &format!(
                r#"{{"version": 1, "name": "from", "time": {{"epoch_records": 1000}},
  "sources": {{"src": {{"type": "kafka", "brokers": "{b}", "topic": "{input}", "until": "end",
    "start": {start}, "schema": {{"id": "int"}}}}}},
  "nodes": {{}},
  "sinks": {{"out": {{"type": "file", "input": "src", "path": "out.jsonl", "order_by": ["id"]}}}}}}"#
            ),
        );
        run_ok(dir.path(), &["run", "job.json", "-q", "--workers", "2"]);
        let mut v: Vec<i64> = fs::read_to_string(dir.path().join("out.jsonl"))
            .expect("out")
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).expect("json")["id"]
                    .as_i64()
                    .expect("id")
            })
            .collect();
        v.sort_unstable();
        v
    };
    let second: Vec<i64> = (1000..1100).collect();
    assert_eq!(ids(&t.to_string()), second, "start at a time in ms");
    let rfc = lockstep::operators::timefmt::format_rfc3339(t).expect("time");
    assert_eq!(
        ids(&format!("\"{rfc}\"")),
        second,
        "start at an RFC 3339 time"
    );
    assert_eq!(ids("\"earliest\"").len(), 200);
    assert!(
        ids("\"latest\"").is_empty(),
        "latest reads only what comes after the start"
    );
}

#[test]
fn a_replay_repeats_the_logged_heartbeats_and_so_the_same_records_are_late() {
    let b = brokers();
    let dir = tempdir();
    let input = topic("in", 2);
    let output = topic("out", 1);
    // 50 records, all in one partition, about five seconds old; the other
    // partition stays empty, so only heartbeats let windows fire.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let records: Vec<(Option<i32>, String, String)> = (0..50i64)
        .map(|i| {
            let v = format!("{{\"k\":7,\"ts\":{}}}", now - 5_000 + i * 10);
            (Some(0), "7".to_string(), v)
        })
        .collect();
    produce_plain(&b, &input, &records);
    write(
        dir.path(),
        "job.json",
        &format!(
            r#"{{"version": 1, "name": "beats", "time": {{"epoch_ms": 100}},
  "sources": {{"src": {{"type": "kafka", "brokers": "{b}", "topic": "{input}", "idle_ms": 300,
    "schema": {{"k": "int", "ts": "timestamp"}}, "event_time": {{"field": "ts"}}}}}},
  "nodes": {{"w": {{"type": "window", "input": "src", "key": ["k"], "window": {{"tumbling_ms": 1000}},
                  "aggregate": {{"n": "count(*)"}}}}}},
  "sinks": {{"out": {{"type": "kafka", "input": "w", "brokers": "{b}", "topic": "{output}"}},
            "late": {{"type": "null", "input": "w.late"}}}}}}"#
        ),
    );
    // Run 1 writes the windows the heartbeats let fire, then dies inside a
    // checkpoint, before it is written: the N-th, for the first N whose
    // crash comes after the output (checkpoints before it may come first).
    let mut first = None;
    let mut started = 0i64;
    for n in 1..=6 {
        let _ = fs::remove_dir_all(dir.path().join("st"));
        started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64;
        let mut child = Command::new(bin())
            .args(["run", "job.json", "--state", "st"])
            .env("LOCKSTEP_CRASH_AT_CHECKPOINT", format!("{n}:before"))
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run 1");
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(8) && child.try_wait().expect("wait").is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let crashed = child.try_wait().expect("wait").is_some();
        let _ = child.kill();
        let _ = child.wait();
        let got = read_topic(&b, &output);
        if crashed && got.iter().map(Vec::len).sum::<usize>() > 0 {
            first = Some(got);
            break;
        }
        assert!(
            got.iter().all(Vec::is_empty),
            "output appeared without a crash after it (checkpoint {n})"
        );
    }
    let first = first.expect("a crash after the windows were written");
    // A record arrives after the heartbeat run 1 logged at the end of
    // partition 0, a second older than run 1's start: late after that
    // heartbeat (its window had fired), so a replay that repeats the
    // heartbeat drops it to `late`; one that decided anew would count it
    // in a window of its own, and write that window.
    let late = format!("{{\"k\":7,\"ts\":{}}}", started - 1_000);
    produce_plain(&b, &input, &[(Some(0), "7".to_string(), late)]);
    // Run 2 replays from the beginning: the logged heartbeats at the same
    // positions form the same epochs, so every regenerated window has the
    // position it had and is skipped. New heartbeats (with later times)
    // would put the windows in other epochs and write them again.
    let mut child = Command::new(bin())
        .args(["run", "job.json", "--state", "st", "-q"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run 2");
    std::thread::sleep(Duration::from_secs(4));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(read_topic(&b, &output), first, "every window once");
    let total: i64 = first
        .iter()
        .flatten()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(&r.1).expect("json")["n"]
                .as_i64()
                .expect("n")
        })
        .sum();
    assert_eq!(total, 50);
}

#[test]
fn a_re_created_output_topic_is_an_error_not_a_silent_rewrite() {
    let b = brokers();
    let dir = tempdir();
    let input = topic("in", 2);
    feed(dir.path(), &b, &input, 200_000);
    // An unbounded run: once the input is read, heartbeats move the
    // frontier to the wall clock, every window fires and is written, and
    // a checkpoint records the written records. Then kill -9.
    let output = topic("out", 2);
    kafka_job(dir.path(), &b, &input, &output);
    let text = fs::read_to_string(dir.path().join("job.json")).expect("job");
    write(
        dir.path(),
        "job.json",
        &text.replace("\"until\": \"end\",", ""),
    );
    let mut child = Command::new(bin())
        .args(["run", "job.json", "--state", "st", "-q"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run");
    // Output appears once the first heartbeats fire the windows; a
    // heartbeat a second then moves the frontier on, and checkpoints follow.
    let t = Instant::now();
    while lockstep::kafka::high_watermarks(&b, &output)
        .map(|h| h.iter().sum::<i64>())
        .unwrap_or(0)
        == 0
    {
        assert!(t.elapsed() < Duration::from_secs(60), "no output");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(4));
    let _ = child.kill();
    let _ = child.wait();
    let v = run_ok(dir.path(), &["state", "st", "offsets"]);
    let recorded = v
        .stdout
        .split("kafka sink\tpartition")
        .nth(1)
        .is_some_and(|t| t.lines().skip(1).any(|l| !l.ends_with("\t-")));
    assert!(
        recorded,
        "a checkpoint recorded written records: {}",
        v.stdout
    );
    // The topic is deleted and made again, empty, with the same partitions.
    for args in [
        vec!["topic", "delete", output.as_str()],
        vec!["topic", "create", output.as_str(), "--partitions", "2"],
    ] {
        let out = Command::new(nisshi())
            .args(&args)
            .args(["--broker", &format!("tcp://{b}")])
            .output()
            .expect("nisshi");
        assert!(
            out.status.success(),
            "{:?}: {}",
            args,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let r = lockstep(dir.path(), &["run", "job.json", "--state", "st"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("topic \"{output}\" partition"))
            && r.stderr.contains("no longer holds the record at offset"),
        "{}",
        r.stderr
    );
    assert!(
        read_topic(&b, &output).iter().all(Vec::is_empty),
        "nothing written"
    );
}

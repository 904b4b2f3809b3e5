//! Observing a running job: metrics (a JSON snapshot and Prometheus text),
//! execution events as JSON lines, live taps, the dashboard's data.
//!
//! Everything here reads counters the runtime keeps; nothing is read by the
//! dataflow, so observing a job never changes its output (a test compares
//! the bytes with and without). Counters are atomics updated once per batch
//! of records; the per-port record counts need one pass-through operator
//! per node output, which is built only when a job is observed.

mod progress;
mod server;

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value as Json};

use lockstep_operators::value::Rec;

use crate::graph::{Graph, Producer, SinkKind, SourceKind};
use crate::runtime::Shared;

pub use progress::Progress;
pub use server::{serve, tap_remote};

/// How many recent errors and checkpoints the snapshot keeps.
const RECENT: usize = 50;

/// The job's status as observers see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Setting up (restoring state, connecting a cluster).
    Starting = 0,
    /// Running.
    Running = 1,
    /// Finished: its input is exhausted and its output complete.
    Finished = 2,
    /// Failed.
    Failed = 3,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Finished => "finished",
            Status::Failed => "failed",
        }
    }
}

/// A live tap's subscribers on one output.
#[derive(Default)]
struct TapSlot {
    /// Each subscriber, and the records it missed since its last line.
    subs: Mutex<Vec<(std::sync::mpsc::SyncSender<String>, u64)>>,
    active: std::sync::atomic::AtomicBool,
}

/// A checkpoint, as the dashboard lists it.
#[derive(Clone, Debug)]
struct CheckpointEntry {
    epoch: u64,
    duration: Duration,
    bytes: u64,
    at: Duration,
}

/// Observes one job in this process.
pub struct Observer {
    graph: Arc<Graph>,
    /// The run's counters, from set-up until the job ends.
    shared: Mutex<Option<Arc<Shared>>>,
    status: AtomicU8,
    started: Instant,
    /// Execution events go to a writer thread (no worker waits on the
    /// file), and the thread, to be joined at the end.
    events: Option<Mutex<Option<std::sync::mpsc::Sender<String>>>>,
    events_writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    errors: Mutex<VecDeque<(Duration, String, String)>>,
    /// Per node with errors: (errors counted, when the last event went out,
    /// errors since).
    error_events: Mutex<BTreeMap<String, (Option<Instant>, u64)>>,
    checkpoints: Mutex<VecDeque<CheckpointEntry>>,
    taps: BTreeMap<(Producer, usize), Arc<TapSlot>>,
    /// The final summary's counts, kept once the job ends.
    final_snapshot: Mutex<Option<Json>>,
    /// Whether node outputs are counted (and can be tapped).
    instruments: bool,
    /// Epochs a sink wrote that are complete once the frontier passes
    /// them (with the first sink's latency), and how many epochs completed.
    epochs: Mutex<Epochs>,
}

/// Epochs written by sinks, completed once the frontier passes them.
#[derive(Default)]
struct Epochs {
    pending: BTreeMap<u64, Option<Duration>>,
    /// Epochs below this are complete.
    below: u64,
    completed: u64,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl Observer {
    /// An observer of `graph`; with `events`, execution events are written
    /// there as JSON lines. With `instruments`, every output's records are
    /// counted (and can be tapped); without, only the counters the runtime
    /// keeps anyway are seen (enough for the progress bar).
    ///
    /// # Errors
    /// When the events file cannot be created.
    pub fn new(
        graph: Arc<Graph>,
        events: Option<&Path>,
        instruments: bool,
    ) -> Result<Arc<Observer>, String> {
        let (events, events_writer) = match events {
            Some(p) => {
                let file = std::fs::File::create(p)
                    .map_err(|e| format!("cannot create the events file {}: {e}", p.display()))?;
                let (tx, rx) = std::sync::mpsc::channel::<String>();
                let writer = std::thread::Builder::new()
                    .name("lockstep-events-file".into())
                    .spawn(move || {
                        let mut w = std::io::BufWriter::new(file);
                        while let Ok(line) = rx.recv() {
                            let _ = writeln!(w, "{line}");
                            // Flushed whenever nothing else is waiting, so
                            // that a reader sees events as they happen.
                            if let Ok(line) = rx.try_recv() {
                                let _ = writeln!(w, "{line}");
                                continue;
                            }
                            let _ = w.flush();
                        }
                        let _ = w.flush();
                    })
                    .map_err(|e| format!("cannot start the events writer: {e}"))?;
                (Some(Mutex::new(Some(tx))), Some(writer))
            }
            None => (None, None),
        };
        let mut taps = BTreeMap::new();
        for (i, n) in graph.nodes.iter().enumerate() {
            for k in 0..n.ports.len() {
                if passes_through(&graph, Producer::Node(i), k) {
                    taps.insert((Producer::Node(i), k), Arc::new(TapSlot::default()));
                }
            }
        }
        Ok(Arc::new(Observer {
            graph,
            shared: Mutex::new(None),
            status: AtomicU8::new(Status::Starting as u8),
            started: Instant::now(),
            events,
            errors: Mutex::new(VecDeque::new()),
            error_events: Mutex::new(BTreeMap::new()),
            checkpoints: Mutex::new(VecDeque::new()),
            taps,
            final_snapshot: Mutex::new(None),
            instruments,
            events_writer: Mutex::new(events_writer),
            epochs: Mutex::new(Epochs::default()),
        }))
    }

    /// Whether node outputs are counted.
    pub fn instruments(&self) -> bool {
        self.instruments
    }

    /// The graph observed.
    pub fn graph(&self) -> &Arc<Graph> {
        &self.graph
    }

    fn shared(&self) -> Option<Arc<Shared>> {
        self.shared.lock().ok().and_then(|s| s.clone())
    }

    /// The job's status.
    pub fn status(&self) -> Status {
        match self.status.load(Ordering::SeqCst) {
            1 => Status::Running,
            2 => Status::Finished,
            3 => Status::Failed,
            _ => Status::Starting,
        }
    }

    /// Connects the observer to the run's counters (by its first worker,
    /// once the job is set up).
    pub fn attach(self: &Arc<Self>, shared: &Arc<Shared>) {
        let first = self.shared.lock().is_ok_and(|mut s| {
            let first = s.is_none();
            if first {
                *s = Some(Arc::clone(shared));
            }
            first
        });
        if first {
            self.status.store(Status::Running as u8, Ordering::SeqCst);
            self.event(
                "job_started",
                json!({
                    "job": self.graph.name,
                    "workers": shared.local_workers,
                    "sources": self.graph.sources.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
                }),
            );
            if self.counts_epochs() {
                // Epochs complete as the frontier passes them; a frontier
                // of `None` (no worker has stepped yet, or all are done)
                // completes nothing here: `finish` takes the rest.
                let me = Arc::clone(self);
                let _ = std::thread::Builder::new()
                    .name("lockstep-epochs".into())
                    .spawn(move || {
                        while me.status() == Status::Running {
                            std::thread::sleep(Duration::from_millis(50));
                            if let Some(f) = me.shared().and_then(|s| s.frontier()) {
                                me.flush_epochs(Some(f));
                            }
                        }
                    });
            }
        }
    }

    /// Writes the `epoch_completed` events of the written epochs below
    /// `frontier` (all, with `None`), in order.
    fn flush_epochs(&self, frontier: Option<u64>) {
        let Ok(mut p) = self.epochs.lock() else {
            return;
        };
        while let Some((&e, &lat)) = p.pending.first_key_value() {
            if frontier.is_some_and(|f| e >= f) {
                break;
            }
            p.pending.pop_first();
            p.completed += 1;
            self.event(
                "epoch_completed",
                json!({ "epoch": e, "latency_ms": lat.map(ms) }),
            );
        }
        p.below = p.below.max(frontier.unwrap_or(u64::MAX));
    }

    /// Records the end of the job: its last numbers stay available, and
    /// the `job_finished` event goes out.
    pub fn finish(&self, result: Result<&crate::RunSummary, &str>) {
        // Every epoch a sink wrote is complete now.
        self.flush_epochs(None);
        let mut snap = self.snapshot();
        let (status, extra) = match result {
            Ok(s) => (
                Status::Finished,
                json!({
                    "sinks": s.sinks.iter().map(|(n, c)| json!({"sink": n, "records": c})).collect::<Vec<_>>(),
                    "sources": s.sources.iter().map(|(n, r, e)| json!({"source": n, "records": r, "errors": e})).collect::<Vec<_>>(),
                }),
            ),
            Err(e) => (Status::Failed, json!({ "error": e })),
        };
        self.status.store(status as u8, Ordering::SeqCst);
        snap["status"] = Json::from(status.name());
        snap["frontier"] = Json::Null;
        if let Ok(mut f) = self.final_snapshot.lock() {
            *f = Some(snap);
        }
        // The run's counters hold this observer: let them go.
        if let Ok(mut s) = self.shared.lock() {
            *s = None;
        }
        let pending: Vec<(String, u64)> = self
            .error_events
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(_, v)| v.1 > 0)
                    .map(|(k, v)| (k.clone(), v.1))
                    .collect()
            })
            .unwrap_or_default();
        for (node, n) in pending {
            self.event("node_error", json!({ "node": node, "errors": n }));
        }
        let mut fields = json!({
            "job": self.graph.name,
            "status": status.name(),
            "elapsed_ms": ms(self.started.elapsed()),
        });
        if let (Json::Object(f), Json::Object(x)) = (&mut fields, extra) {
            f.extend(x);
        }
        self.event("job_finished", fields);
    }

    /// Writes one execution event.
    fn event(&self, kind: &str, fields: Json) {
        let Some(tx) = &self.events else { return };
        let mut line = json!({
            "event": kind,
            "unix_ms": unix_ms(),
            "elapsed_ms": ms(self.started.elapsed()),
        });
        if let (Json::Object(l), Json::Object(f)) = (&mut line, fields) {
            l.extend(f);
        }
        if let Some(tx) = tx.lock().ok().as_ref().and_then(|t| t.as_ref()) {
            let _ = tx.send(line.to_string());
        }
    }

    /// Writes out the events still queued and closes the events file
    /// (after [`finish`](Observer::finish)).
    pub fn close_events(&self) {
        if let Some(tx) = &self.events {
            if let Ok(mut t) = tx.lock() {
                t.take();
            }
        }
        if let Some(h) = self.events_writer.lock().ok().and_then(|mut h| h.take()) {
            let _ = h.join();
        }
    }

    /// A sink wrote `epoch`: its `epoch_completed` event goes out once the
    /// frontier has passed it (every sink finished it).
    pub fn epoch_written(&self, epoch: u64, latency: Option<Duration>) {
        if !self.counts_epochs() {
            return;
        }
        if let Ok(mut p) = self.epochs.lock() {
            // A later sink's write of an epoch already reported is no news.
            if epoch >= p.below {
                p.pending.entry(epoch).or_insert(latency);
            }
        }
    }

    /// Whether completed epochs are counted: for metrics or events.
    fn counts_epochs(&self) -> bool {
        self.instruments || self.events.is_some()
    }

    /// Epochs every sink finished (each counted once).
    fn epochs_completed(&self) -> u64 {
        self.epochs.lock().map_or(0, |p| p.completed)
    }

    /// Every local worker wrote checkpoint `epoch`.
    pub fn checkpoint_completed(&self, epoch: u64, longest: Duration, bytes: u64) {
        let at = self.started.elapsed();
        if let Ok(mut c) = self.checkpoints.lock() {
            c.push_back(CheckpointEntry {
                epoch,
                duration: longest,
                bytes,
                at,
            });
            while c.len() > RECENT {
                c.pop_front();
            }
        }
        let (epoch, last) = if epoch == u64::MAX {
            (None, true)
        } else {
            (Some(epoch), false)
        };
        self.event(
            "checkpoint_completed",
            json!({ "epoch": epoch, "final": last, "duration_ms": ms(longest), "bytes": bytes }),
        );
    }

    /// An `errors` record of `node` (its reason): kept among the recent errors; an event
    /// goes out for a node's first error and then at most once a second,
    /// with the count since the last one.
    pub fn note_error(&self, node: &str, reason: &str) {
        self.note_errors(node, reason, 1);
    }

    /// `n` `errors` records of `node`, the last with `reason`.
    pub fn note_errors(&self, node: &str, reason: &str, n: u64) {
        if let Ok(mut e) = self.errors.lock() {
            e.push_back((self.started.elapsed(), node.to_string(), reason.to_string()));
            while e.len() > RECENT {
                e.pop_front();
            }
        }
        if self.events.is_none() {
            return;
        }
        let now = Instant::now();
        let due = self.error_events.lock().ok().and_then(|mut m| {
            let slot = m.entry(node.to_string()).or_insert((None, 0));
            slot.1 += n;
            let due = slot
                .0
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
            due.then(|| {
                let n = slot.1;
                *slot = (Some(now), 0);
                n
            })
        });
        if let Some(n) = due {
            self.event(
                "node_error",
                json!({ "node": node, "errors": n, "reason": reason }),
            );
        }
    }

    /// The pass-through that counts records out of `(p, port)` and feeds
    /// live taps. Built only for observed jobs, on the outputs
    /// [`passes_through`] names.
    pub fn instrument<'s>(
        self: &Arc<Self>,
        p: Producer,
        port: usize,
        stream: lockstep_operators::node::Edge<'s>,
        shared: &Arc<Shared>,
    ) -> lockstep_operators::node::Edge<'s> {
        use timely::dataflow::operators::Inspect;
        let sh = Arc::clone(shared);
        let def = &self.graph.ports(p)[port];
        let tap = self.taps.get(&(p, port)).cloned();
        let enc = lockstep_operators::encode::Encoder::new(
            &def.schema,
            lockstep_operators::encode::Format::Jsonl,
        );
        stream.inspect_core(move |event| {
            let Ok((stamp, batch)) = event else { return };
            let epoch = stamp.least().copied().unwrap_or(0);
            if let Producer::Node(i) = p {
                sh.ports[i][port].fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            if let Some(t) = &tap {
                if t.active.load(Ordering::Relaxed) {
                    send_tap(t, epoch, batch, &enc);
                }
            }
        })
    }

    /// Subscribes to the records out of `name` (`node` or `node.port`), as
    /// they flow: lines `{"epoch":E,"record":{...}}`.
    ///
    /// # Errors
    /// When no output has that name.
    pub fn subscribe(&self, name: &str) -> Result<std::sync::mpsc::Receiver<String>, String> {
        let r = crate::harness::resolve_port(&self.graph, name)?;
        if !passes_through(&self.graph, r.producer, r.port) {
            return Err(format!(
                "\"{name}\" cannot be tapped while the job runs: only outputs of nodes that something reads are observed (not sources, errors or unread outputs); tap it with `lockstep tap GRAPH --node {name}`"
            ));
        }
        let slot = self
            .taps
            .get(&(r.producer, r.port))
            .ok_or_else(|| format!("\"{name}\" cannot be tapped"))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(4096);
        if let Ok(mut s) = slot.subs.lock() {
            s.push((tx, 0));
            slot.active.store(true, Ordering::SeqCst);
        }
        Ok(rx)
    }

    /// The metrics now, as JSON (the dashboard's and `/api/metrics`'s).
    pub fn snapshot(&self) -> Json {
        if let Some(s) = self.final_snapshot.lock().ok().and_then(|f| f.clone()) {
            return s;
        }
        let elapsed = self.started.elapsed();
        let Some(sh) = self.shared() else {
            return json!({
                "job": self.graph.name, "status": self.status().name(),
                "elapsed_ms": ms(elapsed), "frontier": null, "epochs_completed": 0,
                "epoch_latency_ms": {"p50": null, "p95": null, "p99": null, "count": 0, "sum": 0.0},
                "progress": null, "nodes": [], "partitions": [], "checkpoints": [], "errors": [],
                "checkpoint_totals": {"checkpoints": 0, "bytes": 0, "write_p99_ms": null,
                                      "write_count": 0, "write_sum_s": 0.0},
            });
        };
        let g = &self.graph;
        let port_count = |p: Producer, k: usize| -> u64 {
            match p {
                Producer::Source(i) => {
                    let m = sh.source_metrics(i);
                    if k == 0 {
                        m.records.load(Ordering::Relaxed)
                    } else {
                        m.errors.load(Ordering::Relaxed)
                    }
                }
                Producer::Node(i) => sh.ports[i][k].load(Ordering::Relaxed),
            }
        };
        let mut nodes = Vec::new();
        for (i, s) in g.sources.iter().enumerate() {
            nodes.push(json!({
                "name": s.name, "kind": "source", "type": crate::render::source_label(&s.kind),
                "records_in": null, "records_out": port_count(Producer::Source(i), 0),
                "errors": port_count(Producer::Source(i), 1), "late": null,
                "state_keys": null, "state_bytes": null,
            }));
        }
        for (i, n) in g.nodes.iter().enumerate() {
            let p = Producer::Node(i);
            let mut out = 0;
            let mut errors = 0;
            let mut late = 0;
            for (k, port) in n.ports.iter().enumerate() {
                let c = port_count(p, k);
                match port.name.as_str() {
                    "errors" => errors += c,
                    "late" => late += c,
                    _ => out += c,
                }
            }
            let input: u64 = n
                .inputs
                .iter()
                .map(|r| port_count(r.producer, r.port))
                .sum();
            let gauges = n.node.state_gauges();
            let keys: Option<i64> =
                (!gauges.is_empty()).then(|| gauges.iter().map(|g| g.keys()).sum());
            let bytes: Option<i64> = gauges
                .iter()
                .filter_map(|g| g.bytes())
                .reduce(i64::saturating_add);
            nodes.push(json!({
                "name": n.name, "kind": "node", "type": n.type_name,
                "records_in": input, "records_out": out, "errors": errors, "late": late,
                "state_keys": keys, "state_bytes": bytes,
            }));
        }
        for (i, s) in g.sinks.iter().enumerate() {
            if matches!(s.kind, SinkKind::Capture { .. }) {
                continue;
            }
            nodes.push(json!({
                "name": s.name, "kind": "sink", "type": crate::render::sink_label(&s.kind),
                "records_in": port_count(s.input.producer, s.input.port),
                "records_out": sh.sink_metrics(i).load(Ordering::Relaxed),
                "errors": null, "late": null, "state_keys": null, "state_bytes": null,
            }));
        }
        let mut partitions = Vec::new();
        let (mut done, mut total, mut known) = (0u64, 0u64, true);
        for (i, s) in g.sources.iter().enumerate() {
            let ooo = s.event_time.map_or(0, |(_, o)| o);
            for (k, gauge) in sh.source_metrics(i).parts.iter().enumerate() {
                let position = gauge.position.load(Ordering::Relaxed);
                let epoch = gauge.epoch.load(Ordering::Relaxed);
                let max = gauge.max_time.load(Ordering::Relaxed);
                let (read, size) = part_progress(&sh, i, k, &s.kind, position, epoch);
                match size {
                    Some(t) => {
                        done += read.min(t);
                        total += t;
                    }
                    None => known = false,
                }
                partitions.push(json!({
                    "source": s.name, "partition": k,
                    "epoch": (epoch != u64::MAX).then_some(epoch),
                    "watermark_ms": (max != i64::MIN && matches!(g.time, lockstep_operators::node::TimeMode::EpochMs(_)))
                        .then(|| max.saturating_sub(i64::try_from(ooo).unwrap_or(i64::MAX))),
                    "records": gauge.records.load(Ordering::Relaxed),
                    "position": position, "read": read, "total": size, "done": epoch == u64::MAX,
                }));
            }
        }
        let lat = sh.latency();
        let q = |x: f64| lat.quantile_ms(x);
        let checkpoints: Vec<Json> = self
            .checkpoints
            .lock()
            .map(|c| {
                c.iter()
                    .map(|e| {
                        let last = e.epoch == u64::MAX;
                        json!({"epoch": (!last).then_some(e.epoch), "final": last,
                               "duration_ms": ms(e.duration), "bytes": e.bytes, "at_ms": ms(e.at)})
                    })
                    .collect()
            })
            .unwrap_or_default();
        let errors: Vec<Json> = self
            .errors
            .lock()
            .map(|e| {
                e.iter()
                    .map(|(at, n, m)| json!({"at_ms": ms(*at), "node": n, "message": m}))
                    .collect()
            })
            .unwrap_or_default();
        let ck = sh.checkpoint_stats();
        json!({
            "job": g.name,
            "status": self.status().name(),
            "elapsed_ms": ms(elapsed),
            "frontier": sh.frontier(),
            "epochs_completed": self.epochs_completed(),
            "epoch_latency_ms": {"p50": q(0.5), "p95": q(0.95), "p99": q(0.99),
                                 "count": lat.count(), "sum": lat.sum_seconds() * 1000.0},
            "progress": (known && total > 0).then(|| json!({"done": done, "total": total})),
            "checkpoint_totals": {"checkpoints": ck.checkpoints, "bytes": ck.bytes,
                                  "write_p99_ms": ck.write.quantile_ms(0.99),
                                  "write_count": ck.write.count(), "write_sum_s": ck.write.sum_seconds()},
            "nodes": nodes,
            "partitions": partitions,
            "checkpoints": checkpoints,
            "errors": errors,
        })
    }

    /// The metrics now, in Prometheus' text format.
    pub fn prometheus(&self) -> String {
        prometheus_text(&self.snapshot())
    }

    /// The graph as the dashboard draws it.
    pub fn graph_json(&self) -> Json {
        let g = &self.graph;
        let mut nodes = Vec::new();
        let mut edges = Vec::new();
        let port_names = |p: Producer| -> Vec<String> {
            g.ports(p)
                .iter()
                .enumerate()
                .map(|(k, x)| {
                    if k == 0 {
                        "main".to_string()
                    } else {
                        x.name.clone()
                    }
                })
                .collect()
        };
        for (i, s) in g.sources.iter().enumerate() {
            nodes.push(json!({"name": s.name, "kind": "source", "type": crate::render::source_label(&s.kind), "ports": port_names(Producer::Source(i))}));
        }
        for (i, n) in g.nodes.iter().enumerate() {
            nodes.push(json!({"name": n.name, "kind": "node", "type": n.type_name, "ports": port_names(Producer::Node(i))}));
            for r in &n.inputs {
                edges.push(edge(g, r, &n.name));
            }
        }
        for s in &g.sinks {
            if matches!(s.kind, SinkKind::Capture { .. }) {
                continue;
            }
            nodes.push(json!({"name": s.name, "kind": "sink", "type": crate::render::sink_label(&s.kind), "ports": []}));
            edges.push(edge(g, &s.input, &s.name));
        }
        json!({"job": g.name, "nodes": nodes, "edges": edges})
    }
}

fn edge(g: &Graph, r: &crate::graph::PortRef, to: &str) -> Json {
    let port = if r.port == 0 {
        "main".to_string()
    } else {
        g.ports(r.producer)[r.port].name.clone()
    };
    json!({"from": g.producer_name(r.producer), "port": port, "to": to})
}

/// Encodes a batch for a tap's subscribers; drops subscribers that left.
/// A subscriber that does not keep up misses records rather than slowing
/// the job: its next line is then `{"dropped":N}`, the records it missed.
fn send_tap(t: &TapSlot, epoch: u64, batch: &[Rec], enc: &lockstep_operators::encode::Encoder) {
    use std::sync::mpsc::TrySendError;
    let Ok(mut subs) = t.subs.lock() else { return };
    let mut line = String::new();
    for rec in batch {
        line.clear();
        enc.encode(&rec.row, &mut line);
        let l = format!(
            "{{\"epoch\":{epoch},\"record\":{}}}",
            line.trim_end_matches('\n')
        );
        subs.retain_mut(|(s, dropped)| {
            if *dropped > 0 {
                match s.try_send(format!("{{\"dropped\":{dropped}}}")) {
                    Ok(()) => *dropped = 0,
                    Err(TrySendError::Full(_)) => {
                        *dropped += 1;
                        return true;
                    }
                    Err(TrySendError::Disconnected(_)) => return false,
                }
            }
            match s.try_send(l.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    *dropped += 1;
                    true
                }
                Err(TrySendError::Disconnected(_)) => false,
            }
        });
    }
    if subs.is_empty() {
        t.active.store(false, Ordering::SeqCst);
    }
}

/// (read, total) of partition `k` of source `i`, in its unit: bytes of a
/// file partition, records of a generated one; total unknown otherwise.
fn part_progress(
    sh: &Shared,
    i: usize,
    k: usize,
    kind: &SourceKind,
    position: u64,
    epoch: u64,
) -> (u64, Option<u64>) {
    match kind {
        SourceKind::File { .. } => {
            let Some(part) = sh.file_parts.get(i).and_then(|p| p.get(k)) else {
                return (0, None);
            };
            let end = part
                .end
                .or_else(|| std::fs::metadata(&part.path).ok().map(|m| m.len()));
            let total = end.map(|e| e.saturating_sub(part.start));
            let read = if epoch == u64::MAX {
                total.unwrap_or(0)
            } else {
                position.saturating_sub(part.start)
            };
            (read, total)
        }
        SourceKind::Generator(g) => {
            let step = u64::from(g.partitions.max(1));
            let kk = k as u64;
            let total = g.count.saturating_sub(kk).div_ceil(step);
            let read = if epoch == u64::MAX {
                total
            } else {
                position.saturating_sub(kk) / step
            };
            (read, Some(total))
        }
        _ => (0, None),
    }
}

/// Whether the output `(p, port)` of an observed job gets the counting
/// pass-through (and can be tapped while the job runs): the outputs of
/// nodes that something reads, except `errors`. The rest are counted where
/// they are counted anyway: sources count what they read, `errors` outputs
/// have their own counter, and outputs nobody reads are counted as
/// discarded. Each pass-through is an operator in the dataflow, which costs
/// progress tracking on every epoch, so there are as few as can be.
pub fn passes_through(graph: &Graph, p: Producer, port: usize) -> bool {
    let Producer::Node(i) = p else { return false };
    if graph.nodes[i].ports[port].name == "errors" {
        return false;
    }
    let read = |r: &crate::graph::PortRef| r.producer == p && r.port == port;
    graph.nodes.iter().any(|n| n.inputs.iter().any(read))
        || graph.sinks.iter().any(|s| read(&s.input))
}

/// Escapes a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The samples of `field` of each item that has it, labelled by `labels`.
fn samples<'a>(
    items: impl Iterator<Item = &'a Json>,
    field: &str,
    labels: impl Fn(&Json) -> String,
) -> Vec<(String, f64)> {
    items
        .filter_map(|x| x[field].as_f64().map(|v| (labels(x), v)))
        .collect()
}

/// A summary family: quantiles, then `_sum` and `_count`.
fn summary(
    family: &mut impl FnMut(&str, &str, &str, Vec<(String, f64)>),
    name: &str,
    help: &str,
    quantiles: Vec<(String, f64)>,
    sum: f64,
    count: f64,
) {
    let mut samples: Vec<(String, f64)> = quantiles
        .into_iter()
        .map(|(q, v)| (format!("quantile=\"{q}\""), v))
        .collect();
    samples.push(("\u{0}_sum".to_string(), sum));
    samples.push(("\u{0}_count".to_string(), count));
    family(name, "summary", help, samples);
}

/// Prometheus text exposition of a snapshot.
pub fn prometheus_text(s: &Json) -> String {
    let job = label(s["job"].as_str().unwrap_or_default());
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            // "\0_sum" and "\0_count" name a summary's other samples.
            if let Some(suffix) = labels.strip_prefix('\u{0}') {
                let _ = writeln!(out, "{name}{suffix}{{job=\"{job}\"}} {v}");
                continue;
            }
            let sep = if labels.is_empty() { "" } else { "," };
            let _ = writeln!(out, "{name}{{job=\"{job}\"{sep}{labels}}} {v}");
        }
    };
    let num = |v: &Json| v.as_f64();
    let nodes = s["nodes"].as_array().cloned().unwrap_or_default();
    let per_node = |field: &str, only: Option<&str>| {
        samples(
            nodes.iter().filter(|n| only.is_none_or(|k| n["kind"] == k)),
            field,
            |n| {
                format!(
                    "node=\"{}\",kind=\"{}\"",
                    label(n["name"].as_str().unwrap_or_default()),
                    n["kind"].as_str().unwrap_or_default()
                )
            },
        )
    };
    family(
        "lockstep_up",
        "gauge",
        "1 while the job runs, 0 once it finished or failed.",
        vec![(
            format!("status=\"{}\"", s["status"].as_str().unwrap_or_default()),
            if s["status"] == "running" || s["status"] == "starting" {
                1.0
            } else {
                0.0
            },
        )],
    );
    family(
        "lockstep_records_in_total",
        "counter",
        "Records into a node or sink.",
        per_node("records_in", None),
    );
    family(
        "lockstep_records_out_total",
        "counter",
        "Records out of a source or node (errors and late excluded); records written by a sink.",
        per_node("records_out", None),
    );
    family(
        "lockstep_errors_total",
        "counter",
        "Records sent to a source's or node's errors output.",
        per_node("errors", None),
    );
    family(
        "lockstep_late_records_total",
        "counter",
        "Records sent to a node's late output.",
        per_node("late", Some("node")),
    );
    family(
        "lockstep_state_keys",
        "gauge",
        "Keys a stateful node holds.",
        per_node("state_keys", Some("node")),
    );
    family(
        "lockstep_state_bytes",
        "gauge",
        "Bytes a stateful node's state holds, estimated as checkpoints encode it (keys times the mean entry size of the last checkpoint; with --state only).",
        per_node("state_bytes", Some("node")),
    );
    let parts = s["partitions"].as_array().cloned().unwrap_or_default();
    let per_part = |field: &str| {
        samples(parts.iter(), field, |p| {
            format!(
                "source=\"{}\",partition=\"{}\"",
                label(p["source"].as_str().unwrap_or_default()),
                p["partition"]
            )
        })
    };
    family(
        "lockstep_source_epoch",
        "gauge",
        "A source partition's current epoch (absent once it ended).",
        per_part("epoch"),
    );
    family(
        "lockstep_source_watermark_ms",
        "gauge",
        "A source partition's watermark, in ms since the Unix epoch.",
        per_part("watermark_ms"),
    );
    family(
        "lockstep_source_records_total",
        "counter",
        "Records a source partition read (errors included).",
        per_part("records"),
    );
    family(
        "lockstep_source_position",
        "gauge",
        "A source partition's reader position (file byte offset, record number, Kafka offset).",
        per_part("position"),
    );
    family(
        "lockstep_frontier_epoch",
        "gauge",
        "The least epoch any worker of this process may still output (absent when done).",
        num(&s["frontier"])
            .map(|v| (String::new(), v))
            .into_iter()
            .collect(),
    );
    family(
        "lockstep_epochs_completed_total",
        "counter",
        "Epochs the sinks finished.",
        vec![(String::new(), num(&s["epochs_completed"]).unwrap_or(0.0))],
    );
    let lat = &s["epoch_latency_ms"];
    summary(
        &mut family,
        "lockstep_epoch_latency_seconds",
        "From an epoch's last input to its output.",
        ["0.5", "0.95", "0.99"]
            .iter()
            .zip(["p50", "p95", "p99"])
            .filter_map(|(q, k)| num(&lat[k]).map(|v| ((*q).to_string(), v / 1000.0)))
            .collect(),
        num(&lat["sum"]).unwrap_or(0.0) / 1000.0,
        num(&lat["count"]).unwrap_or(0.0),
    );
    let ck = &s["checkpoint_totals"];
    family(
        "lockstep_checkpoints_total",
        "counter",
        "Checkpoints written.",
        vec![(String::new(), num(&ck["checkpoints"]).unwrap_or(0.0))],
    );
    family(
        "lockstep_checkpoint_bytes_total",
        "counter",
        "Bytes of checkpoint batches written.",
        vec![(String::new(), num(&ck["bytes"]).unwrap_or(0.0))],
    );
    summary(
        &mut family,
        "lockstep_checkpoint_write_seconds",
        "Time to write one worker's checkpoint batch.",
        num(&ck["write_p99_ms"])
            .map(|v| ("0.99".to_string(), v / 1000.0))
            .into_iter()
            .collect(),
        num(&ck["write_sum_s"]).unwrap_or(0.0),
        num(&ck["write_count"]).unwrap_or(0.0),
    );
    if let Some(last) = s["checkpoints"].as_array().and_then(|c| c.last()) {
        family(
            "lockstep_last_checkpoint_epoch",
            "gauge",
            "The epoch of the last checkpoint (absent for the final one).",
            num(&last["epoch"])
                .map(|v| (String::new(), v))
                .into_iter()
                .collect(),
        );
        family(
            "lockstep_last_checkpoint_seconds",
            "gauge",
            "How long the last checkpoint took (slowest worker).",
            vec![(
                String::new(),
                num(&last["duration_ms"]).unwrap_or(0.0) / 1000.0,
            )],
        );
        family(
            "lockstep_last_checkpoint_bytes",
            "gauge",
            "Bytes of the last checkpoint (all local workers).",
            vec![(String::new(), num(&last["bytes"]).unwrap_or(0.0))],
        );
    }
    out
}

/// The final summary's per-node table: records in and out, errors, late.
pub fn node_table(s: &Json) -> String {
    let cell = |v: &Json| match v {
        Json::Null => "-".to_string(),
        v => v.to_string(),
    };
    let rows: Vec<[String; 6]> = s["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            [
                n["name"].as_str().unwrap_or_default().to_string(),
                n["kind"].as_str().unwrap_or_default().to_string(),
                cell(&n["records_in"]),
                cell(&n["records_out"]),
                cell(&n["errors"]),
                cell(&n["late"]),
            ]
        })
        .collect();
    let head = ["node", "kind", "in", "out", "errors", "late"].map(str::to_string);
    let mut width = [0usize; 6];
    for r in std::iter::once(&head).chain(&rows) {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&head).chain(&rows) {
        out.push_str("\n ");
        for (k, (w, c)) in width.iter().zip(r).enumerate() {
            if k < 2 {
                let _ = write!(out, " {c:<w$}");
            } else {
                let _ = write!(out, " {c:>w$}");
            }
        }
    }
    out
}

//! Running a validated graph on timely workers: compile it into one dataflow
//! per worker (the same operators in the same order on every worker), run it
//! to the end of input, and report what happened.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::rc::Rc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Capability, Concatenate, Inspect, Probe};
use timely::dataflow::{Scope, StreamVec};
use timely::scheduling::Activator;

use lockstep_operators::encode::{Encoder, Format};
use lockstep_operators::node::{Edge, StateCtx};
use lockstep_operators::value::{Rec, Value};
use lockstep_state::store::{Changes, FINISHED};
use lockstep_state::Checkpointer;

use crate::checkpoint;
use crate::graph::spec::OnError;
use crate::graph::{Graph, Producer, SinkKind, SourceKind};
use crate::latency::{EpochClock, Histogram};
use crate::source::reader::{file_parts, FilePart};

/// How to run a job.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Worker threads in this process.
    pub workers: usize,
    /// Keep state and checkpoints in this directory (`--state`): a killed
    /// run restarts from its last complete checkpoint.
    pub state: Option<std::path::PathBuf>,
    /// Delete the state directory's contents first and start over (`--fresh`).
    pub fresh: bool,
    /// Run as one process of a cluster (`--processes`, `--process-id`,
    /// `--hosts`); `workers` is then per process.
    pub cluster: Option<crate::cluster::ClusterOptions>,
    /// Metrics, events, dashboard and taps (`--metrics`, `--ui`,
    /// `--events`, `lockstep tap`): observers only, never read by the
    /// dataflow.
    pub observer: Option<Arc<crate::observe::Observer>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            workers: 1,
            state: None,
            fresh: false,
            cluster: None,
            observer: None,
        }
    }
}

impl RunOptions {
    /// `workers` workers, no checkpoints.
    pub fn workers(workers: usize) -> RunOptions {
        RunOptions {
            workers,
            ..RunOptions::default()
        }
    }
}

/// Counters of one source.
#[derive(Debug, Default)]
pub struct SourceMetrics {
    /// Records read that fit the schema.
    pub records: AtomicU64,
    /// Records sent to `errors`.
    pub errors: AtomicU64,
    /// Per partition (by index), as of its last batch.
    pub parts: Vec<PartGauge>,
}

/// Where one source partition is, as of its last batch (observed only).
#[derive(Debug)]
pub struct PartGauge {
    /// Its epoch (`u64::MAX` once it ended).
    pub epoch: AtomicU64,
    /// Its largest event time (`i64::MIN`: none yet).
    pub max_time: std::sync::atomic::AtomicI64,
    /// Records it read (errors included).
    pub records: AtomicU64,
    /// Its reader's position (a byte offset in a file, a record number
    /// for generated sources, an offset in Kafka).
    pub position: AtomicU64,
}

impl Default for PartGauge {
    fn default() -> Self {
        PartGauge {
            epoch: AtomicU64::new(0),
            max_time: std::sync::atomic::AtomicI64::new(i64::MIN),
            records: AtomicU64::new(0),
            position: AtomicU64::new(0),
        }
    }
}

/// State shared by the workers of one process.
#[derive(Debug)]
pub struct Shared {
    /// Each source's file partitions (empty for other sources).
    pub file_parts: Vec<Vec<FilePart>>,
    /// Each source's partition count.
    partitions: Vec<u32>,
    /// Each Kafka source's plan.
    kafka: Vec<Option<Arc<crate::kafka::Plan>>>,
    /// Each Kafka sink's partition count (0 for other sinks).
    sink_partitions: Vec<u32>,
    /// Whether the state held an earlier run of this job (a Kafka sink may
    /// then find that run's records in its topic, and skips them).
    pub resuming: bool,
    /// The job's name (Kafka sinks' writer id).
    pub job: String,
    /// Kafka sink partitions' start-up states, by (sink, partition).
    sink_states: Mutex<BTreeMap<(usize, u32), crate::sink_kafka::PartState>>,
    abort: AtomicBool,
    halted: AtomicBool,
    failure: Mutex<Option<String>>,
    sources: Vec<SourceMetrics>,
    sinks: Vec<AtomicU64>,
    /// Records per (producer, port) that no node or sink consumes.
    unconsumed: Mutex<BTreeMap<(Producer, usize), u64>>,
    node_errors: Vec<AtomicU64>,
    /// Wall-clock observations for epoch latency; never read by the dataflow.
    clock: EpochClock,
    /// Bytes of encoded output that sinks hold for epochs not yet complete.
    stashed: std::sync::atomic::AtomicI64,
    /// Items keyed nodes hold for epochs not yet complete.
    held: Vec<Arc<lockstep_state::StateGauge>>,
    /// What the checkpoints written so far cost.
    checkpoints: Mutex<CheckpointStats>,
    /// Each worker's changes not folded when it finished.
    leftovers: Mutex<Vec<(u32, Vec<Changes>)>>,
    /// When the run started (for the timings of the summary only).
    started: Instant,
    /// When a sink first finished an epoch.
    first_output: std::sync::OnceLock<Duration>,
    /// When the last worker had built (and restored) its dataflow.
    built: Mutex<Duration>,
    /// Records out of each node's ports, by node and port (counted only
    /// when observed).
    pub ports: Vec<Vec<AtomicU64>>,
    /// Each local worker's probe frontier (`u64::MAX`: none or done).
    frontiers: Vec<AtomicU64>,
    /// Checkpoint batches by epoch, until every local worker wrote its own:
    /// (batches, bytes, longest write).
    ck_batches: Mutex<BTreeMap<u64, (usize, u64, Duration)>>,
    /// Local workers.
    pub local_workers: usize,
    /// The observer, if any.
    pub observer: Option<Arc<crate::observe::Observer>>,
}

/// What one item a keyed node holds for an open epoch (a stashed record or
/// a partial accumulator) is counted as against the stash budget: a rough
/// size, since it only decides when sources slow down.
pub const HELD_ITEM_BYTES: i64 = 128;

impl Shared {
    /// The shared state of a run of `graph` whose sources have `partitions`
    /// partitions each.
    fn new(
        graph: &Graph,
        file_parts: Vec<Vec<FilePart>>,
        partitions: Vec<u32>,
        started: Instant,
    ) -> Shared {
        for n in &graph.nodes {
            for g in n.node.state_gauges().into_iter().chain(n.node.held_gauge()) {
                g.reset();
            }
        }
        Shared {
            file_parts,
            abort: AtomicBool::new(false),
            halted: AtomicBool::new(false),
            failure: Mutex::new(None),
            sources: graph
                .sources
                .iter()
                .enumerate()
                .map(|(i, _)| SourceMetrics {
                    parts: (0..partitions.get(i).copied().unwrap_or(0))
                        .map(|_| PartGauge::default())
                        .collect(),
                    ..SourceMetrics::default()
                })
                .collect(),
            sinks: graph.sinks.iter().map(|_| AtomicU64::new(0)).collect(),
            unconsumed: Mutex::new(BTreeMap::new()),
            node_errors: graph.nodes.iter().map(|_| AtomicU64::new(0)).collect(),
            clock: EpochClock::new(
                partitions
                    .iter()
                    .enumerate()
                    .flat_map(|(i, n)| (0..*n).map(move |p| (i, p))),
            ),
            partitions,
            kafka: Vec::new(),
            sink_partitions: Vec::new(),
            resuming: false,
            job: String::new(),
            sink_states: Mutex::new(BTreeMap::new()),
            stashed: std::sync::atomic::AtomicI64::new(0),
            held: graph
                .nodes
                .iter()
                .filter_map(|n| n.node.held_gauge())
                .collect(),
            checkpoints: Mutex::new(CheckpointStats::default()),
            leftovers: Mutex::new(Vec::new()),
            started,
            first_output: std::sync::OnceLock::new(),
            built: Mutex::new(Duration::ZERO),
            ports: graph
                .nodes
                .iter()
                .map(|n| n.ports.iter().map(|_| AtomicU64::new(0)).collect())
                .collect(),
            frontiers: Vec::new(),
            ck_batches: Mutex::new(BTreeMap::new()),
            local_workers: 1,
            observer: None,
        }
    }

    /// Notes an `errors` record of source or node `node` for observers.
    pub fn note_error(&self, node: &str, reason: &str) {
        if let Some(o) = self.observer.as_ref().filter(|o| o.instruments()) {
            o.note_error(node, reason);
        }
    }

    /// Notes worker `local`'s probe frontier.
    pub fn note_frontier(&self, local: usize, frontier: Option<u64>) {
        if let Some(f) = self.frontiers.get(local) {
            f.store(frontier.unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }

    /// The least frontier of this process's workers (`None`: all done).
    pub fn frontier(&self) -> Option<u64> {
        let f = self
            .frontiers
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .min()
            .unwrap_or(u64::MAX);
        (f != u64::MAX).then_some(f)
    }

    /// Epoch latency so far.
    pub fn latency(&self) -> Histogram {
        self.clock.histogram()
    }

    /// What the checkpoints cost so far.
    pub fn checkpoint_stats(&self) -> CheckpointStats {
        self.checkpoints
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// The plan of source `i`, if it reads Kafka.
    pub fn kafka_plan(&self, i: usize) -> Option<Arc<crate::kafka::Plan>> {
        self.kafka.get(i).cloned().flatten()
    }

    /// Takes the start-up state of partition `part` of Kafka sink `sink`.
    pub fn take_sink_state(&self, sink: usize, part: u32) -> Option<crate::sink_kafka::PartState> {
        self.sink_states.lock().ok()?.remove(&(sink, part))
    }

    /// The partition count of sink `i`'s topic (Kafka sinks).
    pub fn sink_partitions(&self, i: usize) -> u32 {
        self.sink_partitions.get(i).copied().unwrap_or(0)
    }

    /// The partition count of source `i` (for a Kafka source, its topic's).
    pub fn partitions(&self, i: usize) -> u32 {
        self.partitions[i]
    }

    /// Records a failure and stops the job: sources stop reading and sinks
    /// stop writing (what the operators would emit while the dataflow
    /// drains is not the job's output). The first failure is kept.
    pub fn fail(&self, message: String) {
        self.halted.store(true, Ordering::SeqCst);
        self.fail_gate(message);
    }

    /// The fail gate's failure (`"on_error": "fail"`): sources stop, and
    /// the gate itself tells the sinks which epochs they still write.
    fn fail_gate(&self, message: String) {
        if let Ok(mut f) = self.failure.lock() {
            if f.is_none() {
                *f = Some(message);
            }
        }
        self.abort.store(true, Ordering::SeqCst);
    }

    /// Whether a failure other than the fail gate's stopped the job: sinks
    /// then write nothing more.
    pub fn halted(&self) -> bool {
        self.halted.load(Ordering::SeqCst)
    }

    /// Whether the job is stopping.
    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// The counters of source `i`.
    pub fn source_metrics(&self, i: usize) -> &SourceMetrics {
        &self.sources[i]
    }

    /// Adds (or, negative, removes) bytes held by sinks for open epochs.
    pub fn stash_add(&self, bytes: i64) {
        self.stashed.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes held for open epochs by sinks, and (estimated) by keyed
    /// nodes: backpressure reads this; it shapes timing only, never results.
    pub fn stashed(&self) -> i64 {
        let held: i64 = self.held.iter().map(|g| g.keys()).sum();
        self.stashed
            .load(Ordering::Relaxed)
            .saturating_add(held.saturating_mul(HELD_ITEM_BYTES))
    }

    /// Notes that partition `part` of source `source` moved to `epoch`.
    pub fn partition_advanced(&self, source: usize, part: u32, epoch: u64) {
        self.clock.advanced(source, part, epoch);
    }

    /// Notes that a sink finished writing `epoch`.
    pub fn epoch_written(&self, epoch: u64) {
        let latency = self.clock.written(epoch);
        let _ = self.first_output.set(self.started.elapsed());
        if let Some(o) = &self.observer {
            o.epoch_written(epoch, latency);
        }
    }

    /// The written-records counter of sink `i`.
    pub fn sink_metrics(&self, i: usize) -> &AtomicU64 {
        &self.sinks[i]
    }
}

/// What a finished job did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Per source: (name, records read, records sent to errors).
    pub sources: Vec<(String, u64, u64)>,
    /// Per node with an errors output: (name, records sent to errors).
    pub node_errors: Vec<(String, u64)>,
    /// Per sink: (name, records written).
    pub sinks: Vec<(String, u64)>,
    /// Records of outputs nobody consumes, counted and discarded: (`name.port`, count).
    pub discarded: Vec<(String, u64)>,
    /// Per stateful node: (name, most keys its state held at once, keys held
    /// at the end), summed over workers. Fired windows and closed windowed
    /// joins free their keys, so a windowed job's peak stays flat as its
    /// input grows.
    pub state: Vec<(String, i64, i64)>,
    /// Wall-clock time, for the summary line only (it never reaches output).
    pub elapsed: Duration,
    /// Epoch latencies: for each epoch a sink wrote, from the moment the last
    /// source partition moved past it to the moment the sink finished it.
    pub epoch_latency: Histogram,
    /// With `--state`: the checkpoint the run resumed after (`None`: it
    /// started from the beginning).
    pub resumed: Option<u64>,
    /// With `--state`: whether the state already held a finished run, so
    /// nothing was run (the output files are complete).
    pub already_finished: bool,
    /// With `--state`: what the checkpoints cost.
    pub checkpoints: CheckpointStats,
    /// Time from the start of the run until every worker had built its
    /// dataflow (with `--state`: settled the store, rolled the sinks back
    /// and restored its state).
    pub ready_after: Duration,
    /// Time from the start of the run until a sink first finished an epoch.
    pub first_output_after: Option<Duration>,
}

impl RunSummary {
    /// The `q` quantile (0..=1) of epoch latency in milliseconds, if any
    /// epoch was written.
    pub fn epoch_latency_ms(&self, q: f64) -> Option<f64> {
        self.epoch_latency.quantile_ms(q)
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.already_finished {
            return write!(
                f,
                "had already finished: its state holds the final checkpoint and its output files are complete (add --fresh to run it again)"
            );
        }
        write!(f, "finished in {:.2} s", self.elapsed.as_secs_f64())?;
        if let (Some(p50), Some(p99)) = (self.epoch_latency_ms(0.5), self.epoch_latency_ms(0.99)) {
            write!(
                f,
                " ({} sink epochs written, epoch latency p50 {p50:.1} ms, p99 {p99:.1} ms)",
                self.epoch_latency.count()
            )?;
        }
        for (n, r, e) in &self.sources {
            write!(f, "\n  source {n}: {r} records read")?;
            if *e > 0 {
                write!(f, ", {e} rejected (see {n}.errors)")?;
            }
        }
        for (n, e) in &self.node_errors {
            if *e > 0 {
                write!(f, "\n  node {n}: {e} records sent to {n}.errors")?;
            }
        }
        for (n, peak, end) in &self.state {
            write!(f, "\n  state of {n}: at most {peak} keys, {end} at the end")?;
        }
        for (n, w) in &self.sinks {
            write!(f, "\n  sink {n}: {w} records")?;
        }
        if let Some(r) = self.resumed {
            write!(
                f,
                "\n  resumed after the checkpoint at epoch {r} (state restored after {:.0} ms",
                self.ready_after.as_secs_f64() * 1000.0
            )?;
            if let Some(t) = self.first_output_after {
                write!(f, ", first output after {:.0} ms", t.as_secs_f64() * 1000.0)?;
            }
            write!(f, ")")?;
        }
        let c = &self.checkpoints;
        if c.batches > 0 {
            write!(
                f,
                "\n  checkpoints: {} ({} worker batches, {:.1} KiB in all, write p99 {:.1} ms)",
                c.checkpoints,
                c.batches,
                c.bytes as f64 / 1024.0,
                c.write.quantile_ms(0.99).unwrap_or(0.0)
            )?;
        }
        for (p, c) in &self.discarded {
            write!(f, "\n  warning: {c} records of {p} were discarded: connect {p} to a sink to keep them")?;
        }
        Ok(())
    }
}

/// What a run's checkpoints cost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Checkpoints written (counted by each process's first worker; every
    /// worker writes each).
    pub checkpoints: u64,
    /// Write batches, over all workers.
    pub batches: u64,
    /// Bytes of those batches.
    pub bytes: u64,
    /// Time per batch: syncing the sink files and writing the batch.
    pub write: Histogram,
}

/// A job that did not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunError {
    /// What went wrong, naming where (source, file, line) and why.
    pub message: String,
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RunError {}

fn err(message: impl Into<String>) -> RunError {
    RunError {
        message: message.into(),
    }
}

/// Checks inputs and prepares outputs before the workers build the
/// dataflow: input files must open; the output files this process writes
/// (`mine(sink, partition)`) are created (truncated) with their CSV header,
/// unless `outputs` is false (a checkpointed job rolls them back instead).
fn prepare(
    graph: &Graph,
    outputs: bool,
    mine: &dyn Fn(usize, u32) -> bool,
) -> Result<Vec<Vec<FilePart>>, RunError> {
    let mut parts = Vec::new();
    for s in &graph.sources {
        parts.push(match &s.kind {
            SourceKind::File { files, split, .. } => {
                file_parts(files, *split).map_err(|e| err(format!("source \"{}\": {e}", s.name)))?
            }
            _ => Vec::new(),
        });
    }
    if !outputs {
        return Ok(parts);
    }
    for (i, s) in graph.sinks.iter().enumerate() {
        match &s.kind {
            SinkKind::File { paths, format, .. } => {
                let header = Encoder::new(&s.schema, *format);
                for (k, p) in paths.iter().enumerate() {
                    if !mine(i, u32::try_from(k).unwrap_or(u32::MAX)) {
                        continue;
                    }
                    let mut f = std::fs::File::create(p).map_err(|e| {
                        err(format!("sink \"{}\": cannot create {}: {e}; check that its directory exists and is writable", s.name, p.display()))
                    })?;
                    f.write_all(header.header().as_bytes()).map_err(|e| {
                        err(format!(
                            "sink \"{}\": cannot write {}: {e}",
                            s.name,
                            p.display()
                        ))
                    })?;
                }
            }
            SinkKind::Stdout {
                format: Format::Csv,
                ..
            } if mine(i, 0) => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(Encoder::new(&s.schema, Format::Csv).header().as_bytes());
                let _ = out.flush();
            }
            _ => {}
        }
    }
    Ok(parts)
}

/// What each worker needs to checkpoint.
#[derive(Clone)]
struct CheckpointSetup {
    store: Arc<lockstep_state::store::Store>,
    resume: Option<u64>,
    tables: Arc<Vec<String>>,
    key_groups: u32,
    every: u64,
}

/// What a process set up after the start-up agreement, for its workers.
struct ProcessRun {
    shared: Arc<Shared>,
    setup: Option<CheckpointSetup>,
    prepared: Option<checkpoint::Prepared>,
    /// The state already held the final checkpoint: nothing to run.
    finished: bool,
}

/// The result of a process's set-up, published by its first worker.
type SetupSlot = Arc<(
    Mutex<Option<Result<Arc<ProcessRun>, String>>>,
    std::sync::Condvar,
)>;

/// Runs a validated graph to the end of its input.
///
/// Every run starts with the start-up agreement of [`crate::cluster`]
/// ("dataflow 0"; trivial in one process), then settles the state at the
/// agreed checkpoint, prepares sources and sinks, and builds the job's
/// dataflow on every worker.
///
/// # Errors
/// When an input cannot be read, an output cannot be written, or a record
/// fails under `"on_error": "fail"`; with `--state`, when the state cannot
/// be used or a checkpoint cannot be written; in a cluster, when the
/// processes do not run the same job. The message names where and why.
pub fn run(graph: Arc<Graph>, opts: &RunOptions) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let workers = opts.workers.max(1);
    let (processes, process) = opts
        .cluster
        .as_ref()
        .map_or((1, 0), |c| (c.processes, c.process));
    let total = workers
        .checked_mul(processes)
        .and_then(|t| u32::try_from(t).ok())
        .ok_or_else(|| err("--workers × --processes is too large"))?;
    let layout = checkpoint::Layout {
        workers: total,
        processes: u32::try_from(processes).unwrap_or(u32::MAX),
        process: u32::try_from(process).unwrap_or(u32::MAX),
    };
    let opened = match &opts.state {
        Some(dir) => Some(checkpoint::open(&graph, dir, layout, opts.fresh).map_err(err)?),
        None => None,
    };
    let decisions = startup_decisions(&graph, opened.as_ref()).map_err(err)?;
    let hello = crate::cluster::Hello {
        process: layout.process,
        processes: layout.processes,
        workers: u32::try_from(workers).unwrap_or(u32::MAX),
        fingerprint: crate::cluster::fingerprint(&graph),
        stateful: opened.is_some(),
        candidate: opened.as_ref().and_then(|o| o.candidate),
        old: opened.as_ref().and_then(|o| o.old_layout),
        decisions,
    };
    let config = match &opts.cluster {
        Some(c) => {
            c.check_port().map_err(err)?;
            c.timely_config(workers)
        }
        None if workers == 1 => timely::Config::thread(),
        None => timely::Config::process(workers),
    };
    let slot: SetupSlot = Arc::new((Mutex::new(None), std::sync::Condvar::new()));
    let observer = opts.observer.clone();
    let opened = Arc::new(Mutex::new(opened));
    let (g, sl) = (Arc::clone(&graph), Arc::clone(&slot));
    // Standard output is the job's again (timely's connection messages went
    // to stderr): workers wait for it before building the job's dataflow.
    let stdout_ready = Arc::new(AtomicBool::new(opts.cluster.is_none()));
    let ready = Arc::clone(&stdout_ready);
    let redirect = opts
        .cluster
        .as_ref()
        .map(|_| crate::cluster::StdoutToStderr::start());
    let watchdog = opts.cluster.as_ref().map(crate::cluster::Watchdog::start);
    if let Some(c) = &opts.cluster {
        crate::cluster::quiet_panics(c, &graph.name);
    }
    // In a cluster, timely panics when a peer goes away (its model: a
    // process that dies takes the cluster down); that panic becomes this
    // run's error.
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<(), RunError> {
        let executed = timely::execute(config, move |worker| {
            let local = worker.index() % workers;
            let all = crate::cluster::exchange(worker, (local == 0).then(|| hello.clone()));
            let agreed = crate::cluster::agree(&all, &hello);
            // A cluster whose shape changed moves state to its new owners
            // first; every worker of every process takes part.
            let mut moved: Option<Result<Option<checkpoint::Prepared>, String>> = None;
            if let Some(a) = agreed.as_ref().ok().filter(|a| a.moving) {
                let moving = (local == 0).then(|| {
                    let opened = opened.lock().ok().and_then(|mut o| o.take());
                    opened
                        .map(|o| {
                            checkpoint::start_move(
                                &g,
                                o,
                                a.resume,
                                u32::try_from(workers).unwrap_or(1),
                            )
                        })
                        .transpose()
                });
                let (outgoing, store, adopt) = match &moving {
                    Some(Ok(Some(m))) => {
                        (m.outgoing.clone(), Some(Arc::clone(m.store())), m.adopt())
                    }
                    _ => (Vec::new(), None, None),
                };
                let sent = crate::cluster::move_state(worker, workers, outgoing, store, adopt);
                if let Some(m) = moving {
                    moved = Some(sent.and(m).and_then(|m| {
                        m.map(|m| checkpoint::finish_move(m, a.existed)).transpose()
                    }));
                }
            }
            if local == 0 {
                let result = agreed.and_then(|a| {
                    let prepared = match moved {
                        Some(m) => m?,
                        None => match opened.lock().ok().and_then(|mut o| o.take()) {
                            Some(o) => Some(checkpoint::settle(o, a.resume)?),
                            None => None,
                        },
                    };
                    set_up(
                        &g,
                        prepared,
                        a,
                        started,
                        (workers, total, process),
                        observer.clone(),
                    )
                    .map(Arc::new)
                });
                if let Ok(mut s) = sl.0.lock() {
                    *s = Some(result);
                }
                sl.1.notify_all();
            }
            let run = {
                let Ok(mut s) = sl.0.lock() else { return };
                while s.is_none() {
                    match sl.1.wait(s) {
                        Ok(g) => s = g,
                        Err(_) => return,
                    }
                }
                match s.as_ref() {
                    Some(Ok(r)) => Arc::clone(r),
                    _ => return,
                }
            };
            if local == 0 {
                if let Some(o) = &run.shared.observer {
                    o.attach(&run.shared);
                }
            }
            if !run.finished {
                while !ready.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                run_worker(worker, &g, &run);
            }
        });
        if let Some(w) = &watchdog {
            w.connected();
        }
        drop(redirect);
        stdout_ready.store(true, Ordering::SeqCst);
        let guards = executed.map_err(|e| {
            err(match &opts.cluster {
                Some(_) => format!("cannot start the cluster: {e}"),
                None => format!("cannot start {workers} workers: {e}"),
            })
        })?;
        for r in guards.join() {
            r.map_err(|e| err(format!("a worker stopped unexpectedly: {e}")))?;
        }
        Ok(())
    }));
    match ran {
        Ok(r) => r.map_err(|e| match &opts.cluster {
            Some(c) => crate::cluster::broken(c, &e.message),
            None => e,
        })?,
        Err(_) => {
            let c = opts.cluster.as_ref();
            return Err(err(match c {
                Some(c) => crate::cluster::broken(c, &crate::cluster::panic_message()).message,
                None => format!(
                    "a worker stopped unexpectedly: {}",
                    crate::cluster::panic_message()
                ),
            }));
        }
    }
    let run = match slot.0.lock().ok().and_then(|mut s| s.take()) {
        Some(Ok(run)) => run,
        Some(Err(e)) => return Err(err(e)),
        None => return Err(err("the workers stopped before the job was set up")),
    };
    if run.finished {
        return Ok(RunSummary {
            already_finished: true,
            resumed: Some(FINISHED),
            ..RunSummary::default()
        });
    }
    let shared = &run.shared;
    if let Ok(Some(message)) = shared.failure.lock().map(|f| f.clone()) {
        return Err(err(message));
    }
    if let Some(p) = &run.prepared {
        // Fold what the workers have not folded yet: the state then holds
        // each key once, and nothing is pending. In a cluster another
        // process may not have written the final checkpoint (it can crash
        // after this one finished), so the changes stay pending there until
        // the next start settles them.
        let mut leftovers = shared
            .leftovers
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        leftovers.sort_by_key(|(w, _)| *w);
        let lists: Vec<Vec<Changes>> = leftovers.into_iter().map(|(_, c)| c).collect();
        if processes == 1 {
            p.store.finish(&p.manifest, &lists).map_err(|e| err(e.0))?;
        }
    }
    let mut summary = summary(&graph, shared, started.elapsed());
    summary.resumed = run.prepared.as_ref().and_then(|p| p.resume);
    Ok(summary)
}

/// The worker that writes partition `part` of sink `sink` (shared with
/// [`crate::sink`]): fixed by the graph and the total worker count.
pub fn sink_writer(sink: usize, part: u32, peers: usize) -> usize {
    (sink + part as usize) % peers.max(1)
}

/// This process's start-up decisions, for dataflow 0: each Kafka source's
/// plan (start and end offsets) and each Kafka sink's partition count —
/// the ones an earlier run logged, else made now. A topic whose partition
/// count changed since it was logged is an error.
fn startup_decisions(
    graph: &Graph,
    opened: Option<&checkpoint::Opened>,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let logged = |table: &str| -> Result<Option<Vec<u8>>, String> {
        match opened {
            Some(o) => o.logged(table),
            None => Ok(None),
        }
    };
    let changed = |what: &str, topic: &str, then: u32, now: u32| {
        format!(
            "{what}: topic \"{topic}\" has {now} partitions, but the job started with {then}; a topic's partitions decide where records go, so this state cannot be resumed: re-create the topic with {then} partitions, or add --fresh to start over"
        )
    };
    let mut out = Vec::new();
    for s in &graph.sources {
        let SourceKind::Kafka(k) = &s.kind else {
            continue;
        };
        let what = format!("source \"{}\"", s.name);
        let table = checkpoint::source_table(&s.name);
        let bytes = match logged(&table)? {
            Some(b) => {
                let plan: crate::kafka::Plan = lockstep_state::decode_value(&b).map_err(|e| e.0)?;
                let now = crate::kafka::partitions(&k.brokers, &k.properties, &k.topic)
                    .map_err(|e| format!("{what}: {e}"))?;
                if now != plan.partitions {
                    return Err(changed(&what, &k.topic, plan.partitions, now));
                }
                b
            }
            None => {
                let plan =
                    crate::kafka::plan(&k.brokers, &k.properties, &k.topic, k.start, k.bounded)
                        .map_err(|e| format!("{what}: {e}"))?;
                lockstep_state::encode_value(&plan).map_err(|e| e.0)?
            }
        };
        out.push((table, bytes));
    }
    for s in &graph.sinks {
        let SinkKind::Kafka {
            brokers,
            topic,
            properties,
            ..
        } = &s.kind
        else {
            continue;
        };
        let what = format!("sink \"{}\"", s.name);
        let table = checkpoint::sink_table(&s.name);
        let now = crate::kafka::partitions(brokers, properties, topic)
            .map_err(|e| format!("{what}: {e}"))?;
        if let Some(b) = logged(&table)? {
            let then: u32 = lockstep_state::decode_value(&b).map_err(|e| e.0)?;
            if then != now {
                return Err(changed(&what, topic, then, now));
            }
        }
        out.push((table, lockstep_state::encode_value(&now).map_err(|e| e.0)?));
    }
    Ok(out)
}

/// The agreed start-up decision of `table` (process 0's), logged in this
/// process's state before anything depends on it.
fn adopt_decision(
    agreed: &crate::cluster::Agreement,
    prepared: Option<&checkpoint::Prepared>,
    table: &str,
) -> Result<Vec<u8>, String> {
    let bytes = agreed
        .decisions
        .iter()
        .find(|(n, _)| n == table)
        .map(|(_, b)| b.clone())
        .ok_or_else(|| format!("{table}: no start-up decision was agreed"))?;
    if let Some(p) = prepared {
        p.log_startup(table, &bytes)?;
    }
    Ok(bytes)
}

/// A process's set-up once the processes agreed: settles the state at the
/// agreed checkpoint, prepares inputs and outputs (those of this process's
/// sink writers), and makes the state its workers share.
fn set_up(
    graph: &Arc<Graph>,
    mut prepared: Option<checkpoint::Prepared>,
    agreed: crate::cluster::Agreement,
    started: Instant,
    (workers, total, process): (usize, u32, usize),
    observer: Option<Arc<crate::observe::Observer>>,
) -> Result<ProcessRun, String> {
    let peers = total as usize;
    if let Some(p) = prepared.as_mut() {
        // A process that joined a cluster with state resumes its job.
        p.existed |= agreed.existed;
    }
    let finished = prepared
        .as_ref()
        .is_some_and(|p| p.resume == Some(FINISHED));
    let mine = move |sink: usize, part: u32| sink_writer(sink, part, peers) / workers == process;
    let shared_parts = if finished {
        Vec::new()
    } else {
        let mut file_parts = prepare(graph, prepared.is_none(), &mine).map_err(|e| e.message)?;
        if let Some(p) = &prepared {
            checkpoint::log_splits(graph, p, &mut file_parts)?;
            checkpoint::roll_back_sinks(graph, p, &mine)?;
        }
        file_parts
    };
    let setup = prepared.as_ref().map(|p| CheckpointSetup {
        store: Arc::clone(&p.store),
        resume: p.resume,
        tables: Arc::clone(&p.tables),
        key_groups: p.key_groups,
        every: checkpoint::every(graph),
    });
    // Process 0's start-up decisions are every process's; logged before
    // any output depends on them.
    let mut kafka = Vec::new();
    let mut partitions = Vec::new();
    for s in &graph.sources {
        let plan = match &s.kind {
            SourceKind::Kafka(_) => {
                let table = checkpoint::source_table(&s.name);
                let bytes = adopt_decision(&agreed, prepared.as_ref(), &table)?;
                let plan: crate::kafka::Plan =
                    lockstep_state::decode_value(&bytes).map_err(|e| e.0)?;
                Some(Arc::new(plan))
            }
            _ => None,
        };
        partitions.push(plan.as_ref().map_or(s.kind.partitions(), |p| p.partitions));
        kafka.push(plan);
    }
    let mut sink_partitions = Vec::new();
    for s in &graph.sinks {
        sink_partitions.push(match &s.kind {
            SinkKind::Kafka { .. } => {
                let table = checkpoint::sink_table(&s.name);
                let bytes = adopt_decision(&agreed, prepared.as_ref(), &table)?;
                lockstep_state::decode_value::<u32>(&bytes).map_err(|e| e.0)?
            }
            _ => 0,
        });
    }
    // Kafka sinks: each partition this process writes is checked against
    // its checkpoint and its topic, in order.
    let mut sink_states = BTreeMap::new();
    if !finished {
        for (i, s) in graph.sinks.iter().enumerate() {
            let SinkKind::Kafka {
                brokers,
                topic,
                properties,
                ..
            } = &s.kind
            else {
                continue;
            };
            let writer = format!("{}/{}", graph.name, s.name);
            for part in 0..sink_partitions[i] {
                if !mine(i, part) {
                    continue;
                }
                let committed = match &prepared {
                    Some(p) => checkpoint::read_pos(p, &checkpoint::sink_table(&s.name), part)?,
                    None => None,
                };
                let st = crate::sink_kafka::start_partition(
                    brokers,
                    properties,
                    topic,
                    part,
                    &writer,
                    committed,
                    prepared.as_ref().is_some_and(|p| p.existed),
                )
                .map_err(|e| format!("sink \"{}\": {e}", s.name))?;
                sink_states.insert((i, part), st);
            }
        }
    }
    let mut shared = Shared::new(graph, shared_parts, partitions, started);
    shared.local_workers = workers;
    shared.frontiers = (0..workers).map(|_| AtomicU64::new(u64::MAX)).collect();
    shared.observer = observer;
    shared.sink_states = Mutex::new(sink_states);
    shared.kafka = kafka;
    shared.sink_partitions = sink_partitions;
    shared.resuming = prepared.as_ref().is_some_and(|p| p.existed);
    shared.job = graph.name.clone();
    let shared = Arc::new(shared);
    Ok(ProcessRun {
        shared,
        setup,
        prepared,
        finished,
    })
}

/// Builds the job's dataflow on one worker and runs it to the end; with
/// `--state`, writes the last checkpoints.
fn run_worker(worker: &mut timely::worker::Worker, graph: &Arc<Graph>, run: &ProcessRun) {
    let s = &run.shared;
    let ck = run.setup.as_ref().map(|c| {
        Rc::new(Checkpointer::new(
            Arc::clone(&c.store),
            u32::try_from(worker.index()).unwrap_or(u32::MAX),
            u32::try_from(worker.peers()).unwrap_or(u32::MAX),
            c.every,
            c.key_groups,
            Arc::clone(&c.tables),
            c.resume,
        ))
    });
    let probe = ProbeHandle::new();
    let markers =
        worker.dataflow::<u64, _, _>(|scope| build_dataflow(scope, graph, s, &probe, ck.as_ref()));
    if let Ok(mut b) = s.built.lock() {
        *b = (*b).max(s.started.elapsed());
    }
    let local = worker.index() % s.local_workers.max(1);
    while worker.step_or_park(None) {
        s.note_frontier(local, probe.with_frontier(|f| f.first().copied()));
        if let (Some(ck), Some(markers)) = (&ck, &markers) {
            checkpoint_step(ck, &probe, s, markers);
        }
    }
    s.note_frontier(local, None);
    if let Some(ck) = &ck {
        // The input is exhausted and every operator has finished: the
        // checkpoints decided last, then the final one.
        while !s.aborted() {
            let Some(c) = ck.next_ready(None) else { break };
            write_checkpoint(ck, c, s);
        }
        if !s.aborted() && ck.finish_due() {
            write_checkpoint(ck, FINISHED, s);
        }
        if let Ok(mut l) = s.leftovers.lock() {
            l.push((ck.worker(), ck.take_unfolded()));
        }
    }
}

/// After each step of a worker: worker 0 decides the checkpoint its
/// frontier has made due; every worker writes the decided checkpoints its
/// frontier has passed, and lets the markers operator broadcast decisions and
/// markers (or, at the end of the input, finish).
fn checkpoint_step(
    ck: &Checkpointer,
    probe: &ProbeHandle<u64>,
    shared: &Shared,
    markers: &Activator,
) {
    if shared.aborted() {
        markers.activate();
        return;
    }
    let frontier = probe.with_frontier(|f| f.first().copied());
    match frontier {
        Some(f) if ck.worker() == 0 => {
            if let Some(c) = ck.due(f) {
                ck.decide(c);
                markers.activate();
            }
        }
        Some(_) => {}
        None => markers.activate(),
    }
    while let Some(c) = ck.next_ready(frontier) {
        write_checkpoint(ck, c, shared);
        markers.activate();
        if shared.aborted() {
            return;
        }
    }
}

fn write_checkpoint(ck: &Checkpointer, epoch: u64, shared: &Shared) {
    match ck.checkpoint(epoch) {
        Ok(record) => {
            let took = Duration::from_micros(record.micros);
            if let Ok(mut c) = shared.checkpoints.lock() {
                c.batches += 1;
                c.bytes += record.bytes;
                c.write.record(took);
                // Once per checkpoint: by this process's first worker.
                if (ck.worker() as usize).is_multiple_of(shared.local_workers.max(1)) {
                    c.checkpoints += 1;
                }
            }
            if let Some(o) = &shared.observer {
                // One event per checkpoint, once every local worker wrote
                // its batch of it.
                let done = shared.ck_batches.lock().ok().and_then(|mut m| {
                    let slot = m.entry(epoch).or_insert((0, 0, Duration::ZERO));
                    slot.0 += 1;
                    slot.1 += record.bytes;
                    slot.2 = slot.2.max(took);
                    let s = *slot;
                    (s.0 >= shared.local_workers).then(|| {
                        m.remove(&epoch);
                        s
                    })
                });
                if let Some((_, bytes, longest)) = done {
                    o.checkpoint_completed(epoch, longest, bytes);
                }
            }
        }
        Err(e) => shared.fail(e.0),
    }
}

fn summary(graph: &Graph, shared: &Shared, elapsed: Duration) -> RunSummary {
    let discarded = shared
        .unconsumed
        .lock()
        .map(|m| {
            m.iter()
                .filter(|(_, c)| **c > 0)
                .map(|((p, port), c)| {
                    (
                        format!(
                            "{}.{}",
                            graph.producer_name(*p),
                            graph.ports(*p)[*port].name
                        ),
                        *c,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    RunSummary {
        sources: graph
            .sources
            .iter()
            .zip(&shared.sources)
            .map(|(s, m)| {
                (
                    s.name.clone(),
                    m.records.load(Ordering::Relaxed),
                    m.errors.load(Ordering::Relaxed),
                )
            })
            .collect(),
        node_errors: graph
            .nodes
            .iter()
            .zip(&shared.node_errors)
            .filter(|(n, _)| n.ports.iter().any(|p| p.name == "errors"))
            .map(|(n, c)| (n.name.clone(), c.load(Ordering::Relaxed)))
            .collect(),
        sinks: graph
            .sinks
            .iter()
            .zip(&shared.sinks)
            .map(|(s, c)| (s.name.clone(), c.load(Ordering::Relaxed)))
            .collect(),
        discarded,
        state: graph
            .nodes
            .iter()
            .filter_map(|n| {
                let gauges = n.node.state_gauges();
                (!gauges.is_empty()).then(|| {
                    (
                        n.name.clone(),
                        gauges.iter().map(|g| g.peak()).sum(),
                        gauges.iter().map(|g| g.keys()).sum(),
                    )
                })
            })
            .collect(),
        elapsed,
        epoch_latency: shared.clock.histogram(),
        resumed: None,
        already_finished: false,
        ready_after: shared.built.lock().map(|b| *b).unwrap_or_default(),
        first_output_after: shared.first_output.get().copied(),
        checkpoints: shared
            .checkpoints
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default(),
    }
}

/// The stream out of `(p, port)`, passed through the observer's counting
/// operator when the job is observed.
fn observed<'s>(shared: &Arc<Shared>, p: Producer, port: usize, stream: Edge<'s>) -> Edge<'s> {
    match shared.observer.as_ref().filter(|o| o.instruments()) {
        Some(o) if crate::observe::passes_through(o.graph(), p, port) => {
            o.instrument(p, port, stream, shared)
        }
        _ => stream,
    }
}

/// Builds the whole graph in one dataflow scope: sources, nodes in
/// topological order, the fail gate, then sinks. Identical on every worker.
fn build_dataflow<'s>(
    scope: Scope<'s, u64>,
    graph: &Arc<Graph>,
    shared: &Arc<Shared>,
    probe: &ProbeHandle<u64>,
    ck: Option<&Rc<Checkpointer>>,
) -> Option<Activator> {
    let mut edges: BTreeMap<(Producer, usize), Edge<'s>> = BTreeMap::new();
    for i in 0..graph.sources.len() {
        let (main, errors) = crate::source::build(scope, graph, i, shared, probe, ck);
        edges.insert(
            (Producer::Source(i), 0),
            observed(shared, Producer::Source(i), 0, main),
        );
        edges.insert(
            (Producer::Source(i), 1),
            observed(shared, Producer::Source(i), 1, errors),
        );
    }
    for &i in &graph.order {
        let def = &graph.nodes[i];
        let inputs: Vec<Edge<'s>> = def
            .inputs
            .iter()
            .filter_map(|r| edges.get(&(r.producer, r.port)).cloned())
            .collect();
        let streams = match ck {
            Some(ck) => {
                let sh = Arc::clone(shared);
                let ctx = StateCtx::new(Rc::clone(ck), &def.name, Arc::new(move |m| sh.fail(m)));
                def.node.build_checkpointed(scope, inputs, &ctx)
            }
            None => def.node.build(scope, inputs),
        };
        for (k, stream) in streams.into_iter().enumerate() {
            edges.insert(
                (Producer::Node(i), k),
                observed(shared, Producer::Node(i), k, stream),
            );
        }
    }
    // Count errors per node, and what no one consumes.
    let mut consumed: BTreeMap<(Producer, usize), usize> = BTreeMap::new();
    for n in &graph.nodes {
        for r in &n.inputs {
            *consumed.entry((r.producer, r.port)).or_default() += 1;
        }
    }
    for s in &graph.sinks {
        *consumed
            .entry((s.input.producer, s.input.port))
            .or_default() += 1;
    }
    let mut fail_inputs = Vec::new();
    for (&(p, port), stream) in &edges {
        let port_name = graph.ports(p)[port].name.clone();
        if port_name == "errors" {
            if let Producer::Node(i) = p {
                let sh = Arc::clone(shared);
                // Observed: the recent errors' reasons, and the port's count.
                let seen = shared
                    .observer
                    .as_ref()
                    .filter(|o| o.instruments())
                    .map(|o| {
                        let reason = graph.ports(p)[port]
                            .schema
                            .fields()
                            .iter()
                            .position(|f| f.name == "reason");
                        (Arc::clone(o), reason, graph.nodes[i].name.clone())
                    });
                let counted = stream.clone().inspect_core(move |event| {
                    let Ok((_, batch)) = event else { return };
                    let n = batch.len() as u64;
                    sh.node_errors[i].fetch_add(n, Ordering::Relaxed);
                    if let Some((o, reason, name)) = &seen {
                        sh.ports[i][port].fetch_add(n, Ordering::Relaxed);
                        // One reason per batch: the recent errors are a
                        // sample, and workers do not contend per record.
                        if let Some(lockstep_operators::value::Value::Str(r)) =
                            reason.and_then(|k| batch.last().map(|rec: &Rec| &rec.row[k]))
                        {
                            o.note_errors(name, r, n);
                        }
                    }
                });
                counted.probe_with(probe);
            }
            if graph.on_error(p) == OnError::Fail {
                fail_inputs.push(stream.clone());
                continue;
            }
        }
        if !consumed.contains_key(&(p, port)) {
            let sh = Arc::clone(shared);
            let is_errors = port_name == "errors";
            stream
                .clone()
                .inspect_core(move |event| {
                    if let Ok((_, batch)) = event {
                        // (An `errors` output is counted by its own inspect.)
                        if let (Producer::Node(i), false) = (p, is_errors) {
                            sh.ports[i][port].fetch_add(batch.len() as u64, Ordering::Relaxed);
                        }
                        if let Ok(mut m) = sh.unconsumed.lock() {
                            *m.entry((p, port)).or_default() += batch.len() as u64;
                        }
                    }
                })
                .probe_with(probe);
        }
    }
    let fail = fail_gate(scope, fail_inputs, graph, shared).broadcast();
    // Probed, so that no checkpoint passes an epoch the gate may still fail
    // (a job whose sinks are all `null` reads the gate nowhere else).
    fail.clone().probe_with(probe);
    for (i, s) in graph.sinks.iter().enumerate() {
        let Some(input) = edges.get(&(s.input.producer, s.input.port)).cloned() else {
            continue;
        };
        crate::sink::build(scope, s, i, input, fail.clone(), shared, ck).probe_with(probe);
    }
    ck.map(|ck| markers(scope, ck, probe, shared))
}

/// The checkpoint markers: worker 0 broadcasts the epochs it decides are
/// checkpoints, and each worker broadcasts the checkpoints it wrote, so every
/// worker writes the same checkpoints and learns which are complete (and may
/// fold its own). The operator holds a capability (on a
/// stream nothing probes) until the job's input is exhausted or it fails.
fn markers<'s>(
    scope: Scope<'s, u64>,
    ck: &Rc<Checkpointer>,
    probe: &ProbeHandle<u64>,
    shared: &Arc<Shared>,
) -> Activator {
    let mut builder = OperatorBuilder::new("checkpoint markers".to_string(), scope);
    let info = builder.operator_info();
    let (out, stream) = builder.new_output::<Vec<(bool, u32, u64)>>();
    let mut out = OutputBuilder::<u64, CapacityContainerBuilder<Vec<(bool, u32, u64)>>>::from(out);
    let activator = scope.activator_for(info.address);
    let (sender, probe, sh) = (Rc::clone(ck), probe.clone(), Arc::clone(shared));
    builder.build(move |mut caps| {
        let mut cap = caps.pop();
        move |_| {
            if let Some(c) = &cap {
                // (true, 0, e): worker 0 decided that e is a checkpoint;
                // (false, w, e): worker w completed checkpoint e.
                let w = sender.worker();
                let decisions = sender.take_decisions().into_iter().map(|e| (true, 0, e));
                let markers = sender.take_outbox().into_iter().map(move |e| (false, w, e));
                let messages: Vec<(bool, u32, u64)> = decisions.chain(markers).collect();
                if !messages.is_empty() {
                    out.activate()
                        .session(c)
                        .give_iterator(messages.into_iter());
                }
            }
            if sh.aborted() || probe.done() {
                cap = None;
            }
        }
    });
    let mut builder = OperatorBuilder::new("checkpoint marker receiver".to_string(), scope);
    let mut input = builder.new_input(stream.broadcast(), Pipeline);
    let receiver = Rc::clone(ck);
    builder.build(move |_| {
        move |_| {
            input.for_each(|_, data| {
                for (decision, w, e) in data.drain(..) {
                    if decision {
                        receiver.decide(e);
                    } else {
                        receiver.observe(w, e);
                    }
                }
            });
        }
    });
    activator
}

/// The fail gate: errors of producers with `"on_error": "fail"` meet on
/// worker 0. When the frontier passes the first epoch that has any, the first
/// of them in the spec's total order fails the job, and a marker at that
/// epoch tells every sink writer to write nothing from that epoch on. So the
/// output and the reported error are the same for any worker count.
fn fail_gate<'s>(
    scope: Scope<'s, u64>,
    inputs: Vec<Edge<'s>>,
    graph: &Arc<Graph>,
    shared: &Arc<Shared>,
) -> StreamVec<'s, u64, ()> {
    let errors = scope.concatenate(inputs);
    let mut builder = OperatorBuilder::new("fail gate".to_string(), scope);
    let mut input = builder.new_input(errors, Exchange::new(|_: &Rec| 0));
    let (out, stream) = builder.new_output::<Vec<()>>();
    let mut out = OutputBuilder::from(out);
    let shared = Arc::clone(shared);
    let graph = Arc::clone(graph);
    let schema = lockstep_operators::value::errors_schema();
    builder.build(move |_| {
        let mut stash: BTreeMap<u64, (Capability<u64>, Vec<Rec>)> = BTreeMap::new();
        let mut done = false;
        let enc = Encoder::new(&schema, Format::Jsonl);
        move |frontiers| {
            let mut o = out.activate();
            let port = o.output_index();
            input.for_each_stamp(|cap, data| {
                let (Some(&t), Some(c)) = (cap.least(), cap.retain_least(port)) else {
                    return;
                };
                let slot = stash.entry(t).or_insert_with(|| (c, Vec::new()));
                for b in data {
                    slot.1.append(b);
                }
            });
            while let Some(entry) = stash.first_entry() {
                if frontiers[0].less_equal(entry.key()) {
                    break;
                }
                let (cap, recs) = entry.remove();
                if done || recs.is_empty() {
                    continue;
                }
                let first = recs
                    .iter()
                    .map(|r| {
                        let mut s = String::new();
                        enc.encode(&r.row, &mut s);
                        (s, r)
                    })
                    .min_by(|a, b| a.0.cmp(&b.0))
                    .map(|(_, r)| r.clone());
                if let Some(r) = first {
                    shared.fail_gate(describe_failure(&graph, &r, recs.len()));
                    done = true;
                    o.session(&cap).give(());
                }
            }
        }
    });
    stream
}

fn describe_failure(graph: &Graph, r: &Rec, n: usize) -> String {
    let text = |v: &Value| match v {
        Value::Str(s) => s.to_string(),
        _ => String::new(),
    };
    let (node, reason, raw) = (text(&r.row[0]), text(&r.row[1]), text(&r.row[2]));
    let mut msg = String::new();
    if let Some(src) = graph.sources.iter().find(|s| s.name == node) {
        let part = match r.row[3] {
            Value::Int(p) => usize::try_from(p).unwrap_or(0),
            _ => 0,
        };
        let file = match &src.kind {
            SourceKind::File { files, split, .. } => Some(
                files[if split.is_some() {
                    0
                } else {
                    part.min(files.len() - 1)
                }]
                .display()
                .to_string(),
            ),
            SourceKind::Stdin { .. } => Some("<stdin>".to_string()),
            _ => None,
        };
        msg.push_str(&format!("source \"{node}\""));
        if let Some(f) = file {
            msg.push_str(&format!(", {f}"));
        }
        if let Value::Int(l) = r.row[4] {
            msg.push_str(&format!(", line {l}"));
        }
    } else {
        msg.push_str(&format!("node \"{node}\""));
    }
    msg.push_str(&format!(": {reason}\n  record: {raw}\n  (\"on_error\": \"fail\" stops the job at the first bad record; remove it to route such records to {node}.errors)"));
    if n > 1 {
        msg.push_str(&format!("\n  {} more bad records in the same epoch", n - 1));
    }
    msg
}

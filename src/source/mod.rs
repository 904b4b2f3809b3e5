//! Sources: partition readers and the timely operator that turns a source's
//! partitions into epoch-stamped records.
//!
//! Partition p of a source is read by worker `p mod peers`, with one
//! capability per partition (per output port). Each partition's epoch is a
//! pure function of its ordered contents (the spec's "Logical time"), the
//! partition with the lowest epoch is read first, and, once the sinks hold
//! [`STASH_BUDGET`] bytes for open epochs, no partition reads more than
//! [`MAX_EPOCHS_AHEAD`] epochs past the sinks' frontier (backpressure).

pub mod parse;
pub mod reader;

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use lockstep_operators::value::Text;
use std::time::Duration;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Capability;
use timely::dataflow::Scope;

use lockstep_operators::node::{Edge, TimeMode};
use lockstep_operators::value::{Rec, Schema, Type, Value};

use crate::checkpoint::{part_key, PartitionPos};
use crate::graph::spec::NexmarkEvents;
use crate::graph::{Graph, SourceKind};
use crate::runtime::{Shared, SourceMetrics};
use lockstep_state::{decode_value, encode_value, Checkpointer};
use reader::{FilePart, GeneratorReader, Item, NexmarkReader, PartitionReader, TextReader};
use serde::{Deserialize, Serialize};

/// How many epochs a source may run ahead of the sinks' frontier while the
/// sinks and keyed nodes hold [`STASH_BUDGET`] bytes or more for open epochs.
pub const MAX_EPOCHS_AHEAD: u64 = 16;

/// Below this many bytes held for open epochs — output held by sinks, and
/// records and partial accumulators held by keyed nodes (counted as
/// [`crate::runtime::HELD_ITEM_BYTES`] each) — sources may run ahead any
/// number of epochs (a selective job over a file split into time ranges then
/// reads all ranges at once).
pub const STASH_BUDGET: i64 = 16 << 20;

/// Items read per scheduling of a source operator before it yields.
const BUDGET: usize = 8192;

/// Items read from one partition before the next partition is chosen (and the
/// size of the containers sent downstream).
const BATCH: usize = 1024;

/// The fixed schema of a `nexmark` source.
pub fn nexmark_schema(events: NexmarkEvents) -> Schema {
    use Type::{Int, String as Str, Timestamp as Ts};
    match events {
        NexmarkEvents::Bid => Schema::new([
            ("auction", Int),
            ("bidder", Int),
            ("price", Int),
            ("channel", Str),
            ("url", Str),
            ("date_time", Ts),
            ("extra", Str),
        ]),
        NexmarkEvents::Person => Schema::new([
            ("id", Int),
            ("name", Str),
            ("email_address", Str),
            ("credit_card", Str),
            ("city", Str),
            ("state", Str),
            ("date_time", Ts),
            ("extra", Str),
        ]),
        NexmarkEvents::Auction => Schema::new([
            ("id", Int),
            ("item_name", Str),
            ("description", Str),
            ("initial_bid", Int),
            ("reserve", Int),
            ("date_time", Ts),
            ("expires", Ts),
            ("seller", Int),
            ("category", Int),
            ("extra", Str),
        ]),
    }
}

/// Opens the reader of one partition.
///
/// # Errors
/// An I/O error opening a file.
pub fn open_partition(
    kind: &SourceKind,
    schema: &Schema,
    parts: &[FilePart],
    p: u32,
    from: Option<u64>,
    plan: Option<&crate::kafka::Plan>,
) -> std::io::Result<Box<dyn PartitionReader>> {
    Ok(match kind {
        SourceKind::Kafka(k) => {
            let plan = plan.ok_or_else(|| std::io::Error::other("no plan for the kafka source"))?;
            let start = from.map_or(plan.start[p as usize], |f| {
                i64::try_from(f).unwrap_or(i64::MAX)
            });
            let end = plan.end.as_ref().map(|e| e[p as usize]);
            Box::new(
                crate::kafka::KafkaReader::open(
                    &k.brokers,
                    &k.properties,
                    &k.topic,
                    p,
                    schema,
                    start,
                    end,
                    k.commit_group.as_deref(),
                )
                .map_err(std::io::Error::other)?,
            )
        }
        SourceKind::File { format, .. } => {
            let mut part = parts[p as usize].clone();
            if let Some(at) = from {
                part.start = at;
            }
            Box::new(TextReader::open(&part, schema, *format)?)
        }
        SourceKind::Stdin { format } => Box::new(TextReader::stdin(schema, *format)),
        SourceKind::Generator(g) => Box::new(GeneratorReader::new(Arc::new(g.clone()), p, from)),
        SourceKind::Nexmark(n) => Box::new(NexmarkReader::new(n, p, from)),
    })
}

/// One partition owned by this worker.
struct Part {
    index: u32,
    reader: Box<dyn PartitionReader>,
    /// Capabilities for the main and the errors output, at the partition's epoch.
    caps: Option<(Capability<u64>, Capability<u64>)>,
    max_time: Option<i64>,
    count: u64,
    /// A record read but held back by backpressure: (epoch, is_error, record).
    pending: Option<(u64, bool, Rec)>,
    /// The partition's checkpoint before the item read last (only kept
    /// when the job checkpoints).
    before: PartitionPos,
    out: Vec<Rec>,
    err: Vec<Rec>,
    /// Nothing to read in this activation (Kafka).
    waiting: bool,
    /// Since when the partition has had nothing to read.
    idle_since: Option<std::time::Instant>,
    /// Logged heartbeats not yet replayed: (position, time), in order.
    beats: std::collections::VecDeque<(u64, i64)>,
    /// The sequence number of the next heartbeat logged.
    beat_seq: u64,
}

/// A Kafka partition's logged heartbeat: at `position`, its largest event
/// time became at least `time` (wall-clock ms when decided).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The partition's position when it was decided.
    pub position: u64,
    /// The time.
    pub time: i64,
}

impl Part {
    fn epoch(&self) -> u64 {
        self.caps.as_ref().map_or(u64::MAX, |c| *c.0.time())
    }
}

/// Computes a record's epoch and event time, updating the partition's
/// watermark; `Err` is the reason the record goes to `errors` instead.
fn stamp(
    part: &mut Part,
    row: &[Value],
    time: TimeMode,
    event_time: Option<(usize, u64)>,
    schema: &Schema,
) -> Result<(u64, i64), String> {
    let field_time = event_time.map(|(i, _)| match &row[i] {
        Value::Ts(t) | Value::Int(t) => Some(*t),
        _ => None,
    });
    match time {
        TimeMode::EpochMs(e) => {
            let (i, ooo) = event_time.unwrap_or((0, 0));
            let Some(Some(t)) = field_time else {
                return Err(format!(
                    "event time field \"{}\" is null",
                    schema.fields()[i].name
                ));
            };
            let max = part.max_time.map_or(t, |m| m.max(t));
            part.max_time = Some(max);
            let w = max.saturating_sub(i64::try_from(ooo).unwrap_or(i64::MAX));
            let e = i64::try_from(e).unwrap_or(i64::MAX);
            Ok((u64::try_from(w.div_euclid(e).max(0)).unwrap_or(0), t))
        }
        TimeMode::EpochRecords(n) => {
            let o = part.count;
            part.count += 1;
            let t = field_time
                .flatten()
                .unwrap_or(i64::try_from(o).unwrap_or(i64::MAX));
            Ok((o / n, t))
        }
    }
}

/// The epoch and event time an `errors` record gets when its input has none:
/// the partition's current epoch and watermark.
fn bad_stamp(part: &mut Part, time: TimeMode, ooo: u64) -> (u64, i64) {
    match time {
        TimeMode::EpochMs(_) => {
            let w = part.max_time.map_or(0, |m| {
                m.saturating_sub(i64::try_from(ooo).unwrap_or(i64::MAX))
            });
            (part.epoch().min(u64::MAX - 1), w)
        }
        TimeMode::EpochRecords(n) => {
            let o = part.count;
            part.count += 1;
            (o / n, i64::try_from(o).unwrap_or(i64::MAX))
        }
    }
}

/// One output of a source operator.
type RecOutput = OutputBuilder<u64, CapacityContainerBuilder<Vec<Rec>>>;

/// The two outputs of a source operator.
struct Outputs {
    /// Records that parsed.
    main: RecOutput,
    /// Records that did not, as `errors` records.
    errors: RecOutput,
}

/// Sends the partition's buffered records under its capabilities, counting them.
fn flush(part: &mut Part, outs: &mut Outputs, metrics: &SourceMetrics) {
    if let Some(g) = metrics.parts.get(part.index as usize) {
        g.records
            .fetch_add((part.out.len() + part.err.len()) as u64, Ordering::Relaxed);
        g.position.store(part.reader.position(), Ordering::Relaxed);
        g.epoch.store(part.epoch(), Ordering::Relaxed);
        g.max_time
            .store(part.max_time.unwrap_or(i64::MIN), Ordering::Relaxed);
    }
    if let Some((c0, c1)) = &part.caps {
        metrics
            .records
            .fetch_add(part.out.len() as u64, Ordering::Relaxed);
        metrics
            .errors
            .fetch_add(part.err.len() as u64, Ordering::Relaxed);
        if !part.out.is_empty() {
            outs.main
                .activate()
                .session(c0)
                .give_container(&mut part.out);
            part.out.clear();
            // The container went downstream; start the next one at full size.
            part.out.reserve(BATCH);
        }
        if !part.err.is_empty() {
            outs.errors
                .activate()
                .session(c1)
                .give_container(&mut part.err);
            part.err.clear();
        }
    }
}

/// Builds source `idx` of the graph: returns its main and errors streams.
pub fn build<'s>(
    scope: Scope<'s, u64>,
    graph: &Graph,
    idx: usize,
    shared: &Arc<Shared>,
    probe: &ProbeHandle<u64>,
    ck: Option<&Rc<Checkpointer>>,
) -> (Edge<'s>, Edge<'s>) {
    let def = &graph.sources[idx];
    let mut builder = OperatorBuilder::new(format!("source {}", def.name), scope);
    let info = builder.operator_info();
    let (o0, main) = builder.new_output::<Vec<Rec>>();
    let (o1, errors) = builder.new_output::<Vec<Rec>>();
    let mut outs = Outputs {
        main: OutputBuilder::from(o0),
        errors: OutputBuilder::from(o1),
    };
    let activator = Rc::new(scope.activator_for(info.address));
    let peers = scope.peers();
    let me = scope.index();
    let time = graph.time;
    let schema = def.schema.clone();
    let event_time = def.event_time;
    let ooo = event_time.map_or(0, |(_, o)| o);
    let name: Arc<str> = Arc::from(def.name.as_str());
    let kind = def.kind.clone();
    let shared = Arc::clone(shared);
    let probe = probe.clone();
    let file_parts = shared.file_parts[idx].clone();
    let partitions = shared.partitions(idx);
    let ck = ck.cloned();
    let table = ck
        .as_ref()
        .and_then(|c| c.table_id(&crate::checkpoint::source_table(&def.name)));
    let checkpointed = table.is_some();
    let failer = Arc::clone(&shared);
    let plan = shared.kafka_plan(idx);
    // Unbounded Kafka partitions with nothing to read advance their
    // watermark after `idle_ms` (a heartbeat), in `epoch_ms` time only.
    let heartbeat_ms = match (&kind, time) {
        (SourceKind::Kafka(k), TimeMode::EpochMs(_)) if !k.bounded && k.idle_ms > 0 => {
            Some(k.idle_ms)
        }
        _ => None,
    };
    let beat_log = ck.clone();
    builder.build(move |mut caps| {
        let cap_err = caps.pop();
        let cap_main = caps.pop();
        let mut parts: Vec<Part> = Vec::new();
        let mut open_error: Option<String> = None;
        if let (Some(c0), Some(c1)) = (cap_main, cap_err) {
            for p in (0..partitions).filter(|p| *p as usize % peers == me) {
                // Where the last complete checkpoint left the partition.
                let start: Option<PartitionPos> = match (&ck, table) {
                    (Some(ck), Some(t)) => match ck.read(t, 0, &part_key(p)) {
                        Ok(s) => s,
                        Err(e) => {
                            open_error = Some(format!(
                                "source \"{name}\" partition {p}: cannot read its checkpoint: {e}"
                            ));
                            continue;
                        }
                    },
                    _ => None,
                };
                if start.is_some_and(|s| s.done) {
                    continue;
                }
                // Heartbeats a run before the crash logged past the
                // resume position: replayed at the same positions.
                let mut beats = std::collections::VecDeque::new();
                let mut beat_seq = 0;
                if let (Some(ck), Some(t), Some(_)) = (&ck, table, heartbeat_ms) {
                    match ck.store().decisions(t, p) {
                        Ok(logged) => {
                            let from = start.map_or(0, |s| s.position);
                            for (seq, bytes) in logged {
                                beat_seq = beat_seq.max(seq + 1);
                                if let Ok(b) = decode_value::<Heartbeat>(&bytes) {
                                    if b.position >= from {
                                        beats.push_back((b.position, b.time));
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            open_error = Some(format!(
                                "source \"{name}\" partition {p}: cannot read its heartbeats: {}",
                                e.0
                            ));
                            continue;
                        }
                    }
                }
                match open_partition(
                    &kind,
                    &schema,
                    &file_parts,
                    p,
                    start.map(|s| s.position),
                    plan.as_deref(),
                ) {
                    Ok(reader) => parts.push(Part {
                        waiting: false,
                        idle_since: None,
                        beats,
                        beat_seq,
                        index: p,
                        before: start.unwrap_or_default(),
                        reader,
                        caps: Some((c0.clone(), c1.clone())),
                        max_time: start.and_then(|s| s.max_time),
                        count: start.map_or(0, |s| s.count),
                        pending: None,
                        out: Vec::new(),
                        err: Vec::new(),
                    }),
                    Err(e) => {
                        open_error =
                            Some(format!("source \"{name}\" partition {p}: cannot open: {e}"))
                    }
                }
            }
        }
        // Stages a partition's checkpoint, made by epoch `tag`.
        let stage = move |p: u32, tag: u64, pos: PartitionPos| {
            if let (Some(ck), Some(t)) = (&ck, table) {
                match encode_value(&pos) {
                    Ok(v) => ck.stage(tag, t, 0, &part_key(p), Some(v)),
                    Err(e) => failer.fail(format!("source checkpoint: {e}")),
                }
            }
        };
        if let Some(e) = open_error {
            shared.fail(e);
        }
        move |_frontiers| {
            if shared.aborted() {
                parts.clear();
                return;
            }
            // Backpressure shapes timing only: epochs come from the data.
            let allowed = if shared.stashed() < STASH_BUDGET {
                u64::MAX
            } else {
                probe
                    .with_frontier(|f| f.first().copied())
                    .map_or(u64::MAX, |e| e.saturating_add(MAX_EPOCHS_AHEAD))
            };
            let mut budget = BUDGET;
            let mut blocked = false;
            for p in &mut parts {
                p.waiting = false;
            }
            while budget > 0 {
                // The open partition with the lowest epoch that may proceed.
                let Some(k) = (0..parts.len())
                    .filter(|&k| {
                        parts[k].caps.is_some()
                            && !parts[k].waiting
                            && parts[k]
                                .pending
                                .as_ref()
                                .is_none_or(|(e, _, _)| *e <= allowed)
                    })
                    .min_by_key(|&k| (parts[k].epoch(), parts[k].index))
                else {
                    blocked = parts.iter().any(|p| p.caps.is_some());
                    break;
                };
                let part = &mut parts[k];
                let mut n = 0;
                while n < BATCH {
                    n += 1;
                    let (epoch, is_err, rec) = if let Some(p) = part.pending.take() {
                        p
                    } else {
                        // A logged heartbeat at this position: replayed.
                        let here = part.reader.position();
                        while part.beats.front().is_some_and(|b| b.0 < here) {
                            part.beats.pop_front();
                        }
                        if let Some(&(_, t)) = part.beats.front().filter(|b| b.0 == here) {
                            part.beats.pop_front();
                            flush(part, &mut outs, shared.source_metrics(idx));
                            beat(part, t, time, ooo, &stage, &shared, idx);
                            continue;
                        }
                        if checkpointed {
                            part.before = PartitionPos {
                                position: part.reader.position(),
                                max_time: part.max_time,
                                count: part.count,
                                done: false,
                            };
                        }
                        match part.reader.next_item() {
                            Ok(Some(Item::Row(row))) => {
                                part.idle_since = None;
                                match stamp(part, &row, time, event_time, &schema) {
                                    Ok((e, t)) => (e, false, Rec { time: t, row }),
                                    Err(reason) => {
                                        let (e, t) = bad_stamp(part, time, ooo);
                                        // The input text and line where the
                                        // reader has them; else the record.
                                        let (text, line) = match part.reader.last_raw() {
                                            Some((raw, line)) => (raw, Some(line)),
                                            None => {
                                                let enc = lockstep_operators::encode::Encoder::new(
                                                    &schema,
                                                    lockstep_operators::encode::Format::Jsonl,
                                                );
                                                let mut text = String::new();
                                                enc.encode(&row, &mut text);
                                                text.pop();
                                                (text, None)
                                            }
                                        };
                                        (
                                            e,
                                            true,
                                            {
                                                shared.note_error(&name, &reason);
                                                source_error(&name, &reason, text, part.index, line, t)
                                            },
                                        )
                                    }
                                }
                            }
                            Ok(Some(Item::Bad { raw, reason, line })) => {
                                part.idle_since = None;
                                let (e, t) = bad_stamp(part, time, ooo);
                                (
                                    e,
                                    true,
                                    {
                                        shared.note_error(&name, &reason);
                                        source_error(&name, &reason, raw, part.index, Some(line), t)
                                    },
                                )
                            }
                            Ok(Some(Item::Wait)) => {
                                flush(part, &mut outs, shared.source_metrics(idx));
                                part.waiting = true;
                                let now = std::time::Instant::now();
                                let since = *part.idle_since.get_or_insert(now);
                                if let Some(ms) = heartbeat_ms {
                                    if part.beats.is_empty()
                                        && now.duration_since(since) >= Duration::from_millis(ms)
                                        && part.reader.caught_up()
                                    {
                                        part.idle_since = Some(now);
                                        let t = wall_ms();
                                        let b = Heartbeat {
                                            position: part.reader.position(),
                                            time: t,
                                        };
                                        // Logged (synced) before anything
                                        // depends on it.
                                        if let (Some(ck), Some(tb)) = (&beat_log, table) {
                                            let logged = encode_value(&b).and_then(|v| {
                                                ck.store().log_decision(tb, part.index, part.beat_seq, &v)
                                            });
                                            if let Err(e) = logged {
                                                shared.fail(format!("source \"{name}\" partition {}: cannot log a heartbeat: {}", part.index, e.0));
                                                part.caps = None;
                                                break;
                                            }
                                            part.beat_seq += 1;
                                        }
                                        beat(part, t, time, ooo, &stage, &shared, idx);
                                    }
                                }
                                break;
                            }
                            Ok(None) => {
                                flush(part, &mut outs, shared.source_metrics(idx));
                                if checkpointed {
                                    let done = PartitionPos {
                                        position: part.reader.position(),
                                        max_time: part.max_time,
                                        count: part.count,
                                        done: true,
                                    };
                                    stage(part.index, part.epoch(), done);
                                }
                                part.caps = None;
                                shared.partition_advanced(idx, part.index, u64::MAX);
                                if let Some(g) =
                                    shared.source_metrics(idx).parts.get(part.index as usize)
                                {
                                    g.epoch.store(u64::MAX, Ordering::Relaxed);
                                }
                                break;
                            }
                            Err(e) => {
                                shared.fail(format!(
                                    "source \"{name}\" partition {}: read error: {e}",
                                    part.index
                                ));
                                part.caps = None;
                                break;
                            }
                        }
                    };
                    if epoch > part.epoch() {
                        flush(part, &mut outs, shared.source_metrics(idx));
                        if checkpointed {
                            // Every checkpoint from the old epoch until the
                            // new one resumes at the record just read.
                            stage(part.index, part.epoch(), part.before);
                        }
                        if let Some((c0, c1)) = part.caps.as_mut() {
                            c0.downgrade(&epoch);
                            c1.downgrade(&epoch);
                        }
                        shared.partition_advanced(idx, part.index, epoch);
                    }
                    if epoch > allowed {
                        part.pending = Some((epoch, is_err, rec));
                        break;
                    }
                    if is_err {
                        part.err.push(rec);
                    } else {
                        part.out.push(rec);
                    }
                }
                budget = budget.saturating_sub(n);
                flush(part, &mut outs, shared.source_metrics(idx));
            }
            parts.retain(|p| p.caps.is_some());
            if !parts.is_empty() {
                if parts.iter().all(|p| p.waiting) {
                    activator.activate_after(Duration::from_millis(2));
                } else if blocked {
                    activator.activate_after(Duration::from_micros(200));
                } else {
                    activator.activate();
                }
            }
        }
    });
    (main, errors)
}

/// Wall-clock milliseconds since the Unix epoch (heartbeats only; they are
/// logged, so a replay never reads the clock for them).
fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Applies a heartbeat: the partition's largest event time becomes at
/// least `t`, and its epoch moves on if its watermark does (staged like
/// any epoch advance: checkpoints before it resume at this position,
/// where the heartbeat is replayed).
fn beat(
    part: &mut Part,
    t: i64,
    time: TimeMode,
    ooo: u64,
    stage: &dyn Fn(u32, u64, PartitionPos),
    shared: &Shared,
    idx: usize,
) {
    let TimeMode::EpochMs(e) = time else { return };
    let before = PartitionPos {
        position: part.reader.position(),
        max_time: part.max_time,
        count: part.count,
        done: false,
    };
    let max = part.max_time.map_or(t, |m| m.max(t));
    part.max_time = Some(max);
    let w = max.saturating_sub(i64::try_from(ooo).unwrap_or(i64::MAX));
    let epoch =
        u64::try_from(w.div_euclid(i64::try_from(e).unwrap_or(i64::MAX)).max(0)).unwrap_or(0);
    if epoch > part.epoch() && part.caps.is_some() {
        stage(part.index, part.epoch(), before);
        if let Some((c0, c1)) = part.caps.as_mut() {
            c0.downgrade(&epoch);
            c1.downgrade(&epoch);
        }
        shared.partition_advanced(idx, part.index, epoch);
    }
}

/// An `errors` record of a source.
fn source_error(
    name: &str,
    reason: &str,
    raw: String,
    partition: u32,
    line: Option<u64>,
    time: i64,
) -> Rec {
    Rec {
        time,
        row: vec![
            Value::str(name),
            Value::str(reason),
            Value::Str(Text::from(raw)),
            Value::Int(i64::from(partition)),
            line.map_or(Value::Null, |l| {
                Value::Int(i64::try_from(l).unwrap_or(i64::MAX))
            }),
        ],
    }
}

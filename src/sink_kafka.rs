//! The Kafka sink's writer: one writer per topic partition, exactly-once by
//! determinism, without transactions (docs/kafka.md).
//!
//! - Every record carries two headers: its writer (`job/sink`) and its
//!   position (epoch and index within the epoch's records of its
//!   partition), both functions of the input alone.
//! - At start-up the writer of a partition reads the partition's last
//!   record: if this job wrote it, regenerated records up to and including
//!   its position are skipped; a record of another writer, or records of
//!   this job in a fresh run, are errors. The record at the checkpointed
//!   offset must still be the one the checkpoint names (a re-created or
//!   truncated topic is an error).
//! - A partition's position is staged for a checkpoint only once the
//!   broker acknowledged every record of the epoch; until then the writer
//!   holds the epoch's capability, so no checkpoint passes it.
//! - The producer is idempotent with `acks=all` and no delivery timeout: it
//!   waits while the broker is down; a delivery error fails the job.

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::{Scope, StreamVec};

use lockstep_state::{encode_value, Checkpointer};

use crate::checkpoint::part_key;

use crate::graph::{SinkDef, SinkKind};
use crate::kafka::{self, Position, SinkContext, Written, POSITION_HEADER, WRITER_HEADER};
use crate::runtime::{sink_writer, Shared};
use crate::sink::{merge_each, Run};

/// How long an epoch may wait for acknowledgements before the sink says so
/// on stderr (the job keeps waiting).
const STALL_WARNING: Duration = Duration::from_secs(2);

/// How often the stall warning repeats.
const STALL_REPEAT: Duration = Duration::from_secs(10);

/// A Kafka sink partition's checkpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaSinkPos {
    /// Records of the partition written (or found written) so far.
    pub records: u64,
    /// The last acknowledged record: its position and offset.
    pub last: Option<(u64, u64, i64)>,
}

/// What a writer knows of one of its partitions.
#[derive(Clone, Copy, Debug, Default)]
pub struct PartState {
    /// Regenerated records up to and including this position are in the
    /// topic already (from the partition's last record at start-up).
    skip: Option<(Position, i64)>,
    pos: KafkaSinkPos,
}

/// A record waiting to be handed to the producer.
struct Msg {
    part: u32,
    epoch: u64,
    seq: u64,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
}

/// One epoch handed to the producer, not yet acknowledged in full.
struct Inflight {
    cap: Capability<u64>,
    /// Records sent (not skipped).
    sent: u64,
    /// Per partition: records in the epoch, of which skipped, and the last
    /// index.
    parts: BTreeMap<u32, (u64, u64)>,
}

/// Checks partition `part` at start-up against its checkpoint `committed`
/// and finds what to skip. `resuming`: the state held an earlier run.
///
/// # Errors
/// The topic was re-created or truncated, holds another writer's records,
/// or (in a fresh run) this job's records.
#[allow(clippy::too_many_arguments)]
pub fn start_partition(
    brokers: &str,
    props: &indexmap::IndexMap<String, String>,
    topic: &str,
    part: u32,
    writer: &str,
    committed: Option<KafkaSinkPos>,
    resuming: bool,
) -> Result<PartState, String> {
    let gone = |off: i64| {
        format!(
            "topic \"{topic}\" partition {part} no longer holds the record at offset {off} that the checkpoint says this job wrote; the topic was re-created, truncated or written by another program. Add --fresh to start over into an empty topic"
        )
    };
    if let Some((e, q, off)) = committed.and_then(|c| c.last) {
        match kafka::read_record(brokers, props, topic, part, Some(off))? {
            Some(w) if w.writer.as_deref() == Some(writer) && w.position == Some((e, q)) => {}
            _ => return Err(gone(off)),
        }
    }
    let mut state = PartState {
        skip: None,
        pos: committed.unwrap_or_default(),
    };
    match kafka::read_record(brokers, props, topic, part, None)? {
        None => Ok(state),
        Some(Written {
            offset,
            writer: w,
            position,
        }) => {
            if w.as_deref() != Some(writer) {
                return Err(format!(
                    "topic \"{topic}\" partition {part} holds records of another writer ({} at offset {offset}); each output partition has exactly one writer: give this sink an empty topic of its own",
                    w.map_or("no lockstep-writer header".to_string(), |w| format!("lockstep-writer \"{w}\""))
                ));
            }
            if !resuming {
                return Err(format!(
                    "topic \"{topic}\" partition {part} already holds records of this job's sink (the last at offset {offset}); a run that starts afresh writes into empty partitions only, so that the topic holds each record once. Resume with the job's --state directory, or use an empty topic"
                ));
            }
            let Some(p) = position else {
                return Err(format!(
                    "topic \"{topic}\" partition {part}: the record at offset {offset} has no readable lockstep-position header"
                ));
            };
            if let Some((e, q, _)) = state.pos.last {
                if p < (e, q) {
                    return Err(gone(offset));
                }
            }
            state.skip = Some((p, offset));
            Ok(state)
        }
    }
}

/// Builds the writer stage of Kafka sink `idx`: sorted runs of each
/// complete epoch, merged per partition on the partition's writer.
pub fn write<'s>(
    scope: Scope<'s, u64>,
    runs: StreamVec<'s, u64, Run>,
    fail: StreamVec<'s, u64, ()>,
    def: &SinkDef,
    idx: usize,
    shared: &Arc<Shared>,
    ck: Option<&Rc<Checkpointer>>,
) -> StreamVec<'s, u64, ()> {
    let SinkKind::Kafka {
        brokers,
        topic,
        properties,
        ..
    } = &def.kind
    else {
        unreachable!("a kafka sink")
    };
    let peers = scope.peers();
    let me = scope.index();
    let mut builder = OperatorBuilder::new(format!("sink {} kafka", def.name), scope);
    let info = builder.operator_info();
    let activator = scope.activator_for(info.address);
    let mut runs_in = builder.new_input(
        runs,
        Exchange::new(move |r: &Run| sink_writer(idx, r.part, peers) as u64),
    );
    let mut fail_in = builder.new_input(fail, Pipeline);
    let (out, stream) = builder.new_output::<Vec<()>>();
    let mut out = OutputBuilder::<u64, CapacityContainerBuilder<Vec<()>>>::from(out);
    let shared = Arc::clone(shared);
    let name = def.name.clone();
    let what = format!("sink \"{name}\"");
    let topic = topic.clone();
    let ck = ck.cloned();
    let table = ck
        .as_ref()
        .and_then(|c| c.table_id(&crate::checkpoint::sink_table(&def.name)));
    let writer_id = format!("{}/{}", shared.job, def.name);
    let parts = shared.sink_partitions(idx);
    let mine: Vec<u32> = (0..parts)
        .filter(|p| sink_writer(idx, *p, peers) == me)
        .collect();
    // The start-up checks of this worker's partitions were made by the
    // process's set-up (in partition order, so that the first error is
    // the same on every run); here the states are taken and the producer
    // made.
    let mut states: BTreeMap<u32, PartState> = BTreeMap::new();
    let mut producer: Option<BaseProducer<SinkContext>> = None;
    if !mine.is_empty() && !shared.aborted() {
        for &p in &mine {
            states.insert(p, shared.take_sink_state(idx, p).unwrap_or_default());
        }
        match kafka::producer(brokers, properties, SinkContext::new(what.clone())) {
            Ok(p) => producer = Some(p),
            Err(e) => shared.fail(format!("{what}: {e}")),
        }
    }
    builder.build(move |_| {
        let mut stash: BTreeMap<u64, (Capability<u64>, Vec<Run>)> = BTreeMap::new();
        let mut failed_at: Option<u64> = None;
        let mut backlog: VecDeque<Msg> = VecDeque::new();
        let mut inflight: BTreeMap<u64, Inflight> = BTreeMap::new();
        // Since when the oldest epoch in flight has waited (for the
        // stall warning), and when the last warning was printed.
        let mut waiting_since: Option<(u64, std::time::Instant)> = None;
        let mut warned: Option<std::time::Instant> = None;
        move |frontiers| {
            let o = out.activate();
            let port = o.output_index();
            fail_in.for_each(|cap, data| {
                if !data.is_empty() {
                    if let Some(&t) = cap.least() {
                        failed_at = Some(failed_at.map_or(t, |f| f.min(t)));
                    }
                }
            });
            runs_in.for_each_stamp(|cap, data| {
                let (Some(&t), Some(c)) = (cap.least(), cap.retain_least(port)) else {
                    return;
                };
                let slot = stash.entry(t).or_insert_with(|| (c, Vec::new()));
                for batch in data {
                    slot.1.append(batch);
                }
            });
            if shared.halted() {
                stash.clear();
                backlog.clear();
                inflight.clear();
                return;
            }
            // Complete epochs: number each partition's records, skip those
            // the topic holds already, queue the rest.
            while let Some(entry) = stash.first_entry() {
                let e = *entry.key();
                if frontiers[0].less_equal(&e) || frontiers[1].less_equal(&e) {
                    break;
                }
                let (cap, runs) = entry.remove();
                if failed_at.is_some_and(|f| f <= e) {
                    continue;
                }
                let mut by_part: BTreeMap<u32, Vec<Run>> = BTreeMap::new();
                for r in runs {
                    by_part.entry(r.part).or_default().push(r);
                }
                let mut flight = Inflight {
                    cap,
                    sent: 0,
                    parts: BTreeMap::new(),
                };
                for (part, runs) in by_part {
                    let st = states.entry(part).or_default();
                    let mut seq = 0u64;
                    let mut skipped = 0u64;
                    merge_each(&runs, |line, key| {
                        let pos = (e, seq);
                        if st.skip.is_some_and(|(s, _)| pos <= s) {
                            skipped += 1;
                        } else {
                            let value = line.strip_suffix(b"\n").unwrap_or(line).to_vec();
                            backlog.push_back(Msg {
                                part,
                                epoch: e,
                                seq,
                                key: (!key.is_empty()).then(|| key.to_vec()),
                                value,
                            });
                            flight.sent += 1;
                        }
                        seq += 1;
                    });
                    flight.parts.insert(part, (seq, skipped));
                }
                inflight.insert(e, flight);
            }
            let Some(producer) = producer.as_ref() else {
                // No producer: this worker writes no partition (or the job
                // failed starting it). Release what arrives.
                inflight.clear();
                backlog.clear();
                return;
            };
            // Hand records to the producer until its queue is full.
            while let Some(m) = backlog.front() {
                let position = kafka::position_header((m.epoch, m.seq));
                let headers = OwnedHeaders::new_with_capacity(2)
                    .insert(Header {
                        key: WRITER_HEADER,
                        value: Some(writer_id.as_bytes()),
                    })
                    .insert(Header {
                        key: POSITION_HEADER,
                        value: Some(position.as_bytes()),
                    });
                let mut rec = BaseRecord::<[u8], [u8], Box<(u32, u64)>>::with_opaque_to(
                    &topic,
                    Box::new((m.part, m.epoch)),
                )
                .partition(m.part as i32)
                .payload(&m.value[..])
                .headers(headers);
                if let Some(k) = &m.key {
                    rec = rec.key(&k[..]);
                }
                match producer.send(rec) {
                    Ok(()) => {
                        backlog.pop_front();
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => break,
                    Err((e, _)) => {
                        shared.fail(format!(
                            "{what}: cannot produce to topic \"{topic}\" partition {}: {e}",
                            m.part
                        ));
                        return;
                    }
                }
            }
            producer.poll(Duration::ZERO);
            // Epochs acknowledged in full, in order: stage their positions
            // and release them.
            let acks = Arc::clone(&producer.context().acks);
            let Ok(mut acks) = acks.lock() else { return };
            if let Some(e) = acks.error.take() {
                shared.fail(e);
                return;
            }
            let queued: BTreeMap<u64, u64> = backlog.iter().fold(BTreeMap::new(), |mut m, x| {
                *m.entry(x.epoch).or_default() += 1;
                m
            });
            while let Some(entry) = inflight.first_entry() {
                let e = *entry.key();
                let (acked, offsets) = acks.by_epoch.get(&e).cloned().unwrap_or_default();
                if acked < entry.get().sent || queued.contains_key(&e) {
                    break;
                }
                let flight = entry.remove();
                acks.by_epoch.remove(&e);
                // Epoch latency ends when the epoch's records are
                // acknowledged: readable by consumers.
                shared.epoch_written(e);
                shared
                    .sink_metrics(idx)
                    .fetch_add(flight.sent, Ordering::Relaxed);
                for (part, (n, skipped)) in flight.parts {
                    let st = states.entry(part).or_default();
                    st.pos.records += n;
                    if n > skipped {
                        if let Some(&off) = offsets.get(&part) {
                            st.pos.last = Some((e, n - 1, off));
                        }
                    } else if let Some((s, off)) = st.skip {
                        if s == (e, n - 1) {
                            st.pos.last = Some((e, n - 1, off));
                        }
                    }
                    if st.skip.is_some_and(|(s, _)| s <= (e, n.saturating_sub(1))) {
                        st.skip = None;
                    }
                    if let (Some(ck), Some(t)) = (&ck, table) {
                        match encode_value(&st.pos) {
                            Ok(v) => ck.stage(e, t, 0, &part_key(part), Some(v)),
                            Err(err) => shared.fail(format!("{what}: {}", err.0)),
                        }
                    }
                }
                drop(flight.cap);
            }
            if let Some(&oldest) = inflight.keys().next() {
                let now = std::time::Instant::now();
                match waiting_since {
                    Some((e, since)) if e == oldest => {
                        let waited = now.duration_since(since);
                        if waited >= STALL_WARNING
                            && warned.is_none_or(|w| now.duration_since(w) >= STALL_REPEAT)
                        {
                            warned = Some(now);
                            tracing::warn!(
                                "lockstep: {what}: the brokers have not acknowledged the records of epoch {oldest} for {:.0} s (is Kafka down?); waiting and retrying, nothing is dropped",
                                waited.as_secs_f64()
                            );
                        }
                    }
                    _ => waiting_since = Some((oldest, now)),
                }
            } else {
                waiting_since = None;
            }
            if !inflight.is_empty() || !backlog.is_empty() {
                activator.activate_after(Duration::from_millis(2));
            }
        }
    });
    stream
}

//! Sinks: each worker sorts and encodes its share of an epoch locally; one
//! writer per output file merges the sorted runs and writes once the
//! frontier has passed the epoch. Output is therefore a function of the
//! records alone: epochs in increasing order, within an epoch by the sink's
//! `order_by` fields (memcomparable key bytes), ties by the encoded bytes.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::{Scope, StreamVec};

use lockstep_operators::encode::{Encoder, Format};
use lockstep_operators::node::Edge;
use lockstep_operators::value::{encode_key, Rec};
use lockstep_state::{key_hash, KeyGroups};

use crate::checkpoint::{part_key, SinkPos, Tracked};
use crate::graph::{SinkDef, SinkKind};
use crate::runtime::Shared;
use lockstep_state::{encode_value, Checkpointer};
use std::rc::Rc;

/// One worker's sorted, encoded share of one epoch for one output file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Run {
    /// The output partition (file) it belongs to.
    pub part: u32,
    /// Sort keys, concatenated in sorted order.
    keys: Vec<u8>,
    /// Encoded lines, concatenated in sorted order.
    lines: Vec<u8>,
    /// End offsets of each entry's key and line.
    ends: Vec<(u32, u32)>,
    /// Per entry, bytes that travel with it unsorted (a Kafka message
    /// key), concatenated; empty when unused.
    extra: Vec<u8>,
    /// End offsets of each entry's extra bytes (empty when unused).
    extra_ends: Vec<u32>,
}

impl Run {
    fn extra(&self, i: usize) -> &[u8] {
        if self.extra_ends.is_empty() {
            return &[];
        }
        let s = if i == 0 { 0 } else { self.extra_ends[i - 1] };
        &self.extra[s as usize..self.extra_ends[i] as usize]
    }

    fn entry(&self, i: usize) -> (&[u8], &[u8]) {
        let (ks, ls) = if i == 0 { (0, 0) } else { self.ends[i - 1] };
        let (ke, le) = self.ends[i];
        (
            &self.keys[ks as usize..ke as usize],
            &self.lines[ls as usize..le as usize],
        )
    }
}

/// Unsorted entries of one epoch and partition, as they arrive.
#[derive(Default)]
struct Pending {
    keys: Vec<u8>,
    lines: String,
    idx: Vec<(u32, u32, u32, u32)>,
    /// Extra bytes per entry (see [`Run::extra`]), by entry: (start, len).
    extra: Vec<u8>,
    extra_idx: Vec<(u32, u32)>,
}

impl Pending {
    /// Adds a record, whose line `enc` encodes (or, when `line` is given,
    /// is already encoded there); returns the bytes it takes.
    fn push(
        &mut self,
        rec: &Rec,
        order_by: &[usize],
        enc: &Encoder,
        line: Option<&str>,
        extra: Option<&[u8]>,
    ) -> usize {
        let ks = self.keys.len();
        for &i in order_by {
            encode_key(&rec.row[i], &mut self.keys);
        }
        let ls = self.lines.len();
        match line {
            Some(l) => self.lines.push_str(l),
            None => enc.encode(&rec.row, &mut self.lines),
        }
        let mut bytes = self.keys.len() - ks + self.lines.len() - ls + 16;
        self.idx.push((
            to_u32(ks),
            to_u32(self.keys.len() - ks),
            to_u32(ls),
            to_u32(self.lines.len() - ls),
        ));
        if let Some(x) = extra {
            self.extra_idx
                .push((to_u32(self.extra.len()), to_u32(x.len())));
            self.extra.extend_from_slice(x);
            bytes += x.len() + 8;
        }
        bytes
    }

    fn into_run(self, part: u32) -> Run {
        let Pending {
            keys,
            lines,
            idx,
            extra,
            extra_idx,
        } = self;
        let lines = lines.into_bytes();
        // Sort entry numbers, carrying the extra bytes along.
        let mut order: Vec<usize> = (0..idx.len()).collect();
        let slice =
            |_: &[u8], s: u32, l: u32| -> std::ops::Range<usize> { s as usize..(s + l) as usize };
        order.sort_unstable_by(|&a, &b| {
            let (a, b) = (idx[a], idx[b]);
            (
                &keys[slice(&keys, a.0, a.1)],
                &lines[slice(&lines, a.2, a.3)],
            )
                .cmp(&(
                    &keys[slice(&keys, b.0, b.1)],
                    &lines[slice(&lines, b.2, b.3)],
                ))
        });
        let mut run = Run {
            part,
            keys: Vec::with_capacity(keys.len()),
            lines: Vec::with_capacity(lines.len()),
            ends: Vec::with_capacity(idx.len()),
            extra: Vec::with_capacity(extra.len()),
            extra_ends: Vec::with_capacity(extra_idx.len()),
        };
        for k in order {
            let (ks, kl, ls, ll) = idx[k];
            run.keys.extend_from_slice(&keys[slice(&keys, ks, kl)]);
            run.lines.extend_from_slice(&lines[slice(&lines, ls, ll)]);
            run.ends
                .push((to_u32(run.keys.len()), to_u32(run.lines.len())));
            if let Some(&(xs, xl)) = extra_idx.get(k) {
                run.extra.extend_from_slice(&extra[slice(&extra, xs, xl)]);
                run.extra_ends.push(to_u32(run.extra.len()));
            }
        }
        run
    }
}

fn to_u32(n: usize) -> u32 {
    // An epoch's share larger than 4 GiB per worker and file is not supported.
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Where a sink writes: files, stdout, or nowhere.
#[derive(Clone, Debug)]
enum Target {
    Files(Vec<PathBuf>),
    Stdout,
    Kafka,
    Capture(Arc<crate::graph::Capture>),
}

use crate::runtime::sink_writer as writer_of;

/// How a sink's records are spread over its output partitions.
enum Routing {
    /// By key group of these fields' key bytes (file sinks).
    Groups(Vec<usize>),
    /// As Kafka's default partitioner does: murmur2 of the message key (a
    /// JSON object of these fields), or of the value without a key.
    Kafka(Option<(Vec<usize>, Encoder)>),
}

/// Builds sink `idx`; returns the stream to probe for its progress.
pub fn build<'s>(
    scope: Scope<'s, u64>,
    def: &SinkDef,
    idx: usize,
    input: Edge<'s>,
    fail: StreamVec<'s, u64, ()>,
    shared: &Arc<Shared>,
    ck: Option<&Rc<Checkpointer>>,
) -> StreamVec<'s, u64, ()> {
    let (format, order_by, routing, target) = match &def.kind {
        SinkKind::Null => return null_sink(input, def, idx, shared),
        SinkKind::File {
            paths,
            format,
            order_by,
            key,
        } => (
            *format,
            order_by.clone(),
            Routing::Groups(key.clone()),
            Target::Files(paths.clone()),
        ),
        SinkKind::Stdout { format, order_by } => (
            *format,
            order_by.clone(),
            Routing::Groups(Vec::new()),
            Target::Stdout,
        ),
        SinkKind::Capture { order_by, capture } => (
            Format::Jsonl,
            order_by.clone(),
            Routing::Groups(Vec::new()),
            Target::Capture(Arc::clone(capture)),
        ),
        SinkKind::Kafka { key, order_by, .. } => {
            let key = key.as_ref().map(|k| {
                let schema = lockstep_operators::value::Schema::new(
                    k.iter()
                        .map(|&i| {
                            let f = &def.schema.fields()[i];
                            (f.name.as_str(), f.ty)
                        })
                        .collect::<Vec<_>>(),
                );
                (k.clone(), Encoder::new(&schema, Format::Jsonl))
            });
            (
                Format::Jsonl,
                order_by.clone(),
                Routing::Kafka(key),
                Target::Kafka,
            )
        }
    };
    let parts = match &target {
        Target::Files(p) => u32::try_from(p.len()).unwrap_or(1),
        Target::Stdout | Target::Capture(_) => 1,
        Target::Kafka => shared.sink_partitions(idx).max(1),
    };
    let enc = Encoder::new(&def.schema, format);
    let runs = local_sort(
        input,
        &def.name,
        order_by,
        routing,
        parts,
        enc,
        Arc::clone(shared),
    );
    if let Target::Kafka = target {
        return crate::sink_kafka::write(scope, runs, fail, def, idx, shared, ck);
    }
    write(scope, runs, fail, def, idx, target, shared, ck)
}

fn null_sink<'s>(
    input: Edge<'s>,
    def: &SinkDef,
    idx: usize,
    shared: &Arc<Shared>,
) -> StreamVec<'s, u64, ()> {
    let counter = Arc::clone(shared);
    let mut builder = OperatorBuilder::new(format!("sink {}", def.name), input.scope());
    let mut handle = builder.new_input(input, Pipeline);
    let (_out, stream) = builder.new_output::<Vec<()>>();
    builder.build(move |_| {
        // Epochs seen, reported as "written" once the frontier passes them
        // (for the epoch-latency figure only).
        let mut open = std::collections::BTreeSet::new();
        move |frontiers| {
            let mut n = 0u64;
            handle.for_each(|cap, data| {
                n += data.len() as u64;
                if let Some(&t) = cap.least() {
                    open.insert(t);
                }
            });
            if n > 0 {
                counter.sink_metrics(idx).fetch_add(n, Ordering::Relaxed);
            }
            while let Some(&e) = open.first() {
                if frontiers[0].less_equal(&e) {
                    break;
                }
                open.pop_first();
                counter.epoch_written(e);
            }
        }
    });
    stream
}

/// Stage 1: stash each epoch's records encoded, sort when the epoch is
/// complete, and ship one sorted run per output file to its writer.
fn local_sort<'s>(
    input: Edge<'s>,
    name: &str,
    order_by: Vec<usize>,
    routing: Routing,
    parts: u32,
    enc: Encoder,
    shared: Arc<Shared>,
) -> StreamVec<'s, u64, Run> {
    let mut builder = OperatorBuilder::new(format!("sink {name} sort"), input.scope());
    let mut handle = builder.new_input(input, Pipeline);
    let (out, stream) = builder.new_output::<Vec<Run>>();
    let mut out = OutputBuilder::from(out);
    let groups = KeyGroups::new(parts.max(1));
    builder.build(move |_| {
        // Per open epoch: its capability, one pending run per output file,
        // and the bytes they hold.
        let mut stash: BTreeMap<u64, (Capability<u64>, Vec<Pending>, usize)> = BTreeMap::new();
        let mut keybuf = Vec::new();
        let mut line = String::new();
        let mut msgkey = String::new();
        move |frontiers| {
            let mut o = out.activate();
            let port = o.output_index();
            let mut added = 0usize;
            handle.for_each_stamp(|cap, data| {
                let (Some(&t), Some(c)) = (cap.least(), cap.retain_least(port)) else {
                    return;
                };
                let slot = stash
                    .entry(t)
                    .or_insert_with(|| (c, (0..parts).map(|_| Pending::default()).collect(), 0));
                for batch in data {
                    for rec in batch.iter() {
                        let (_, bytes) = match &routing {
                            Routing::Groups(key) => {
                                let p = if parts > 1 {
                                    keybuf.clear();
                                    for &i in key {
                                        encode_key(&rec.row[i], &mut keybuf);
                                    }
                                    groups.group_of(key_hash(&keybuf)) as usize
                                } else {
                                    0
                                };
                                (p, slot.1[p].push(rec, &order_by, &enc, None, None))
                            }
                            Routing::Kafka(key) => {
                                line.clear();
                                enc.encode(&rec.row, &mut line);
                                msgkey.clear();
                                let hashed = match key {
                                    Some((fields, kenc)) => {
                                        let row: Vec<lockstep_operators::value::Value> =
                                            fields.iter().map(|&i| rec.row[i].clone()).collect();
                                        kenc.encode(&row, &mut msgkey);
                                        msgkey.pop();
                                        msgkey.as_bytes()
                                    }
                                    None => line.trim_end_matches('\n').as_bytes(),
                                };
                                let p = crate::kafka::murmur2_partition(hashed, parts) as usize;
                                let extra = key.as_ref().map(|_| msgkey.as_bytes());
                                (p, slot.1[p].push(rec, &order_by, &enc, Some(&line), extra))
                            }
                        };
                        slot.2 += bytes;
                        added += bytes;
                    }
                }
            });
            shared.stash_add(i64::try_from(added).unwrap_or(i64::MAX));
            while let Some(entry) = stash.first_entry() {
                if frontiers[0].less_equal(entry.key()) {
                    break;
                }
                let (cap, pend, bytes) = entry.remove();
                shared.stash_add(-i64::try_from(bytes).unwrap_or(i64::MAX));
                let mut s = o.session(&cap);
                for (p, pending) in pend.into_iter().enumerate() {
                    if !pending.idx.is_empty() {
                        s.give(pending.into_run(u32::try_from(p).unwrap_or(0)));
                    }
                }
            }
        }
    });
    stream
}

/// Stage 2: one writer per output file merges the runs of each complete
/// epoch and appends them, unless the fail gate stopped the job at or before
/// that epoch.
#[allow(clippy::too_many_arguments)]
fn write<'s>(
    scope: Scope<'s, u64>,
    runs: StreamVec<'s, u64, Run>,
    fail: StreamVec<'s, u64, ()>,
    def: &SinkDef,
    idx: usize,
    target: Target,
    shared: &Arc<Shared>,
    ck: Option<&Rc<Checkpointer>>,
) -> StreamVec<'s, u64, ()> {
    let peers = scope.peers();
    let mut builder = OperatorBuilder::new(format!("sink {} write", def.name), scope);
    let mut runs_in = builder.new_input(
        runs,
        Exchange::new(move |r: &Run| writer_of(idx, r.part, peers) as u64),
    );
    let mut fail_in = builder.new_input(fail, Pipeline);
    let (out, stream) = builder.new_output::<Vec<()>>();
    let mut out = OutputBuilder::<u64, CapacityContainerBuilder<Vec<()>>>::from(out);
    let shared = Arc::clone(shared);
    let name = def.name.clone();
    let ck = ck.cloned();
    let table = ck
        .as_ref()
        .and_then(|c| c.table_id(&crate::checkpoint::sink_table(&def.name)));
    let header = match &def.kind {
        SinkKind::File { format, .. } => Encoder::new(&def.schema, *format).header().to_string(),
        _ => String::new(),
    };
    let me = scope.index();
    let start: BTreeMap<u32, SinkPos> = match (&ck, table, &target) {
        (Some(ck), Some(t), Target::Files(paths)) => {
            let parts = u32::try_from(paths.len()).unwrap_or(u32::MAX);
            let mine = (0..parts).filter(|p| writer_of(idx, *p, peers) == me);
            committed(ck, t, mine, &header).unwrap_or_else(|e| {
                shared.fail(format!("sink \"{}\": {e}", def.name));
                BTreeMap::new()
            })
        }
        _ => BTreeMap::new(),
    };
    builder.build(move |_| {
        let mut stash: BTreeMap<u64, (Capability<u64>, Vec<Run>)> = BTreeMap::new();
        let mut failed_at: Option<u64> = None;
        let mut files: BTreeMap<u32, Out> = BTreeMap::new();
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
            while let Some(entry) = stash.first_entry() {
                let e = *entry.key();
                if frontiers[0].less_equal(&e) || frontiers[1].less_equal(&e) {
                    break;
                }
                let (_cap, runs) = entry.remove();
                if failed_at.is_some_and(|f| f <= e) || shared.halted() {
                    continue;
                }
                shared.epoch_written(e);
                let mut by_part: BTreeMap<u32, Vec<Run>> = BTreeMap::new();
                for r in runs {
                    by_part.entry(r.part).or_default().push(r);
                }
                for (part, runs) in by_part {
                    if let Target::Capture(c) = &target {
                        let mut n = 0u64;
                        merge_each(&runs, |line, _| {
                            n += 1;
                            let line = std::str::from_utf8(line).unwrap_or_default();
                            c.record(e, line.strip_suffix('\n').unwrap_or(line));
                        });
                        shared.sink_metrics(idx).fetch_add(n, Ordering::Relaxed);
                        continue;
                    }
                    let w = match files.entry(part) {
                        std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::btree_map::Entry::Vacant(v) => {
                            let opened: Result<Out, String> = match (&target, &ck, table) {
                                (Target::Stdout, _, _) => Ok(Out::Plain(Box::new(
                                    std::io::BufWriter::with_capacity(1 << 16, std::io::stdout()),
                                ))),
                                (Target::Files(paths), Some(ck), Some(_)) => {
                                    let pos = start.get(&part).copied().unwrap_or_default();
                                    open_tracked(ck, &name, part, &paths[part as usize], pos)
                                }
                                (Target::Kafka | Target::Capture(_), _, _) => {
                                    Err("a kafka sink has its own writer".to_string())
                                }
                                (Target::Files(paths), _, _) => OpenOptions::new()
                                    .append(true)
                                    .open(&paths[part as usize])
                                    .map(|f| {
                                        Out::Plain(Box::new(std::io::BufWriter::with_capacity(
                                            1 << 16,
                                            f,
                                        )))
                                    })
                                    .map_err(|e| e.to_string()),
                            };
                            match opened {
                                Ok(w) => v.insert(w),
                                Err(err) => {
                                    shared.fail(format!(
                                        "sink \"{name}\": cannot open its output: {err}"
                                    ));
                                    continue;
                                }
                            }
                        }
                    };
                    let written = merge_into(&runs, w.writer());
                    match written.and_then(|n| w.writer().flush().map(|()| n)) {
                        Ok(n) => {
                            shared.sink_metrics(idx).fetch_add(n, Ordering::Relaxed);
                            if let (Out::Tracked(t), Some(ck), Some(table)) = (&mut *w, &ck, table)
                            {
                                // The bytes of epoch e are flushed; the
                                // checkpoint syncs them before committing.
                                t.add_records(n);
                                match encode_value(&t.pos()) {
                                    Ok(v) => ck.stage(e, table, 0, &part_key(part), Some(v)),
                                    Err(err) => shared.fail(format!("sink \"{name}\": {err}")),
                                }
                                ck.file_written(&file_name(&name, part));
                            }
                        }
                        Err(err) => shared.fail(format!("sink \"{name}\": write failed: {err}")),
                    }
                }
            }
        }
    });
    stream
}

/// A sink's open output: plain, or tracked for checkpoints.
enum Out {
    Plain(Box<dyn Write>),
    Tracked(Tracked),
}

impl Out {
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Out::Plain(w) => w.as_mut(),
            Out::Tracked(t) => t,
        }
    }
}

/// The name a sink's file is registered under for syncing.
fn file_name(sink: &str, part: u32) -> String {
    format!("sink {sink} partition {part}")
}

/// The committed positions of the partitions of sink table `table` that
/// this worker writes, read when the dataflow is built (before anything is
/// folded into the store): a partition with nothing committed starts right
/// after its header.
fn committed(
    ck: &Checkpointer,
    table: u32,
    mine: impl Iterator<Item = u32>,
    header: &str,
) -> Result<BTreeMap<u32, SinkPos>, String> {
    let mut out = BTreeMap::new();
    for part in mine {
        let pos = ck
            .read(table, 0, &part_key(part))
            .map_err(|e| format!("cannot read its checkpoint: {e}"))?
            .unwrap_or(SinkPos {
                len: header.len() as u64,
                crc: crc32fast::hash(header.as_bytes()),
                records: 0,
            });
        out.insert(part, pos);
    }
    Ok(out)
}

/// Opens a file sink's partition at its committed position `pos` and
/// registers it for syncing.
fn open_tracked(
    ck: &Checkpointer,
    sink: &str,
    part: u32,
    path: &std::path::Path,
    pos: SinkPos,
) -> Result<Out, String> {
    let (t, sync) = Tracked::open(path, pos).map_err(|e| e.to_string())?;
    ck.register_file(&file_name(sink, part), sync);
    Ok(Out::Tracked(t))
}

/// The next unmerged entry of one run. The derived order compares fields in
/// declaration order (key, then line, then run, then index), so ties break
/// deterministically.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Head<'a> {
    key: &'a [u8],
    line: &'a [u8],
    run: usize,
    index: usize,
}

impl<'a> Head<'a> {
    /// Entry `index` of run `run`.
    fn of(runs: &'a [Run], run: usize, index: usize) -> Self {
        let (key, line) = runs[run].entry(index);
        Head {
            key,
            line,
            run,
            index,
        }
    }
}

/// Merges sorted runs, calling `f` with each entry's line and extra bytes
/// in order.
pub fn merge_each(runs: &[Run], mut f: impl FnMut(&[u8], &[u8])) {
    let mut heap: BinaryHeap<Reverse<Head<'_>>> = BinaryHeap::new();
    for (r, run) in runs.iter().enumerate() {
        if !run.ends.is_empty() {
            heap.push(Reverse(Head::of(runs, r, 0)));
        }
    }
    while let Some(Reverse(head)) = heap.pop() {
        f(head.line, runs[head.run].extra(head.index));
        let next = head.index + 1;
        if next < runs[head.run].ends.len() {
            heap.push(Reverse(Head::of(runs, head.run, next)));
        }
    }
}

/// Merges sorted runs into `w`; returns how many records were written.
fn merge_into(runs: &[Run], w: &mut dyn Write) -> std::io::Result<u64> {
    let mut heap: BinaryHeap<Reverse<Head<'_>>> = BinaryHeap::new();
    for (r, run) in runs.iter().enumerate() {
        if !run.ends.is_empty() {
            heap.push(Reverse(Head::of(runs, r, 0)));
        }
    }
    let mut n = 0;
    while let Some(Reverse(head)) = heap.pop() {
        w.write_all(head.line)?;
        n += 1;
        let next = head.index + 1;
        if next < runs[head.run].ends.len() {
            heap.push(Reverse(Head::of(runs, head.run, next)));
        }
    }
    Ok(n)
}

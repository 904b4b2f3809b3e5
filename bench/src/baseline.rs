//! Hand-written timely programs that do what the lockstep jobs do, the way
//! one would write them directly: typed structs, serde_json, a source that
//! reads one byte range (or generator slice) per worker and downgrades its
//! capability to the record's epoch, then filter/map and a sink.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::vec::{Filter, Map};
use timely::dataflow::operators::{Exchange, Operator};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Bid {
    pub(crate) auction: i64,
    pub(crate) bidder: i64,
    pub(crate) price: i64,
    pub(crate) channel: String,
    pub(crate) date_time: i64,
    pub(crate) extra: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Out {
    auction: i64,
    price: i64,
    bidder: i64,
    date_time: i64,
}

/// A source as one would write it by hand: `next` yields (epoch, record)
/// until the input ends; records go downstream in batches of up to 4096, the
/// capability follows the epoch, and `read` counts records once per batch.
pub(crate) fn stamped_source<'s, D: Clone + 'static>(
    scope: timely::dataflow::Scope<'s, u64>,
    name: &str,
    read: Arc<AtomicU64>,
    mut next: impl FnMut() -> Option<(u64, D)> + 'static,
) -> timely::dataflow::StreamVec<'s, u64, D> {
    source(scope, name, move |cap, info| {
        let activator = scope.activator_for(info.address);
        let mut cap = Some(cap);
        move |output| {
            let Some(c) = cap.as_mut() else { return };
            let mut batch = Vec::new();
            let mut n = 0;
            let mut ended = false;
            while n < 4096 {
                let Some((epoch, item)) = next() else {
                    ended = true;
                    break;
                };
                n += 1;
                if epoch > *c.time() {
                    if !batch.is_empty() {
                        output.session(&*c).give_container(&mut batch);
                        batch.clear();
                    }
                    c.downgrade(&epoch);
                }
                batch.push(item);
            }
            read.fetch_add(n, Ordering::Relaxed);
            if !batch.is_empty() {
                output.session(&*c).give_container(&mut batch);
            }
            if ended {
                cap = None;
            } else {
                activator.activate();
            }
        }
    })
    .container::<Vec<D>>()
}

pub(crate) fn config(workers: usize) -> timely::Config {
    if workers == 1 {
        timely::Config::thread()
    } else {
        timely::Config::process(workers)
    }
}

/// The bids of one worker's byte range of the JSON-lines file, parsed with
/// serde_json and stamped with their 1-second epoch. `len` is the file's
/// length; `read` counts the records.
pub(crate) fn file_bids<'s>(
    scope: timely::dataflow::Scope<'s, u64>,
    file: &Path,
    len: u64,
    read: Arc<AtomicU64>,
) -> timely::dataflow::StreamVec<'s, u64, Bid> {
    let (index, peers) = (scope.index() as u64, scope.peers() as u64);
    let (start, end) = (len * index / peers, len * (index + 1) / peers);
    let mut f = File::open(file).expect("open");
    let mut pos = start;
    if start > 0 {
        f.seek(SeekFrom::Start(start - 1)).expect("seek");
        let mut r = BufReader::new(f);
        let mut skip = Vec::new();
        pos = start - 1 + r.read_until(b'\n', &mut skip).expect("read") as u64;
        f = r.into_inner();
        f.seek(SeekFrom::Start(pos)).expect("seek");
    }
    let mut reader = BufReader::with_capacity(1 << 20, f);
    let mut line = Vec::new();
    stamped_source(scope, "read", read, move || {
        line.clear();
        if pos >= end || reader.read_until(b'\n', &mut line).expect("read") == 0 {
            return None;
        }
        pos += line.len() as u64;
        let bid: Bid = serde_json::from_slice(&line).expect("bid");
        Some((u64::try_from(bid.date_time / 1000).unwrap_or(0), bid))
    })
}

/// This worker's slice of the Nexmark events numbered below `events`, of
/// one type (as `pick` selects it), stamped with their 1-second epoch: the
/// generator filtered to that type, starting at the worker's index and
/// stepping by the number of workers, as the lockstep source's partitions do.
pub(crate) fn nexmark_events<'s, D: Clone + 'static>(
    scope: timely::dataflow::Scope<'s, u64>,
    ty: nexmark::event::EventType,
    events: u64,
    read: Arc<AtomicU64>,
    mut pick: impl FnMut(nexmark::event::Event) -> Option<(u64, D)> + 'static,
) -> timely::dataflow::StreamVec<'s, u64, D> {
    let cfg = nexmark::config::NexmarkConfig {
        base_time: 1_700_000_000_000,
        ..Default::default()
    };
    let mut gen = nexmark::EventGenerator::new(cfg)
        .with_type_filter(ty)
        .with_offset(scope.index() as u64)
        .with_step(scope.peers() as u64);
    stamped_source(scope, "generate", read, move || loop {
        if gen.global_offset() >= events {
            return None;
        }
        if let Some(item) = gen.next().and_then(&mut pick) {
            return Some(item);
        }
    })
}

/// The bids among the Nexmark events numbered below `events` (this
/// worker's slice), stamped with their 1-second epoch.
pub(crate) fn nexmark_bids<'s>(
    scope: timely::dataflow::Scope<'s, u64>,
    events: u64,
    read: Arc<AtomicU64>,
) -> timely::dataflow::StreamVec<'s, u64, nexmark::event::Bid> {
    nexmark_events(
        scope,
        nexmark::event::EventType::Bid,
        events,
        read,
        |ev| match ev {
            nexmark::event::Event::Bid(b) => Some((b.date_time / 1000, b)),
            _ => None,
        },
    )
}

/// Runs `build` as a dataflow on `workers` workers and waits for the end.
pub(crate) fn execute(
    workers: usize,
    build: impl Fn(timely::dataflow::Scope<'_, u64>) + Send + Sync + 'static,
) {
    timely::execute(config(workers), move |worker| {
        worker.dataflow::<u64, _, _>(&build);
    })
    .expect("timely")
    .join()
    .into_iter()
    .for_each(|r| r.expect("worker"));
}

/// The file job: filter `auction % 123 = 0`, map, write JSON lines.
/// Returns (records read, records written).
pub fn file_job(file: &Path, out: &Path, workers: usize) -> (u64, u64) {
    let len = std::fs::metadata(file).expect("bids file").len();
    let read = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let (file, out) = (file.to_path_buf(), out.to_path_buf());
    let (r2, w2) = (Arc::clone(&read), Arc::clone(&written));
    execute(workers, move |scope| {
        let (out, written) = (out.clone(), Arc::clone(&w2));
        file_bids(scope, &file, len, Arc::clone(&r2))
            .filter(|b| b.auction % 123 == 0)
            .map(|b| Out {
                auction: b.auction,
                price: b.price * 908 / 1000,
                bidder: b.bidder,
                date_time: b.date_time,
            })
            .exchange(|_| 0)
            .sink(Pipeline, "write", move |(input, _frontier)| {
                let mut w = std::io::BufWriter::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&out)
                        .expect("out"),
                );
                input.for_each(|_cap, data| {
                    for o in data.drain(..) {
                        serde_json::to_writer(&mut w, &o).expect("write");
                        w.write_all(b"\n").expect("write");
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                });
                w.flush().expect("flush");
            });
    });
    (
        read.load(Ordering::Relaxed),
        written.load(Ordering::Relaxed),
    )
}

/// Nexmark q0/q1/q2 over the first `events` event numbers, bids only, to a
/// counting sink. Returns (bids read, records out).
pub fn nexmark(query: &str, events: u64, workers: usize) -> (u64, u64) {
    let read = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let (r2, w2) = (Arc::clone(&read), Arc::clone(&written));
    let query = query.to_string();
    execute(workers, move |scope| {
        let bids = nexmark_bids(scope, events, Arc::clone(&r2));
        match query.as_str() {
            "q0" => counting_sink(
                bids.map(|b| (b.auction, b.bidder, b.price, b.date_time, b.extra)),
                Arc::clone(&w2),
            ),
            "q1" => counting_sink(
                bids.map(|b| {
                    (
                        b.auction,
                        b.bidder,
                        b.price * 908 / 1000,
                        b.date_time,
                        b.extra,
                    )
                }),
                Arc::clone(&w2),
            ),
            _ => counting_sink(
                bids.filter(|b| b.auction % 123 == 0)
                    .map(|b| (b.auction, b.price)),
                Arc::clone(&w2),
            ),
        }
    });
    (
        read.load(Ordering::Relaxed),
        written.load(Ordering::Relaxed),
    )
}

/// A sink that counts the records it receives, once per batch.
pub(crate) fn counting_sink<D: 'static>(
    stream: timely::dataflow::StreamVec<'_, u64, D>,
    written: Arc<AtomicU64>,
) {
    stream.sink(Pipeline, "null", move |(input, _)| {
        input.for_each(|_, d| {
            written.fetch_add(d.len() as u64, Ordering::Relaxed);
        })
    });
}

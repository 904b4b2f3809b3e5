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
struct Bid {
    auction: i64,
    bidder: i64,
    price: i64,
    channel: String,
    date_time: i64,
    extra: String,
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
fn stamped_source<'s, D: Clone + 'static>(
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

fn config(workers: usize) -> timely::Config {
    if workers == 1 {
        timely::Config::thread()
    } else {
        timely::Config::process(workers)
    }
}

/// The file job: filter `auction % 123 = 0`, map, write JSON lines.
/// Returns (records read, records written).
pub fn file_job(file: &Path, out: &Path, workers: usize) -> (u64, u64) {
    let len = std::fs::metadata(file).expect("bids file").len();
    let read = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let (file, out) = (file.to_path_buf(), out.to_path_buf());
    let (r2, w2) = (Arc::clone(&read), Arc::clone(&written));
    timely::execute(config(workers), move |worker| {
        let (index, peers) = (worker.index() as u64, worker.peers() as u64);
        let (file, out, read, written) =
            (file.clone(), out.clone(), Arc::clone(&r2), Arc::clone(&w2));
        worker.dataflow::<u64, _, _>(|scope| {
            let (start, end) = (len * index / peers, len * (index + 1) / peers);
            let mut f = File::open(&file).expect("open");
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
            .container::<Vec<Bid>>()
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
    })
    .expect("timely")
    .join()
    .into_iter()
    .for_each(|r| r.expect("worker"));
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
    timely::execute(config(workers), move |worker| {
        let (index, peers) = (worker.index() as u64, worker.peers() as u64);
        let (read, written, query) = (Arc::clone(&r2), Arc::clone(&w2), query.clone());
        worker.dataflow::<u64, _, _>(|scope| {
            let cfg = nexmark::config::NexmarkConfig {
                base_time: 1_700_000_000_000,
                ..Default::default()
            };
            let mut gen = nexmark::EventGenerator::new(cfg)
                .with_type_filter(nexmark::event::EventType::Bid)
                .with_offset(index)
                .with_step(peers);
            let bids = stamped_source(scope, "generate", read, move || loop {
                if gen.global_offset() >= events {
                    return None;
                }
                if let Some(nexmark::event::Event::Bid(b)) = gen.next() {
                    return Some((b.date_time / 1000, b));
                }
            });
            let written2 = Arc::clone(&written);
            match query.as_str() {
                "q0" => bids
                    .map(|b| (b.auction, b.bidder, b.price, b.date_time, b.extra))
                    .sink(Pipeline, "null", move |(input, _)| {
                        input.for_each(|_, d| {
                            written2.fetch_add(d.len() as u64, Ordering::Relaxed);
                        })
                    }),
                "q1" => bids
                    .map(|b| {
                        (
                            b.auction,
                            b.bidder,
                            b.price * 908 / 1000,
                            b.date_time,
                            b.extra,
                        )
                    })
                    .sink(Pipeline, "null", move |(input, _)| {
                        input.for_each(|_, d| {
                            written2.fetch_add(d.len() as u64, Ordering::Relaxed);
                        })
                    }),
                _ => bids
                    .filter(|b| b.auction % 123 == 0)
                    .map(|b| (b.auction, b.price))
                    .sink(Pipeline, "null", move |(input, _)| {
                        input.for_each(|_, d| {
                            written2.fetch_add(d.len() as u64, Ordering::Relaxed);
                        })
                    }),
            }
        });
    })
    .expect("timely")
    .join()
    .into_iter()
    .for_each(|r| r.expect("worker"));
    (
        read.load(Ordering::Relaxed),
        written.load(Ordering::Relaxed),
    )
}

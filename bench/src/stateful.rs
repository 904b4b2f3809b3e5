//! Hand-written timely programs for the stateful jobs: the windowed file
//! job (bids per auction per 10 s tumbling window), Nexmark q5 (hot items)
//! and q7 (highest bid).
//!
//! Written the way one would write them directly against timely: typed
//! records, exchange by the key of each stage, a `HashMap` per open window
//! that records fold into as they arrive, and a `BTreeMap` of open windows by
//! their end, each holding a capability for the epoch the window fires in;
//! a window fires once the input frontier has passed that epoch. The
//! semantics are the graphs': windows are `[start, end)` aligned to 0 and
//! fire in epoch `ceil(end / E) - 1` (E = 1000 ms, no lateness), results in
//! that epoch; at the end of input every window fires.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use timely::dataflow::channels::pact::{Exchange as ByKey, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::StreamVec;

use crate::baseline::{counting_sink, execute, file_bids, nexmark_bids};

/// Milliseconds per epoch, as in the graphs.
const EPOCH_MS: i64 = 1000;

/// The epoch a window ending at `end` fires in: `ceil(end / E) - 1`.
fn fire_epoch(end: i64) -> u64 {
    u64::try_from((end + EPOCH_MS - 1).div_euclid(EPOCH_MS) - 1).unwrap_or(0)
}

/// A routing hash: spreads keys that share low bits (window ends, which are
/// multiples of the window size) over workers.
fn mix(x: i64) -> u64 {
    (x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32
}

/// What a run returned: (records read, records out).
fn counts(read: &AtomicU64, written: &AtomicU64) -> (u64, u64) {
    (
        read.load(Ordering::Relaxed),
        written.load(Ordering::Relaxed),
    )
}

/// Open windows by end: the capability for the window's fire epoch and its
/// state.
type Open<S> = BTreeMap<i64, (Capability<u64>, S)>;

/// The window ending at `end`, opened (with a capability for its fire
/// epoch, delayed from `cap`) if this is its first record. `None` when the
/// window has already fired for this epoch (a late record; the in-order
/// inputs here have none).
fn window<'a, S: Default>(
    open: &'a mut Open<S>,
    end: i64,
    cap: &timely::dataflow::operators::InputCapability<u64>,
    port: usize,
) -> Option<&'a mut S> {
    let epoch = *cap.least()?;
    let fire = fire_epoch(end);
    if fire < epoch {
        return None;
    }
    Some(
        &mut open
            .entry(end)
            .or_insert_with(|| (cap.delayed(&fire, port), S::default()))
            .1,
    )
}

/// Removes and returns the open windows whose fire epoch every frontier in
/// `frontiers` has passed, earliest first.
fn closed<S>(
    open: &mut Open<S>,
    frontiers: &[&timely::progress::frontier::MutableAntichain<u64>],
) -> Vec<(i64, Capability<u64>, S)> {
    let mut out = Vec::new();
    while let Some(entry) = open.first_entry() {
        let fire = fire_epoch(*entry.key());
        if frontiers.iter().any(|f| f.less_equal(&fire)) {
            break;
        }
        let end = *entry.key();
        let (cap, state) = entry.remove();
        out.push((end, cap, state));
    }
    out
}

/// Per key, a count per tumbling or sliding window, over `(key, event
/// time)` records: records of one key go to one worker; each counts in
/// every window `windows` gives for its time (as window ends); a fired
/// window emits `(key, window_end, count)`.
pub(crate) fn count_per_key<'s>(
    stream: StreamVec<'s, u64, (i64, i64)>,
    name: &str,
    windows: impl Fn(i64, &mut Vec<i64>) + 'static,
) -> StreamVec<'s, u64, (i64, i64, u64)> {
    stream.unary_frontier(
        ByKey::new(|&(k, _): &(i64, i64)| mix(k)),
        name,
        move |_cap, _info| {
            let mut open: Open<HashMap<i64, u64>> = BTreeMap::new();
            let mut ends = Vec::new();
            move |(input, frontier), output| {
                let port = output.output_index();
                input.for_each_stamp(|cap, data| {
                    for batch in data {
                        for (k, t) in batch.drain(..) {
                            windows(t, &mut ends);
                            for &end in &ends {
                                if let Some(w) = window(&mut open, end, &cap, port) {
                                    *w.entry(k).or_insert(0) += 1;
                                }
                            }
                        }
                    }
                });
                for (end, cap, counts) in closed(&mut open, &[frontier]) {
                    output
                        .session(&cap)
                        .give_iterator(counts.into_iter().map(|(k, n)| (k, end, n)));
                }
            }
        },
    )
}

/// The windowed file job: bids per auction per 10 s tumbling window over
/// the bids file, into a counting sink. Returns (records read, windows out).
pub fn file_windowed(file: &Path, workers: usize) -> (u64, u64) {
    let len = std::fs::metadata(file).expect("bids file").len();
    let read = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let file = file.to_path_buf();
    let (r2, w2) = (Arc::clone(&read), Arc::clone(&written));
    execute(workers, move |scope| {
        let bids = file_bids(scope, &file, len, Arc::clone(&r2));
        let windows = count_per_key(
            bids.map(|b| (b.auction, b.date_time)),
            "count per auction",
            |t, ends| {
                ends.clear();
                ends.push(t - t.rem_euclid(10_000) + 10_000);
            },
        );
        // (auction, window_start, window_end, count), as the graph emits.
        counting_sink(
            windows.map(|(a, end, n)| (a, end - 10_000, end, n)),
            Arc::clone(&w2),
        );
    });
    counts(&read, &written)
}

/// Nexmark q5 (hot items): bids per auction in sliding windows (10 s, every
/// 2 s), then per window the auctions whose count is the window's maximum
/// (all ties). Returns (bids read, records out).
pub fn q5(events: u64, workers: usize) -> (u64, u64) {
    let read = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let (r2, w2) = (Arc::clone(&read), Arc::clone(&written));
    execute(workers, move |scope| {
        let bids = nexmark_bids(scope, events, Arc::clone(&r2));
        let counts = count_per_key(
            bids.map(|b| (b.auction as i64, b.date_time as i64)),
            "count per auction",
            |t, ends| {
                ends.clear();
                let mut start = t - t.rem_euclid(2_000);
                while start + 10_000 > t {
                    ends.push(start + 10_000);
                    start -= 2_000;
                }
            },
        );
        // The graph's `maxes` (max per window) and its join on window_end
        // (`num >= maxn`) in one operator keyed by window_end: a running
        // maximum and the auctions that reach it.
        let hot = counts.unary_frontier(
            ByKey::new(|&(_, end, _): &(i64, i64, u64)| mix(end)),
            "max per window",
            |_cap, _info| {
                let mut open: Open<(u64, Vec<i64>)> = BTreeMap::new();
                move |(input, frontier), output| {
                    let port = output.output_index();
                    input.for_each_stamp(|cap, data| {
                        for batch in data {
                            for (auction, end, n) in batch.drain(..) {
                                if let Some((max, ties)) = window(&mut open, end, &cap, port) {
                                    if n > *max {
                                        *max = n;
                                        ties.clear();
                                    }
                                    if n == *max {
                                        ties.push(auction);
                                    }
                                }
                            }
                        }
                    });
                    for (end, cap, (max, ties)) in closed(&mut open, &[frontier]) {
                        output
                            .session(&cap)
                            .give_iterator(ties.into_iter().map(|a| (a, max, end - 10_000, end)));
                    }
                }
            },
        );
        counting_sink(hot, Arc::clone(&w2));
    });
    counts(&read, &written)
}

/// A q7 output record: auction, bidder, price, date_time, extra.
type Q7Out = (i64, i64, i64, i64, String);

/// The state of one 10 s window at a q7 join worker: this worker's bids by
/// price, and the window's maximum price once it has arrived.
#[derive(Default)]
struct Q7Window {
    bids: HashMap<i64, Vec<Q7Out>>,
    max: Option<i64>,
}

/// Nexmark q7 (highest bid): the maximum price per 10 s tumbling window,
/// joined back to the bids of that window on price (all ties). Returns
/// (bids read, records out).
pub fn q7(events: u64, workers: usize) -> (u64, u64) {
    let read = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let (r2, w2) = (Arc::clone(&read), Arc::clone(&written));
    execute(workers, move |scope| {
        let bids = nexmark_bids(scope, events, Arc::clone(&r2)).map(|b| -> Q7Out {
            (
                b.auction as i64,
                b.bidder as i64,
                b.price as i64,
                b.date_time as i64,
                b.extra,
            )
        });
        let end_of = |t: i64| t - t.rem_euclid(10_000) + 10_000;
        let (bids, local) = local_max(bids, end_of);
        // The window maximum (`maxp`): each worker's maximum (above), then
        // the window's, at one worker per window.
        let maxp = local.unary_frontier(
            ByKey::new(|&(end, _): &(i64, i64)| mix(end)),
            "max per window",
            |_cap, _info| {
                let mut open: Open<i64> = BTreeMap::new();
                move |(input, frontier), output| {
                    let port = output.output_index();
                    input.for_each_stamp(|cap, data| {
                        for batch in data {
                            for (end, m) in batch.drain(..) {
                                if let Some(max) = window(&mut open, end, &cap, port) {
                                    *max = (*max).max(m);
                                }
                            }
                        }
                    });
                    for (end, cap, max) in closed(&mut open, &[frontier]) {
                        output.session(&cap).give((end, max));
                    }
                }
            },
        );
        // The windowed join on price = maxprice: both sides exchanged by
        // price; a window's bids wait, by price, for its maximum.
        let joined = bids.binary_frontier(
            maxp,
            ByKey::new(|b: &Q7Out| mix(b.2)),
            ByKey::new(|&(_, m): &(i64, i64)| mix(m)),
            "join on price",
            move |_cap, _info| {
                let mut open: Open<Q7Window> = BTreeMap::new();
                move |(bids, bf), (maxes, mf), output| {
                    let port = output.output_index();
                    bids.for_each_stamp(|cap, data| {
                        for batch in data {
                            for b in batch.drain(..) {
                                if let Some(w) = window(&mut open, end_of(b.3), &cap, port) {
                                    w.bids.entry(b.2).or_default().push(b);
                                }
                            }
                        }
                    });
                    maxes.for_each_stamp(|cap, data| {
                        for batch in data {
                            for (end, m) in batch.drain(..) {
                                if let Some(w) = window(&mut open, end, &cap, port) {
                                    w.max = Some(m);
                                }
                            }
                        }
                    });
                    for (_end, cap, mut w) in closed(&mut open, &[bf, mf]) {
                        if let Some(hits) = w.max.and_then(|m| w.bids.remove(&m)) {
                            output.session(&cap).give_iterator(hits.into_iter());
                        }
                    }
                }
            },
        );
        counting_sink(joined, Arc::clone(&w2));
    });
    counts(&read, &written)
}

/// q7's first stage, on each worker's own bids: passes the bids on
/// unchanged (no copy) and emits, per fired window, `(window_end, this
/// worker's maximum price)`.
#[allow(clippy::type_complexity)]
fn local_max<'s>(
    bids: StreamVec<'s, u64, Q7Out>,
    end_of: impl Fn(i64) -> i64 + 'static,
) -> (StreamVec<'s, u64, Q7Out>, StreamVec<'s, u64, (i64, i64)>) {
    let mut builder = OperatorBuilder::new("local max".to_string(), bids.scope());
    let mut input = builder.new_input(bids, Pipeline);
    let (pass, pass_stream) = builder.new_output::<Vec<Q7Out>>();
    let (maxes, maxes_stream) = builder.new_output::<Vec<(i64, i64)>>();
    let (mut pass, mut maxes) = (OutputBuilder::from(pass), OutputBuilder::from(maxes));
    builder.build(move |_caps| {
        let mut open: Open<i64> = BTreeMap::new();
        move |frontiers| {
            let mut pass = pass.activate();
            let mut maxes = maxes.activate();
            let port = maxes.output_index();
            input.for_each_stamp(|cap, data| {
                let mut out = pass.session(&cap);
                for batch in data {
                    for b in batch.iter() {
                        if let Some(max) = window(&mut open, end_of(b.3), &cap, port) {
                            *max = (*max).max(b.2);
                        }
                    }
                    out.give_container(batch);
                }
            });
            for (end, cap, max) in closed(&mut open, &[&frontiers[0]]) {
                maxes.session(&cap).give((end, max));
            }
        }
    });
    (pass_stream, maxes_stream)
}

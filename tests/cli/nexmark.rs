//! Every Nexmark graph in `examples/nexmark/` writes the same bytes at 1, 2,
//! 3 and 4 workers, and its output lines equal, as a multiset, a reference
//! computed here independently, in plain Rust over the `nexmark` crate's events, by the
//! spec's rules for windows and joins (half-open windows aligned to Unix time
//! 0, sessions closed by a gap of more than `gap_ms`, a window result's event
//! time is `window_end - 1`, a windowed join pairs records in the same
//! tumbling window, every window fires at end of input).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::fs;
use std::sync::OnceLock;

use nexmark::config::NexmarkConfig;
use nexmark::event::{Auction, Bid, Event, EventType, Person};
use nexmark::EventGenerator;

use super::common::*;

/// `base_time` of every graph in `examples/nexmark/` (aligned to 10 s).
const BASE: u64 = 1_700_000_000_000;
/// `count` of every graph in `examples/nexmark/`.
const COUNT: u64 = 200_000;
const QUERIES: [&str; 9] = ["q0", "q1", "q2", "q3", "q5", "q7", "q8", "q11", "q12"];

// ---------------------------------------------------------------- events

/// The events of one type among the first `COUNT` event numbers, in order.
fn of_type(ty: EventType) -> Vec<Event> {
    let cfg = NexmarkConfig {
        base_time: BASE,
        ..Default::default()
    };
    let mut gen = EventGenerator::new(cfg).with_type_filter(ty);
    let mut out = Vec::new();
    while gen.global_offset() < COUNT {
        out.push(gen.next().expect("the generator is unbounded"));
    }
    out
}

fn bids() -> &'static [Bid] {
    static BIDS: OnceLock<Vec<Bid>> = OnceLock::new();
    BIDS.get_or_init(|| {
        of_type(EventType::Bid)
            .into_iter()
            .map(|e| match e {
                Event::Bid(b) => b,
                _ => panic!("type filter"),
            })
            .collect()
    })
}

fn persons() -> &'static [Person] {
    static PERSONS: OnceLock<Vec<Person>> = OnceLock::new();
    PERSONS.get_or_init(|| {
        of_type(EventType::Person)
            .into_iter()
            .map(|e| match e {
                Event::Person(p) => p,
                _ => panic!("type filter"),
            })
            .collect()
    })
}

fn auctions() -> &'static [Auction] {
    static AUCTIONS: OnceLock<Vec<Auction>> = OnceLock::new();
    AUCTIONS.get_or_init(|| {
        of_type(EventType::Auction)
            .into_iter()
            .map(|e| match e {
                Event::Auction(a) => a,
                _ => panic!("type filter"),
            })
            .collect()
    })
}

#[allow(clippy::cast_possible_wrap)]
fn i(v: usize) -> i64 {
    v as i64
}

#[allow(clippy::cast_possible_wrap)]
fn t(v: u64) -> i64 {
    v as i64
}

/// Start of the window of `size` (aligned to Unix time 0) holding time `ts`.
fn tumble(ts: i64, size: i64) -> i64 {
    ts.div_euclid(size) * size
}

// ---------------------------------------------------------------- output

/// A field value as lockstep's jsonl writes it.
enum V<'a> {
    I(i64),
    S(&'a str),
}

/// One jsonl line (without its newline): fields in order, ints in decimal,
/// strings escaping `"`, `\` and control characters only.
fn line(fields: &[(&str, V)]) -> String {
    let mut s = String::from("{");
    for (n, (k, v)) in fields.iter().enumerate() {
        if n > 0 {
            s.push(',');
        }
        escape(k, &mut s);
        s.push(':');
        match v {
            V::I(x) => write!(s, "{x}").expect("write to String"),
            V::S(x) => escape(x, &mut s),
        }
    }
    s.push('}');
    s
}

fn escape(text: &str, s: &mut String) {
    s.push('"');
    for c in text.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            '\u{8}' => s.push_str("\\b"),
            '\u{c}' => s.push_str("\\f"),
            c if (c as u32) < 0x20 => write!(s, "\\u{:04x}", c as u32).expect("write"),
            c => s.push(c),
        }
    }
    s.push('"');
}

// ---------------------------------------------------------------- running

/// Runs `examples/nexmark/{q}.json` at 1, 2, 3 and 4 workers in fresh
/// directories, asserts all wrote the same bytes to `out`, and returns them.
fn run_query(q: &str, out: &str) -> String {
    let graph = format!("{q}.json");
    let mut outputs: Vec<Vec<u8>> = Vec::new();
    for workers in ["1", "2", "3", "4"] {
        let tmp = tempdir();
        fs::copy(
            root().join("examples/nexmark").join(&graph),
            tmp.path().join(&graph),
        )
        .expect("copy graph");
        run_ok(
            tmp.path(),
            &["run", &graph, "--workers", workers, "--quiet"],
        );
        outputs.push(read(&tmp.path().join(out)));
    }
    for (i, other) in outputs.iter().enumerate().skip(1) {
        assert_same(
            &outputs[0],
            other,
            &format!("{q}: {out} at --workers 1 vs --workers {}", i + 1),
        );
    }
    let text = String::from_utf8(outputs.swap_remove(0)).expect("utf-8 output");
    assert!(!text.is_empty(), "{q}: {out} is empty");
    text
}

/// Asserts the lines of `got` (each ending in `sep`) equal `want` as
/// multisets, showing what is missing and what is extra.
fn assert_multiset(q: &str, got: &str, sep: &str, mut want: Vec<String>) {
    assert!(got.ends_with(sep), "{q}: output does not end with {sep:?}");
    let mut got: Vec<&str> = got[..got.len() - sep.len()].split(sep).collect();
    got.sort_unstable();
    want.sort_unstable();
    if got.iter().copied().eq(want.iter().map(String::as_str)) {
        return;
    }
    let mut count: BTreeMap<&str, i64> = BTreeMap::new();
    for l in &got {
        *count.entry(l).or_default() += 1;
    }
    for l in &want {
        *count.entry(l).or_default() -= 1;
    }
    let extra: Vec<_> = count.iter().filter(|(_, &c)| c > 0).collect();
    let missing: Vec<_> = count.iter().filter(|(_, &c)| c < 0).collect();
    panic!(
        "{q}: output ({} lines) differs from the reference ({} lines): \
         {} distinct lines missing from the output, {} extra.\n\
         first missing (line, times): {:?}\nfirst extra (line, times): {:?}",
        got.len(),
        want.len(),
        missing.len(),
        extra.len(),
        &missing[..missing.len().min(5)],
        &extra[..extra.len().min(5)],
    );
}

// ---------------------------------------------------------------- the graphs

#[test]
fn every_graph_follows_the_examples_scheme() {
    let readme = read_text(&root().join("examples/nexmark/README.md"));
    let mut graphs: Vec<String> = fs::read_dir(root().join("examples/nexmark"))
        .expect("examples/nexmark/")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    graphs.sort();
    let mut want: Vec<String> = QUERIES.iter().map(|q| format!("{q}.json")).collect();
    want.sort();
    assert_eq!(graphs, want, "the graphs in examples/nexmark/");
    for q in QUERIES {
        let g = read_text(&root().join(format!("examples/nexmark/{q}.json")));
        for needle in [
            "\"version\": 1".to_string(),
            format!("\"name\": \"nexmark-{q}\""),
            "\"time\": { \"epoch_ms\": 1000 }".to_string(),
            "\"count\": 200000, \"base_time\": 1700000000000".to_string(),
            format!("\"path\": \"{q}.out."),
        ] {
            assert!(g.contains(&needle), "{q}.json lacks {needle}");
        }
        assert!(readme.contains(&format!("{q}.json")), "README lacks {q}");
        let r = run_ok(
            &root().join("examples/nexmark"),
            &["validate", &format!("{q}.json")],
        );
        // The only warnings allowed: a window's or windowed join's `late`
        // output is not connected (no data is late in these jobs).
        for l in r.stderr.lines() {
            assert!(
                l.contains("warning") && l.contains(".late\" is not connected"),
                "{q}: {l}"
            );
        }
    }
}

// ---------------------------------------------------------------- stateless

fn bid_line(b: &Bid, price: i64) -> String {
    line(&[
        ("auction", V::I(i(b.auction))),
        ("bidder", V::I(i(b.bidder))),
        ("price", V::I(price)),
        ("date_time", V::I(t(b.date_time))),
        ("extra", V::S(&b.extra)),
    ])
}

#[test]
fn q0_passes_every_bid_through() {
    let want: Vec<String> = bids().iter().map(|b| bid_line(b, i(b.price))).collect();
    // 46 of each 50 events are bids.
    assert_eq!(want.len(), 184_000);
    let got = run_query("q0", "q0.out.jsonl");
    assert_multiset("q0", &got, "\n", want);
}

#[test]
fn q1_converts_prices_with_int_arithmetic() {
    let want: Vec<String> = bids()
        .iter()
        .map(|b| bid_line(b, i(b.price) * 908 / 1000))
        .collect();
    assert_eq!(want.len(), 184_000);
    let got = run_query("q1", "q1.out.jsonl");
    assert_multiset("q1", &got, "\n", want);
}

#[test]
fn q2_selects_the_bids_of_every_123rd_auction() {
    let want: Vec<String> = bids()
        .iter()
        .filter(|b| b.auction % 123 == 0)
        .map(|b| format!("{},{}", b.auction, b.price))
        .collect();
    assert!(want.len() > 1000, "{}", want.len());
    let got = run_query("q2", "q2.out.csv");
    let header = "auction,price\r\n";
    assert!(got.starts_with(header), "q2: no CSV header");
    assert_multiset("q2", &got[header.len()..], "\r\n", want);
}

// ---------------------------------------------------------------- joins and windows

#[test]
fn q3_joins_category_10_auctions_to_their_sellers_in_or_id_ca() {
    let mut people: HashMap<usize, Vec<&Person>> = HashMap::new();
    for p in persons() {
        if ["or", "id", "ca"].contains(&p.state.as_str()) {
            people.entry(p.id).or_default().push(p);
        }
    }
    let mut want = Vec::new();
    for a in auctions().iter().filter(|a| a.category == 10) {
        for p in people.get(&a.seller).into_iter().flatten() {
            want.push(line(&[
                ("name", V::S(&p.name)),
                ("city", V::S(&p.city)),
                ("state", V::S(&p.state)),
                ("id", V::I(i(a.id))),
            ]));
        }
    }
    assert!(want.len() >= 10, "q3 reference has {} rows", want.len());
    let got = run_query("q3", "q3.out.jsonl");
    assert_multiset("q3", &got, "\n", want);
}

#[test]
fn q5_emits_the_hottest_auctions_of_every_sliding_window_with_ties() {
    let (size, slide, tumbling) = (10_000i64, 2_000i64, 2_000i64);
    // counts: (window_start, auction) -> num, over every sliding window
    // [start, start + size) holding the bid, starts aligned to `slide`.
    let mut counts: BTreeMap<(i64, usize), i64> = BTreeMap::new();
    for b in bids() {
        let ts = t(b.date_time);
        let mut start = tumble(ts, slide);
        while start > ts - size {
            *counts.entry((start, b.auction)).or_default() += 1;
            start -= slide;
        }
    }
    // maxes: tumbling windows over the counts' event times (window_end - 1),
    // key [] -> (window_start -> maxn).
    let mut maxes: BTreeMap<i64, i64> = BTreeMap::new();
    for (&(start, _), &num) in &counts {
        let m = maxes.entry(tumble(start + size - 1, tumbling)).or_default();
        *m = (*m).max(num);
    }
    // The windowed join: same tumbling window of event times (a maxes
    // record's event time is its window_end - 1, so its window is its own),
    // equal window_end, num >= maxn.
    let mut want = Vec::new();
    let mut ends = BTreeSet::new();
    for (&(start, auction), &num) in &counts {
        let end = start + size;
        let w = tumble(end - 1, tumbling);
        let Some(&maxn) = maxes.get(&w) else { continue };
        if w + tumbling == end && num >= maxn {
            ends.insert(end);
            want.push(line(&[
                ("auction", V::I(i(auction))),
                ("num", V::I(num)),
                ("window_start", V::I(start)),
                ("window_end", V::I(end)),
            ]));
        }
    }
    // Every sliding window that holds a bid has at least one hottest auction.
    let windows: BTreeSet<i64> = counts.keys().map(|&(s, _)| s + size).collect();
    assert_eq!(ends, windows, "q5 reference: a window without a row");
    assert!(windows.len() >= 10, "{} windows", windows.len());
    let got = run_query("q5", "q5.out.jsonl");
    assert_multiset("q5", &got, "\n", want);
}

#[test]
fn q7_emits_the_highest_bids_of_every_10s_window() {
    let size = 10_000i64;
    let mut maxp: BTreeMap<i64, i64> = BTreeMap::new();
    for b in bids() {
        let m = maxp.entry(tumble(t(b.date_time), size)).or_insert(i64::MIN);
        *m = (*m).max(i(b.price));
    }
    // A maxp record's event time is window_end - 1, so it joins the bids of
    // its own window [start, end).
    let mut want = Vec::new();
    let mut windows = BTreeSet::new();
    for b in bids() {
        let w = tumble(t(b.date_time), size);
        if maxp.get(&tumble(w + size - 1, size)) == Some(&i(b.price)) {
            windows.insert(w);
            want.push(bid_line(b, i(b.price)));
        }
    }
    // At least one row per 10 s window; the bids span 20 s.
    assert_eq!(windows.len(), maxp.len());
    assert!(windows.len() >= 2, "{} windows", windows.len());
    let got = run_query("q7", "q7.out.jsonl");
    assert_multiset("q7", &got, "\n", want);
}

#[test]
fn q8_emits_new_people_who_opened_an_auction_in_the_same_10s_window() {
    let size = 10_000i64;
    // p: distinct (window_start, id, name); a: distinct (window_start, seller).
    let p: BTreeSet<(i64, usize, &str)> = persons()
        .iter()
        .map(|p| (tumble(t(p.date_time), size), p.id, p.name.as_str()))
        .collect();
    let a: BTreeSet<(i64, usize)> = auctions()
        .iter()
        .map(|a| (tumble(t(a.date_time), size), a.seller))
        .collect();
    // Both sides' results have event time window_end - 1: the same join
    // window exactly when they have the same window.
    let want: Vec<String> = p
        .iter()
        .filter(|(w, id, _)| a.contains(&(*w, *id)))
        .map(|&(w, id, name)| {
            line(&[
                ("id", V::I(i(id))),
                ("name", V::S(name)),
                ("window_start", V::I(w)),
            ])
        })
        .collect();
    assert!(want.len() >= 10, "q8 reference has {} rows", want.len());
    let got = run_query("q8", "q8.out.jsonl");
    assert_multiset("q8", &got, "\n", want);
}

#[test]
fn q11_counts_bids_per_bidder_session() {
    let gap = 10_000i64;
    let mut times: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
    for b in bids() {
        times.entry(b.bidder).or_default().push(t(b.date_time));
    }
    let mut want = Vec::new();
    for (&bidder, ts) in &mut times {
        ts.sort_unstable();
        let mut sessions: Vec<(i64, i64, i64)> = Vec::new(); // first, last, bids
        for &x in ts.iter() {
            match sessions.last_mut() {
                Some((_, last, n)) if x - *last <= gap => {
                    *last = x;
                    *n += 1;
                }
                _ => sessions.push((x, x, 1)),
            }
        }
        for (first, last, n) in sessions {
            want.push(line(&[
                ("bidder", V::I(i(bidder))),
                ("window_start", V::I(first)),
                ("window_end", V::I(last + gap)),
                ("bids", V::I(n)),
            ]));
        }
    }
    assert!(want.len() >= times.len());
    assert!(times.len() >= 100, "{} bidders", times.len());
    let got = run_query("q11", "q11.out.jsonl");
    assert_multiset("q11", &got, "\n", want);
}

#[test]
fn q12_counts_bids_per_bidder_per_10s_window() {
    let size = 10_000i64;
    let mut counts: BTreeMap<(usize, i64), i64> = BTreeMap::new();
    for b in bids() {
        *counts
            .entry((b.bidder, tumble(t(b.date_time), size)))
            .or_default() += 1;
    }
    let want: Vec<String> = counts
        .iter()
        .map(|(&(bidder, w), &n)| {
            line(&[
                ("bidder", V::I(i(bidder))),
                ("window_start", V::I(w)),
                ("window_end", V::I(w + size)),
                ("bids", V::I(n)),
            ])
        })
        .collect();
    assert!(want.len() >= 100, "q12 reference has {} rows", want.len());
    let got = run_query("q12", "q12.out.jsonl");
    assert_multiset("q12", &got, "\n", want);
}

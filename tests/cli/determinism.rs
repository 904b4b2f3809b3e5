//! Determinism: the same records give the same bytes for any worker count and
//! any way of cutting a time-ordered input into partitions.

use std::path::Path;

use super::common::*;

const N: usize = 20_000;

fn record(i: usize) -> String {
    format!(
        "{{\"user\":\"u{}\",\"url\":\"https://x/{}\",\"ts\":{},\"bytes\":{}}}\n",
        i % 37,
        i % 11,
        1_700_000_000_000 + (i / 5) as i64,
        (i * 7919) % 10_000
    )
}

fn graph(source: &str, ooo: u64) -> String {
    format!(
        r#"{{"version": 1, "time": {{"epoch_ms": 500}},
  "sources": {{"in": {{"type": "file", {source}, "schema": {{"user": "string", "url": "string", "ts": "timestamp", "bytes": "int"}},
                       "event_time": {{"field": "ts", "max_out_of_order_ms": {ooo}}}}}}},
  "nodes": {{
    "big": {{"type": "filter", "input": "in", "where": "bytes > 3000 AND url LIKE '%/1%'"}},
    "m": {{"type": "map", "input": "big", "select": {{"user": "upper(user)", "kb": "bytes / 1024", "ts": "ts", "f": "bytes * 0.5"}}}},
    "r": {{"type": "route", "input": "m", "routes": {{"even": "kb % 2 = 0"}}}}
  }},
  "sinks": {{"even": {{"type": "file", "input": "r.even", "path": "even.jsonl"}},
            "odd": {{"type": "file", "input": "r.unmatched", "path": "odd.csv", "format": "csv", "order_by": ["kb"]}}}}}}"#
    )
}

fn outputs(dir: &Path) -> Vec<u8> {
    let mut v = read(&dir.join("even.jsonl"));
    v.extend(read(&dir.join("odd.csv")));
    v
}

#[test]
fn whole_split_and_cut_files_give_identical_bytes_at_any_worker_count() {
    let tmp = tempdir();
    let all: String = (0..N).map(record).collect();
    write(tmp.path(), "all.jsonl", &all);
    for k in 0..4 {
        let part: String = (k * N / 4..(k + 1) * N / 4).map(record).collect();
        write(tmp.path(), &format!("cut{k}.jsonl"), &part);
    }
    let layouts = [
        r#""path": "all.jsonl""#,
        r#""path": "all.jsonl", "split": 4"#,
        r#""path": "all.jsonl", "split": 3"#,
        r#""paths": ["cut0.jsonl", "cut1.jsonl", "cut2.jsonl", "cut3.jsonl"]"#,
    ];
    let mut reference: Option<Vec<u8>> = None;
    for layout in layouts {
        write(tmp.path(), "graph.json", &graph(layout, 0));
        for w in ["1", "2", "4"] {
            run_ok(tmp.path(), &["run", "graph.json", "-w", w, "-q"]);
            let got = outputs(tmp.path());
            assert!(got.len() > 10_000, "too little output to mean anything");
            match &reference {
                None => reference = Some(got),
                Some(want) => assert_same(want, &got, &format!("{layout} at -w {w}")),
            }
        }
    }
}

#[test]
fn out_of_order_partitions_agree_as_multisets() {
    let tmp = tempdir();
    // Reverse every block of 50 records: out of order by up to 10 ms.
    let mut recs: Vec<String> = (0..N).map(record).collect();
    for chunk in recs.chunks_mut(50) {
        chunk.reverse();
    }
    write(tmp.path(), "all.jsonl", &recs.concat());
    let mut sorted_outputs = Vec::new();
    for layout in [
        r#""path": "all.jsonl""#,
        r#""path": "all.jsonl", "split": 4"#,
    ] {
        write(tmp.path(), "graph.json", &graph(layout, 20));
        let mut per_layout = Vec::new();
        for w in ["1", "3"] {
            run_ok(tmp.path(), &["run", "graph.json", "-w", w, "-q"]);
            per_layout.push(outputs(tmp.path()));
        }
        assert_same(
            &per_layout[0],
            &per_layout[1],
            &format!("{layout}: -w 1 vs -w 3"),
        );
        let text = String::from_utf8(per_layout.remove(0)).expect("utf-8");
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        sorted_outputs.push(lines.join("\n"));
    }
    assert_eq!(sorted_outputs[0], sorted_outputs[1]);
}

#[test]
fn generated_and_nexmark_sources_are_identical_across_workers() {
    let tmp = tempdir();
    let g = r#"{"version": 1, "time": {"epoch_ms": 100},
      "sources": {
        "bids": {"type": "nexmark", "events": "bid", "count": 5000, "base_time": 1700000000000, "partitions": 3},
        "gen": {"type": "generator", "count": 3000, "partitions": 5, "seed": 7,
                "fields": {"id": {"sequence": {"start": 10, "step": 3}}, "ts": {"timestamp": {"start": 1700000000000, "step_ms": 2}},
                           "r": {"random": {"min": -5, "max": 5}}, "x": {"random_float": {"min": 0, "max": 1}},
                           "s": {"sine": {"period": 60}}, "lvl": {"step": {"values": ["lo", "mid", "hi"], "every": 100}},
                           "c": {"choice": ["a", "b", "c"]}},
                "event_time": {"field": "ts", "max_out_of_order_ms": 10}}},
      "nodes": {"q1": {"type": "map", "input": "bids", "select": {"auction": "auction", "price": "price * 908 / 1000", "bidder": "bidder", "date_time": "date_time"}}},
      "sinks": {"q1_out": {"type": "file", "input": "q1", "path": "q1.jsonl"},
                "gen_out": {"type": "file", "input": "gen", "path": "gen.jsonl", "partitions": 3, "key": ["c"]}}}"#;
    write(tmp.path(), "graph.json", g);
    let mut first: Option<Vec<Vec<u8>>> = None;
    for w in ["1", "2", "4"] {
        run_ok(tmp.path(), &["run", "graph.json", "-w", w, "-q"]);
        let files: Vec<Vec<u8>> = ["q1.jsonl", "gen-0.jsonl", "gen-1.jsonl", "gen-2.jsonl"]
            .iter()
            .map(|f| read(&tmp.path().join(f)))
            .collect();
        match &first {
            None => first = Some(files),
            Some(want) => {
                for (a, b) in want.iter().zip(&files) {
                    assert_same(a, b, &format!("-w {w}"));
                }
            }
        }
    }
    let files = first.expect("ran");
    // 92% of Nexmark events are bids.
    let bids = String::from_utf8_lossy(&files[0]).lines().count();
    assert_eq!(bids, 4600);
    // The generator's partitioned sink splits records by key hash: all 3000
    // records arrive, each choice value in exactly one file.
    let total: usize = files[1..]
        .iter()
        .map(|f| String::from_utf8_lossy(f).lines().count())
        .sum();
    assert_eq!(total, 3000);
    for c in ["\"c\":\"a\"", "\"c\":\"b\"", "\"c\":\"c\""] {
        let holders = files[1..]
            .iter()
            .filter(|f| String::from_utf8_lossy(f).contains(c))
            .count();
        assert_eq!(holders, 1, "{c}");
    }
}

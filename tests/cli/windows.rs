//! Window edge cases, table-driven: each case is a window config, an input in
//! file order, and the exact bytes expected on the main output and on `late`
//! (in the sink's order: by epoch, then by all fields). Every case runs at 1
//! and 3 workers. The expected outputs were worked out by hand from the
//! spec's rules; the comment on each case says how.

use super::common::*;

struct Case {
    name: &'static str,
    /// `key` of the window node, as JSON.
    key: &'static str,
    /// `window` of the window node, as JSON.
    window: &'static str,
    lateness: u64,
    max_out_of_order_ms: u64,
    /// (key, event time) in file order.
    input: &'static [(&'static str, i64)],
    want: &'static str,
    want_late: &'static str,
}

const CASES: &[Case] = &[
    Case {
        // [0,1000) holds 0 and 999; 1000 opens the next window.
        name: "records exactly on boundaries",
        key: r#"["k"]"#,
        window: r#"{"tumbling_ms": 1000}"#,
        lateness: 0,
        max_out_of_order_ms: 0,
        input: &[("a", 0), ("a", 999), ("a", 1000), ("a", 1999), ("a", 2000)],
        want: r#"{"k":"a","window_start":0,"window_end":1000,"n":2}
{"k":"a","window_start":1000,"window_end":2000,"n":2}
{"k":"a","window_start":2000,"window_end":3000,"n":1}
"#,
        want_late: "",
    },
    Case {
        // 950 arrives after 1400 but within the 500 ms bound (epoch 0, and
        // [0,1000) fires in epoch 0). 999 arrives after 1600: the watermark
        // is 1100, epoch 1 > f([0,1000)) = 0, so it is late.
        name: "out of order within the bound, late beyond it",
        key: r#"["k"]"#,
        window: r#"{"tumbling_ms": 1000}"#,
        lateness: 0,
        max_out_of_order_ms: 500,
        input: &[("a", 900), ("a", 1400), ("a", 950), ("a", 1600), ("a", 999)],
        want: r#"{"k":"a","window_start":0,"window_end":1000,"n":2}
{"k":"a","window_start":1000,"window_end":2000,"n":2}
"#,
        want_late: "{\"k\":\"a\",\"t\":999}\n",
    },
    Case {
        // The same input with 1000 ms of allowed lateness: [0,1000) fires in
        // epoch ceil(2000/1000) - 1 = 1, so 999 (epoch 1) still counts.
        name: "allowed lateness keeps a window open",
        key: r#"["k"]"#,
        window: r#"{"tumbling_ms": 1000}"#,
        lateness: 1000,
        max_out_of_order_ms: 500,
        input: &[("a", 900), ("a", 1400), ("a", 950), ("a", 1600), ("a", 999)],
        want: r#"{"k":"a","window_start":0,"window_end":1000,"n":3}
{"k":"a","window_start":1000,"window_end":2000,"n":2}
"#,
        want_late: "",
    },
    Case {
        name: "empty windows emit nothing",
        key: r#"["k"]"#,
        window: r#"{"tumbling_ms": 1000}"#,
        lateness: 0,
        max_out_of_order_ms: 0,
        input: &[("a", 500), ("a", 5500)],
        want: r#"{"k":"a","window_start":0,"window_end":1000,"n":1}
{"k":"a","window_start":5000,"window_end":6000,"n":1}
"#,
        want_late: "",
    },
    Case {
        name: "an empty key is one global window stream",
        key: "[]",
        window: r#"{"tumbling_ms": 1000}"#,
        lateness: 0,
        max_out_of_order_ms: 0,
        input: &[("a", 100), ("b", 200), ("c", 1100)],
        want: r#"{"window_start":0,"window_end":1000,"n":2}
{"window_start":1000,"window_end":2000,"n":1}
"#,
        want_late: "",
    },
    Case {
        name: "many keys",
        key: r#"["k"]"#,
        window: r#"{"tumbling_ms": 1000}"#,
        lateness: 0,
        max_out_of_order_ms: 0,
        input: &[("b", 100), ("a", 200), ("b", 300), ("c", 1100), ("a", 1200)],
        want: r#"{"k":"a","window_start":0,"window_end":1000,"n":1}
{"k":"b","window_start":0,"window_end":1000,"n":2}
{"k":"a","window_start":1000,"window_end":2000,"n":1}
{"k":"c","window_start":1000,"window_end":2000,"n":1}
"#,
        want_late: "",
    },
    Case {
        // Windows are aligned to the slide from time 0, so a record at 0
        // is in [-2000,1000), [-1000,2000) and [0,3000).
        name: "sliding windows at the start of time",
        key: r#"["k"]"#,
        window: r#"{"sliding": {"size_ms": 3000, "slide_ms": 1000}}"#,
        lateness: 0,
        max_out_of_order_ms: 0,
        input: &[("a", 0), ("a", 500)],
        want: r#"{"k":"a","window_start":-2000,"window_end":1000,"n":2}
{"k":"a","window_start":-1000,"window_end":2000,"n":2}
{"k":"a","window_start":0,"window_end":3000,"n":2}
"#,
        want_late: "",
    },
    Case {
        // 1500 arrives in epoch 2: [0,2000) fired in epoch 1, so it counts
        // only in [1000,3000). 900 (epoch 2) is late for both its windows,
        // so it goes to late, once.
        name: "a sliding record is late only if all its windows are",
        key: r#"["k"]"#,
        window: r#"{"sliding": {"size_ms": 2000, "slide_ms": 1000}}"#,
        lateness: 0,
        max_out_of_order_ms: 0,
        input: &[("a", 500), ("a", 2100), ("a", 1500), ("a", 900)],
        want: r#"{"k":"a","window_start":-1000,"window_end":1000,"n":1}
{"k":"a","window_start":0,"window_end":2000,"n":1}
{"k":"a","window_start":1000,"window_end":3000,"n":2}
{"k":"a","window_start":2000,"window_end":4000,"n":1}
"#,
        want_late: "{\"k\":\"a\",\"t\":900}\n",
    },
    Case {
        // A gap of exactly gap_ms joins; 1001 more starts a new session.
        // window_end is last + gap.
        name: "session gap boundary",
        key: r#"["k"]"#,
        window: r#"{"session": {"gap_ms": 1000}}"#,
        lateness: 0,
        max_out_of_order_ms: 0,
        input: &[("a", 0), ("a", 1000), ("a", 2001)],
        want: r#"{"k":"a","window_start":0,"window_end":2000,"n":2}
{"k":"a","window_start":2001,"window_end":3001,"n":1}
"#,
        want_late: "",
    },
    Case {
        // [0,2000) would fire in ceil(2000/1000) - 1 = 1, but a session
        // fires one millisecond later (epoch 2), so the record at exactly
        // window_end (2000, epoch 2) extends it instead of being late.
        name: "a record at exactly a session's end extends it",
        key: r#"["k"]"#,
        window: r#"{"session": {"gap_ms": 1000}}"#,
        lateness: 0,
        max_out_of_order_ms: 0,
        input: &[("a", 0), ("a", 1000), ("a", 2000)],
        want: "{\"k\":\"a\",\"window_start\":0,\"window_end\":3000,\"n\":3}\n",
        want_late: "",
    },
    Case {
        // All three in epoch 0, applied in event-time order: one session.
        name: "sessions merge within an epoch",
        key: r#"["k"]"#,
        window: r#"{"session": {"gap_ms": 1000}}"#,
        lateness: 0,
        max_out_of_order_ms: 5000,
        input: &[("a", 0), ("a", 1800), ("a", 900)],
        want: "{\"k\":\"a\",\"window_start\":0,\"window_end\":2800,\"n\":3}\n",
        want_late: "",
    },
    Case {
        // Epoch 0 holds two sessions {0} and {1800}; lateness keeps them
        // open (they fire in 6 and 7); 900 arrives in epoch 2 and merges
        // both into [0, 2800).
        name: "a record merges two live sessions",
        key: r#"["k"]"#,
        window: r#"{"session": {"gap_ms": 1000}}"#,
        lateness: 5000,
        max_out_of_order_ms: 5000,
        input: &[("a", 0), ("a", 1800), ("a", 7000), ("a", 900)],
        want: r#"{"k":"a","window_start":0,"window_end":2800,"n":3}
{"k":"a","window_start":7000,"window_end":8000,"n":1}
"#,
        want_late: "",
    },
    Case {
        // {0} ends at 3000 and fires in epoch 3. 2900 arrives in epoch 4
        // (watermark 6500 - 2000): alone it would make a session firing in
        // epoch 5, but it would extend the fired one, so it is late.
        name: "a record that would extend a fired session is late",
        key: r#"["k"]"#,
        window: r#"{"session": {"gap_ms": 3000}}"#,
        lateness: 0,
        max_out_of_order_ms: 2000,
        input: &[("a", 0), ("a", 6500), ("a", 2900)],
        want: r#"{"k":"a","window_start":0,"window_end":3000,"n":1}
{"k":"a","window_start":6500,"window_end":9500,"n":1}
"#,
        want_late: "{\"k\":\"a\",\"t\":2900}\n",
    },
    Case {
        // Nothing moves the watermark past 10000: the window fires at end
        // of input.
        name: "end of input fires open windows",
        key: r#"["k"]"#,
        window: r#"{"tumbling_ms": 10000}"#,
        lateness: 0,
        max_out_of_order_ms: 0,
        input: &[("a", 500), ("b", 1500), ("a", 9999)],
        want: r#"{"k":"a","window_start":0,"window_end":10000,"n":2}
{"k":"b","window_start":0,"window_end":10000,"n":1}
"#,
        want_late: "",
    },
];

fn graph(c: &Case) -> String {
    format!(
        r#"{{
  "version": 1,
  "time": {{ "epoch_ms": 1000 }},
  "sources": {{ "in": {{ "type": "file", "path": "in.jsonl",
      "schema": {{ "k": "string", "t": "timestamp" }},
      "event_time": {{ "field": "t", "max_out_of_order_ms": {ooo} }} }} }},
  "nodes": {{ "w": {{ "type": "window", "input": "in", "key": {key}, "window": {window},
      "allowed_lateness_ms": {lateness}, "aggregate": {{ "n": "count(*)" }} }} }},
  "sinks": {{
    "out": {{ "type": "file", "input": "w", "path": "out.jsonl" }},
    "late": {{ "type": "file", "input": "w.late", "path": "late.jsonl" }}
  }}
}}"#,
        ooo = c.max_out_of_order_ms,
        key = c.key,
        window = c.window,
        lateness = c.lateness,
    )
}

#[test]
fn window_edge_cases() {
    let mut failures = Vec::new();
    for c in CASES {
        let input: String = c
            .input
            .iter()
            .map(|(k, t)| format!("{{\"k\":\"{k}\",\"t\":{t}}}\n"))
            .collect();
        for workers in ["1", "3"] {
            let dir = tempdir();
            write(dir.path(), "graph.json", &graph(c));
            write(dir.path(), "in.jsonl", &input);
            run_ok(
                dir.path(),
                &["run", "graph.json", "--workers", workers, "--quiet"],
            );
            let got = read_text(&dir.path().join("out.jsonl"));
            let late = read_text(&dir.path().join("late.jsonl"));
            if got != c.want || late != c.want_late {
                failures.push(format!(
                    "{} (workers {workers}):\n--- want\n{}{}--- got\n{}{}",
                    c.name,
                    c.want,
                    if c.want_late.is_empty() {
                        String::new()
                    } else {
                        format!("late:\n{}", c.want_late)
                    },
                    got,
                    if late.is_empty() {
                        String::new()
                    } else {
                        format!("late:\n{late}")
                    },
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

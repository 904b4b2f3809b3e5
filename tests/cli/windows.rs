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
        // a's session {0} fires in epoch 3 (end 3000). Much later a new
        // session {5000} opens; then 2500 arrives: it touches the live
        // session (5000 - 3000 <= 2500) but also the fired one (2500 <=
        // 3000), so it is late, and {5000} stays alone.
        name: "touching a fired session is late even when it also touches a live one",
        key: r#"["k"]"#,
        window: r#"{"session": {"gap_ms": 3000}}"#,
        lateness: 0,
        max_out_of_order_ms: 0,
        input: &[("a", 0), ("b", 7000), ("a", 5000), ("b", 8000), ("a", 2500)],
        want: r#"{"k":"a","window_start":0,"window_end":3000,"n":1}
{"k":"a","window_start":5000,"window_end":8000,"n":1}
{"k":"b","window_start":7000,"window_end":11000,"n":2}
"#,
        want_late: "{\"k\":\"a\",\"t\":2500}\n",
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

/// A direct model of the spec's window rules, kept as simple as possible:
/// every fired session is remembered for ever, every record is checked
/// against all of them. Returns (main lines, late lines), each in sink order.
fn model(
    kind: &str,
    size: i64,
    slide: i64,
    lateness: i64,
    ooo: i64,
    input: &[(String, i64)],
) -> (String, String) {
    const E: i64 = 1000;
    let fire = |end: i64| -> i64 { (end + lateness + E - 1).div_euclid(E) - 1 };
    // Epochs: one partition, watermark = max so far - ooo.
    let mut max_t = i64::MIN;
    let recs: Vec<(i64, String, i64)> = input
        .iter()
        .map(|(k, t)| {
            max_t = max_t.max(*t);
            ((max_t - ooo).div_euclid(E).max(0), k.clone(), *t)
        })
        .collect();
    let mut out: Vec<(i64, String, i64, i64, i64)> = Vec::new();
    let mut late: Vec<(i64, String, i64)> = Vec::new();
    let last_epoch = recs.iter().map(|r| r.0).max().unwrap_or(0);
    if kind == "session" {
        let gap = size;
        let sfire = |last: i64| fire(last + gap + 1);
        // key -> live (start, last, n), fired (start, last)
        let mut live: std::collections::BTreeMap<String, Vec<(i64, i64, i64)>> = Default::default();
        let mut fired: std::collections::BTreeMap<String, Vec<(i64, i64)>> = Default::default();
        let mut e = 0;
        loop {
            let mut batch: Vec<&(i64, String, i64)> = recs.iter().filter(|r| r.0 == e).collect();
            batch.sort_by(|a, b| (&a.1, a.2).cmp(&(&b.1, b.2)));
            for (_, k, t) in batch.into_iter().map(|r| (r.0, r.1.clone(), r.2)) {
                let f = fired.entry(k.clone()).or_default();
                if f.iter().any(|(s, l)| s - gap <= t && t <= l + gap) {
                    late.push((e, k, t));
                    continue;
                }
                let lv = live.entry(k.clone()).or_default();
                let touching: Vec<usize> = (0..lv.len())
                    .filter(|&i| lv[i].0 - gap <= t && t <= lv[i].1 + gap)
                    .collect();
                if touching.is_empty() && sfire(t) < e {
                    late.push((e, k, t));
                    continue;
                }
                let mut m = (t, t, 1);
                for &i in touching.iter().rev() {
                    let s = lv.remove(i);
                    m = (m.0.min(s.0), m.1.max(s.1), m.2 + s.2);
                }
                lv.push(m);
            }
            for (k, lv) in live.iter_mut() {
                lv.retain(|s| {
                    if sfire(s.1) <= e {
                        out.push((e, k.clone(), s.0, s.1 + gap, s.2));
                        fired.entry(k.clone()).or_default().push((s.0, s.1));
                        false
                    } else {
                        true
                    }
                });
            }
            e += 1;
            if e > last_epoch && live.values().all(Vec::is_empty) {
                break;
            }
        }
    } else {
        let mut panes: std::collections::BTreeMap<(String, i64), i64> = Default::default();
        for (e, k, t) in &recs {
            let mut wins = Vec::new();
            let mut s = t.div_euclid(slide) * slide;
            while s + size > *t {
                wins.push(s);
                s -= slide;
            }
            let open: Vec<i64> = wins.into_iter().filter(|s| fire(s + size) >= *e).collect();
            if open.is_empty() {
                late.push((*e, k.clone(), *t));
            }
            for s in open {
                *panes.entry((k.clone(), s)).or_default() += 1;
            }
        }
        for ((k, s), n) in panes {
            out.push((fire(s + size), k, s, s + size, n));
        }
    }
    out.sort();
    late.sort();
    (
        out.into_iter()
            .map(|(_, k, s, e, n)| {
                format!("{{\"k\":\"{k}\",\"window_start\":{s},\"window_end\":{e},\"n\":{n}}}\n")
            })
            .collect(),
        late.into_iter()
            .map(|(_, k, t)| format!("{{\"k\":\"{k}\",\"t\":{t}}}\n"))
            .collect(),
    )
}

/// Random inputs (keys, out-of-order times, bounds, lateness, gaps) give
/// the model's exact bytes, on the main output and on `late`, at 1 and 3
/// workers. The model keeps every fired session for ever; the engine
/// forgets what can no longer matter, so this also checks that forgetting.
#[test]
fn windows_agree_with_a_model_on_random_inputs() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut failures = Vec::new();
    let (mut results, mut lates) = (0, 0);
    for case in 0..24 {
        let kind = ["tumbling", "sliding", "session"][case % 3];
        let ooo = [0i64, 700, 2500][usize::try_from(next(3)).unwrap_or(0)];
        let lateness = [0i64, 1000][usize::try_from(next(2)).unwrap_or(0)];
        let (size, slide) = match kind {
            "tumbling" => (1000 * (1 + next(3) as i64), 0),
            "sliding" => (3000, 1000 * (1 + next(3) as i64)),
            _ => (
                [300i64, 1000, 2500][usize::try_from(next(3)).unwrap_or(0)],
                0,
            ),
        };
        let slide = if kind == "tumbling" { size } else { slide };
        let mut t = 0i64;
        let input: Vec<(String, i64)> = (0..40)
            .map(|_| {
                t += next(700) as i64;
                let jitter = if next(4) == 0 { next(4000) as i64 } else { 0 };
                (
                    ["a", "b", "c"][usize::try_from(next(3)).unwrap_or(0)].to_string(),
                    t - jitter,
                )
            })
            .collect();
        let (want, want_late) = model(kind, size, slide, lateness, ooo, &input);
        results += want.lines().count();
        lates += want_late.lines().count();
        let window = match kind {
            "tumbling" => format!("{{\"tumbling_ms\": {size}}}"),
            "sliding" => format!("{{\"sliding\": {{\"size_ms\": {size}, \"slide_ms\": {slide}}}}}"),
            _ => format!("{{\"session\": {{\"gap_ms\": {size}}}}}"),
        };
        let c = Case {
            name: "random",
            key: r#"["k"]"#,
            window: Box::leak(window.into_boxed_str()),
            lateness: lateness as u64,
            max_out_of_order_ms: ooo as u64,
            input: &[],
            want: "",
            want_late: "",
        };
        let text: String = input
            .iter()
            .map(|(k, t)| format!("{{\"k\":\"{k}\",\"t\":{t}}}\n"))
            .collect();
        for workers in ["1", "3"] {
            let dir = tempdir();
            write(dir.path(), "graph.json", &graph(&c));
            write(dir.path(), "in.jsonl", &text);
            run_ok(
                dir.path(),
                &["run", "graph.json", "--workers", workers, "--quiet"],
            );
            let got = read_text(&dir.path().join("out.jsonl"));
            let late = read_text(&dir.path().join("late.jsonl"));
            if got != want || late != want_late {
                failures.push(format!(
                    "case {case} {kind} size {size} slide {slide} lateness {lateness} ooo {ooo} (workers {workers})\ninput: {text}\n--- want\n{want}late:\n{want_late}--- got\n{got}late:\n{late}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}",
        failures.first().cloned().unwrap_or_default()
    );
    // The inputs exercise both outcomes.
    assert!(
        results > 200 && lates > 20,
        "{results} results, {lates} late"
    );
    eprintln!("{results} results, {lates} late records");
}

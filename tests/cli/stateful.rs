//! `aggregate` and `join` semantics, state that is freed, and determinism of
//! stateful jobs across worker counts.

use super::common::*;

fn run_graph(dir: &std::path::Path, graph: &str, workers: &str) -> Run {
    write(dir, "graph.json", graph);
    run_ok(dir, &["run", "graph.json", "--workers", workers])
}

/// `aggregate` emits, per epoch, one update for each key whose result
/// changed, with the largest event time seen for the key; a key whose
/// result did not change emits nothing.
#[test]
fn aggregate_emits_changed_keys_once_per_epoch() {
    let input = [
        ("a", 100, 5),
        ("b", 200, 1),
        ("a", 300, 7),
        ("a", 1100, 6), // max stays 7, count changes
        ("b", 1200, 1), // b: count changes
        ("c", 2100, 3),
        ("a", 2200, 7),
    ];
    let text: String = input
        .iter()
        .map(|(k, t, v)| format!("{{\"k\":\"{k}\",\"t\":{t},\"v\":{v}}}\n"))
        .collect();
    let graph = r#"{
  "version": 1,
  "time": { "epoch_ms": 1000 },
  "sources": { "in": { "type": "file", "path": "in.jsonl",
      "schema": { "k": "string", "t": "timestamp", "v": "int" },
      "event_time": { "field": "t" } } },
  "nodes": {
    "n": { "type": "aggregate", "input": "in", "key": ["k"], "aggregate": { "n": "count(*)", "top": "max(v)" } },
    "m": { "type": "aggregate", "input": "in", "key": ["k"], "aggregate": { "top": "max(v)" } }
  },
  "sinks": {
    "n_out": { "type": "file", "input": "n", "path": "n.jsonl" },
    "m_out": { "type": "file", "input": "m", "path": "m.jsonl" }
  }
}"#;
    for workers in ["1", "3"] {
        let dir = tempdir();
        write(dir.path(), "in.jsonl", &text);
        run_graph(dir.path(), graph, workers);
        assert_eq!(
            read_text(&dir.path().join("n.jsonl")),
            "{\"k\":\"a\",\"n\":2,\"top\":7}\n{\"k\":\"b\",\"n\":1,\"top\":1}\n\
             {\"k\":\"a\",\"n\":3,\"top\":7}\n{\"k\":\"b\",\"n\":2,\"top\":1}\n\
             {\"k\":\"a\",\"n\":4,\"top\":7}\n{\"k\":\"c\",\"n\":1,\"top\":3}\n"
        );
        // max(v) of a never changes after epoch 0, b's neither: only c's
        // first result appears later.
        assert_eq!(
            read_text(&dir.path().join("m.jsonl")),
            "{\"k\":\"a\",\"top\":7}\n{\"k\":\"b\",\"top\":1}\n{\"k\":\"c\",\"top\":3}\n"
        );
    }
}

/// Float sums are exact and rounded once, whatever the order of addition:
/// the same values in any file order and partitioning give the same bytes.
#[test]
fn float_sums_do_not_depend_on_order() {
    let vals = [
        "1e100", "1.0", "-1e100", "0.1", "0.2", "0.3", "1e-300", "-0.3",
    ];
    let mut outs = Vec::new();
    for (order, parts) in [(0usize, 1usize), (1, 1), (0, 3), (1, 4)] {
        let mut v: Vec<&str> = vals.to_vec();
        if order == 1 {
            v.reverse();
        }
        let dir = tempdir();
        let mut paths = Vec::new();
        for p in 0..parts {
            let text: String = v
                .iter()
                .enumerate()
                .filter(|(i, _)| i % parts == p)
                .map(|(_, x)| format!("{{\"x\":{x},\"t\":5}}\n"))
                .collect();
            write(dir.path(), &format!("in{p}.jsonl"), &text);
            paths.push(format!("\"in{p}.jsonl\""));
        }
        let graph = format!(
            r#"{{ "version": 1, "time": {{ "epoch_ms": 1000 }},
  "sources": {{ "in": {{ "type": "file", "paths": [{}], "format": "jsonl",
      "schema": {{ "x": "float", "t": "timestamp" }}, "event_time": {{ "field": "t" }} }} }},
  "nodes": {{ "s": {{ "type": "aggregate", "input": "in", "aggregate": {{ "sum": "sum(x)", "avg": "avg(x)", "n": "count(x)" }} }} }},
  "sinks": {{ "out": {{ "type": "stdout", "input": "s" }} }} }}"#,
            paths.join(", ")
        );
        for workers in ["1", "3"] {
            outs.push(run_graph(dir.path(), &graph, workers).stdout);
        }
    }
    // 1e100 + 1 - 1e100 + 0.1 + 0.2 + 0.3 + 1e-300 - 0.3 = 1.3000000000000000444...
    // rounded once: the double nearest to 1.3 + 0.1 + 0.2 - 0.3 exactly.
    assert_eq!(outs[0], "{\"sum\":1.3,\"avg\":0.1625,\"n\":8}\n");
    for o in &outs {
        assert_eq!(o, &outs[0]);
    }
}

/// An integer sum outside i64 goes to `errors` (with the key), not to a
/// wrapped or saturated value; the key's later updates continue.
#[test]
fn integer_sum_overflow_goes_to_errors() {
    let dir = tempdir();
    write(
        dir.path(),
        "in.jsonl",
        "{\"k\":\"a\",\"v\":9223372036854775807,\"t\":0}\n{\"k\":\"a\",\"v\":1,\"t\":10}\n\
         {\"k\":\"a\",\"v\":-5,\"t\":1000}\n",
    );
    let graph = r#"{ "version": 1, "time": { "epoch_ms": 1000 },
  "sources": { "in": { "type": "file", "path": "in.jsonl",
      "schema": { "k": "string", "v": "int", "t": "timestamp" }, "event_time": { "field": "t" } } },
  "nodes": { "s": { "type": "aggregate", "input": "in", "key": ["k"], "aggregate": { "total": "sum(v)" } } },
  "sinks": { "out": { "type": "stdout", "input": "s" },
             "err": { "type": "file", "input": "s.errors", "path": "err.jsonl" } } }"#;
    let r = run_graph(dir.path(), graph, "2");
    assert_eq!(r.stdout, "{\"k\":\"a\",\"total\":9223372036854775803}\n");
    let err = read_text(&dir.path().join("err.jsonl"));
    assert!(
        err.contains("integer overflow: sum(v) = 9223372036854775808 does not fit in int"),
        "{err}"
    );
    assert!(err.contains("\"raw\":\"{\\\"k\\\":\\\"a\\\"}\""), "{err}");
    assert!(
        r.stderr.contains("node s: 1 records sent to s.errors"),
        "{}",
        r.stderr
    );
}

/// `first` and `last` go by event time, not by arrival.
#[test]
fn first_and_last_go_by_event_time() {
    let dir = tempdir();
    write(
        dir.path(),
        "in.jsonl",
        "{\"v\":\"late-first\",\"t\":300}\n{\"v\":\"early\",\"t\":100}\n{\"v\":\"mid\",\"t\":200}\n",
    );
    let graph = r#"{ "version": 1, "time": { "epoch_ms": 1000 },
  "sources": { "in": { "type": "file", "path": "in.jsonl",
      "schema": { "v": "string", "t": "timestamp" }, "event_time": { "field": "t", "max_out_of_order_ms": 1000 } } },
  "nodes": { "w": { "type": "window", "input": "in", "window": { "tumbling_ms": 1000 },
                    "aggregate": { "first": "first(v)", "last": "last(v)" } } },
  "sinks": { "out": { "type": "stdout", "input": "w" } } }"#;
    let r = run_graph(dir.path(), graph, "1");
    assert_eq!(
        r.stdout,
        "{\"window_start\":0,\"window_end\":1000,\"first\":\"early\",\"last\":\"late-first\"}\n"
    );
}

const JOIN_GRAPH: &str = r#"{ "version": 1, "time": { "epoch_ms": 1000 },
  "sources": {
    "l": { "type": "file", "path": "l.jsonl", "schema": { "id": "int", "a": "string", "t": "timestamp" }, "event_time": { "field": "t" } },
    "r": { "type": "file", "path": "r.jsonl", "schema": { "id": "int", "b": "string", "t": "timestamp" }, "event_time": { "field": "t" } }
  },
  "nodes": { "j": { "type": "join", "left": "l", "right": "r", "on": [["id", "id"]], WINDOW
                    "where": "left.a <> 'skip'",
                    "select": { "id": "left.id", "a": "left.a", "b": "right.b", "lt": "left.t", "rt": "right.t" } } },
  "sinks": { "out": { "type": "file", "input": "j", "path": "out.jsonl" } LATE } }"#;

fn join_inputs(dir: &std::path::Path) {
    write(
        dir,
        "l.jsonl",
        "{\"id\":1,\"a\":\"x\",\"t\":100}\n{\"id\":null,\"a\":\"n\",\"t\":200}\n\
         {\"id\":2,\"a\":\"y\",\"t\":1500}\n{\"id\":1,\"a\":\"skip\",\"t\":1600}\n\
         {\"id\":3,\"a\":\"z\",\"t\":2500}\n{\"id\":1,\"a\":\"w\",\"t\":5200}\n",
    );
    write(
        dir,
        "r.jsonl",
        "{\"id\":2,\"b\":\"p\",\"t\":50}\n{\"id\":null,\"b\":\"n\",\"t\":250}\n\
         {\"id\":1,\"b\":\"q\",\"t\":1200}\n{\"id\":3,\"b\":\"s\",\"t\":2600}\n\
         {\"id\":1,\"b\":\"u\",\"t\":5100}\n{\"id\":3,\"b\":\"v\",\"t\":2700}\n",
    );
}

/// Unbounded join: every matching pair once, in the later record's epoch
/// (the sink's epoch order shows it: the four pairs completed by epoch-5
/// records come last, sorted among themselves), nulls never match, `where`
/// filters.
#[test]
fn unbounded_join_pairs_each_match_once() {
    for workers in ["1", "3"] {
        let dir = tempdir();
        join_inputs(dir.path());
        let g = JOIN_GRAPH.replace("WINDOW", "").replace("LATE", "");
        run_graph(dir.path(), &g, workers);
        assert_eq!(
            read_text(&dir.path().join("out.jsonl")),
            "{\"id\":1,\"a\":\"x\",\"b\":\"q\",\"lt\":100,\"rt\":1200}\n\
             {\"id\":2,\"a\":\"y\",\"b\":\"p\",\"lt\":1500,\"rt\":50}\n\
             {\"id\":3,\"a\":\"z\",\"b\":\"s\",\"lt\":2500,\"rt\":2600}\n\
             {\"id\":1,\"a\":\"w\",\"b\":\"q\",\"lt\":5200,\"rt\":1200}\n\
             {\"id\":1,\"a\":\"w\",\"b\":\"u\",\"lt\":5200,\"rt\":5100}\n\
             {\"id\":1,\"a\":\"x\",\"b\":\"u\",\"lt\":100,\"rt\":5100}\n\
             {\"id\":3,\"a\":\"z\",\"b\":\"v\",\"lt\":2500,\"rt\":2700}\n",
            "workers {workers}"
        );
    }
}

/// Windowed join: only records in the same tumbling window pair; a record
/// whose window has fired goes to `late` with its side.
#[test]
fn windowed_join_pairs_within_a_window_and_reports_late_records() {
    for workers in ["1", "3"] {
        let dir = tempdir();
        join_inputs(dir.path());
        // r's 2700 record comes after 5100 in file order: epoch 5, and its
        // window [2000, 4000) fired in epoch 3: late.
        let g = JOIN_GRAPH
            .replace("WINDOW", "\"window\": { \"tumbling_ms\": 2000 },")
            .replace("\"rt\": \"right.t\"", "\"rt\": \"right.t\", \"ws\": \"window_start\"")
            .replace(
                "LATE",
                ", \"late\": { \"type\": \"file\", \"input\": \"j.late\", \"path\": \"late.jsonl\" }",
            );
        run_graph(dir.path(), &g, workers);
        assert_eq!(
            read_text(&dir.path().join("out.jsonl")),
            "{\"id\":1,\"a\":\"x\",\"b\":\"q\",\"lt\":100,\"rt\":1200,\"ws\":0}\n\
             {\"id\":2,\"a\":\"y\",\"b\":\"p\",\"lt\":1500,\"rt\":50,\"ws\":0}\n\
             {\"id\":3,\"a\":\"z\",\"b\":\"s\",\"lt\":2500,\"rt\":2600,\"ws\":2000}\n\
             {\"id\":1,\"a\":\"w\",\"b\":\"u\",\"lt\":5200,\"rt\":5100,\"ws\":4000}\n",
            "workers {workers}"
        );
        assert_eq!(
            read_text(&dir.path().join("late.jsonl")),
            "{\"side\":\"right\",\"record\":{\"b\":\"v\",\"id\":3,\"t\":2700}}\n",
            "workers {workers}"
        );
    }
}

/// The state-size counter: a windowed job and a windowed join over an
/// input 10× longer hold no more keys at their peak, because fired windows
/// and closed join windows free their state.
#[test]
fn windowed_state_stays_flat_as_input_grows() {
    let graph = |count: u64| {
        format!(
            r#"{{ "version": 1, "time": {{ "epoch_ms": 1000 }},
  "sources": {{ "g": {{ "type": "generator", "count": {count}, "partitions": 2,
      "fields": {{ "k": {{ "random": {{ "min": 0, "max": 99 }} }},
                   "t": {{ "timestamp": {{ "start": 0, "step_ms": 10 }} }} }},
      "event_time": {{ "field": "t" }} }} }},
  "nodes": {{
    "w": {{ "type": "window", "input": "g", "key": ["k"], "window": {{ "sliding": {{ "size_ms": 4000, "slide_ms": 1000 }} }},
            "aggregate": {{ "n": "count(*)" }} }},
    "s": {{ "type": "window", "input": "g", "key": ["k"], "window": {{ "session": {{ "gap_ms": 500 }} }},
            "aggregate": {{ "n": "count(*)" }} }},
    "j": {{ "type": "join", "left": "g", "right": "g", "on": [["k", "k"]], "window": {{ "tumbling_ms": 1000 }},
            "select": {{ "k": "left.k" }} }}
  }},
  "sinks": {{ "a": {{ "type": "null", "input": "w" }}, "b": {{ "type": "null", "input": "s" }},
              "c": {{ "type": "null", "input": "j" }} }} }}"#
        )
    };
    let peaks = |count: u64| -> Vec<(String, i64, i64)> {
        let dir = tempdir();
        // One worker: the peak is then a function of the input alone (with
        // several, it also depends on how far apart the workers run).
        let r = run_graph(dir.path(), &graph(count), "1");
        r.stderr
            .lines()
            .filter_map(|l| {
                let rest = l.trim().strip_prefix("state of ")?;
                let (name, rest) = rest.split_once(": at most ")?;
                let (peak, rest) = rest.split_once(" keys, ")?;
                let end = rest.strip_suffix(" at the end")?;
                Some((name.to_string(), peak.parse().ok()?, end.parse().ok()?))
            })
            .collect()
    };
    let small = peaks(20_000);
    let large = peaks(200_000);
    assert_eq!(small.len(), 3, "{small:?}");
    for ((name, p1, e1), (_, p10, e10)) in small.iter().zip(&large) {
        assert!(*p1 > 0, "{name}: {small:?}");
        // Flat: the 10× run may touch a few more keys at once by chance,
        // never ten times as many.
        assert!(
            *p10 <= p1 + p1 / 4,
            "{name}: peak {p1} keys → {p10} with 10× input"
        );
        assert_eq!((*e1, *e10), (0, 0), "{name}: state left at the end");
    }
}

/// An `aggregate` feeding a `join` or another `aggregate` is valid but gets a
/// warning: without retractions, every update is a separate record there.
#[test]
fn aggregate_into_join_or_aggregate_warns() {
    let dir = tempdir();
    write(dir.path(), "in.jsonl", "{\"k\":\"a\",\"t\":1}\n");
    let graph = r#"{ "version": 1, "time": { "epoch_ms": 1000 },
  "sources": { "in": { "type": "file", "path": "in.jsonl",
      "schema": { "k": "string", "t": "timestamp" }, "event_time": { "field": "t" } } },
  "nodes": {
    "n": { "type": "aggregate", "input": "in", "key": ["k"], "aggregate": { "n": "count(*)" } },
    "again": { "type": "aggregate", "input": "n", "aggregate": { "total": "sum(n)" } },
    "j": { "type": "join", "left": "in", "right": "n", "on": [["k", "k"]], "select": { "n": "right.n" } }
  },
  "sinks": { "a": { "type": "null", "input": "again" }, "b": { "type": "null", "input": "j" } } }"#;
    write(dir.path(), "graph.json", graph);
    let r = run_ok(dir.path(), &["validate", "graph.json"]);
    let warnings: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(warnings.len(), 2, "{}", r.stderr);
    assert!(
        warnings[0].contains("warning: nodes.again.input: \"n\" is an aggregate"),
        "{}",
        r.stderr
    );
    assert!(
        warnings[1].contains("warning: nodes.j.right: \"n\" is an aggregate"),
        "{}",
        r.stderr
    );
    assert!(
        warnings[1].contains("this join sees every update as a separate record"),
        "{}",
        r.stderr
    );
}

/// A windowed join sends a late record to `late` even when its key is null
/// (it could never match, but it is still late data, not silently dropped).
#[test]
fn windowed_join_reports_late_records_with_null_keys() {
    let dir = tempdir();
    write(
        dir.path(),
        "l.jsonl",
        "{\"k\":1,\"t\":0}\n{\"k\":1,\"t\":5000}\n{\"k\":1,\"t\":100}\n{\"k\":null,\"t\":200}\n",
    );
    write(dir.path(), "r.jsonl", "{\"k\":1,\"t\":50}\n");
    let graph = r#"{ "version": 1, "time": { "epoch_ms": 1000 },
  "sources": {
    "l": { "type": "file", "path": "l.jsonl", "schema": { "k": "int", "t": "timestamp" }, "event_time": { "field": "t" } },
    "r": { "type": "file", "path": "r.jsonl", "schema": { "k": "int", "t": "timestamp" }, "event_time": { "field": "t" } }
  },
  "nodes": { "j": { "type": "join", "left": "l", "right": "r", "on": [["k", "k"]], "window": { "tumbling_ms": 1000 },
                    "select": { "lt": "left.t", "rt": "right.t" } } },
  "sinks": { "out": { "type": "stdout", "input": "j" },
             "late": { "type": "file", "input": "j.late", "path": "late.jsonl" } } }"#;
    for workers in ["1", "3"] {
        let r = run_graph(dir.path(), graph, workers);
        assert_eq!(r.stdout, "{\"lt\":0,\"rt\":50}\n");
        assert_eq!(
            read_text(&dir.path().join("late.jsonl")),
            "{\"side\":\"left\",\"record\":{\"k\":1,\"t\":100}}\n{\"side\":\"left\",\"record\":{\"k\":null,\"t\":200}}\n"
        );
    }
}

/// Event times whose window bounds do not fit in a timestamp go to
/// `errors` with the reason; nothing is clamped into a wrong window.
#[test]
fn windows_at_the_end_of_time_are_errors_not_wrong_windows() {
    let dir = tempdir();
    write(
        dir.path(),
        "in.jsonl",
        "{\"t\":9223372036854774000}\n{\"t\":9223372036854775807}\n",
    );
    let graph = r#"{ "version": 1, "time": { "epoch_ms": 1000 },
  "sources": { "in": { "type": "file", "path": "in.jsonl", "schema": { "t": "timestamp" }, "event_time": { "field": "t" } } },
  "nodes": {
    "tum": { "type": "window", "input": "in", "window": { "tumbling_ms": 1000 }, "aggregate": { "n": "count(*)" } },
    "sld": { "type": "window", "input": "in", "window": { "sliding": { "size_ms": 2500, "slide_ms": 1000 } }, "aggregate": { "n": "count(*)" } },
    "ses": { "type": "window", "input": "in", "window": { "session": { "gap_ms": 1000 } }, "aggregate": { "n": "count(*)" } }
  },
  "sinks": { "a": { "type": "file", "input": "tum", "path": "tum.jsonl" },
             "b": { "type": "file", "input": "sld", "path": "sld.jsonl" },
             "ae": { "type": "file", "input": "tum.errors", "path": "tum_err.jsonl" },
             "be": { "type": "file", "input": "sld.errors", "path": "sld_err.jsonl" },
             "al": { "type": "null", "input": "tum.late" }, "bl": { "type": "null", "input": "sld.late" },
             "c": { "type": "file", "input": "ses", "path": "ses.jsonl" },
             "ce": { "type": "file", "input": "ses.errors", "path": "ses_err.jsonl" },
             "cl": { "type": "null", "input": "ses.late" } } }"#;
    run_graph(dir.path(), graph, "2");
    assert_eq!(
        read_text(&dir.path().join("tum.jsonl")),
        "{\"window_start\":9223372036854774000,\"window_end\":9223372036854775000,\"n\":1}\n"
    );
    let tum = read_text(&dir.path().join("tum_err.jsonl"));
    assert_eq!(tum.lines().count(), 1, "{tum}");
    assert!(
        tum.contains(
            "event time 9223372036854775807 is too close to the end of the timestamp range"
        ),
        "{tum}"
    );
    // The first record's latest sliding window [..774000, ..776500) ends
    // past the range too, so it is an error as well: a record is never
    // half-counted.
    let sld = read_text(&dir.path().join("sld_err.jsonl"));
    assert_eq!(sld.lines().count(), 2, "{sld}");
    assert!(
        sld.contains("event time 9223372036854774000 is too close"),
        "{sld}"
    );
    assert_eq!(read_text(&dir.path().join("sld.jsonl")), "");
    // A session ends at last + gap: the first record's fits, the second's
    // does not.
    assert_eq!(
        read_text(&dir.path().join("ses.jsonl")),
        "{\"window_start\":9223372036854774000,\"window_end\":9223372036854775000,\"n\":1}\n"
    );
    let ses = read_text(&dir.path().join("ses_err.jsonl"));
    assert_eq!(ses.lines().count(), 1, "{ses}");
    assert!(
        ses.contains("event time 9223372036854775807 is too close"),
        "{ses}"
    );
}

/// A direct model of the join rules: every pair of records with equal,
/// non-null keys (and, windowed, the same tumbling window, neither late) is
/// emitted in the later record's epoch; a windowed record whose window fired
/// before its epoch is late. Returns (main lines, late lines) in sink order.
fn join_model(
    window: Option<i64>,
    ooo: i64,
    left: &[(Option<i64>, i64)],
    right: &[(Option<i64>, i64)],
) -> (String, String) {
    const E: i64 = 1000;
    let epochs = |recs: &[(Option<i64>, i64)]| -> Vec<(i64, Option<i64>, i64)> {
        let mut max_t = i64::MIN;
        recs.iter()
            .map(|&(k, t)| {
                max_t = max_t.max(t);
                ((max_t - ooo).div_euclid(E).max(0), k, t)
            })
            .collect()
    };
    let (l, r) = (epochs(left), epochs(right));
    let win = |t: i64| window.map(|w| t.div_euclid(w) * w);
    let late = |e: i64, t: i64| {
        window.is_some_and(|w| (win(t).unwrap_or(0) + w + E - 1).div_euclid(E) - 1 < e)
    };
    let mut out = Vec::new();
    for &(el, kl, tl) in &l {
        for &(er, kr, tr) in &r {
            if kl.is_some() && kl == kr && win(tl) == win(tr) && !late(el, tl) && !late(er, tr) {
                out.push((el.max(er), kl.unwrap_or(0), tl, tr));
            }
        }
    }
    out.sort();
    let mut lates = Vec::new();
    for (side, recs) in [("left", &l), ("right", &r)] {
        for &(e, k, t) in recs.iter() {
            if late(e, t) {
                let k = k.map_or("null".to_string(), |k| k.to_string());
                lates.push((e, side, format!("{{\"k\":{k},\"t\":{t}}}")));
            }
        }
    }
    lates.sort();
    (
        out.into_iter()
            .map(|(_, k, lt, rt)| format!("{{\"k\":{k},\"lt\":{lt},\"rt\":{rt}}}\n"))
            .collect(),
        lates
            .into_iter()
            .map(|(_, side, rec)| format!("{{\"side\":\"{side}\",\"record\":{rec}}}\n"))
            .collect(),
    )
}

/// Random two-sided inputs (null keys, out-of-order times, different
/// watermarks per side), unbounded and windowed, give the model's exact
/// bytes at 1 and 3 workers.
#[test]
fn joins_agree_with_a_model_on_random_inputs() {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let (mut pairs, mut lates) = (0, 0);
    for case in 0..16 {
        let window = [None, Some(1000i64), Some(2500)][case % 3];
        let ooo = [0i64, 800, 3000][usize::try_from(next(3)).unwrap_or(0)];
        let mut gen = |n: usize| -> Vec<(Option<i64>, i64)> {
            let mut t = 0i64;
            (0..n)
                .map(|_| {
                    t += next(400) as i64;
                    let jitter = if next(4) == 0 { next(3000) as i64 } else { 0 };
                    let k = match next(5) {
                        0 => None,
                        k => Some(k as i64),
                    };
                    (k, t - jitter)
                })
                .collect()
        };
        let (left, right) = (gen(30), gen(25));
        let (want, want_late) = join_model(window, ooo, &left, &right);
        pairs += want.lines().count();
        lates += want_late.lines().count();
        let text = |recs: &[(Option<i64>, i64)]| -> String {
            recs.iter()
                .map(|(k, t)| {
                    let k = k.map_or("null".to_string(), |k| k.to_string());
                    format!("{{\"k\":{k},\"t\":{t}}}\n")
                })
                .collect()
        };
        let win = window.map_or(String::new(), |w| {
            format!("\"window\": {{ \"tumbling_ms\": {w} }},")
        });
        let late_sink = if window.is_some() {
            ", \"late\": { \"type\": \"file\", \"input\": \"j.late\", \"path\": \"late.jsonl\" }"
        } else {
            ""
        };
        let graph = format!(
            r#"{{ "version": 1, "time": {{ "epoch_ms": 1000 }},
  "sources": {{
    "l": {{ "type": "file", "path": "l.jsonl", "schema": {{ "k": "int", "t": "timestamp" }}, "event_time": {{ "field": "t", "max_out_of_order_ms": {ooo} }} }},
    "r": {{ "type": "file", "path": "r.jsonl", "schema": {{ "k": "int", "t": "timestamp" }}, "event_time": {{ "field": "t", "max_out_of_order_ms": {ooo} }} }}
  }},
  "nodes": {{ "j": {{ "type": "join", "left": "l", "right": "r", "on": [["k", "k"]], {win}
                    "select": {{ "k": "left.k", "lt": "left.t", "rt": "right.t" }} }} }},
  "sinks": {{ "out": {{ "type": "file", "input": "j", "path": "out.jsonl" }} {late_sink} }} }}"#
        );
        for workers in ["1", "3"] {
            let dir = tempdir();
            write(dir.path(), "l.jsonl", &text(&left));
            write(dir.path(), "r.jsonl", &text(&right));
            write(dir.path(), "graph.json", &graph);
            run_ok(
                dir.path(),
                &["run", "graph.json", "--workers", workers, "--quiet"],
            );
            let got = read_text(&dir.path().join("out.jsonl"));
            assert_eq!(
                got, want,
                "case {case} window {window:?} ooo {ooo} workers {workers}"
            );
            if window.is_some() {
                let late = read_text(&dir.path().join("late.jsonl"));
                assert_eq!(
                    late, want_late,
                    "case {case} late, window {window:?} ooo {ooo} workers {workers}"
                );
            }
        }
    }
    assert!(pairs > 300 && lates > 10, "{pairs} pairs, {lates} late");
}

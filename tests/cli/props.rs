//! Property test: random stateless graphs (filter, map, route chains) over
//! random partitioned input give identical bytes at 1 and 3 workers, and equal
//! a straightforward single-threaded reference evaluation of the spec.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::json;

use lockstep::operators::encode::{Encoder, Format};
use lockstep::operators::expr;
use lockstep::operators::value::{encode_key, Schema, Type, Value};
use lockstep::{GraphBuilder, Registry, RunOptions};

const FILTERS: &[&str] = &[
    "k > 5",
    "s LIKE 'a%'",
    "v IS NULL OR v < 50",
    "k % 2 = 0 AND v > 10",
    "NOT (s IN ('ab', 'b'))",
];
const MAPS: &[[&str; 3]] = &[
    ["k + 1", "v * 2", "upper(s)"],
    ["v", "k", "s || 'x'"],
    [
        "k % 7",
        "CASE WHEN v > 10 THEN v ELSE -v END",
        "substr(s, 2)",
    ],
    ["100 / (k - 3)", "coalesce(v, 0)", "lower(s)"],
];
const ROUTES: &[&str] = &["a", "b", "unmatched"];
const E: i64 = 10;
const OOO: i64 = 5;

#[derive(Clone, Debug)]
enum Stage {
    Filter(usize),
    Map(usize),
    Route(usize),
}

fn stage() -> impl Strategy<Value = Stage> {
    prop_oneof![
        (0..FILTERS.len()).prop_map(Stage::Filter),
        (0..MAPS.len()).prop_map(Stage::Map),
        (0..ROUTES.len()).prop_map(Stage::Route),
    ]
}

#[derive(Clone, Debug)]
struct In {
    k: Option<i64>,
    v: Option<i64>,
    s: String,
    t: i64,
}

fn input() -> impl Strategy<Value = In> {
    (
        proptest::option::of(-5i64..30),
        proptest::option::of(-100i64..100),
        "[ab]{0,3}",
        0i64..200,
    )
        .prop_map(|(k, v, s, t)| In { k, v, s, t })
}

fn schema() -> Schema {
    Schema::new([
        ("k", Type::Int),
        ("v", Type::Int),
        ("s", Type::String),
        ("t", Type::Timestamp),
    ])
}

fn row(r: &In) -> Vec<Value> {
    vec![
        r.k.map_or(Value::Null, Value::Int),
        r.v.map_or(Value::Null, Value::Int),
        Value::str(&r.s),
        Value::Ts(r.t),
    ]
}

fn jsonl(r: &In) -> String {
    let mut s = String::new();
    Encoder::new(&schema(), Format::Jsonl).encode(&row(r), &mut s);
    s
}

/// The spec, evaluated record by record on one thread.
fn reference(stages: &[Stage], parts: &[Vec<In>]) -> String {
    let sch = schema();
    let mut out: Vec<(u64, Vec<u8>, String)> = Vec::new();
    let enc = Encoder::new(&sch, Format::Jsonl);
    for part in parts {
        let mut max_t = i64::MIN;
        'rec: for r in part {
            max_t = max_t.max(r.t);
            let epoch = u64::try_from((max_t - OOO).div_euclid(E).max(0)).expect("epoch");
            let mut cur = row(r);
            for st in stages {
                match st {
                    Stage::Filter(i) => {
                        let e = expr::compile(FILTERS[*i], &sch).expect("compile");
                        match e.eval_predicate(&cur) {
                            Ok(true) => {}
                            _ => continue 'rec,
                        }
                    }
                    Stage::Map(i) => {
                        let mut next = Vec::new();
                        for src in MAPS[*i].iter().copied().chain(["t"]) {
                            match expr::compile(src, &sch).expect("compile").eval(&cur) {
                                Ok(v) => next.push(v),
                                Err(_) => continue 'rec,
                            }
                        }
                        cur = next;
                    }
                    Stage::Route(i) => {
                        let a = expr::compile("k < 10", &sch)
                            .expect("a")
                            .eval_predicate(&cur);
                        let b = expr::compile("v > 20", &sch)
                            .expect("b")
                            .eval_predicate(&cur);
                        let port = match (a, b) {
                            (Err(_), _) => continue 'rec,
                            (Ok(true), _) => "a",
                            (Ok(false), Err(_)) => continue 'rec,
                            (Ok(false), Ok(true)) => "b",
                            (Ok(false), Ok(false)) => "unmatched",
                        };
                        if port != ROUTES[*i] {
                            continue 'rec;
                        }
                    }
                }
            }
            let mut key = Vec::new();
            for v in &cur {
                encode_key(v, &mut key);
            }
            let mut line = String::new();
            enc.encode(&cur, &mut line);
            out.push((epoch, key, line));
        }
    }
    out.sort();
    out.into_iter().map(|(_, _, l)| l).collect()
}

fn run_engine(stages: &[Stage], parts: &[Vec<In>], workers: usize) -> String {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut paths = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let name = format!("p{i}.jsonl");
        std::fs::write(
            tmp.path().join(&name),
            p.iter().map(jsonl).collect::<String>(),
        )
        .expect("write");
        paths.push(name);
    }
    let mut b = GraphBuilder::new("prop").epoch_ms(u64::try_from(E).expect("E")).base_dir(tmp.path()).source(
        "in",
        json!({"type": "file", "paths": paths, "schema": {"k": "int", "v": "int", "s": "string", "t": "timestamp"},
               "event_time": {"field": "t", "max_out_of_order_ms": OOO}}),
    );
    let mut prev = "in".to_string();
    for (n, st) in stages.iter().enumerate() {
        let name = format!("n{n}");
        let def = match st {
            Stage::Filter(i) => json!({"type": "filter", "input": prev, "where": FILTERS[*i]}),
            Stage::Map(i) => json!({"type": "map", "input": prev,
                "select": {"k": MAPS[*i][0], "v": MAPS[*i][1], "s": MAPS[*i][2], "t": "t"}}),
            Stage::Route(_) => {
                json!({"type": "route", "input": prev, "routes": {"a": "k < 10", "b": "v > 20"}})
            }
        };
        b = b.node(&name, def);
        prev = match st {
            Stage::Route(i) => format!("{name}.{}", ROUTES[*i]),
            _ => name,
        };
    }
    b = b.sink(
        "out",
        json!({"type": "file", "input": prev, "path": "out.jsonl"}),
    );
    let graph = b
        .build(&Registry::builtin())
        .unwrap_or_else(|e| panic!("{e}"));
    lockstep::run(Arc::new(graph), &RunOptions::workers(workers)).expect("run");
    std::fs::read_to_string(tmp.path().join("out.jsonl")).expect("out")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
    #[test]
    fn random_stateless_graphs_match_the_reference(
        stages in proptest::collection::vec(stage(), 1..4),
        parts in proptest::collection::vec(proptest::collection::vec(input(), 0..120), 1..4),
    ) {
        // Partitions are mostly in time order, with some disorder.
        let parts: Vec<Vec<In>> = parts.into_iter().map(|mut p| { p.sort_by_key(|r| r.t / 7); p }).collect();
        let want = reference(&stages, &parts);
        let one = run_engine(&stages, &parts, 1);
        let three = run_engine(&stages, &parts, 3);
        prop_assert_eq!(&one, &three);
        prop_assert_eq!(&one, &want);
    }
}

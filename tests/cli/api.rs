//! The Rust API example (`examples/custom_node.rs`) runs: a user node type is
//! registered, a graph using it is built with `GraphBuilder` and run.

#[allow(dead_code, missing_docs, unreachable_pub)]
mod custom_node {
    include!("../../examples/custom_node/clamp.rs");
}

use std::sync::Arc;

#[test]
fn custom_node_type_runs() {
    let tmp = super::common::tempdir();
    let out = custom_node::run_example(tmp.path());
    // -20, -5, 10, 25, 40 clamped to [0, 20], in epoch 0, sorted.
    assert_eq!(
        out,
        "{\"n\":0}\n{\"n\":0}\n{\"n\":10}\n{\"n\":20}\n{\"n\":20}\n"
    );
}

#[test]
fn a_taken_name_cannot_be_registered_and_unknown_types_are_errors() {
    let mut r = lockstep::Registry::builtin();
    r.register(Arc::new(custom_node::Clamp)).expect("new");
    let err = r.register(Arc::new(custom_node::Clamp)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "node type \"clamp\" is already registered; choose another name"
    );
    // Without registering, the same graph is an unknown node type.
    let g = lockstep::GraphBuilder::new("x")
        .source(
            "g",
            serde_json::json!({"type": "generator", "count": 1, "fields": {"n": {"sequence": {}}}}),
        )
        .node(
            "c",
            serde_json::json!({"type": "clamp", "input": "g", "field": "n", "min": 0, "max": 1}),
        )
        .sink("o", serde_json::json!({"type": "null", "input": "c"}))
        .build(&lockstep::Registry::builtin())
        .unwrap_err();
    assert!(g.to_string().contains("unknown node type \"clamp\""), "{g}");
}

#[test]
fn every_registry_example_parses_plans_and_builds() {
    // Each built-in node type's example, fed by the example source `in`,
    // validates and runs.
    for kind in lockstep::Registry::builtin().kinds() {
        let example: serde_json::Value =
            serde_json::from_str(kind.example()).expect("example is JSON");
        let schema = lockstep::operators::node::example_schema();
        let tmp = super::common::tempdir();
        std::fs::write(
            tmp.path().join("in.jsonl"),
            "{\"user\":\"ann\",\"url\":\"https://x\",\"ts\":5,\"bytes\":2048,\"score\":1.5}\n",
        )
        .expect("write");
        let schema_json: serde_json::Map<String, serde_json::Value> = schema
            .fields()
            .iter()
            .map(|f| {
                (
                    f.name.clone(),
                    serde_json::Value::String(f.ty.name().to_string()),
                )
            })
            .collect();
        let mut b = lockstep::GraphBuilder::new(kind.name())
            .epoch_ms(1000)
            .base_dir(tmp.path())
            .source("in", serde_json::json!({"type": "file", "path": "in.jsonl", "schema": schema_json, "event_time": {"field": "ts"}}))
            .node("n", example);
        let graph = b
            .clone()
            .sink("probe", serde_json::json!({"type": "null", "input": "n"}))
            .build(&lockstep::Registry::builtin());
        // Nodes without a main output (route) name a port instead.
        let graph = match graph {
            Ok(g) => g,
            Err(_) => {
                b = b.sink(
                    "probe",
                    serde_json::json!({"type": "null", "input": "n.unmatched"}),
                );
                b.build(&lockstep::Registry::builtin())
                    .unwrap_or_else(|e| panic!("{}: {e}", kind.name()))
            }
        };
        lockstep::run(Arc::new(graph), &lockstep::RunOptions::workers(2))
            .unwrap_or_else(|e| panic!("{}: {e}", kind.name()));
    }
}

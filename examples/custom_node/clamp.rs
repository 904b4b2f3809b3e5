// The `clamp` node type and a graph that uses it; `main.rs` runs it and
// `tests/cli/api.rs` includes this file to test it.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use lockstep::operators::config::{parse_config, Diag, Path};
use lockstep::operators::node::{stateless, Edge, Node, NodeConfig, NodeKind, PlanCtx, Port};
use lockstep::operators::value::{Schema, Type, Value};
use lockstep::{GraphBuilder, Registry, RunOptions};

/// The `clamp` node type.
#[derive(Debug)]
pub struct Clamp;

/// `clamp`'s config, exactly as the graph file holds it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClampConfig {
    input: String,
    field: String,
    min: i64,
    max: i64,
}

impl NodeKind for Clamp {
    fn name(&self) -> &'static str {
        "clamp"
    }
    fn summary(&self) -> &'static str {
        "Limits an int field to [min, max]."
    }
    fn example(&self) -> &'static str {
        r#"{"type": "clamp", "input": "in", "field": "bytes", "min": 0, "max": 1000}"#
    }
    fn parse(&self, config: serde_json::Value) -> Result<Box<dyn NodeConfig>, Vec<Diag>> {
        Ok(Box::new(parse_config::<ClampConfig>(config)?))
    }
}

impl NodeConfig for ClampConfig {
    fn inputs(&self) -> Vec<(Path, String)> {
        vec![(Path::of(&["input"]), self.input.clone())]
    }
    fn plan(&self, ctx: &PlanCtx<'_>) -> Result<Arc<dyn Node>, Vec<Diag>> {
        let schema = ctx.inputs[0].clone();
        let index = match schema.index_of(&self.field) {
            Some(i) if schema.fields()[i].ty == Type::Int => i,
            _ => return Err(vec![Diag::new(Path::of(&["field"]), format!("\"{}\" is not an int field of {}", self.field, schema.describe()))]),
        };
        if self.min > self.max {
            return Err(vec![Diag::new(Path::of(&["min"]), "min must not exceed max")]);
        }
        Ok(Arc::new(ClampNode { schema, index, min: self.min, max: self.max }))
    }
}

#[derive(Debug)]
struct ClampNode {
    schema: Schema,
    index: usize,
    min: i64,
    max: i64,
}

impl Node for ClampNode {
    fn outputs(&self) -> Vec<Port> {
        vec![Port::new("", self.schema.clone())]
    }
    fn build<'s>(&self, _scope: timely::dataflow::Scope<'s, u64>, mut inputs: Vec<Edge<'s>>) -> Vec<Edge<'s>> {
        let (index, min, max) = (self.index, self.min, self.max);
        stateless(inputs.remove(0), "clamp", 1, move |mut rec| {
            if let Value::Int(v) = rec.row[index] {
                rec.row[index] = Value::Int(v.clamp(min, max));
            }
            Some((0, rec))
        })
    }
}

/// Builds and runs a graph that uses `clamp`; returns the output file's text.
pub fn run_example(dir: &std::path::Path) -> String {
    let mut registry = Registry::builtin();
    registry.register(Arc::new(Clamp)).expect("clamp is a new name");
    let graph = GraphBuilder::new("clamped")
        .epoch_records(100)
        .base_dir(dir)
        .source("g", json!({"type": "generator", "count": 5, "fields": {"n": {"sequence": {"start": -20, "step": 15}}}}))
        .node("c", json!({"type": "clamp", "input": "g", "field": "n", "min": 0, "max": 20}))
        .sink("out", json!({"type": "file", "input": "c", "path": "clamped.jsonl"}))
        .build(&registry)
        .unwrap_or_else(|e| panic!("{e}"));
    let summary = lockstep::run(Arc::new(graph), &RunOptions::workers(2)).expect("run");
    eprintln!("{summary}");
    std::fs::read_to_string(dir.join("clamped.jsonl")).expect("output")
}


//! `map`: computes a new record from expressions over the input record.

use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;

use crate::config::{parse_config, Diag, Path};
use crate::encode::{Encoder, Format};
use crate::expr::{self, Expr};
use crate::node::{
    error_record, stateless, Edge, Node, NodeConfig, NodeKind, PlanCtx, Port, ERRORS_PORT,
};
use crate::value::{errors_schema, Rec, Schema};

/// The `map` node type.
#[derive(Debug)]
pub struct Map;

/// `map`'s config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapConfig {
    /// The upstream node or source.
    pub input: String,
    /// Output field name → expression, in output order.
    pub select: IndexMap<String, String>,
}

impl NodeKind for Map {
    fn name(&self) -> &'static str {
        "map"
    }
    fn summary(&self) -> &'static str {
        "Computes each output field from an expression over the input record; fields in `select` order."
    }
    fn example(&self) -> &'static str {
        r#"{"type": "map", "input": "in", "select": {"user": "upper(user)", "kb": "bytes / 1024", "secure": "url LIKE 'https://%'"}}"#
    }
    fn parse(&self, config: serde_json::Value) -> Result<Box<dyn NodeConfig>, Vec<Diag>> {
        Ok(Box::new(parse_config::<MapConfig>(config)?))
    }
}

/// Compiles `select`-style field expressions into an output schema.
pub(crate) fn compile_select(
    select: &IndexMap<String, String>,
    scope: &dyn expr::Resolve,
    at: &Path,
) -> Result<(Schema, Vec<Expr>), Vec<Diag>> {
    let mut diags = Vec::new();
    let mut fields = Vec::new();
    let mut exprs = Vec::new();
    if select.is_empty() {
        diags.push(Diag::new(
            at.clone(),
            "select is empty: name at least one output field",
        ));
    }
    for (name, src) in select {
        let path = at.key(name);
        if name.is_empty() {
            diags.push(Diag::new(
                path.clone(),
                "an output field needs a non-empty name",
            ));
        }
        match expr::compile(src, scope) {
            Ok(e) => match e.ty() {
                Some(t) => {
                    fields.push((name.clone(), t));
                    exprs.push(e);
                }
                None => diags.push(Diag::new(
                    path,
                    "the type of a bare NULL cannot be inferred; write CAST(NULL AS int) (or another type)",
                )),
            },
            Err(e) => diags.push(Diag::new(path, e.message)),
        }
    }
    if diags.is_empty() {
        Ok((Schema::new(fields), exprs))
    } else {
        Err(diags)
    }
}

impl NodeConfig for MapConfig {
    fn inputs(&self) -> Vec<(Path, String)> {
        vec![(Path::of(&["input"]), self.input.clone())]
    }
    fn plan(&self, ctx: &PlanCtx<'_>) -> Result<Arc<dyn Node>, Vec<Diag>> {
        let (schema, exprs) = compile_select(&self.select, &ctx.inputs[0], &Path::of(&["select"]))?;
        Ok(Arc::new(MapNode {
            name: ctx.node.to_string(),
            encoder: Encoder::new(&ctx.inputs[0], Format::Jsonl),
            schema,
            exprs,
        }))
    }
}

#[derive(Debug)]
struct MapNode {
    name: String,
    schema: Schema,
    encoder: Encoder,
    exprs: Vec<Expr>,
}

impl Node for MapNode {
    fn outputs(&self) -> Vec<Port> {
        vec![
            Port::new("", self.schema.clone()),
            Port::new(ERRORS_PORT, errors_schema()),
        ]
    }
    fn build<'s>(
        &self,
        _scope: timely::dataflow::Scope<'s, u64>,
        mut inputs: Vec<Edge<'s>>,
    ) -> Vec<Edge<'s>> {
        let exprs = self.exprs.clone();
        let name = self.name.clone();
        let encoder = self.encoder.clone();
        stateless(
            inputs.remove(0),
            &format!("map {}", self.name),
            2,
            move |rec| {
                let mut row = Vec::with_capacity(exprs.len());
                for e in &exprs {
                    match e.eval(&rec.row) {
                        Ok(v) => row.push(v),
                        Err(err) => {
                            let mut raw = String::new();
                            encoder.encode(&rec.row, &mut raw);
                            raw.pop();
                            return Some((1, error_record(&name, &err.reason, raw, rec.time)));
                        }
                    }
                }
                Some((
                    0,
                    Rec {
                        time: rec.time,
                        row,
                    },
                ))
            },
        )
    }
}

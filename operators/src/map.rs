//! `map`: computes a new record from expressions over the input record.

use std::sync::Arc;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::{parse_config, Diag, Path};
use crate::encode::{Encoder, Format};
use crate::expr::{self, Expr};
use crate::node::{
    rejected, stateless, Edge, Node, NodeConfig, NodeKind, PlanCtx, Port, ERRORS_PORT,
};
use crate::value::{errors_schema, Schema, Value};

/// The `map` node type.
#[derive(Debug)]
pub struct Map;

/// `map`'s config.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MapConfig {
    /// The upstream node or source.
    pub input: String,
    /// Output field name → expression, in output order.
    #[schemars(extend("minProperties" = 1))]
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

/// How one output field is made: moved out of the input row (a bare field
/// read by no other output), or evaluated.
#[derive(Clone, Copy, Debug)]
enum Slot {
    Move(usize),
    Eval(usize),
}

/// Bare field references used exactly once can be moved; everything else is
/// evaluated (before any move, so that every expression sees the whole row).
fn plan_slots(exprs: &[Expr]) -> Vec<Slot> {
    let mut uses = std::collections::BTreeMap::<usize, usize>::new();
    for e in exprs {
        if let Some(i) = e.as_field() {
            *uses.entry(i).or_default() += 1;
        }
    }
    exprs
        .iter()
        .enumerate()
        .map(|(k, e)| match e.as_field() {
            Some(i) if uses.get(&i) == Some(&1) => Slot::Move(i),
            _ => Slot::Eval(k),
        })
        .collect()
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
        let slots = plan_slots(&exprs);
        let name = self.name.clone();
        let encoder = self.encoder.clone();
        let mut computed: Vec<Value> = Vec::with_capacity(exprs.len());
        // The output row is built in a spare vector, which then takes the
        // input row's place; the input's allocation becomes the next spare.
        let mut spare: Vec<Value> = Vec::with_capacity(exprs.len());
        stateless(
            inputs.remove(0),
            &format!("map {}", self.name),
            2,
            move |mut rec| {
                // Evaluate first: an error leaves the input row whole for `errors`.
                computed.clear();
                for slot in &slots {
                    if let Slot::Eval(k) = *slot {
                        match exprs[k].eval(&rec.row) {
                            Ok(v) => computed.push(v),
                            Err(err) => {
                                return Some((1, rejected(&name, &err.reason, &encoder, &rec)))
                            }
                        }
                    }
                }
                let mut evaluated = computed.drain(..);
                spare.clear();
                for slot in &slots {
                    spare.push(match *slot {
                        Slot::Move(i) => std::mem::replace(&mut rec.row[i], Value::Null),
                        Slot::Eval(_) => evaluated.next().unwrap_or(Value::Null),
                    });
                }
                drop(evaluated);
                std::mem::swap(&mut rec.row, &mut spare);
                spare.clear();
                Some((0, rec))
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Type;

    #[test]
    fn bare_fields_used_once_are_moved_the_rest_evaluated() {
        let schema = Schema::new([("a", Type::Int), ("b", Type::String)]);
        let exprs: Vec<Expr> = ["a", "b", "a * 2", "b"]
            .iter()
            .map(|s| expr::compile(s, &schema).expect("compiles"))
            .collect();
        let slots = plan_slots(&exprs);
        // `a` is also read by `a * 2`, but only one output is the bare `a`:
        // evaluation happens before any move, so moving it is safe. `b` is
        // output twice, so both are evaluated (cloned).
        assert!(matches!(slots[0], Slot::Move(0)));
        assert!(matches!(slots[1], Slot::Eval(1)));
        assert!(matches!(slots[2], Slot::Eval(2)));
        assert!(matches!(slots[3], Slot::Eval(3)));
    }
}

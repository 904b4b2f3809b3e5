//! `union`: merges streams of one schema.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use timely::dataflow::operators::Concatenate;

use crate::config::{parse_config, Diag, Path};
use crate::node::{Edge, Node, NodeConfig, NodeKind, PlanCtx, Port};
use crate::value::Schema;

/// The `union` node type.
#[derive(Debug)]
pub struct Union;

/// `union`'s config.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnionConfig {
    /// The upstreams, all of one schema (same field names and types, in order).
    #[schemars(length(min = 2))]
    pub inputs: Vec<String>,
}

impl NodeKind for Union {
    fn name(&self) -> &'static str {
        "union"
    }
    fn summary(&self) -> &'static str {
        "Merges two or more streams that have the same schema (names, types and order)."
    }
    fn example(&self) -> &'static str {
        r#"{"type": "union", "inputs": ["in", "in"]}"#
    }
    fn parse(&self, config: serde_json::Value) -> Result<Box<dyn NodeConfig>, Vec<Diag>> {
        let c = parse_config::<UnionConfig>(config)?;
        if c.inputs.len() < 2 {
            return Err(vec![Diag::new(
                Path::of(&["inputs"]),
                format!(
                    "union needs at least 2 inputs, got {}; use the input directly instead",
                    c.inputs.len()
                ),
            )]);
        }
        Ok(Box::new(c))
    }
}

impl NodeConfig for UnionConfig {
    fn inputs(&self) -> Vec<(Path, String)> {
        self.inputs
            .iter()
            .enumerate()
            .map(|(i, n)| (Path::of(&["inputs"]).index(i), n.clone()))
            .collect()
    }
    fn plan(&self, ctx: &PlanCtx<'_>) -> Result<Arc<dyn Node>, Vec<Diag>> {
        let first = &ctx.inputs[0];
        let diags: Vec<Diag> = ctx
            .inputs
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, s)| *s != first)
            .map(|(i, s)| {
                Diag::new(
                    Path::of(&["inputs"]).index(i),
                    format!(
                        "\"{}\" has schema {}, but \"{}\" has {}; a union's inputs need the same fields and types in the same order (use a map to align them)",
                        self.inputs[i],
                        s.describe(),
                        self.inputs[0],
                        first.describe()
                    ),
                )
            })
            .collect();
        if !diags.is_empty() {
            return Err(diags);
        }
        Ok(Arc::new(UnionNode {
            schema: first.clone(),
        }))
    }
}

#[derive(Debug)]
struct UnionNode {
    schema: Schema,
}

impl Node for UnionNode {
    fn outputs(&self) -> Vec<Port> {
        vec![Port::new("", self.schema.clone())]
    }
    fn build<'s>(
        &self,
        scope: timely::dataflow::Scope<'s, u64>,
        inputs: Vec<Edge<'s>>,
    ) -> Vec<Edge<'s>> {
        vec![scope.concatenate(inputs)]
    }
}

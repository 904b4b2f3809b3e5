//! `filter`: keeps the records for which a bool expression is true.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::{parse_config, Diag, Path};
use crate::encode::{Encoder, Format};
use crate::expr::{self, Expr};
use crate::node::{
    rejected, stateless, Edge, Node, NodeConfig, NodeKind, PlanCtx, Port, ERRORS_PORT,
};
use crate::value::{errors_schema, Schema, Type};

/// The `filter` node type.
#[derive(Debug)]
pub struct Filter;

/// `filter`'s config.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// The upstream node or source.
    pub input: String,
    /// A bool expression; records for which it is NULL or false are dropped.
    #[serde(rename = "where")]
    pub condition: String,
}

impl NodeKind for Filter {
    fn name(&self) -> &'static str {
        "filter"
    }
    fn summary(&self) -> &'static str {
        "Keeps the records for which `where` is true (NULL counts as false)."
    }
    fn example(&self) -> &'static str {
        r#"{"type": "filter", "input": "in", "where": "bytes > 1000 AND url LIKE 'https://%'"}"#
    }
    fn parse(&self, config: serde_json::Value) -> Result<Box<dyn NodeConfig>, Vec<Diag>> {
        Ok(Box::new(parse_config::<FilterConfig>(config)?))
    }
}

/// Compiles a condition that must be of type bool.
pub(crate) fn compile_condition(
    src: &str,
    schema: &Schema,
    path: Path,
    what: &str,
) -> Result<Expr, Diag> {
    compile_condition_in(src, schema, path, what)
}

/// Compiles a condition that must be of type bool, in any scope.
pub(crate) fn compile_condition_in(
    src: &str,
    scope: &dyn expr::Resolve,
    path: Path,
    what: &str,
) -> Result<Expr, Diag> {
    let e = expr::compile(src, scope).map_err(|e| Diag::new(path.clone(), e.message))?;
    match e.ty() {
        None | Some(Type::Bool) => Ok(e),
        Some(t) => Err(Diag::new(
            path,
            format!("{what} must be a bool expression, but this one is {t}"),
        )),
    }
}

impl NodeConfig for FilterConfig {
    fn inputs(&self) -> Vec<(Path, String)> {
        vec![(Path::of(&["input"]), self.input.clone())]
    }
    fn plan(&self, ctx: &PlanCtx<'_>) -> Result<Arc<dyn Node>, Vec<Diag>> {
        let schema = ctx.inputs[0].clone();
        let cond = compile_condition(&self.condition, &schema, Path::of(&["where"]), "where")
            .map_err(|d| vec![d])?;
        Ok(Arc::new(FilterNode {
            name: ctx.node.to_string(),
            encoder: Encoder::new(&schema, Format::Jsonl),
            schema,
            cond,
        }))
    }
}

#[derive(Debug)]
struct FilterNode {
    name: String,
    schema: Schema,
    encoder: Encoder,
    cond: Expr,
}

impl Node for FilterNode {
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
        let cond = self.cond.clone();
        let name = self.name.clone();
        let encoder = self.encoder.clone();
        let input = inputs.remove(0);
        stateless(
            input,
            &format!("filter {}", self.name),
            2,
            move |rec| match cond.eval_predicate(&rec.row) {
                Ok(true) => Some((0, rec)),
                Ok(false) => None,
                Err(e) => Some((1, rejected(&name, &e.reason, &encoder, &rec))),
            },
        )
    }
}

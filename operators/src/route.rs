//! `route`: sends each record to the first named output whose condition holds.

use std::sync::Arc;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::{parse_config, Diag, Path};
use crate::encode::{Encoder, Format};
use crate::expr::Expr;
use crate::filter::compile_condition;
use crate::node::{
    rejected, stateless, Edge, Node, NodeConfig, NodeKind, PlanCtx, Port, ERRORS_PORT,
};
use crate::value::{errors_schema, Schema};

/// The `route` node type.
#[derive(Debug)]
pub struct Route;

/// The port of records no route matched.
pub const UNMATCHED_PORT: &str = "unmatched";

/// `route`'s config.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The upstream node or source.
    pub input: String,
    /// Output name → bool expression, tried in order; the first true wins.
    #[schemars(extend("minProperties" = 1))]
    pub routes: IndexMap<String, String>,
}

impl NodeKind for Route {
    fn name(&self) -> &'static str {
        "route"
    }
    fn summary(&self) -> &'static str {
        "Sends each record to `node.<name>` of the first route whose condition is true, else to `node.unmatched`."
    }
    fn example(&self) -> &'static str {
        r#"{"type": "route", "input": "in", "routes": {"big": "bytes >= 1000", "secure": "url LIKE 'https://%'"}}"#
    }
    fn parse(&self, config: serde_json::Value) -> Result<Box<dyn NodeConfig>, Vec<Diag>> {
        Ok(Box::new(parse_config::<RouteConfig>(config)?))
    }
}

impl NodeConfig for RouteConfig {
    fn inputs(&self) -> Vec<(Path, String)> {
        vec![(Path::of(&["input"]), self.input.clone())]
    }
    fn plan(&self, ctx: &PlanCtx<'_>) -> Result<Arc<dyn Node>, Vec<Diag>> {
        let schema = ctx.inputs[0].clone();
        let mut diags = Vec::new();
        let mut conds = Vec::new();
        if self.routes.is_empty() {
            diags.push(Diag::new(
                Path::of(&["routes"]),
                "routes is empty: name at least one route",
            ));
        }
        for (name, src) in &self.routes {
            let path = Path::of(&["routes", name]);
            if name.is_empty()
                || name == UNMATCHED_PORT
                || name == ERRORS_PORT
                || name.contains('.')
            {
                diags.push(Diag::new(
                    path.clone(),
                    format!("\"{name}\" cannot name a route (reserved, empty or contains '.'); choose another name"),
                ));
            }
            match compile_condition(src, &schema, path, "a route condition") {
                Ok(e) => conds.push(e),
                Err(d) => diags.push(d),
            }
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        Ok(Arc::new(RouteNode {
            name: ctx.node.to_string(),
            routes: self.routes.keys().cloned().collect(),
            encoder: Encoder::new(&schema, Format::Jsonl),
            schema,
            conds,
        }))
    }
}

#[derive(Debug)]
struct RouteNode {
    name: String,
    routes: Vec<String>,
    schema: Schema,
    encoder: Encoder,
    conds: Vec<Expr>,
}

impl Node for RouteNode {
    fn outputs(&self) -> Vec<Port> {
        let mut ports: Vec<Port> = self
            .routes
            .iter()
            .map(|r| Port::new(r.clone(), self.schema.clone()))
            .collect();
        ports.push(Port::new(UNMATCHED_PORT, self.schema.clone()));
        ports.push(Port::new(ERRORS_PORT, errors_schema()));
        ports
    }
    fn build<'s>(
        &self,
        _scope: timely::dataflow::Scope<'s, u64>,
        mut inputs: Vec<Edge<'s>>,
    ) -> Vec<Edge<'s>> {
        let conds = self.conds.clone();
        let name = self.name.clone();
        let encoder = self.encoder.clone();
        let n = conds.len();
        stateless(
            inputs.remove(0),
            &format!("route {}", self.name),
            n + 2,
            move |rec| {
                for (i, c) in conds.iter().enumerate() {
                    match c.eval_predicate(&rec.row) {
                        Ok(true) => return Some((i, rec)),
                        Ok(false) => {}
                        Err(e) => return Some((n + 1, rejected(&name, &e.reason, &encoder, &rec))),
                    }
                }
                Some((n, rec))
            },
        )
    }
}

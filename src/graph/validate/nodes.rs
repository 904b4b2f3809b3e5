//! Nodes: parse each node's type and config, resolve its inputs to
//! producers, and plan it against the schemas of those inputs.

use indexmap::IndexMap;
use serde_json::Value as Json;

use lockstep_operators::config::{parse_config, Path};
use lockstep_operators::node::{NodeConfig, PlanCtx, Port, TimeMode, ERRORS_PORT};
use lockstep_operators::registry::Registry;
use lockstep_operators::suggest;
use lockstep_operators::value::Schema;

use super::super::model::{NodeDef, PortRef, Producer, SourceDef};
use super::super::spec::OnError;
use super::top::Sections;
use super::{find_port, quoted, Ctx};

/// A node as written, before its inputs are known to exist.
pub(super) struct ParsedNode {
    /// Its name in `nodes`.
    pub name: String,
    /// Its `type`; empty when missing or not a string.
    pub type_name: String,
    /// Its `on_error`.
    pub on_error: OnError,
    /// Its config; `None` when the type is unknown or the config is invalid.
    pub config: Option<Box<dyn NodeConfig>>,
}

/// What an input reference names: a producer and, optionally, one of its
/// ports (`name.port`).
#[derive(Clone)]
pub(super) struct Target {
    /// The source or node.
    pub producer: Producer,
    /// The port after the `.`; `None` for the main output.
    pub port: Option<String>,
}

/// One input of a node.
pub(super) struct InputRef {
    /// Where the reference is written.
    pub path: Path,
    /// What it names; `None` when it names no source or node.
    pub target: Option<Target>,
    /// As the user wrote it.
    pub text: String,
}

/// Parses every node in `nodes`, in file order.
pub(super) fn parse_nodes(
    nodes: &IndexMap<String, Json>,
    registry: &Registry,
    cx: &mut Ctx<'_>,
) -> Vec<ParsedNode> {
    nodes
        .iter()
        .map(|(name, v)| parse_node(name, v, registry, cx))
        .collect()
}

fn parse_node(name: &str, v: &Json, registry: &Registry, cx: &mut Ctx<'_>) -> ParsedNode {
    let at = Path::of(&["nodes", name]);
    let Json::Object(obj) = v else {
        cx.err(at, "a node is a JSON object with a \"type\"");
        return ParsedNode {
            name: name.to_string(),
            type_name: String::new(),
            on_error: OnError::Route,
            config: None,
        };
    };
    let mut obj = obj.clone();
    let type_name = match obj.shift_remove("type") {
        Some(Json::String(t)) => t,
        Some(_) => {
            cx.err(at.key("type"), "type must be a string");
            String::new()
        }
        None => {
            cx.err(
                at.clone(),
                format!(
                    "missing field \"type\"; one of {}",
                    quoted(&registry.names())
                ),
            );
            String::new()
        }
    };
    let on_error = match obj.shift_remove("on_error") {
        None => OnError::Route,
        Some(v) => parse_config::<OnError>(v).unwrap_or_else(|d| {
            cx.extend(&at.key("on_error"), d);
            OnError::Route
        }),
    };
    let config = if type_name.is_empty() {
        None
    } else {
        parse_node_config(&type_name, Json::Object(obj), registry, &at, cx)
    };
    ParsedNode {
        name: name.to_string(),
        type_name,
        on_error,
        config,
    }
}

/// Parses the config of a node of type `ty` (the node's object without
/// `type` and `on_error`).
fn parse_node_config(
    ty: &str,
    rest: Json,
    registry: &Registry,
    at: &Path,
    cx: &mut Ctx<'_>,
) -> Option<Box<dyn NodeConfig>> {
    let Some(kind) = registry.get(ty) else {
        let names = registry.names();
        let hint = suggest::hint(ty, names.iter().copied());
        cx.err(
            at.key("type"),
            format!(
                "unknown node type \"{ty}\"{hint}; known types: {}",
                quoted(&names)
            ),
        );
        return None;
    };
    match kind.parse(rest) {
        Ok(c) => Some(c),
        Err(d) => {
            cx.extend(at, d);
            None
        }
    }
}

/// Resolves input references (`name` or `name.port`) to producers.
pub(super) struct Resolver<'a> {
    sections: &'a Sections,
}

impl<'a> Resolver<'a> {
    pub fn new(sections: &'a Sections) -> Self {
        Resolver { sections }
    }

    /// The source or node that `text` names, if any.
    pub fn resolve(&self, text: &str) -> Option<Target> {
        let (base, port) = match text.split_once('.') {
            Some((b, p)) => (b, Some(p.to_string())),
            None => (text, None),
        };
        let producer = if let Some(i) = self.sections.sources.get_index_of(base) {
            Producer::Source(i)
        } else {
            Producer::Node(self.sections.nodes.get_index_of(base)?)
        };
        Some(Target { producer, port })
    }

    /// Why `text`, which [`Resolver::resolve`] did not resolve, names no
    /// producer.
    pub fn unknown_ref(&self, text: &str) -> String {
        let base = text.split('.').next().unwrap_or(text);
        let producer_names = self
            .sections
            .sources
            .keys()
            .chain(self.sections.nodes.keys());
        let hint = suggest::hint(base, producer_names.map(String::as_str));
        if self.sections.sinks.contains_key(base) {
            format!("\"{base}\" is a sink; a sink cannot be an input")
        } else {
            format!("\"{text}\" matches no source or node{hint}")
        }
    }
}

/// Resolves the inputs of every node whose config parsed; reports those that
/// name no source or node.
pub(super) fn resolve_inputs(
    parsed: &[ParsedNode],
    resolver: &Resolver<'_>,
    cx: &mut Ctx<'_>,
) -> Vec<Vec<InputRef>> {
    let mut node_inputs = Vec::with_capacity(parsed.len());
    for node in parsed {
        let at = Path::of(&["nodes", &node.name]);
        let mut ins = Vec::new();
        if let Some(c) = &node.config {
            for (p, text) in c.inputs() {
                let target = resolver.resolve(&text);
                if target.is_none() {
                    cx.err(p.under(&at), resolver.unknown_ref(&text));
                }
                ins.push(InputRef {
                    path: p.under(&at),
                    target,
                    text,
                });
            }
        }
        node_inputs.push(ins);
    }
    node_inputs
}

/// The sources and nodes that validated, by index; `None` where one did not.
pub(super) struct Planned {
    /// By index in `sources`.
    pub sources: Vec<Option<SourceDef>>,
    /// By index in `nodes`.
    pub nodes: Vec<Option<NodeDef>>,
}

impl Planned {
    /// The output ports of `p`, if it validated.
    pub fn ports_of(&self, p: Producer) -> Option<&[Port]> {
        match p {
            Producer::Source(i) => self.sources[i].as_ref().map(|s| s.ports.as_slice()),
            Producer::Node(i) => self.nodes[i].as_ref().map(|n| n.ports.as_slice()),
        }
    }

    /// Plans node `node` against the ports it reads.
    fn plan_node(
        &self,
        node: &ParsedNode,
        inputs: &[InputRef],
        time: TimeMode,
        cx: &mut Ctx<'_>,
    ) -> Option<NodeDef> {
        let config = node.config.as_ref()?;
        let (schemas, refs) = self.connect(inputs, cx)?;
        let at = Path::of(&["nodes", &node.name]);
        let ctx = PlanCtx {
            node: &node.name,
            inputs: &schemas,
            time,
        };
        match config.plan(&ctx) {
            Ok(built) => {
                let ports = built.outputs();
                if node.on_error == OnError::Fail && !ports.iter().any(|p| p.name == ERRORS_PORT) {
                    cx.err(at.key("on_error"), format!("node type \"{}\" has no errors output, so on_error does not apply; remove it", node.type_name));
                }
                Some(NodeDef {
                    name: node.name.clone(),
                    type_name: node.type_name.clone(),
                    node: built,
                    inputs: refs,
                    ports,
                    on_error: node.on_error,
                })
            }
            Err(d) => {
                cx.extend(&at, d);
                None
            }
        }
    }

    /// The schemas and ports a node's inputs read, or `None` when any input
    /// cannot be connected. Every input is checked, so each missing port is
    /// reported.
    fn connect(
        &self,
        inputs: &[InputRef],
        cx: &mut Ctx<'_>,
    ) -> Option<(Vec<Schema>, Vec<PortRef>)> {
        let mut schemas = Vec::new();
        let mut refs = Vec::new();
        let mut ok = true;
        for input in inputs {
            let Some(target) = &input.target else {
                ok = false;
                continue;
            };
            let Some(ports) = self.ports_of(target.producer) else {
                ok = false;
                continue;
            };
            match find_port(ports, target.port.as_deref(), &input.text) {
                Ok(k) => {
                    schemas.push(ports[k].schema.clone());
                    refs.push(PortRef {
                        producer: target.producer,
                        port: k,
                        text: input.text.clone(),
                    });
                }
                Err(m) => {
                    cx.err(input.path.clone(), m);
                    ok = false;
                }
            }
        }
        ok.then_some((schemas, refs))
    }
}

/// Plans the nodes in topological `order`, so that each node's inputs are
/// planned before it. Nodes off the order (on or behind a cycle) stay
/// unplanned.
pub(super) fn plan_nodes(
    sources: Vec<Option<SourceDef>>,
    parsed: &[ParsedNode],
    node_inputs: &[Vec<InputRef>],
    order: &[usize],
    time: TimeMode,
    cx: &mut Ctx<'_>,
) -> Planned {
    let mut planned = Planned {
        sources,
        nodes: (0..parsed.len()).map(|_| None).collect(),
    };
    for &i in order {
        planned.nodes[i] = planned.plan_node(&parsed[i], &node_inputs[i], time, cx);
    }
    planned
}

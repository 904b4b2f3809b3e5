//! From graph text to a validated [`Graph`]: parse, resolve names, order
//! nodes, type-check every node against its inputs, and collect every problem
//! with its JSON path and line:column, in file order.
//!
//! [`validate`] parses the JSON and hands the value to `check`, which runs
//! the steps below in order; each step records problems in a shared [`Ctx`]
//! and carries on, so one run reports every problem it can find.
//!
//! - [`top`]: top-level fields, `time`, `checkpoint`, the three sections and
//!   the shared namespace of names.
//! - [`sources`]: each source's type, files, schema and event time.
//! - [`nodes`]: each node's type and config, its inputs resolved to
//!   producers, then planning in topological order.
//! - [`order`]: the topological order and the cycles that prevent one.
//! - [`sinks`]: each sink's input, fields and output files.
//! - [`usage`]: unused or pointless outputs, and files written twice or
//!   overwriting an input.

mod nodes;
mod order;
mod sinks;
mod sources;
mod top;
mod usage;

use std::path::Path as FsPath;

use serde_json::Value as Json;

use lockstep_operators::config::{Diag, Path, Seg};
use lockstep_operators::node::{Port, TimeMode};
use lockstep_operators::registry::Registry;
use lockstep_operators::suggest;

use super::model::{Diagnostic, Graph, GraphError, Severity, SourceDef};
use super::pos::{LineCol, PosIndex};

pub use sinks::partition_path;

/// Collects diagnostics while validating.
struct Ctx<'a> {
    diags: Vec<Diag>,
    warnings: Vec<Diag>,
    base_dir: &'a FsPath,
}

impl Ctx<'_> {
    fn err(&mut self, path: Path, msg: impl Into<String>) {
        self.diags.push(Diag::new(path, msg));
    }
    fn extend(&mut self, prefix: &Path, diags: Vec<Diag>) {
        self.diags
            .extend(diags.into_iter().map(|d| d.under(prefix)));
    }
}

fn render(diags: Vec<Diag>, sev: Severity, file: &str, pos: &PosIndex) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = diags
        .into_iter()
        .map(|d| Diagnostic {
            severity: sev,
            file: file.to_string(),
            at: pos.find(&d.path),
            path: d.path,
            message: d.message,
        })
        .collect();
    out.sort_by(|a, b| (a.at, &a.path, &a.message).cmp(&(b.at, &b.path, &b.message)));
    out.dedup();
    out
}

/// Validates graph text. `file` names the graph in messages; relative paths
/// resolve against `base_dir`.
///
/// # Errors
/// Every problem found, in file order.
pub fn validate(
    text: &str,
    file: &str,
    base_dir: &FsPath,
    registry: &Registry,
) -> Result<Graph, GraphError> {
    let root = parse_json(text, file)?;
    let pos = PosIndex::build(text);
    let mut cx = Ctx {
        diags: Vec::new(),
        warnings: Vec::new(),
        base_dir,
    };
    report_duplicate_keys(&pos, &mut cx);
    let graph = check(&root, file, registry, &mut cx);
    let warnings = render(cx.warnings, Severity::Warning, file, &pos);
    if !cx.diags.is_empty() {
        return Err(GraphError {
            diagnostics: render(cx.diags, Severity::Error, file, &pos),
        });
    }
    match graph {
        Some(mut g) => {
            g.warnings = warnings;
            Ok(g)
        }
        None => Err(GraphError {
            diagnostics: render(
                vec![Diag::new(Path::root(), "invalid graph")],
                Severity::Error,
                file,
                &pos,
            ),
        }),
    }
}

/// Step 1, syntax: the text as one JSON value, or the one error that stopped
/// the parser.
fn parse_json(text: &str, file: &str) -> Result<Json, GraphError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed: Result<Json, (Path, serde_json::Error)> = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| {
            (
                lockstep_operators::config::convert_path(e.path()),
                e.into_inner(),
            )
        })
        .and_then(|v| de.end().map(|()| v).map_err(|e| (Path::root(), e)));
    parsed.map_err(|(path, inner)| {
        let msg = lockstep_operators::config::json_error_text(&inner);
        let empty = text.trim().is_empty();
        GraphError {
            diagnostics: vec![Diagnostic {
                severity: Severity::Error,
                file: file.to_string(),
                at: Some(LineCol {
                    line: inner.line().max(1),
                    col: inner.column().max(1),
                }),
                path,
                message: if empty {
                    "the file is empty; a graph is one JSON object (see docs/graph-format.md)"
                        .to_string()
                } else {
                    format!("invalid JSON: {msg}")
                },
            }],
        }
    })
}

/// Keys that appear twice in one object: JSON parsers keep the last, which
/// silently drops the first.
fn report_duplicate_keys(pos: &PosIndex, cx: &mut Ctx<'_>) {
    for (path, _) in &pos.duplicates {
        let key = match path.0.last() {
            Some(Seg::Key(k)) => k.clone(),
            _ => String::new(),
        };
        cx.err(path.clone(), format!("duplicate key \"{key}\": each name may appear once in an object; rename or remove one"));
    }
}

/// Step 2, semantics: every check on the parsed value, in order. Returns the
/// graph only when no check failed.
fn check(root: &Json, file: &str, registry: &Registry, cx: &mut Ctx<'_>) -> Option<Graph> {
    let Json::Object(top) = root else {
        cx.err(Path::root(), "a graph is a JSON object with \"version\", \"time\", \"sources\", \"nodes\" and \"sinks\"");
        return None;
    };
    let header = top::check_header(top, file, cx);
    let sections = top::Sections::read(top, cx);
    let duplicated = top::check_names(&sections, cx);

    let time_mode = header.time.unwrap_or(TimeMode::EpochRecords(1));
    let source_defs: Vec<Option<SourceDef>> = sections
        .sources
        .iter()
        .map(|(name, v)| sources::check_source(name, v, time_mode, cx))
        .collect();
    let parsed = nodes::parse_nodes(&sections.nodes, registry, cx);
    let resolver = nodes::Resolver::new(&sections);
    let node_inputs = nodes::resolve_inputs(&parsed, &resolver, cx);
    let order = order::topological_order(&parsed, &node_inputs, cx);
    let plan = nodes::plan_nodes(source_defs, &parsed, &node_inputs, &order, time_mode, cx);
    let sink_defs: Vec<_> = sections
        .sinks
        .iter()
        .filter_map(|(name, v)| sinks::check_sink(name, v, &resolver, &plan, cx))
        .collect();

    usage::check_usage(
        &sections,
        &parsed,
        &node_inputs,
        &plan,
        &resolver,
        &duplicated,
        cx,
    );
    usage::check_output_paths(&sink_defs, &plan.sources, cx);

    if !cx.diags.is_empty() {
        return None;
    }
    let mut shape = vec![(
        "time".to_string(),
        String::new(),
        fingerprint(top.get("time").unwrap_or(&Json::Null)),
    )];
    for (kind, section) in [
        ("source", &sections.sources),
        ("node", &sections.nodes),
        ("sink", &sections.sinks),
    ] {
        for (name, def) in section {
            shape.push((kind.to_string(), name.clone(), fingerprint(def)));
        }
    }
    Some(Graph {
        shape,
        name: header.name,
        time: header.time?,
        checkpoint_every: header.checkpoint_every,
        sources: plan.sources.into_iter().flatten().collect(),
        nodes: plan.nodes.into_iter().flatten().collect(),
        order,
        sinks: sink_defs,
        warnings: Vec::new(),
    })
}

/// The fingerprint of a definition: the key hash of its canonical JSON text
/// (object keys sorted), as 16 hex digits. Checkpoints record one per
/// source, node and sink (and `time`), so a restart with a changed graph
/// can say what changed.
fn fingerprint(def: &Json) -> String {
    fn canonical(v: &Json, out: &mut String) {
        match v {
            Json::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Json::String(k.clone()).to_string());
                    out.push(':');
                    canonical(&m[k], out);
                }
                out.push('}');
            }
            Json::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canonical(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut text = String::new();
    canonical(def, &mut text);
    format!("{:016x}", lockstep_state::key_hash(text.as_bytes()))
}

/// `"a", "b", "c"`.
fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The index of the port named `port` (the main output when `None`) among
/// `ports`, or a message saying why there is none; `text` is the reference
/// as the user wrote it.
///
/// # Errors
/// The message when there is no such port.
pub fn find_port(ports: &[Port], port: Option<&str>, text: &str) -> Result<usize, String> {
    let want = port.unwrap_or("");
    if let Some(k) = ports.iter().position(|p| p.name == want) {
        return Ok(k);
    }
    let base = text.split('.').next().unwrap_or(text);
    let names: Vec<String> = ports
        .iter()
        .filter(|p| !p.name.is_empty())
        .map(|p| format!("{base}.{}", p.name))
        .collect();
    if want.is_empty() {
        return Err(format!(
            "\"{base}\" has no main output; name one of its outputs: {}",
            names.join(", ")
        ));
    }
    let hint = suggest::hint(text, names.iter().map(String::as_str));
    Err(format!(
        "\"{base}\" has no output \"{want}\"{hint}; its outputs: {}",
        names.join(", ")
    ))
}

/// Splits a source or sink definition into its `type` and the rest of its
/// config. `what` names the definition ("a source"), `types` the valid types.
fn split_type(
    v: &Json,
    at: &Path,
    what: &str,
    types: &[&str],
    cx: &mut Ctx<'_>,
) -> Option<(String, Json)> {
    let Json::Object(obj) = v else {
        cx.err(
            at.clone(),
            format!("{what} is a JSON object with a \"type\""),
        );
        return None;
    };
    let mut obj = obj.clone();
    match obj.shift_remove("type") {
        Some(Json::String(t)) => Some((t, Json::Object(obj))),
        _ => {
            cx.err(
                at.clone(),
                format!(
                    "missing field \"type\" (a string); one of {}",
                    quoted(types)
                ),
            );
            None
        }
    }
}

//! From graph text to a validated [`Graph`]: parse, resolve names, order
//! nodes, type-check every node against its inputs, and collect every problem
//! with its JSON path and line:column, in file order.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};

use indexmap::IndexMap;
use serde_json::Value as Json;

use lockstep_operators::config::{parse_config, Diag, Path};
use lockstep_operators::node::{NodeConfig, PlanCtx, Port, TimeMode, ERRORS_PORT};
use lockstep_operators::registry::Registry;
use lockstep_operators::suggest;
use lockstep_operators::value::{errors_schema, Schema, Type};

use super::model::{
    Diagnostic, Graph, GraphError, NodeDef, PortRef, Producer, Severity, SinkDef, SinkKind,
    SourceDef, SourceKind,
};
use super::pos::{LineCol, PosIndex};
use super::spec::{
    CheckpointSpec, EventTimeSpec, FieldGen, FileSinkSpec, FileSourceSpec, GeneratorSpec,
    NexmarkSpec, NullSinkSpec, OnError, StdinSourceSpec, StdoutSinkSpec, TimeSpec,
};
use crate::source::nexmark_schema;

const TOP_FIELDS: &[&str] = &[
    "version",
    "name",
    "time",
    "checkpoint",
    "sources",
    "nodes",
    "sinks",
];
const SOURCE_TYPES: &[&str] = &["file", "stdin", "generator", "nexmark", "kafka"];
const SINK_TYPES: &[&str] = &["file", "stdout", "null", "kafka"];

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
    // 1. Syntax.
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed: Result<Json, (Path, serde_json::Error)> = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| (convert_spte_path(e.path()), e.into_inner()))
        .and_then(|v| de.end().map(|()| v).map_err(|e| (Path::root(), e)));
    let root = match parsed {
        Ok(v) => v,
        Err((path, inner)) => {
            let msg = inner.to_string();
            let msg = msg
                .split(" at line ")
                .next()
                .unwrap_or(&msg)
                .replace('`', "\"");
            let empty = text.trim().is_empty();
            return Err(GraphError {
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
            });
        }
    };
    let pos = PosIndex::build(text);
    let mut cx = Ctx {
        diags: Vec::new(),
        warnings: Vec::new(),
        base_dir,
    };
    for (path, _) in &pos.duplicates {
        let key = match path.0.last() {
            Some(lockstep_operators::config::Seg::Key(k)) => k.clone(),
            _ => String::new(),
        };
        cx.err(path.clone(), format!("duplicate key \"{key}\": each name may appear once in an object; rename or remove one"));
    }
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

fn check(root: &Json, file: &str, registry: &Registry, cx: &mut Ctx<'_>) -> Option<Graph> {
    let Json::Object(top) = root else {
        cx.err(Path::root(), "a graph is a JSON object with \"version\", \"time\", \"sources\", \"nodes\" and \"sinks\"");
        return None;
    };
    for key in top.keys() {
        if !TOP_FIELDS.contains(&key.as_str()) {
            let hint = suggest::hint(key, TOP_FIELDS.iter().copied());
            cx.err(
                Path::of(&[key]),
                format!(
                    "unknown field \"{key}\"{hint}; expected one of {}",
                    quoted(TOP_FIELDS)
                ),
            );
        }
    }
    match top.get("version") {
        None => cx.err(
            Path::root(),
            "missing field \"version\"; add \"version\": 1",
        ),
        Some(Json::Number(n)) if n.as_u64() == Some(1) => {}
        Some(v) => cx.err(
            Path::of(&["version"]),
            format!("unsupported version {v}; this lockstep reads version 1"),
        ),
    }
    let name = match top.get("name") {
        None => FsPath::new(file)
            .file_stem()
            .map_or_else(|| "job".to_string(), |s| s.to_string_lossy().into_owned()),
        Some(Json::String(s)) => s.clone(),
        Some(_) => {
            cx.err(Path::of(&["name"]), "name must be a string");
            String::new()
        }
    };
    let time = check_time(top.get("time"), cx);
    let checkpoint_every =
        top.get("checkpoint")
            .and_then(|v| match parse_config::<CheckpointSpec>(v.clone()) {
                Ok(c) if c.every_epochs >= 1 => Some(c.every_epochs),
                Ok(_) => {
                    cx.err(
                        Path::of(&["checkpoint", "every_epochs"]),
                        "every_epochs must be at least 1",
                    );
                    None
                }
                Err(d) => {
                    cx.extend(&Path::of(&["checkpoint"]), d);
                    None
                }
            });
    let sources = section(top, "sources", true, cx);
    let nodes = section(top, "nodes", false, cx);
    let sinks = section(top, "sinks", true, cx);

    // Names: sources, nodes and sinks share one namespace.
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    let mut duplicated: Vec<String> = Vec::new();
    for (sec, entries) in [("sources", &sources), ("nodes", &nodes), ("sinks", &sinks)] {
        for name in entries.keys() {
            let path = Path::of(&[sec, name]);
            if name.is_empty() || name.contains('.') || name.chars().any(char::is_whitespace) {
                cx.err(path.clone(), format!("\"{name}\" is not a valid name: use letters, digits, '_' or '-' (no '.', which separates ports, and no spaces)"));
            }
            if let Some(other) = seen.insert(name, sec) {
                duplicated.push(name.clone());
                cx.err(path, format!("duplicate name \"{name}\": it is already used in {other}; sources, nodes and sinks need distinct names"));
            }
        }
    }

    let time_mode = time.unwrap_or(TimeMode::EpochRecords(1));
    let source_defs: Vec<Option<SourceDef>> = sources
        .iter()
        .map(|(name, v)| check_source(name, v, time_mode, cx))
        .collect();

    // Parse nodes.
    let mut parsed: Vec<(String, String, OnError, Option<Box<dyn NodeConfig>>)> = Vec::new();
    for (name, v) in &nodes {
        let at = Path::of(&["nodes", name]);
        let Json::Object(obj) = v else {
            cx.err(at, "a node is a JSON object with a \"type\"");
            parsed.push((name.clone(), String::new(), OnError::Route, None));
            continue;
        };
        let mut obj = obj.clone();
        let ty = match obj.shift_remove("type") {
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
        let config = if ty.is_empty() {
            None
        } else if let Some(kind) = registry.get(&ty) {
            match kind.parse(Json::Object(obj)) {
                Ok(c) => Some(c),
                Err(d) => {
                    cx.extend(&at, d);
                    None
                }
            }
        } else {
            let names = registry.names();
            let hint = suggest::hint(&ty, names.iter().copied());
            cx.err(
                at.key("type"),
                format!(
                    "unknown node type \"{ty}\"{hint}; known types: {}",
                    quoted(&names)
                ),
            );
            None
        };
        parsed.push((name.clone(), ty, on_error, config));
    }

    // Resolve node inputs to producer names.
    let producer_names: Vec<String> = sources.keys().chain(nodes.keys()).cloned().collect();
    let resolve = |text: &str| -> Option<(Producer, Option<String>)> {
        let (base, port) = match text.split_once('.') {
            Some((b, p)) => (b, Some(p.to_string())),
            None => (text, None),
        };
        if let Some(i) = sources.get_index_of(base) {
            return Some((Producer::Source(i), port));
        }
        nodes.get_index_of(base).map(|i| (Producer::Node(i), port))
    };
    let unknown_ref = |text: &str| -> String {
        let base = text.split('.').next().unwrap_or(text);
        let hint = suggest::hint(base, producer_names.iter().map(String::as_str));
        if sinks.contains_key(base) {
            format!("\"{base}\" is a sink; a sink cannot be an input")
        } else {
            format!("\"{text}\" matches no source or node{hint}")
        }
    };
    let mut node_inputs: Vec<Vec<(Path, Option<(Producer, Option<String>)>, String)>> = Vec::new();
    for (name, _, _, config) in &parsed {
        let at = Path::of(&["nodes", name]);
        let mut ins = Vec::new();
        if let Some(c) = config {
            for (p, text) in c.inputs() {
                let r = resolve(&text);
                if r.is_none() {
                    cx.err(p.under(&at), unknown_ref(&text));
                }
                ins.push((p.under(&at), r, text));
            }
        }
        node_inputs.push(ins);
    }

    // Topological order, following declaration order where possible.
    let n = parsed.len();
    let deps: Vec<Vec<usize>> = node_inputs
        .iter()
        .map(|ins| {
            ins.iter()
                .filter_map(|(_, r, _)| match r {
                    Some((Producer::Node(j), _)) => Some(*j),
                    _ => None,
                })
                .collect()
        })
        .collect();
    let mut order = Vec::with_capacity(n);
    let mut placed = vec![false; n];
    while order.len() < n {
        let Some(next) = (0..n).find(|&i| !placed[i] && deps[i].iter().all(|&j| placed[j])) else {
            break;
        };
        placed[next] = true;
        order.push(next);
    }
    if order.len() < n {
        report_cycles(&parsed, &deps, &placed, cx);
    }

    // Plan in topological order.
    let mut node_ports: Vec<Option<Vec<Port>>> = vec![None; n];
    let mut planned: Vec<Option<NodeDef>> = (0..n).map(|_| None).collect();
    let ports_of = |p: Producer, node_ports: &Vec<Option<Vec<Port>>>| -> Option<Vec<Port>> {
        match p {
            Producer::Source(i) => source_defs[i].as_ref().map(|s| s.ports.clone()),
            Producer::Node(i) => node_ports[i].clone(),
        }
    };
    for &i in &order {
        let (name, ty, on_error, config) = &parsed[i];
        let Some(config) = config else { continue };
        let at = Path::of(&["nodes", name]);
        let mut schemas = Vec::new();
        let mut refs = Vec::new();
        let mut ok = true;
        for (p, r, text) in &node_inputs[i] {
            let Some((prod, port)) = r else {
                ok = false;
                continue;
            };
            let Some(ports) = ports_of(*prod, &node_ports) else {
                ok = false;
                continue;
            };
            match find_port(&ports, port.as_deref(), text) {
                Ok(k) => {
                    schemas.push(ports[k].schema.clone());
                    refs.push(PortRef {
                        producer: *prod,
                        port: k,
                        text: text.clone(),
                    });
                }
                Err(m) => {
                    cx.err(p.clone(), m);
                    ok = false;
                }
            }
        }
        if !ok {
            continue;
        }
        let ctx = PlanCtx {
            node: name,
            inputs: &schemas,
            time: time_mode,
        };
        match config.plan(&ctx) {
            Ok(node) => {
                let ports = node.outputs();
                if *on_error == OnError::Fail && !ports.iter().any(|p| p.name == ERRORS_PORT) {
                    cx.err(at.key("on_error"), format!("node type \"{ty}\" has no errors output, so on_error does not apply; remove it"));
                }
                node_ports[i] = Some(ports.clone());
                planned[i] = Some(NodeDef {
                    name: name.clone(),
                    type_name: ty.clone(),
                    node,
                    inputs: refs,
                    ports,
                    on_error: *on_error,
                });
            }
            Err(d) => cx.extend(&at, d),
        }
    }

    // Sinks.
    let mut sink_defs = Vec::new();
    for (name, v) in &sinks {
        if let Some(s) = check_sink(
            name,
            v,
            &resolve,
            &unknown_ref,
            &|p| ports_of(p, &node_ports),
            cx,
        ) {
            sink_defs.push(s);
        }
    }

    // Usage: every main output is consumed; errors of on_error=fail are not.
    let mut used: BTreeMap<(Producer, String), Vec<Path>> = BTreeMap::new();
    for ins in &node_inputs {
        for (p, r, _) in ins {
            if let Some((prod, port)) = r {
                used.entry((*prod, port.clone().unwrap_or_default()))
                    .or_default()
                    .push(p.clone());
            }
        }
    }
    // Nodes whose config did not parse still name their inputs: count them
    // as used, so that one mistake does not report a second.
    for ((name, v), (_, _, _, config)) in nodes.iter().zip(&parsed) {
        if config.is_some() {
            continue;
        }
        let mut names: Vec<&str> = ["input", "left", "right"]
            .iter()
            .filter_map(|k| v.get(*k).and_then(Json::as_str))
            .collect();
        if let Some(Json::Array(items)) = v.get("inputs") {
            names.extend(items.iter().filter_map(Json::as_str));
        }
        for input in names {
            if let Some((prod, port)) = resolve(input) {
                used.entry((prod, port.unwrap_or_default()))
                    .or_default()
                    .push(Path::of(&["nodes", name]));
            }
        }
    }
    for (name, v) in &sinks {
        if let Some(input) = v.get("input").and_then(Json::as_str) {
            if let Some((prod, port)) = resolve(input) {
                used.entry((prod, port.unwrap_or_default()))
                    .or_default()
                    .push(Path::of(&["sinks", name, "input"]));
            }
        }
    }
    let producers: Vec<(Producer, String, Path, Option<Vec<Port>>, OnError)> = sources
        .keys()
        .enumerate()
        .map(|(i, name)| {
            (
                Producer::Source(i),
                name.clone(),
                Path::of(&["sources", name]),
                ports_of(Producer::Source(i), &node_ports),
                source_defs[i]
                    .as_ref()
                    .map_or(OnError::Route, |s| s.on_error),
            )
        })
        .chain(
            parsed
                .iter()
                .enumerate()
                .map(|(i, (name, _, on_error, _))| {
                    (
                        Producer::Node(i),
                        name.clone(),
                        Path::of(&["nodes", name]),
                        node_ports[i].clone(),
                        *on_error,
                    )
                }),
        )
        .collect();
    for (prod, name, at, ports, on_error) in &producers {
        let Some(ports) = ports else { continue };
        for port in ports {
            let users = used.get(&(*prod, port.name.clone()));
            if port.name.is_empty() && users.is_none() && !duplicated.contains(name) {
                cx.err(at.clone(), format!("the output of \"{name}\" is never used; connect it to a node or sink, or remove it"));
            } else if port.name == ERRORS_PORT {
                if let (OnError::Fail, Some(users)) = (on_error, users) {
                    for u in users {
                        cx.err(u.clone(), format!("\"{name}.errors\" is always empty because \"{name}\" has \"on_error\": \"fail\"; remove one of the two"));
                    }
                }
            } else if !port.name.is_empty() && users.is_none() {
                cx.warnings.push(Diag::new(
                    at.clone(),
                    format!(
                        "\"{name}.{}\" is not connected: its records are counted and discarded",
                        port.name
                    ),
                ));
            }
        }
    }
    // Two sinks writing one file, or a sink overwriting an input.
    let mut written: BTreeMap<PathBuf, String> = BTreeMap::new();
    for s in &sink_defs {
        if let SinkKind::File { paths, .. } = &s.kind {
            for p in paths {
                if let Some(other) = written.insert(p.clone(), s.name.clone()) {
                    cx.err(
                        Path::of(&["sinks", &s.name, "path"]),
                        format!(
                            "sink \"{other}\" writes {} too; give each sink its own file",
                            p.display()
                        ),
                    );
                }
                for src in source_defs.iter().flatten() {
                    if let SourceKind::File { files, .. } = &src.kind {
                        if files.contains(p) {
                            cx.err(Path::of(&["sinks", &s.name, "path"]), format!("{} is read by source \"{}\"; a sink must not overwrite its input", p.display(), src.name));
                        }
                    }
                }
            }
        }
    }

    if !cx.diags.is_empty() {
        return None;
    }
    Some(Graph {
        name,
        time: time?,
        checkpoint_every,
        sources: source_defs.into_iter().flatten().collect(),
        nodes: planned.into_iter().flatten().collect(),
        order,
        sinks: sink_defs,
        warnings: Vec::new(),
    })
}

fn convert_spte_path(p: &serde_path_to_error::Path) -> Path {
    use lockstep_operators::config::Seg;
    use serde_path_to_error::Segment;
    Path(
        p.iter()
            .filter_map(|s| match s {
                Segment::Seq { index } => Some(Seg::Index(*index)),
                Segment::Map { key } | Segment::Enum { variant: key } => {
                    Some(Seg::Key(key.clone()))
                }
                Segment::Unknown => None,
            })
            .collect(),
    )
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn section(
    top: &serde_json::Map<String, Json>,
    key: &str,
    required: bool,
    cx: &mut Ctx<'_>,
) -> IndexMap<String, Json> {
    match top.get(key) {
        None if required => {
            cx.err(
                Path::root(),
                format!("missing field \"{key}\"; a graph needs at least one of them"),
            );
            IndexMap::new()
        }
        None => IndexMap::new(),
        Some(Json::Object(m)) => {
            if required && m.is_empty() {
                cx.err(
                    Path::of(&[key]),
                    format!("{key} is empty; a graph needs at least one"),
                );
            }
            m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        }
        Some(_) => {
            cx.err(
                Path::of(&[key]),
                format!("{key} must be an object of name → definition"),
            );
            IndexMap::new()
        }
    }
}

fn check_time(v: Option<&Json>, cx: &mut Ctx<'_>) -> Option<TimeMode> {
    let Some(v) = v else {
        cx.err(Path::root(), "missing field \"time\"; add \"time\": {\"epoch_ms\": 1000} (event time) or {\"epoch_records\": 1000}");
        return None;
    };
    let at = Path::of(&["time"]);
    let t = match parse_config::<TimeSpec>(v.clone()) {
        Ok(t) => t,
        Err(d) => {
            cx.extend(&at, d);
            return None;
        }
    };
    match (t.epoch_ms, t.epoch_records) {
        (Some(0), None) => cx.err(at.key("epoch_ms"), "epoch_ms must be at least 1"),
        (None, Some(0)) => cx.err(at.key("epoch_records"), "epoch_records must be at least 1"),
        (Some(e), None) => return Some(TimeMode::EpochMs(e)),
        (None, Some(n)) => return Some(TimeMode::EpochRecords(n)),
        (Some(_), Some(_)) => cx.err(at, "give either epoch_ms or epoch_records, not both"),
        (None, None) => cx.err(
            at,
            "give epoch_ms (epochs of event time) or epoch_records (epochs of record counts)",
        ),
    }
    None
}

fn find_port(ports: &[Port], port: Option<&str>, text: &str) -> Result<usize, String> {
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

fn schema_from(spec: &IndexMap<String, String>, at: &Path, cx: &mut Ctx<'_>) -> Option<Schema> {
    if spec.is_empty() {
        cx.err(at.clone(), "schema is empty; declare each field's type, e.g. {\"user\": \"string\", \"ts\": \"timestamp\"}");
        return None;
    }
    let mut fields = Vec::new();
    let mut ok = true;
    for (name, ty) in spec {
        match Type::parse(ty) {
            Some(t) => fields.push((name.clone(), t)),
            None => {
                let names: Vec<&str> = Type::ALL.iter().map(|t| t.name()).collect();
                let hint = suggest::hint(ty, names.iter().copied());
                cx.err(
                    at.key(name),
                    format!("unknown type \"{ty}\"{hint}; types are {}", quoted(&names)),
                );
                ok = false;
            }
        }
    }
    ok.then(|| Schema::new(fields))
}

fn event_time(
    spec: Option<&EventTimeSpec>,
    schema: &Schema,
    at: &Path,
    time: TimeMode,
    cx: &mut Ctx<'_>,
) -> Option<(usize, u64)> {
    let Some(et) = spec else {
        if let TimeMode::EpochMs(_) = time {
            cx.err(at.clone(), "this job's epochs are event time (time.epoch_ms), so every source needs \"event_time\": {\"field\": ...}");
        }
        return None;
    };
    let p = at.key("event_time").key("field");
    match schema.index_of(&et.field) {
        Some(i) if matches!(schema.fields()[i].ty, Type::Timestamp | Type::Int) => {
            Some((i, et.max_out_of_order_ms))
        }
        Some(i) => {
            cx.err(
                p,
                format!(
                    "event time field \"{}\" is {}; it must be a timestamp or int",
                    et.field,
                    schema.fields()[i].ty
                ),
            );
            None
        }
        None => {
            let hint = suggest::hint(&et.field, schema.names());
            cx.err(
                p,
                format!(
                    "unknown field \"{}\"{hint}; the schema has {}",
                    et.field,
                    schema.describe()
                ),
            );
            None
        }
    }
}

fn source_ports(schema: &Schema) -> Vec<Port> {
    vec![
        Port::new("", schema.clone()),
        Port::new(ERRORS_PORT, errors_schema()),
    ]
}

fn resolve_path(base: &FsPath, p: &str) -> PathBuf {
    let p = FsPath::new(p);
    if p.is_absolute() || base == FsPath::new(".") {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn check_source(name: &str, v: &Json, time: TimeMode, cx: &mut Ctx<'_>) -> Option<SourceDef> {
    let at = Path::of(&["sources", name]);
    let Json::Object(obj) = v else {
        cx.err(at, "a source is a JSON object with a \"type\"");
        return None;
    };
    let mut obj = obj.clone();
    let ty = match obj.shift_remove("type") {
        Some(Json::String(t)) => t,
        _ => {
            cx.err(
                at,
                format!(
                    "missing field \"type\" (a string); one of {}",
                    quoted(SOURCE_TYPES)
                ),
            );
            return None;
        }
    };
    let rest = Json::Object(obj);
    let parse_err = |cx: &mut Ctx<'_>, d: Vec<Diag>| {
        cx.extend(&at, d);
        None::<SourceDef>
    };
    let (kind, schema, et, on_error) = match ty.as_str() {
        "file" => {
            let s = match parse_config::<FileSourceSpec>(rest) {
                Ok(s) => s,
                Err(d) => return parse_err(cx, d),
            };
            let files: Vec<PathBuf> = match (&s.path, &s.paths) {
                (Some(p), None) => vec![resolve_path(cx.base_dir, p)],
                (None, Some(ps)) if !ps.is_empty() => {
                    ps.iter().map(|p| resolve_path(cx.base_dir, p)).collect()
                }
                (None, Some(_)) => {
                    cx.err(at.key("paths"), "paths is empty; list at least one file");
                    return None;
                }
                (Some(_), Some(_)) => {
                    cx.err(
                        at.clone(),
                        "give either path (one file) or paths (one partition per file), not both",
                    );
                    return None;
                }
                (None, None) => {
                    cx.err(
                        at.clone(),
                        "missing field \"path\" (or \"paths\"); name the file to read",
                    );
                    return None;
                }
            };
            if let Some(k) = s.split {
                if k == 0 {
                    cx.err(at.key("split"), "split must be at least 1");
                }
                if s.paths.is_some() {
                    cx.err(
                        at.key("split"),
                        "split reads one file as byte ranges; use it with path, not paths",
                    );
                }
            }
            let schema = schema_from(&s.schema, &at.key("schema"), cx)?;
            (
                SourceKind::File {
                    files,
                    split: s.split,
                    format: s.format,
                },
                schema,
                s.event_time,
                s.on_error,
            )
        }
        "stdin" => {
            let s = match parse_config::<StdinSourceSpec>(rest) {
                Ok(s) => s,
                Err(d) => return parse_err(cx, d),
            };
            let schema = schema_from(&s.schema, &at.key("schema"), cx)?;
            (
                SourceKind::Stdin { format: s.format },
                schema,
                s.event_time,
                s.on_error,
            )
        }
        "generator" => {
            let s = match parse_config::<GeneratorSpec>(rest) {
                Ok(s) => s,
                Err(d) => return parse_err(cx, d),
            };
            let schema = generator_schema(&s, &at, cx)?;
            if s.partitions == 0 {
                cx.err(at.key("partitions"), "partitions must be at least 1");
            }
            let et = s.event_time.clone();
            (SourceKind::Generator(s), schema, et, OnError::Route)
        }
        "nexmark" => {
            let s = match parse_config::<NexmarkSpec>(rest) {
                Ok(s) => s,
                Err(d) => return parse_err(cx, d),
            };
            if s.partitions == 0 {
                cx.err(at.key("partitions"), "partitions must be at least 1");
            }
            let et = EventTimeSpec {
                field: "date_time".into(),
                max_out_of_order_ms: s.max_out_of_order_ms,
            };
            (
                SourceKind::Nexmark(s.clone()),
                nexmark_schema(s.events),
                Some(et),
                OnError::Route,
            )
        }
        "kafka" => {
            cx.err(at.key("type"), "kafka sources are not available in this build of lockstep yet; use a file, stdin, generator or nexmark source");
            return None;
        }
        other => {
            let hint = suggest::hint(other, SOURCE_TYPES.iter().copied());
            cx.err(
                at.key("type"),
                format!(
                    "unknown source type \"{other}\"{hint}; one of {}",
                    quoted(SOURCE_TYPES)
                ),
            );
            return None;
        }
    };
    let event_time = event_time(et.as_ref(), &schema, &at, time, cx);
    Some(SourceDef {
        name: name.to_string(),
        kind,
        ports: source_ports(&schema),
        schema,
        event_time,
        on_error,
    })
}

fn generator_schema(s: &GeneratorSpec, at: &Path, cx: &mut Ctx<'_>) -> Option<Schema> {
    if s.fields.is_empty() {
        cx.err(
            at.key("fields"),
            "fields is empty; give each field a pattern, e.g. {\"id\": {\"sequence\": {}}}",
        );
        return None;
    }
    let mut fields = Vec::new();
    let before = cx.diags.len();
    for (name, g) in &s.fields {
        let p = at.key("fields").key(name);
        let ty = match g {
            FieldGen::Sequence { .. } => Type::Int,
            FieldGen::Random { min, max } => {
                if min > max {
                    cx.err(p.clone(), "random needs min <= max");
                }
                Type::Int
            }
            FieldGen::RandomFloat { min, max } => {
                if !(min < max) || !min.is_finite() || !max.is_finite() {
                    cx.err(p.clone(), "random_float needs finite min < max");
                }
                Type::Float
            }
            FieldGen::Sine { period, .. } => {
                if *period == 0 {
                    cx.err(p.clone(), "sine needs a period of at least 1 record");
                }
                Type::Float
            }
            FieldGen::Step { values, every } => {
                if *every == 0 {
                    cx.err(p.clone(), "step needs every >= 1");
                }
                let ty = if values.iter().all(|v| v.is_i64()) {
                    Type::Int
                } else if values.iter().all(Json::is_number) {
                    Type::Float
                } else if values.iter().all(Json::is_string) {
                    Type::String
                } else {
                    cx.err(p.clone(), "step values must be all numbers or all strings");
                    Type::String
                };
                if values.is_empty() {
                    cx.err(p.clone(), "step needs at least one value");
                }
                ty
            }
            FieldGen::Choice(v) => {
                if v.is_empty() {
                    cx.err(p.clone(), "choice needs at least one value");
                }
                Type::String
            }
            FieldGen::Timestamp { .. } => Type::Timestamp,
        };
        fields.push((name.clone(), ty));
    }
    (cx.diags.len() == before).then(|| Schema::new(fields))
}

type PortsOf<'a> = dyn Fn(Producer) -> Option<Vec<Port>> + 'a;

fn field_list(names: &[String], schema: &Schema, at: &Path, cx: &mut Ctx<'_>) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        match schema.index_of(n) {
            Some(k) => out.push(k),
            None => {
                let hint = suggest::hint(n, schema.names());
                cx.err(
                    at.index(i),
                    format!(
                        "unknown field \"{n}\"{hint}; the input has {}",
                        schema.describe()
                    ),
                );
            }
        }
    }
    out
}

fn check_sink(
    name: &str,
    v: &Json,
    resolve: &dyn Fn(&str) -> Option<(Producer, Option<String>)>,
    unknown_ref: &dyn Fn(&str) -> String,
    ports_of: &PortsOf<'_>,
    cx: &mut Ctx<'_>,
) -> Option<SinkDef> {
    let at = Path::of(&["sinks", name]);
    let Json::Object(obj) = v else {
        cx.err(
            at,
            "a sink is a JSON object with a \"type\" and an \"input\"",
        );
        return None;
    };
    let mut obj = obj.clone();
    let ty = match obj.shift_remove("type") {
        Some(Json::String(t)) => t,
        _ => {
            cx.err(
                at,
                format!(
                    "missing field \"type\" (a string); one of {}",
                    quoted(SINK_TYPES)
                ),
            );
            return None;
        }
    };
    let rest = Json::Object(obj);
    enum Parsed {
        File(FileSinkSpec),
        Stdout(StdoutSinkSpec),
        Null(NullSinkSpec),
    }
    let parsed = match ty.as_str() {
        "file" => parse_config::<FileSinkSpec>(rest).map(Parsed::File),
        "stdout" => parse_config::<StdoutSinkSpec>(rest).map(Parsed::Stdout),
        "null" => parse_config::<NullSinkSpec>(rest).map(Parsed::Null),
        "kafka" => {
            cx.err(at.key("type"), "kafka sinks are not available in this build of lockstep yet; use a file, stdout or null sink");
            return None;
        }
        other => {
            let hint = suggest::hint(other, SINK_TYPES.iter().copied());
            cx.err(
                at.key("type"),
                format!(
                    "unknown sink type \"{other}\"{hint}; one of {}",
                    quoted(SINK_TYPES)
                ),
            );
            return None;
        }
    };
    let parsed = match parsed {
        Ok(p) => p,
        Err(d) => {
            cx.extend(&at, d);
            return None;
        }
    };
    let input_text = match &parsed {
        Parsed::File(s) => s.input.clone(),
        Parsed::Stdout(s) => s.input.clone(),
        Parsed::Null(s) => s.input.clone(),
    };
    let input_path = at.key("input");
    let Some((prod, port)) = resolve(&input_text) else {
        cx.err(input_path, unknown_ref(&input_text));
        return None;
    };
    let ports = ports_of(prod)?;
    let k = match find_port(&ports, port.as_deref(), &input_text) {
        Ok(k) => k,
        Err(m) => {
            cx.err(input_path, m);
            return None;
        }
    };
    let schema = ports[k].schema.clone();
    let all: Vec<usize> = (0..schema.len()).collect();
    let before = cx.diags.len();
    let kind = match parsed {
        Parsed::File(s) => {
            let order_by = s.order_by.as_ref().map_or_else(
                || all.clone(),
                |o| field_list(o, &schema, &at.key("order_by"), cx),
            );
            let key = s.key.as_ref().map_or_else(
                || all.clone(),
                |o| field_list(o, &schema, &at.key("key"), cx),
            );
            if s.key.is_some() && s.partitions.is_none() {
                cx.err(
                    at.key("key"),
                    "key chooses a partition file; it needs \"partitions\"",
                );
            }
            let base = resolve_path(cx.base_dir, &s.path);
            let paths = match s.partitions {
                None => vec![base],
                Some(0) => {
                    cx.err(at.key("partitions"), "partitions must be at least 1");
                    vec![]
                }
                Some(k) => (0..k).map(|p| partition_path(&base, p)).collect(),
            };
            SinkKind::File {
                paths,
                format: s.format,
                order_by,
                key,
            }
        }
        Parsed::Stdout(s) => {
            let order_by = s.order_by.as_ref().map_or_else(
                || all.clone(),
                |o| field_list(o, &schema, &at.key("order_by"), cx),
            );
            SinkKind::Stdout {
                format: s.format,
                order_by,
            }
        }
        Parsed::Null(_) => SinkKind::Null,
    };
    if cx.diags.len() != before {
        return None;
    }
    Some(SinkDef {
        name: name.to_string(),
        input: PortRef {
            producer: prod,
            port: k,
            text: input_text,
        },
        schema,
        kind,
    })
}

/// The file of partition `p` of a partitioned file sink: `{partition}` in the
/// path is replaced by `p`; without it, `-p` goes before the extension
/// (`out.jsonl` → `out-0.jsonl`).
pub fn partition_path(base: &FsPath, p: u32) -> PathBuf {
    let s = base.to_string_lossy();
    if s.contains("{partition}") {
        return PathBuf::from(s.replace("{partition}", &p.to_string()));
    }
    let stem = base
        .file_stem()
        .map(|x| x.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match base.extension() {
        Some(ext) => format!("{stem}-{p}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{p}"),
    };
    base.with_file_name(name)
}

fn report_cycles(
    parsed: &[(String, String, OnError, Option<Box<dyn NodeConfig>>)],
    deps: &[Vec<usize>],
    placed: &[bool],
    cx: &mut Ctx<'_>,
) {
    // Nodes that cannot be placed either sit on a cycle or depend on one;
    // report each cycle once, starting from its first-declared node.
    let n = parsed.len();
    let mut reported = vec![false; n];
    for start in 0..n {
        if placed[start] || reported[start] {
            continue;
        }
        // Walk unplaced dependencies until a node repeats.
        let mut path = vec![start];
        let mut cur = start;
        loop {
            let Some(&next) = deps[cur].iter().find(|&&j| !placed[j]) else {
                break;
            };
            if let Some(k) = path.iter().position(|&x| x == next) {
                let cycle = &path[k..];
                if cycle.iter().any(|&c| reported[c]) {
                    break;
                }
                let first = *cycle.iter().min().unwrap_or(&next);
                let rot = cycle.iter().position(|&c| c == first).unwrap_or(0);
                let mut names: Vec<&str> = cycle[rot..]
                    .iter()
                    .chain(&cycle[..rot])
                    .map(|&c| parsed[c].0.as_str())
                    .collect();
                names.reverse();
                names.rotate_right(1);
                names.push(names[0]);
                for &c in cycle {
                    reported[c] = true;
                }
                cx.err(
                    Path::of(&["nodes", &parsed[first].0]),
                    format!(
                        "cycle: {}; a graph must not feed a node's output back into itself",
                        names.join(" → ")
                    ),
                );
                break;
            }
            path.push(next);
            cur = next;
        }
    }
}

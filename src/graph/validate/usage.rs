//! Whole-graph checks once everything is planned: outputs that are never
//! read or always empty, and files written twice or overwriting an input.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value as Json;

use lockstep_operators::config::{Diag, Path};
use lockstep_operators::node::{Port, ERRORS_PORT};

use super::super::model::{Producer, SinkDef, SinkKind, SourceDef, SourceKind};
use super::super::spec::OnError;
use super::nodes::{InputRef, ParsedNode, Planned, Resolver, Target};
use super::top::Sections;
use super::Ctx;

/// Who reads each output port, keyed by producer and port name (`""` for
/// the main output).
type Readers = BTreeMap<(Producer, String), Vec<Path>>;

/// A source or node, as far as usage checks are concerned.
struct Output<'a> {
    producer: Producer,
    name: &'a str,
    at: Path,
    ports: Option<&'a [Port]>,
    on_error: OnError,
}

/// Every main output is read; `errors` of an `on_error: fail` producer is
/// not (it is always empty); other ports that nothing reads get a warning.
/// Names in `duplicated` are already reported and not checked again.
pub(super) fn check_usage(
    sections: &Sections,
    parsed: &[ParsedNode],
    node_inputs: &[Vec<InputRef>],
    planned: &Planned,
    resolver: &Resolver<'_>,
    duplicated: &[String],
    cx: &mut Ctx<'_>,
) {
    let readers = readers(sections, parsed, node_inputs, resolver);
    let sources = sections.sources.keys().enumerate().map(|(i, name)| {
        let producer = Producer::Source(i);
        Output {
            producer,
            name,
            at: Path::of(&["sources", name]),
            ports: planned.ports_of(producer),
            on_error: planned.sources[i]
                .as_ref()
                .map_or(OnError::Route, |s| s.on_error),
        }
    });
    let nodes = parsed.iter().enumerate().map(|(i, node)| {
        let producer = Producer::Node(i);
        Output {
            producer,
            name: &node.name,
            at: Path::of(&["nodes", &node.name]),
            ports: planned.ports_of(producer),
            on_error: node.on_error,
        }
    });
    for output in sources.chain(nodes) {
        check_output(&output, &readers, duplicated, cx);
    }
    warn_updates_into_state(parsed, node_inputs, cx);
}

/// `aggregate` emits an update per changed key and epoch, without retracting
/// the previous one: a `join` or another `aggregate` downstream sees every
/// update as a new record (spec, "Windows, aggregates and joins").
fn warn_updates_into_state(parsed: &[ParsedNode], node_inputs: &[Vec<InputRef>], cx: &mut Ctx<'_>) {
    for (node, inputs) in parsed.iter().zip(node_inputs) {
        if node.type_name != "join" && node.type_name != "aggregate" {
            continue;
        }
        for input in inputs {
            let Some(Target {
                producer: Producer::Node(j),
                port: None,
            }) = &input.target
            else {
                continue;
            };
            if parsed.get(*j).is_some_and(|p| p.type_name == "aggregate") {
                cx.warnings.push(Diag::new(
                    input.path.clone(),
                    format!(
                        "\"{}\" is an aggregate: it emits a new record for every update of a key, without retracting the previous one, so this {} sees every update as a separate record; use a window if you want one result per key and window",
                        parsed[*j].name, node.type_name
                    ),
                ));
            }
        }
    }
}

/// Who reads each port: node inputs, the inputs named by nodes whose config
/// did not parse (so that one mistake does not report a second), and sinks.
fn readers(
    sections: &Sections,
    parsed: &[ParsedNode],
    node_inputs: &[Vec<InputRef>],
    resolver: &Resolver<'_>,
) -> Readers {
    let mut used = Readers::new();
    let mut add = |target: Target, path: Path| {
        used.entry((target.producer, target.port.unwrap_or_default()))
            .or_default()
            .push(path);
    };
    for input in node_inputs.iter().flatten() {
        if let Some(target) = &input.target {
            add(target.clone(), input.path.clone());
        }
    }
    for ((name, v), node) in sections.nodes.iter().zip(parsed) {
        if node.config.is_some() {
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
            if let Some(target) = resolver.resolve(input) {
                add(target, Path::of(&["nodes", name]));
            }
        }
    }
    for (name, v) in &sections.sinks {
        if let Some(input) = v.get("input").and_then(Json::as_str) {
            if let Some(target) = resolver.resolve(input) {
                add(target, Path::of(&["sinks", name, "input"]));
            }
        }
    }
    used
}

fn check_output(output: &Output<'_>, readers: &Readers, duplicated: &[String], cx: &mut Ctx<'_>) {
    let Some(ports) = output.ports else { return };
    let name = output.name;
    for port in ports {
        let users = readers.get(&(output.producer, port.name.clone()));
        if port.name.is_empty() && users.is_none() && !duplicated.iter().any(|d| d == name) {
            cx.err(output.at.clone(), format!("the output of \"{name}\" is never used; connect it to a node or sink, or remove it"));
        } else if port.name == ERRORS_PORT {
            if let (OnError::Fail, Some(users)) = (output.on_error, users) {
                for u in users {
                    cx.err(u.clone(), format!("\"{name}.errors\" is always empty because \"{name}\" has \"on_error\": \"fail\"; remove one of the two"));
                }
            }
        } else if !port.name.is_empty() && users.is_none() {
            cx.warnings.push(Diag::new(
                output.at.clone(),
                format!(
                    "\"{name}.{}\" is not connected: its records are counted and discarded",
                    port.name
                ),
            ));
        }
    }
}

/// No two sinks write one file, and no sink overwrites a file a source
/// reads.
pub(super) fn check_output_paths(
    sink_defs: &[SinkDef],
    source_defs: &[Option<SourceDef>],
    cx: &mut Ctx<'_>,
) {
    let mut written: BTreeMap<PathBuf, String> = BTreeMap::new();
    // One stdout: two sinks would interleave their lines by scheduling.
    let mut stdout: Option<&str> = None;
    for s in sink_defs {
        if let SinkKind::Stdout { .. } = s.kind {
            match stdout {
                Some(first) => cx.err(
                    Path::of(&["sinks", &s.name]),
                    format!(
                        "sink \"{first}\" already writes to stdout; a graph may have one stdout sink \
                         (write the other to a file)"
                    ),
                ),
                None => stdout = Some(&s.name),
            }
        }
    }
    // One reader of stdin: two sources would split its lines between them
    // by scheduling.
    let mut stdin: Option<&str> = None;
    for s in source_defs.iter().flatten() {
        if let SourceKind::Stdin { .. } = s.kind {
            match stdin {
                Some(first) => cx.err(
                    Path::of(&["sources", &s.name]),
                    format!(
                        "source \"{first}\" already reads stdin; a graph may have one stdin source \
                         (read the other from a file)"
                    ),
                ),
                None => stdin = Some(&s.name),
            }
        }
    }
    // One writer per topic partition: two sinks on one topic would each
    // find the other's records where its own belong.
    let mut topics: BTreeMap<(String, String), &str> = BTreeMap::new();
    for s in sink_defs {
        let SinkKind::Kafka { brokers, topic, .. } = &s.kind else {
            continue;
        };
        let id = (brokers.replace(' ', ""), topic.clone());
        match topics.get(&id) {
            Some(first) => cx.err(
                Path::of(&["sinks", &s.name, "topic"]),
                format!(
                    "sink \"{first}\" writes topic \"{topic}\" too; each output partition has one writer, so give each sink its own topic"
                ),
            ),
            None => {
                topics.insert(id, &s.name);
            }
        }
        for src in source_defs.iter().flatten() {
            if let SourceKind::Kafka(k) = &src.kind {
                if k.topic == *topic && k.brokers.replace(' ', "") == brokers.replace(' ', "") {
                    cx.err(
                        Path::of(&["sinks", &s.name, "topic"]),
                        format!("topic \"{topic}\" is read by source \"{}\"; a sink must not write its own input", src.name),
                    );
                }
            }
        }
    }
    for s in sink_defs {
        let SinkKind::File { paths, .. } = &s.kind else {
            continue;
        };
        let at = Path::of(&["sinks", &s.name, "path"]);
        for p in paths {
            let id = file_identity(p);
            if let Some(other) = written.insert(id.clone(), s.name.clone()) {
                cx.err(
                    at.clone(),
                    format!(
                        "sink \"{other}\" writes {} too; give each sink its own file",
                        p.display()
                    ),
                );
            }
            for src in source_defs.iter().flatten() {
                if let SourceKind::File { files, .. } = &src.kind {
                    if files.iter().any(|f| file_identity(f) == id) {
                        cx.err(
                            at.clone(),
                            format!(
                                "{} is read by source \"{}\"; a sink must not overwrite its input",
                                p.display(),
                                src.name
                            ),
                        );
                    }
                }
            }
        }
    }
}

/// What a path names, for telling whether two paths are one file: made
/// absolute with `.` and `..` removed, then with symbolic links resolved
/// through the file (or, before it exists, its directory) where they exist.
fn file_identity(p: &std::path::Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut norm = PathBuf::new();
    for part in abs.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                norm.pop();
            }
            other => norm.push(other),
        }
    }
    if let Ok(c) = norm.canonicalize() {
        return c;
    }
    if let (Some(dir), Some(name)) = (norm.parent(), norm.file_name()) {
        if let Ok(c) = dir.canonicalize() {
            return c.join(name);
        }
    }
    norm
}

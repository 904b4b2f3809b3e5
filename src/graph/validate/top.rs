//! The top level of a graph: known fields, `version`, `name`, `time`,
//! `checkpoint`, the `sources`/`nodes`/`sinks` sections, and the one
//! namespace their entries share.

use std::collections::BTreeMap;
use std::path::Path as FsPath;

use indexmap::IndexMap;
use serde_json::Value as Json;

use lockstep_operators::config::{parse_config, Path};
use lockstep_operators::node::TimeMode;
use lockstep_operators::suggest;

use super::super::spec::{CheckpointSpec, TimeSpec};
use super::{quoted, Ctx};

const TOP_FIELDS: &[&str] = &[
    "version",
    "name",
    "time",
    "checkpoint",
    "sources",
    "nodes",
    "sinks",
    "tests",
];

/// The job-wide settings of a graph.
pub(super) struct Header {
    /// The job's name: `name`, or the file's stem.
    pub name: String,
    /// How epochs are derived; `None` when `time` is missing or invalid.
    pub time: Option<TimeMode>,
    /// `checkpoint.every_epochs`, when given and valid.
    pub checkpoint_every: Option<u64>,
}

/// Checks the top-level fields other than the three sections.
pub(super) fn check_header(
    top: &serde_json::Map<String, Json>,
    file: &str,
    cx: &mut Ctx<'_>,
) -> Header {
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
    let checkpoint_every = top.get("checkpoint").and_then(|v| check_checkpoint(v, cx));
    Header {
        name,
        time,
        checkpoint_every,
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

fn check_checkpoint(v: &Json, cx: &mut Ctx<'_>) -> Option<u64> {
    match parse_config::<CheckpointSpec>(v.clone()) {
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
    }
}

/// The entries of the three sections, by name, in file order.
pub(super) struct Sections {
    /// `sources`: name → definition.
    pub sources: IndexMap<String, Json>,
    /// `nodes`: name → definition; empty when absent.
    pub nodes: IndexMap<String, Json>,
    /// `sinks`: name → definition.
    pub sinks: IndexMap<String, Json>,
}

impl Sections {
    /// Reads the three sections; `sources` and `sinks` are required and must
    /// not be empty, `nodes` is optional.
    pub fn read(top: &serde_json::Map<String, Json>, cx: &mut Ctx<'_>) -> Sections {
        Sections {
            sources: section(top, "sources", true, cx),
            nodes: section(top, "nodes", false, cx),
            sinks: section(top, "sinks", true, cx),
        }
    }
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

/// Checks that every name is well formed and that sources, nodes and sinks
/// do not share one. Returns the names used more than once.
pub(super) fn check_names(sections: &Sections, cx: &mut Ctx<'_>) -> Vec<String> {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    let mut duplicated: Vec<String> = Vec::new();
    for (sec, entries) in [
        ("sources", &sections.sources),
        ("nodes", &sections.nodes),
        ("sinks", &sections.sinks),
    ] {
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
    duplicated
}

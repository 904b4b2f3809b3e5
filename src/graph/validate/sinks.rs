//! Sinks: type, input, field lists and output files.

use std::path::{Path as FsPath, PathBuf};

use serde_json::Value as Json;

use lockstep_operators::config::{parse_config_lenient, Path};
use lockstep_operators::suggest;
use lockstep_operators::value::Schema;

use super::super::model::{PortRef, SinkDef, SinkKind};
use super::super::spec::{
    format_for_path, FileSinkSpec, KafkaSinkSpec, NullSinkSpec, StdoutSinkSpec,
};
use super::nodes::{Planned, Resolver, Target};
use super::sources::resolve_path;
use super::{find_port, quoted, split_type, Ctx};
use lockstep_operators::encode::Format;

const SINK_TYPES: &[&str] = &["file", "stdout", "null", "kafka"];

/// A sink's config, by type.
enum SinkSpec {
    File(FileSinkSpec),
    Stdout(StdoutSinkSpec),
    Null(NullSinkSpec),
    Kafka(KafkaSinkSpec),
}

impl SinkSpec {
    /// The `input` reference, as written.
    fn input(&self) -> &str {
        match self {
            SinkSpec::File(s) => &s.input,
            SinkSpec::Stdout(s) => &s.input,
            SinkSpec::Null(s) => &s.input,
            SinkSpec::Kafka(s) => &s.input,
        }
    }
}

/// Checks sink `name`, defined as `v`, against the ports of what it reads.
pub(super) fn check_sink(
    name: &str,
    v: &Json,
    resolver: &Resolver<'_>,
    planned: &Planned,
    cx: &mut Ctx<'_>,
) -> Option<SinkDef> {
    let at = Path::of(&["sinks", name]);
    let spec = parse_sink(v, &at, cx)?;
    let input_text = spec.input().to_string();
    let input_path = at.key("input");
    let Some(Target { producer, port }) = resolver.resolve(&input_text) else {
        cx.err(input_path, resolver.unknown_ref(&input_text));
        return None;
    };
    let ports = planned.ports_of(producer)?;
    let k = match find_port(ports, port.as_deref(), &input_text) {
        Ok(k) => k,
        Err(m) => {
            cx.err(input_path, m);
            return None;
        }
    };
    let schema = ports[k].schema.clone();
    let before = cx.diags.len();
    let kind = sink_kind(spec, &schema, &at, cx);
    if cx.diags.len() != before {
        return None;
    }
    Some(SinkDef {
        name: name.to_string(),
        input: PortRef {
            producer,
            port: k,
            text: input_text,
        },
        schema,
        kind,
    })
}

/// Parses a sink's type and config.
fn parse_sink(v: &Json, at: &Path, cx: &mut Ctx<'_>) -> Option<SinkSpec> {
    let (ty, rest) = split_type(v, at, "a sink", SINK_TYPES, cx)?;
    let parsed = match ty.as_str() {
        "file" => lenient::<FileSinkSpec>(rest, SinkSpec::File),
        "stdout" => lenient::<StdoutSinkSpec>(rest, SinkSpec::Stdout),
        "null" => lenient::<NullSinkSpec>(rest, SinkSpec::Null),
        "kafka" => lenient::<KafkaSinkSpec>(rest, SinkSpec::Kafka),
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
    // Go on with what parses, so that later checks (fields, paths) report
    // their problems in the same run.
    let (spec, diags) = parsed;
    cx.extend(at, diags);
    spec
}

fn lenient<T: serde::de::DeserializeOwned>(
    rest: Json,
    wrap: fn(T) -> SinkSpec,
) -> (Option<SinkSpec>, Vec<lockstep_operators::config::Diag>) {
    let (spec, diags) = parse_config_lenient::<T>(rest);
    (spec.map(wrap), diags)
}

/// Resolves a sink's field lists against the `schema` it reads, and its
/// output files.
fn sink_kind(spec: SinkSpec, schema: &Schema, at: &Path, cx: &mut Ctx<'_>) -> SinkKind {
    let all: Vec<usize> = (0..schema.len()).collect();
    match spec {
        SinkSpec::File(s) => {
            let order_by = s.order_by.as_ref().map_or_else(
                || all.clone(),
                |o| field_list(o, schema, &at.key("order_by"), cx),
            );
            let key = s.key.as_ref().map_or_else(
                || all.clone(),
                |o| field_list(o, schema, &at.key("key"), cx),
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
                format: s.format.unwrap_or_else(|| format_for_path(&s.path)),
                order_by,
                key,
            }
        }
        SinkSpec::Stdout(s) => {
            let order_by = s.order_by.as_ref().map_or_else(
                || all.clone(),
                |o| field_list(o, schema, &at.key("order_by"), cx),
            );
            SinkKind::Stdout {
                format: s.format,
                order_by,
            }
        }
        SinkSpec::Null(_) => SinkKind::Null,
        SinkSpec::Kafka(s) => {
            let order_by = s.order_by.as_ref().map_or_else(
                || all.clone(),
                |o| field_list(o, schema, &at.key("order_by"), cx),
            );
            let key = s
                .key
                .as_ref()
                .map(|o| field_list(o, schema, &at.key("key"), cx));
            if s.format != Format::Jsonl {
                cx.err(
                    at.key("format"),
                    "a kafka sink writes jsonl (one JSON object per message)",
                );
            }
            if s.brokers.trim().is_empty() {
                cx.err(at.key("brokers"), "brokers is empty; give host:port");
            }
            if s.topic.trim().is_empty() {
                cx.err(at.key("topic"), "topic is empty");
            }
            SinkKind::Kafka {
                brokers: s.brokers,
                topic: s.topic,
                key,
                order_by,
                properties: s.properties,
            }
        }
    }
}

/// The indices in `schema` of the fields `names`; reports unknown names.
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

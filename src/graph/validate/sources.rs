//! Sources: type, files, schema, event time and output ports.

use std::path::{Path as FsPath, PathBuf};

use indexmap::IndexMap;
use serde_json::Value as Json;

use lockstep_operators::config::{parse_config_lenient, Path};
use lockstep_operators::node::{Port, TimeMode, ERRORS_PORT};
use lockstep_operators::suggest;
use lockstep_operators::value::{errors_schema, Schema, Type};

use super::super::model::{SourceDef, SourceKind};
use super::super::spec::{
    format_for_path, EventTimeSpec, FieldGen, FileSourceSpec, GeneratorSpec, KafkaSourceSpec,
    KafkaStartSpec, NexmarkSpec, OnError, StdinSourceSpec,
};
use super::{quoted, split_type, Ctx};
use crate::source::nexmark_schema;
use lockstep_operators::encode::Format;

const SOURCE_TYPES: &[&str] = &["file", "stdin", "generator", "nexmark", "kafka"];

/// What each source type contributes to its [`SourceDef`].
struct SourceParts {
    kind: SourceKind,
    schema: Schema,
    event_time: Option<EventTimeSpec>,
    on_error: OnError,
}

/// Checks source `name`, defined as `v`; `time` is the job's time mode.
pub(super) fn check_source(
    name: &str,
    v: &Json,
    time: TimeMode,
    cx: &mut Ctx<'_>,
) -> Option<SourceDef> {
    let at = Path::of(&["sources", name]);
    let (ty, rest) = split_type(v, &at, "a source", SOURCE_TYPES, cx)?;
    let parts = match ty.as_str() {
        "file" => file_source(rest, &at, cx),
        "stdin" => stdin_source(rest, &at, cx),
        "generator" => generator_source(rest, &at, cx),
        "nexmark" => nexmark_source(rest, &at, cx),
        "kafka" => kafka_source(rest, &at, cx),
        other => {
            let hint = suggest::hint(other, SOURCE_TYPES.iter().copied());
            cx.err(
                at.key("type"),
                format!(
                    "unknown source type \"{other}\"{hint}; one of {}",
                    quoted(SOURCE_TYPES)
                ),
            );
            None
        }
    }?;
    let event_time = event_time(parts.event_time.as_ref(), &parts.schema, &at, time, cx);
    Some(SourceDef {
        name: name.to_string(),
        kind: parts.kind,
        ports: source_ports(&parts.schema),
        schema: parts.schema,
        event_time,
        on_error: parts.on_error,
    })
}

/// Parses the config of a source (its object without `type`), reporting
/// problems under `at`.
fn parse_spec<T: serde::de::DeserializeOwned>(
    rest: Json,
    at: &Path,
    cx: &mut Ctx<'_>,
) -> Option<T> {
    // Go on with what parses, so that later checks (schema, event time) report
    // their problems in the same run.
    let (spec, diags) = parse_config_lenient::<T>(rest);
    cx.extend(at, diags);
    spec
}

fn file_source(rest: Json, at: &Path, cx: &mut Ctx<'_>) -> Option<SourceParts> {
    let s: FileSourceSpec = parse_spec(rest, at, cx)?;
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
    Some(SourceParts {
        kind: SourceKind::File {
            files,
            split: s.split,
            format: s.format.unwrap_or_else(|| {
                format_for_path(
                    s.path
                        .as_deref()
                        .or_else(|| s.paths.as_ref().and_then(|p| p.first()).map(String::as_str))
                        .unwrap_or(""),
                )
            }),
        },
        schema,
        event_time: s.event_time,
        on_error: s.on_error,
    })
}

fn kafka_source(rest: Json, at: &Path, cx: &mut Ctx<'_>) -> Option<SourceParts> {
    let s: KafkaSourceSpec = parse_spec(rest, at, cx)?;
    if s.format != Format::Jsonl {
        cx.err(
            at.key("format"),
            "a kafka source reads jsonl (one JSON object per message)",
        );
    }
    if s.brokers.trim().is_empty() {
        cx.err(at.key("brokers"), "brokers is empty; give host:port");
    }
    if s.topic.trim().is_empty() {
        cx.err(at.key("topic"), "topic is empty");
    }
    let start = match &s.start {
        None => crate::kafka::Start::Earliest,
        Some(KafkaStartSpec::Millis(t)) => crate::kafka::Start::Time(*t),
        Some(KafkaStartSpec::Text(t)) if t == "earliest" => crate::kafka::Start::Earliest,
        Some(KafkaStartSpec::Text(t)) if t == "latest" => crate::kafka::Start::Latest,
        Some(KafkaStartSpec::Text(t)) => match lockstep_operators::timefmt::parse_rfc3339(t) {
            Some(ms) => crate::kafka::Start::Time(ms),
            None => {
                cx.err(
                    at.key("start"),
                    format!("start \"{t}\" is not \"earliest\", \"latest\", a time in ms or an RFC 3339 time"),
                );
                crate::kafka::Start::Earliest
            }
        },
    };
    let schema = schema_from(&s.schema, &at.key("schema"), cx)?;
    Some(SourceParts {
        kind: SourceKind::Kafka(super::super::model::KafkaSource {
            brokers: s.brokers,
            topic: s.topic,
            start,
            bounded: s.until.is_some(),
            idle_ms: s.idle_ms,
            commit_group: s.commit_group,
            properties: s.properties,
        }),
        schema,
        event_time: s.event_time,
        on_error: s.on_error,
    })
}

fn stdin_source(rest: Json, at: &Path, cx: &mut Ctx<'_>) -> Option<SourceParts> {
    let s: StdinSourceSpec = parse_spec(rest, at, cx)?;
    let schema = schema_from(&s.schema, &at.key("schema"), cx)?;
    Some(SourceParts {
        kind: SourceKind::Stdin { format: s.format },
        schema,
        event_time: s.event_time,
        on_error: s.on_error,
    })
}

fn generator_source(rest: Json, at: &Path, cx: &mut Ctx<'_>) -> Option<SourceParts> {
    let s: GeneratorSpec = parse_spec(rest, at, cx)?;
    let schema = generator_schema(&s, at, cx)?;
    if s.partitions == 0 {
        cx.err(at.key("partitions"), "partitions must be at least 1");
    }
    let event_time = s.event_time.clone();
    Some(SourceParts {
        kind: SourceKind::Generator(s),
        schema,
        event_time,
        on_error: OnError::Route,
    })
}

fn nexmark_source(rest: Json, at: &Path, cx: &mut Ctx<'_>) -> Option<SourceParts> {
    let s: NexmarkSpec = parse_spec(rest, at, cx)?;
    if s.partitions == 0 {
        cx.err(at.key("partitions"), "partitions must be at least 1");
    }
    let event_time = EventTimeSpec {
        field: "date_time".into(),
        max_out_of_order_ms: s.max_out_of_order_ms,
    };
    Some(SourceParts {
        schema: nexmark_schema(s.events),
        kind: SourceKind::Nexmark(s),
        event_time: Some(event_time),
        on_error: OnError::Route,
    })
}

/// The schema a generator's field patterns produce; `None` (with every
/// problem reported) when any pattern is invalid.
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
        let ty = field_type(g, s.count, &at.key("fields").key(name), cx);
        fields.push((name.clone(), ty));
    }
    (cx.diags.len() == before).then(|| Schema::new(fields))
}

/// The type of the values pattern `g` generates; reports an invalid pattern
/// at `p`.
/// Whether `start + i * step` stays in i64 for every record number below `count`.
fn linear_fits(start: i64, step: i64, count: u64) -> bool {
    let last = i128::from(start) + i128::from(step) * i128::from(count.saturating_sub(1));
    i64::try_from(last).is_ok()
}

fn field_type(g: &FieldGen, count: u64, p: &Path, cx: &mut Ctx<'_>) -> Type {
    match g {
        FieldGen::Sequence { start, step } => {
            if !linear_fits(*start, *step, count) {
                cx.err(
                    p.clone(),
                    format!(
                        "the sequence overflows an int within {count} records; lower start or step"
                    ),
                );
            }
            Type::Int
        }
        FieldGen::Random { min, max } => {
            if min > max {
                cx.err(p.clone(), "random needs min <= max");
            }
            Type::Int
        }
        FieldGen::RandomFloat { min, max } => {
            let valid = min.is_finite() && max.is_finite() && min < max && (max - min).is_finite();
            if !valid {
                cx.err(
                    p.clone(),
                    "random_float needs finite min < max, with max - min finite",
                );
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
        FieldGen::Timestamp { start, step_ms } => {
            if !linear_fits(*start, *step_ms, count) {
                cx.err(
                    p.clone(),
                    format!(
                        "the timestamps overflow within {count} records; lower start or step_ms"
                    ),
                );
            }
            Type::Timestamp
        }
    }
}

/// The schema declared as `{"field": "type", ...}`.
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

/// The event-time field index and allowed lateness of a source; reports a
/// missing spec when the job runs on event time.
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

/// A source's outputs: the main stream and `errors`.
fn source_ports(schema: &Schema) -> Vec<Port> {
    vec![
        Port::new("", schema.clone()),
        Port::new(ERRORS_PORT, errors_schema()),
    ]
}

/// `p` relative to the graph file's directory `base`.
pub(super) fn resolve_path(base: &FsPath, p: &str) -> PathBuf {
    let p = FsPath::new(p);
    if p.is_absolute() || base == FsPath::new(".") {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

//! The JSON Schema of the graph format (`lockstep schema`), generated from the
//! config types that deserialize a graph, so that editors can complete and
//! check graph files.
//!
//! Sources, sinks and nodes are each a union tagged by `type`: a `type` enum,
//! then one `if`/`then` per type that applies that type's own fields (with
//! `additionalProperties: false`, as `deny_unknown_fields`). The node types are
//! the built-in registry's; a node type added to it without a line in
//! `NODE_CONFIGS` fails this module's tests. The schema cannot check what
//! needs the whole graph (input references, expression types, cycles):
//! `lockstep validate` remains the authority.

use std::borrow::Cow;

use indexmap::IndexMap;
use schemars::generate::SchemaSettings;
use schemars::transform::RestrictFormats;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value as Json};

use crate::graph::spec::{
    CheckpointSpec, FileSinkSpec, FileSourceSpec, GeneratorSpec, KafkaSinkSpec, KafkaSourceSpec,
    NexmarkSpec, NullSinkSpec, OnError, StdinSourceSpec, StdoutSinkSpec, TimeSpec,
};
use lockstep_operators::registry::NODES;
use lockstep_operators::{aggregate, filter, join, map, route, union, window};

/// The JSON Schema (draft 2020-12) of a graph file with the built-in node
/// types: what `lockstep schema` prints.
pub fn graph_schema() -> Json {
    // Rust's formats (`uint64`, `double`) are not JSON Schema's: drop them.
    let generator = SchemaSettings::draft2020_12()
        .with_transform(RestrictFormats::default())
        .into_generator();
    let mut root = generator.into_root_schema_for::<GraphFile>().to_value();
    tidy(&mut root);
    // `$schema`, `title` and `description` first, for a reader of the file.
    let Json::Object(mut fields) = root else {
        return root;
    };
    let mut ordered = Map::new();
    for key in ["$schema", "title", "description"] {
        if let Some(v) = fields.shift_remove(key) {
            ordered.insert(key.to_string(), v);
        }
    }
    ordered.extend(fields);
    Json::Object(ordered)
}

/// Makes doc comments read as text (their line breaks become spaces; blank
/// lines stay paragraph breaks) and drops `"default": null`, which says no
/// more than an optional field does.
fn tidy(schema: &mut Json) {
    match schema {
        Json::Object(map) => {
            if map.get("default") == Some(&Json::Null) {
                map.shift_remove("default");
            }
            if let Some(Json::String(text)) = map.get_mut("description") {
                *text = text
                    .split("\n\n")
                    .map(|para| {
                        para.split('\n')
                            .map(str::trim)
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect::<Vec<_>>()
                    .join("\n\n");
            }
            map.values_mut().for_each(tidy);
        }
        Json::Array(items) => items.iter_mut().for_each(tidy),
        _ => {}
    }
}

/// A function that gives the schema of a config type's own fields.
type ConfigSchema = fn(&mut SchemaGenerator) -> Schema;

/// The config type of every built-in node type, in registry order.
const NODE_CONFIGS: &[(&str, ConfigSchema)] = &[
    ("filter", filter::FilterConfig::json_schema),
    ("map", map::MapConfig::json_schema),
    ("union", union::UnionConfig::json_schema),
    ("route", route::RouteConfig::json_schema),
    ("aggregate", aggregate::AggregateConfig::json_schema),
    ("window", window::WindowConfig::json_schema),
    ("join", join::JoinConfig::json_schema),
];

/// The spec type of every source type.
const SOURCE_SPECS: &[(&str, ConfigSchema)] = &[
    ("file", FileSourceSpec::json_schema),
    ("stdin", StdinSourceSpec::json_schema),
    ("generator", GeneratorSpec::json_schema),
    ("nexmark", NexmarkSpec::json_schema),
    ("kafka", KafkaSourceSpec::json_schema),
];

/// The spec type of every sink type.
const SINK_SPECS: &[(&str, ConfigSchema)] = &[
    ("file", FileSinkSpec::json_schema),
    ("stdout", StdoutSinkSpec::json_schema),
    ("null", NullSinkSpec::json_schema),
    ("kafka", KafkaSinkSpec::json_schema),
];

/// A name in `sources`, `nodes` or `sinks`: no `.` (it separates ports) and
/// no whitespace, as the validator requires.
const NAME_PATTERN: &str = r"^[^.\s]+$";

// The top level, which `graph::validate::top` checks by hand rather than
// through a struct: `top_level_fields_match_the_validator` keeps the two in
// step.
/// A lockstep job graph (graph format v1): sources, nodes and sinks. Generated
/// by `lockstep schema`; `lockstep validate` remains the authority (it also
/// checks input references, expression types and cycles).
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Graph", title = "lockstep graph")]
#[allow(dead_code)] // Only described, never built.
struct GraphFile {
    /// The graph format version: always 1.
    #[schemars(schema_with = "version_schema")]
    version: u64,
    /// The job's name, used in messages; default: the graph file's name
    /// without its extension.
    #[schemars(transform = not_null)]
    name: Option<String>,
    /// How records are grouped into epochs: `{"epoch_ms": E}` (E milliseconds
    /// of event time) or `{"epoch_records": N}` (N records of each
    /// partition). Exactly one.
    time: TimeSpec,
    /// With `--state`: checkpoint every this many epochs.
    #[schemars(transform = not_null)]
    checkpoint: Option<CheckpointSpec>,
    /// Source name → definition. Names are shared with nodes and sinks.
    #[schemars(extend("minProperties" = 1, "propertyNames" = {"pattern": NAME_PATTERN}))]
    sources: IndexMap<String, SourceDef>,
    /// Node name → definition; an upstream is named by `input` (or `inputs`,
    /// `left`, `right`), another output by `name.port`.
    #[schemars(transform = not_null, extend("propertyNames" = {"pattern": NAME_PATTERN}))]
    nodes: Option<IndexMap<String, NodeDef>>,
    /// Sink name → definition.
    #[schemars(extend("minProperties" = 1, "propertyNames" = {"pattern": NAME_PATTERN}))]
    sinks: IndexMap<String, SinkDef>,
    /// Test cases for `lockstep test` (see docs/testing.md).
    #[schemars(transform = not_null)]
    tests: Option<TestCases>,
}

fn version_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer", "const": 1 })
}

/// Drops `null` from an optional top-level field's schema: the validator
/// reads the top level by hand and rejects `null` there (in the configs it
/// reads with serde, an `Option` field accepts `null`, and so does the
/// schema).
fn not_null(schema: &mut Schema) {
    if let Some(Json::Array(types)) = schema.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            schema.insert("type".into(), only);
        }
    }
    if let Some(Json::Array(any)) = schema.remove("anyOf") {
        let mut rest: Vec<Json> = any
            .into_iter()
            .filter(|s| s.get("type") != Some(&json!("null")))
            .collect();
        match (rest.len(), rest.first()) {
            (1, Some(Json::Object(_))) => {
                if let Some(Json::Object(inner)) = rest.pop() {
                    for (k, v) in inner {
                        schema.insert(k, v);
                    }
                }
            }
            _ => {
                schema.insert("anyOf".into(), Json::Array(rest));
            }
        }
    }
}

/// The `tests` section: an object for now (its cases are not described yet).
struct TestCases;

impl JsonSchema for TestCases {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "TestCases".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "object" })
    }
}

/// A source definition, tagged by `type`.
struct SourceDef;

impl JsonSchema for SourceDef {
    fn schema_name() -> Cow<'static, str> {
        "Source".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let variants = SOURCE_SPECS
            .iter()
            .map(|(tag, spec)| Variant::new(generator, tag, *spec, "Source"))
            .collect();
        tagged_union(
            generator,
            "The source type.",
            "A source: `type` picks one of the source types, each with its own fields.",
            variants,
        )
    }
}

/// A sink definition, tagged by `type`.
struct SinkDef;

impl JsonSchema for SinkDef {
    fn schema_name() -> Cow<'static, str> {
        "Sink".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let variants = SINK_SPECS
            .iter()
            .map(|(tag, spec)| Variant::new(generator, tag, *spec, "Sink"))
            .collect();
        tagged_union(
            generator,
            "The sink type.",
            "A sink: `type` picks one of the sink types, each with its own fields.",
            variants,
        )
    }
}

/// A node definition, tagged by `type`; every node type also takes
/// `on_error` (the validator reads it before the node's config).
struct NodeDef;

impl JsonSchema for NodeDef {
    fn schema_name() -> Cow<'static, str> {
        "Node".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut on_error = generator.subschema_for::<OnError>();
        on_error.insert(
            "description".into(),
            "What to do with a record whose expression fails: `route` (default) sends it to the node's `errors` output, `fail` stops the job.".into(),
        );
        on_error.insert("default".into(), "route".into());
        let variants = NODE_CONFIGS
            .iter()
            .map(|(tag, config)| {
                let mut v = Variant::new(generator, tag, *config, "Node");
                if let Some(Json::Object(properties)) = v.schema.get_mut("properties") {
                    properties.insert("on_error".into(), on_error.clone().to_value());
                }
                if let Some(kind) = NODES.iter().find(|k| k.name() == *tag) {
                    v.summary = Some(kind.summary());
                    v.schema.insert("description".into(), kind.summary().into());
                }
                v
            })
            .collect();
        tagged_union(
            generator,
            "The node type.",
            "A node: `type` picks one of the built-in node types, each with its own fields.",
            variants,
        )
    }
}

/// One member of a tagged union: its `type` value, its name in `$defs`
/// and the schema of the whole object (the tag included).
struct Variant {
    tag: &'static str,
    def: String,
    summary: Option<&'static str>,
    schema: Schema,
}

impl Variant {
    /// The variant `tag` whose other fields are those of `config`, named
    /// like `FileSource` in `$defs`.
    fn new(
        generator: &mut SchemaGenerator,
        tag: &'static str,
        config: ConfigSchema,
        kind: &str,
    ) -> Variant {
        let mut schema = config(generator);
        let tag_schema = json!({ "const": tag });
        let mut properties = Map::new();
        properties.insert("type".into(), tag_schema);
        if let Some(Json::Object(own)) = schema.get("properties") {
            properties.extend(own.clone());
        }
        schema.insert("properties".into(), Json::Object(properties));
        let mut required = vec![json!("type")];
        if let Some(Json::Array(own)) = schema.get("required") {
            required.extend(own.iter().cloned());
        }
        schema.insert("required".into(), Json::Array(required));
        let mut chars = tag.chars();
        let def = chars
            .next()
            .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str() + kind)
            .unwrap_or_default();
        Variant {
            tag,
            def,
            summary: None,
            schema,
        }
    }
}

/// The union of `variants`, tagged by `type`: a `type` enum (an unknown type
/// fails there, with the list), then each type's own schema, from `$defs`.
fn tagged_union(
    generator: &mut SchemaGenerator,
    type_description: &str,
    description: &str,
    variants: Vec<Variant>,
) -> Schema {
    let tags: Vec<&str> = variants.iter().map(|v| v.tag).collect();
    let mut type_schema = json!({ "description": type_description, "enum": tags });
    if variants.iter().all(|v| v.summary.is_some()) {
        let summaries: Vec<&str> = variants.iter().filter_map(|v| v.summary).collect();
        // VS Code shows these beside each value it completes.
        type_schema["markdownEnumDescriptions"] = json!(summaries);
    }
    let mut branches = Vec::new();
    for v in variants {
        branches.push(json!({
            "if": { "properties": { "type": { "const": v.tag } }, "required": ["type"] },
            "then": { "$ref": format!("#/$defs/{}", v.def) },
        }));
        generator
            .definitions_mut()
            .insert(v.def, v.schema.to_value());
    }
    json_schema!({
        "description": description,
        "type": "object",
        "required": ["type"],
        "properties": { "type": type_schema },
        "allOf": branches,
    })
}

#[cfg(test)]
mod tests;

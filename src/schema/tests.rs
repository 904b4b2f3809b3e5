//! The generated schema against the repository's graphs: every example and
//! docs graph is valid, known mistakes are not, and the node types are the
//! registry's.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value as Json};

use super::graph_schema;
use crate::graph::Graph;
use lockstep_operators::registry::{Registry, NODES};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn validator() -> jsonschema::Validator {
    jsonschema::draft202012::new(&graph_schema()).expect("the schema compiles")
}

/// Every schema error of `graph`, as `path: message`.
fn errors(v: &jsonschema::Validator, graph: &Json) -> Vec<String> {
    v.iter_errors(graph)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn parse(text: &str, what: &str) -> Json {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: not JSON: {e}"))
}

#[test]
fn the_schema_is_a_valid_draft_2020_12_schema() {
    let schema = graph_schema();
    jsonschema::meta::validate(&schema).expect("valid against the 2020-12 meta-schema");
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["title"], "lockstep graph");
    assert_eq!(schema, graph_schema(), "generation is deterministic");
}

#[test]
fn node_types_are_exactly_the_builtin_registry() {
    let schema = graph_schema();
    let types: Vec<&str> = schema["$defs"]["Node"]["properties"]["type"]["enum"]
        .as_array()
        .expect("a type enum")
        .iter()
        .map(|t| t.as_str().expect("a string"))
        .collect();
    assert_eq!(
        types,
        Registry::builtin().names(),
        "every built-in node type needs a line in schema::NODE_CONFIGS"
    );
}

/// A graph with one source `in` (the registry examples' schema) and `node`.
fn graph_with_node(node: Json) -> Json {
    json!({
        "version": 1,
        "time": { "epoch_ms": 1000 },
        "sources": { "in": {
            "type": "stdin",
            "schema": { "user": "string", "url": "string", "ts": "timestamp", "bytes": "int", "score": "float" },
            "event_time": { "field": "ts" }
        } },
        "nodes": { "n": node },
        "sinks": { "out": { "type": "stdout", "input": "n" } }
    })
}

#[test]
fn every_registry_example_is_valid() {
    let v = validator();
    for kind in NODES {
        let graph = graph_with_node(parse(kind.example(), kind.name()));
        assert_eq!(errors(&v, &graph), Vec::<String>::new(), "{}", kind.name());
    }
}

#[test]
fn every_example_graph_is_valid() {
    let v = validator();
    let mut checked = 0;
    for dir in fs::read_dir(root().join("examples"))
        .expect("examples/")
        .flatten()
    {
        let Ok(files) = fs::read_dir(dir.path()) else {
            continue;
        };
        for f in files.flatten().map(|f| f.path()) {
            // `*.test.json` files hold test cases for `lockstep test`, not graphs.
            let name = f.file_name().unwrap_or_default().to_string_lossy();
            if name.ends_with(".json") && !name.ends_with(".test.json") {
                let text = fs::read_to_string(&f).expect("readable");
                let graph = parse(&text, &f.display().to_string());
                assert_eq!(errors(&v, &graph), Vec::<String>::new(), "{}", f.display());
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "found only {checked} example graphs");
}

/// The JSON code blocks of a Markdown file: (first line, info string, text).
fn json_blocks(file: &Path) -> Vec<(usize, String, String)> {
    let text = fs::read_to_string(file).expect("readable");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let info = lines[i].trim();
        if info == "```json" || info.starts_with("```json ") {
            let start = i + 1;
            let end = start
                + lines[start..]
                    .iter()
                    .position(|l| l.trim() == "```")
                    .expect("a closed block");
            out.push((start + 1, info.to_string(), lines[start..end].join("\n")));
            i = end;
        }
        i += 1;
    }
    out
}

/// Every graph in the docs: each ```` ```json lockstep ```` block (the docs
/// test runs them), and each other JSON block that is a whole graph the
/// validator accepts (the rest are fragments or sketches such as `"...": {}`).
#[test]
fn every_docs_graph_is_valid() {
    let v = validator();
    let mut files: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .expect("docs/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.push(root().join("README.md"));
    files.sort();
    let mut checked = 0;
    for f in &files {
        for (line, info, text) in json_blocks(f) {
            let at = format!("{}:{line}", f.display());
            let is_graph = info == "```json lockstep"
                || Graph::from_json_str(&text, &at, &root(), &Registry::builtin()).is_ok();
            if !is_graph {
                continue;
            }
            assert_eq!(errors(&v, &parse(&text, &at)), Vec::<String>::new(), "{at}");
            checked += 1;
        }
    }
    assert!(checked >= 10, "found only {checked} docs graphs");
}

/// A valid graph, changed by `edit`.
fn broken(edit: impl FnOnce(&mut Json)) -> Json {
    let mut g = graph_with_node(json!({ "type": "filter", "input": "in", "where": "bytes > 1" }));
    edit(&mut g);
    g
}

#[test]
fn common_mistakes_are_invalid_where_they_are() {
    let v = validator();
    assert_eq!(errors(&v, &broken(|_| ())), Vec::<String>::new());
    let set = |path: &'static [&'static str], value: Json| {
        broken(move |g| {
            let (last, parents) = path.split_last().expect("a path");
            let mut at = g;
            for p in parents {
                at = &mut at[*p];
            }
            at[*last] = value;
        })
    };
    // (mistake, where the schema reports it, graph)
    let cases: Vec<(&str, &str, Json)> = vec![
        (
            "unknown field in a source",
            "/sources/in",
            set(&["sources", "in", "pth"], json!("x")),
        ),
        (
            "unknown node type",
            "/nodes/n/type",
            set(&["nodes", "n", "type"], json!("fitler")),
        ),
        (
            "unknown sink format",
            "/sinks/out/format",
            set(&["sinks", "out", "format"], json!("parquet")),
        ),
        (
            "unknown field in a node",
            "/nodes/n",
            set(&["nodes", "n", "wher"], json!("true")),
        ),
        (
            "a field of another node type",
            "/nodes/n",
            set(&["nodes", "n", "select"], json!({ "a": "user" })),
        ),
        (
            "unknown schema type",
            "/sources/in/schema/user",
            set(&["sources", "in", "schema", "user"], json!("strng")),
        ),
        (
            "unknown on_error",
            "/nodes/n/on_error",
            set(&["nodes", "n", "on_error"], json!("ignore")),
        ),
        (
            "both time modes",
            "/time",
            set(&["time", "epoch_records"], json!(10)),
        ),
        ("version 2", "/version", set(&["version"], json!(2))),
        ("a null name", "/name", set(&["name"], Json::Null)),
        ("unknown top-level field", "", set(&["sink"], json!({}))),
        ("no sinks", "/sinks", set(&["sinks"], json!({}))),
        (
            "a '.' in a name",
            "/nodes",
            set(
                &["nodes", "a.b"],
                json!({ "type": "filter", "input": "in", "where": "true" }),
            ),
        ),
        (
            "a union of one input",
            "/nodes/n/inputs",
            set(
                &["nodes", "n"],
                json!({ "type": "union", "inputs": ["in"] }),
            ),
        ),
        (
            "two window kinds",
            "/nodes/n/window",
            set(
                &["nodes", "n"],
                json!({ "type": "window", "input": "in", "window": { "tumbling_ms": 10, "session": { "gap_ms": 5 } } }),
            ),
        ),
    ];
    for (what, path, graph) in cases {
        let errs = errors(&v, &graph);
        assert!(
            !errs.is_empty() && errs.iter().all(|e| e.starts_with(&format!("{path}: "))),
            "{what}: expected errors at {path:?}, got {errs:#?}"
        );
    }
}

/// Golden error cases whose mistake is one of shape (a field, a type name,
/// an enum value), which the schema catches too.
#[test]
fn golden_shape_errors_are_invalid() {
    let v = validator();
    for case in [
        "03-not-an-object",
        "04-unknown-top-level-field",
        "05-missing-version",
        "06-unsupported-version",
        "07-missing-time",
        "08-time-both-modes",
        "09-unknown-node-type",
        "10-unknown-node-field",
        "19-unknown-source-type",
        "20-source-without-path",
        "21-unknown-schema-type",
        "32-several-errors-at-once",
        "33-kafka-source-fields",
        "42-several-errors-in-one-object",
    ] {
        let path = root()
            .join("tests/golden/errors")
            .join(case)
            .join("graph.json");
        let text = fs::read_to_string(&path).expect("readable");
        assert!(!v.is_valid(&parse(&text, case)), "{case} should be invalid");
    }
}

/// The names the validator lists after `expected one of` (or `one of`) when
/// it rejects `graph`'s member `bad` of `section` (`""` for the top level).
fn names_the_validator_accepts(graph: &Json, path: &str, list_after: &str) -> Vec<String> {
    let err = Graph::from_json_str(&graph.to_string(), "g.json", &root(), &Registry::builtin())
        .expect_err("the graph has an unknown member");
    let d = err
        .diagnostics
        .iter()
        .find(|d| d.path.to_string() == path)
        .unwrap_or_else(|| panic!("no diagnostic at {path}: {err}"));
    let list = d
        .message
        .split_once(list_after)
        .unwrap_or_else(|| panic!("no list of names in: {}", d.message))
        .1;
    let names: Vec<String> = list
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert!(!names.is_empty(), "no names in: {}", d.message);
    names
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn keys(v: &Json) -> Vec<String> {
    v.as_object().expect("an object").keys().cloned().collect()
}

/// The top level is checked by hand (`graph::validate::top`), not through
/// the schema's struct: the two must accept the same fields.
#[test]
fn top_level_fields_match_the_validator() {
    let graph = broken(|g| g["zzz_unknown"] = json!(1));
    let accepted = names_the_validator_accepts(&graph, "zzz_unknown", "expected one of");
    let schema = graph_schema();
    assert_eq!(
        sorted(keys(&schema["properties"])),
        sorted(accepted),
        "schema::GraphFile and the validator's top-level fields differ"
    );
}

/// The source and sink types the validator knows are the schema's.
#[test]
fn source_and_sink_types_match_the_validator() {
    let schema = graph_schema();
    let types = |def: &str| -> Vec<String> {
        schema["$defs"][def]["properties"]["type"]["enum"]
            .as_array()
            .expect("a type enum")
            .iter()
            .map(|t| t.as_str().expect("a string").to_string())
            .collect()
    };
    let graph = broken(|g| g["sources"]["in"]["type"] = json!("zzz"));
    let sources = names_the_validator_accepts(&graph, "sources.in.type", "; one of");
    assert_eq!(types("Source"), sources);
    let graph = broken(|g| g["sinks"]["out"]["type"] = json!("zzz"));
    let sinks = names_the_validator_accepts(&graph, "sinks.out.type", "; one of");
    assert_eq!(types("Sink"), sinks);
}

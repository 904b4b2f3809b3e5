//! `lockstep test`: a graph's test cases, run in memory at several worker
//! counts, compared with what they expect.
//!
//! A case gives records for some sources and expects records from some
//! sinks or node outputs. Each case runs the graph with those sources
//! replaced by the given records and every sink replaced by an in-memory
//! capture (a test writes no file, no topic, nothing on standard output).
//! Every run of a case must match its expectations, and the runs at
//! different worker counts must capture byte-identical records.
//!
//! Results never depend on the order runs finish in: cases run on a
//! bounded pool, and the report lists them in file and declaration order.

mod compare;
mod report;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value as Json;

use lockstep_operators::config::{parse_config, Diag, Path};

use crate::graph::{Capture, Diagnostic, GraphError, PortRef, Severity, SinkDef, SinkKind};
use crate::graph::{PosIndex, Producer};
use crate::{Graph, Registry, RunOptions};

pub use compare::Order;
pub use report::{CaseResult, FileResult, Outcome, Report};

/// How `lockstep test` runs.
#[derive(Clone, Debug)]
pub struct TestOptions {
    /// The worker counts every case runs at (default 1 and 4).
    pub workers: Vec<usize>,
    /// How many runs may go on at once.
    pub jobs: usize,
    /// Rewrite golden files with what the runs captured.
    pub update: bool,
    /// Run only cases whose name contains this.
    pub filter: Option<String>,
}

impl Default for TestOptions {
    fn default() -> Self {
        TestOptions {
            workers: vec![1, 4],
            jobs: 1,
            update: false,
            filter: None,
        }
    }
}

/// One test case as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    /// What the case checks (shown with its result when it fails, and in
    /// JUnit output).
    #[serde(default)]
    description: Option<String>,
    /// Source name → its records.
    #[serde(default)]
    inputs: IndexMap<String, Json>,
    /// Sink or output name → the records expected.
    #[serde(default)]
    expect: IndexMap<String, Json>,
    /// Sinks or outputs that must produce nothing.
    #[serde(default)]
    no_output_from: Vec<String>,
    /// The job must fail with a message containing this text.
    #[serde(default)]
    fails_with: Option<String>,
}

/// An input given as an object.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputObj {
    records: Option<Vec<Json>>,
    lines: Option<Vec<String>>,
    file: Option<String>,
}

/// An expectation given as an object.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectObj {
    records: Option<Vec<Json>>,
    file: Option<String>,
    #[serde(default)]
    order: Order,
}

/// A source's input in one case.
#[derive(Clone, Debug)]
enum Input {
    /// Records as JSON objects, written as jsonl.
    Records(Vec<Json>),
    /// Raw lines in the source's format (for bad-input cases).
    Lines(Vec<String>),
    /// A file in the source's format.
    File(PathBuf),
}

/// What one output must hold.
#[derive(Clone, Debug)]
pub struct Expect {
    /// The sink, or the output (`node`, `node.port`).
    pub target: String,
    /// The records, or a golden file.
    pub what: Expected,
    /// Exact order or any order.
    pub order: Order,
}

/// Expected records.
#[derive(Clone, Debug)]
pub enum Expected {
    /// Inline JSON objects.
    Records(Vec<Json>),
    /// A golden jsonl file (rewritten by `--update`).
    File(PathBuf),
    /// No records at all (`no_output_from`).
    Nothing,
}

/// A case, checked against its graph.
#[derive(Clone, Debug)]
pub struct Case {
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: Option<String>,
    inputs: Vec<(String, Input)>,
    /// Its expectations, in declaration order (then `no_output_from`).
    pub expect: Vec<Expect>,
    /// The error the job must fail with.
    pub fails_with: Option<String>,
}

/// A graph file and its cases.
#[derive(Debug)]
pub struct TestFile {
    /// The graph file as given.
    pub path: PathBuf,
    /// The graph's JSON without `tests`.
    root: Json,
    /// Where relative paths of the graph resolve.
    base: PathBuf,
    /// Its cases, in order.
    pub cases: Vec<Case>,
}

fn diag_error(file: &str, pos: Option<&PosIndex>, d: Diag) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        file: file.to_string(),
        at: pos.and_then(|p| p.find(&d.path)),
        path: d.path,
        message: d.message,
    }
}

fn one_error(file: &str, message: String) -> GraphError {
    GraphError {
        diagnostics: vec![diag_error(file, None, Diag::new(Path::root(), message))],
    }
}

/// Where a graph's sibling test file would be: `job.json` → `job.test.json`.
pub fn sibling(path: &FsPath) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{stem}.test.json"))
}

/// Reads a graph file and its cases (its `tests` section, or its sibling
/// `*.test.json`), checking the cases against the graph.
///
/// # Errors
/// Every problem with the graph or its cases, located.
pub fn load(path: &FsPath, registry: &Registry) -> Result<TestFile, GraphError> {
    let label = path.display().to_string();
    // The graph itself must validate as it is.
    let graph = Graph::load_with(path, registry)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| one_error(&label, format!("cannot read the graph file: {e}")))?;
    let mut root: Json =
        serde_json::from_str(&text).map_err(|e| one_error(&label, format!("not JSON: {e}")))?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), FsPath::to_path_buf);
    let inline = root.as_object_mut().and_then(|o| o.remove("tests"));
    let side = sibling(path);
    let (tests, tests_label, tests_text) = match (inline, side.exists()) {
        (Some(_), true) => {
            return Err(one_error(
                &label,
                format!(
                    "tests are given twice: in the graph's \"tests\" and in {}; keep one",
                    side.display()
                ),
            ))
        }
        (Some(t), false) => (t, label.clone(), text),
        (None, true) => {
            let side_label = side.display().to_string();
            let t = std::fs::read_to_string(&side)
                .map_err(|e| one_error(&side_label, format!("cannot read the test file: {e}")))?;
            let v: Json = serde_json::from_str(&t)
                .map_err(|e| one_error(&side_label, format!("not JSON: {e}")))?;
            let Json::Object(mut o) = v else {
                return Err(one_error(
                    &side_label,
                    "a test file is one JSON object: {\"tests\": {...}}".into(),
                ));
            };
            let tests = o.remove("tests");
            if let Some(k) = o.keys().next() {
                return Err(one_error(
                    &side_label,
                    format!("unknown field \"{k}\"; a test file holds only \"tests\""),
                ));
            }
            let Some(tests) = tests else {
                return Err(one_error(
                    &side_label,
                    "no \"tests\": a test file is {\"tests\": {\"case name\": {...}}}".into(),
                ));
            };
            (tests, side_label, t)
        }
        (None, false) => {
            return Err(one_error(
                &label,
                format!(
                "no tests: add a \"tests\" section to the graph or write {} (see docs/testing.md)",
                side.display()
            ),
            ))
        }
    };
    let pos = PosIndex::build(&tests_text);
    let mut diags = Vec::new();
    let cases = check_cases(&tests, &graph, &root, &base, &mut diags);
    if !diags.is_empty() {
        let mut diagnostics: Vec<Diagnostic> = diags
            .into_iter()
            .map(|d| diag_error(&tests_label, Some(&pos), d))
            .collect();
        diagnostics.sort_by(|a, b| (a.at, &a.path).cmp(&(b.at, &b.path)));
        return Err(GraphError { diagnostics });
    }
    Ok(TestFile {
        path: path.to_path_buf(),
        root,
        base,
        cases,
    })
}

/// Whether `name` names a sink or an output of `graph`.
fn target_exists(graph: &Graph, name: &str) -> Result<(), String> {
    if graph.sinks.iter().any(|s| s.name == name) {
        return Ok(());
    }
    resolve_port(graph, name)
        .map(|_| ())
        .map_err(|e| format!("{e}; expect names a sink, or an output as \"node\" or \"node.port\""))
}

/// The output `name` (`producer` or `producer.port`) names.
///
/// # Errors
/// When no source or node output has that name.
pub fn resolve_port(graph: &Graph, name: &str) -> Result<PortRef, String> {
    let (prod, port) = match name.split_once('.') {
        Some((p, port)) => (p, Some(port)),
        None => (name, None),
    };
    let producer = graph
        .sources
        .iter()
        .position(|s| s.name == prod)
        .map(Producer::Source)
        .or_else(|| {
            graph
                .nodes
                .iter()
                .position(|n| n.name == prod)
                .map(Producer::Node)
        })
        .ok_or_else(|| match graph.sinks.iter().find(|s| s.name == prod) {
            Some(s) => format!(
                "\"{prod}\" is a sink, which has no output; name what it reads, \"{}\"",
                s.input.text
            ),
            None => format!("no source or node is called \"{prod}\""),
        })?;
    let index = crate::graph::find_port(graph.ports(producer), port, name)?;
    Ok(PortRef {
        producer,
        port: index,
        text: name.to_string(),
    })
}

fn check_cases(
    tests: &Json,
    graph: &Graph,
    root: &Json,
    base: &FsPath,
    diags: &mut Vec<Diag>,
) -> Vec<Case> {
    let at = Path::of(&["tests"]);
    let Json::Object(map) = tests else {
        diags.push(Diag::new(
            at,
            "\"tests\" is an object of named cases: {\"case name\": {\"inputs\": ..., \"expect\": ...}}",
        ));
        return Vec::new();
    };
    if map.is_empty() {
        diags.push(Diag::new(at, "no test cases: add at least one"));
        return Vec::new();
    }
    let mut cases = Vec::new();
    for (name, v) in map {
        let here = at.key(name);
        let spec: CaseSpec = match parse_config(v.clone()) {
            Ok(s) => s,
            Err(ds) => {
                diags.extend(ds.into_iter().map(|d| d.under(&here)));
                continue;
            }
        };
        let mut inputs = Vec::new();
        for (src, v) in &spec.inputs {
            let p = here.key("inputs").key(src);
            match check_input(src, v, graph, root, base, &p) {
                Ok(i) => inputs.push((src.clone(), i)),
                Err(d) => diags.extend(d),
            }
        }
        let mut expect = Vec::new();
        for (t, v) in &spec.expect {
            let p = here.key("expect").key(t);
            if let Err(m) = target_exists(graph, t) {
                diags.push(Diag::new(p.clone(), m));
                continue;
            }
            match check_expect(t, v, base, &p) {
                Ok(e) => expect.push(e),
                Err(d) => diags.extend(d),
            }
        }
        for (i, t) in spec.no_output_from.iter().enumerate() {
            let p = here.key("no_output_from").index(i);
            if let Err(m) = target_exists(graph, t) {
                diags.push(Diag::new(p, m));
                continue;
            }
            if spec.expect.contains_key(t) {
                diags.push(Diag::new(p, format!("\"{t}\" is also in expect; keep one")));
                continue;
            }
            expect.push(Expect {
                target: t.clone(),
                what: Expected::Nothing,
                order: Order::Exact,
            });
        }
        if spec.fails_with.is_some() && !(spec.expect.is_empty() && spec.no_output_from.is_empty())
        {
            diags.push(Diag::new(
                here.key("fails_with"),
                "a case that expects the job to fail checks no output: remove \"expect\" and \"no_output_from\", or \"fails_with\"",
            ));
        }
        if spec.expect.is_empty() && spec.no_output_from.is_empty() && spec.fails_with.is_none() {
            diags.push(Diag::new(
                here.clone(),
                "the case checks nothing: give \"expect\", \"no_output_from\" or \"fails_with\"",
            ));
        }
        for s in &graph.sources {
            let needs = match &s.kind {
                crate::graph::SourceKind::Stdin { .. } => Some("standard input"),
                crate::graph::SourceKind::Kafka(_) => Some("a Kafka topic"),
                _ => None,
            };
            if let Some(what) = needs {
                if !spec.inputs.contains_key(&s.name) {
                    diags.push(Diag::new(
                        here.key("inputs"),
                        format!(
                            "source \"{}\" reads {what}, which a test cannot replay; give its records in inputs.{}",
                            s.name, s.name
                        ),
                    ));
                }
            }
        }
        cases.push(Case {
            name: name.clone(),
            description: spec.description,
            inputs,
            expect,
            fails_with: spec.fails_with,
        });
    }
    cases
}

/// An input's or expectation's object: every mistake in it, under `at`.
fn fields<T: serde::de::DeserializeOwned>(v: &Json, at: &Path) -> Result<T, Vec<Diag>> {
    parse_config(v.clone()).map_err(|ds| {
        if ds.is_empty() {
            vec![Diag::new(at.clone(), "not a valid object here")]
        } else {
            ds.into_iter().map(|d| d.under(at)).collect()
        }
    })
}

/// Records given inline: each must be a JSON object.
fn records(rs: &[Json], at: &Path) -> Result<Vec<Json>, Diag> {
    for (i, r) in rs.iter().enumerate() {
        if !r.is_object() {
            return Err(Diag::new(
                at.index(i),
                "a record is a JSON object of field → value",
            ));
        }
    }
    Ok(rs.to_vec())
}

fn check_input(
    src: &str,
    v: &Json,
    graph: &Graph,
    root: &Json,
    base: &FsPath,
    at: &Path,
) -> Result<Input, Vec<Diag>> {
    let Some(def) = graph.sources.iter().find(|s| s.name == src) else {
        let names: Vec<&str> = graph.sources.iter().map(|s| s.name.as_str()).collect();
        return Err(vec![Diag::new(
            at.clone(),
            format!(
                "no source is called \"{src}\"; the sources are {}",
                names.join(", ")
            ),
        )]);
    };
    if !root["sources"][src]
        .as_object()
        .is_some_and(|o| o.contains_key("schema"))
    {
        return Err(vec![Diag::new(
            at.clone(),
            format!(
                "source \"{}\" generates its own records ({}), so a test cannot replace them; test with its output, or read a file source instead",
                def.name,
                crate::render::source_label(&def.kind)
            ),
        )]);
    }
    match v {
        Json::Array(rs) => records(rs, at).map(Input::Records).map_err(|d| vec![d]),
        Json::Object(_) => {
            let o: InputObj = fields(v, at)?;
            match (o.records, o.lines, o.file) {
                (Some(rs), None, None) => records(&rs, &at.key("records"))
                    .map(Input::Records)
                    .map_err(|d| vec![d]),
                (None, Some(ls), None) => Ok(Input::Lines(ls)),
                (None, None, Some(f)) => {
                    let p = base.join(&f);
                    if p.is_file() {
                        Ok(Input::File(p))
                    } else {
                        Err(vec![Diag::new(
                            at.key("file"),
                            format!("no file {} (paths resolve against the graph's directory)", p.display()),
                        )])
                    }
                }
                _ => Err(vec![Diag::new(
                    at.clone(),
                    "give exactly one of \"records\", \"lines\" or \"file\"",
                )]),
            }
        }
        _ => Err(vec![Diag::new(
            at.clone(),
            "an input is an array of records, or {\"records\": [...]}, {\"lines\": [...]} or {\"file\": \"path\"}",
        )]),
    }
}

fn check_expect(target: &str, v: &Json, base: &FsPath, at: &Path) -> Result<Expect, Vec<Diag>> {
    match v {
        Json::Array(rs) => Ok(Expect {
            target: target.to_string(),
            what: Expected::Records(records(rs, at).map_err(|d| vec![d])?),
            order: Order::Exact,
        }),
        Json::Object(_) => {
            let o: ExpectObj = fields(v, at)?;
            let what = match (o.records, o.file) {
                (Some(rs), None) => {
                    Expected::Records(records(&rs, &at.key("records")).map_err(|d| vec![d])?)
                }
                (None, Some(f)) => Expected::File(base.join(f)),
                _ => {
                    return Err(vec![Diag::new(
                        at.clone(),
                        "give exactly one of \"records\" or \"file\"",
                    )])
                }
            };
            Ok(Expect {
                target: target.to_string(),
                what,
                order: o.order,
            })
        }
        _ => Err(vec![Diag::new(
            at.clone(),
            "an expectation is an array of records, or {\"records\": [...], \"order\": \"exact\"|\"any\"} or {\"file\": \"golden.jsonl\"}",
        )]),
    }
}

/// Records captured from one output: (epoch, jsonl line), in order.
type Records = Vec<(u64, String)>;

/// What one run of a case captured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Captured {
    /// Per expectation of the case, in order.
    pub outputs: Vec<Records>,
    /// Per sink of the graph, in order (compared across worker counts).
    pub sinks: Vec<(String, Records)>,
}

/// A capture's buffer.
type Buffer = Arc<Mutex<Records>>;

/// Writes a case's inputs into `dir` and returns the graph JSON that reads
/// them.
fn case_graph(file: &TestFile, case: &Case, dir: &FsPath) -> Result<Json, String> {
    let mut root = file.root.clone();
    for (k, (src, input)) in case.inputs.iter().enumerate() {
        let def = &mut root["sources"][src];
        let format = def
            .get("format")
            .and_then(Json::as_str)
            .map(str::to_string)
            .or_else(|| {
                def.get("path")
                    .or_else(|| def.get("paths").and_then(|p| p.get(0)))
                    .and_then(Json::as_str)
                    .map(|p| match crate::graph::spec::format_for_path(p) {
                        lockstep_operators::encode::Format::Csv => "csv".to_string(),
                        lockstep_operators::encode::Format::Jsonl => "jsonl".to_string(),
                    })
            })
            .unwrap_or_else(|| "jsonl".to_string());
        let (path, format) = match input {
            Input::Records(rs) => {
                let p = dir.join(format!("input-{k}.jsonl"));
                let mut text = String::new();
                for r in rs {
                    text.push_str(&serde_json::to_string(r).map_err(|e| e.to_string())?);
                    text.push('\n');
                }
                std::fs::write(&p, text)
                    .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
                (p, "jsonl".to_string())
            }
            Input::Lines(ls) => {
                let p = dir.join(format!("input-{k}.txt"));
                let mut text = String::new();
                for l in ls {
                    text.push_str(l);
                    text.push('\n');
                }
                std::fs::write(&p, text)
                    .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
                (p, format)
            }
            Input::File(p) => (p.clone(), format),
        };
        let mut new = serde_json::Map::new();
        new.insert("type".into(), Json::from("file"));
        new.insert(
            "path".into(),
            Json::from(path.to_string_lossy().into_owned()),
        );
        new.insert("format".into(), Json::from(format));
        for k in ["schema", "event_time", "on_error"] {
            if let Some(v) = def.get(k) {
                new.insert(k.into(), v.clone());
            }
        }
        *def = Json::Object(new);
    }
    Ok(root)
}

/// Compiles a case's graph with every sink, and every expected output,
/// captured into memory: the buffers per expectation, and per sink.
#[allow(clippy::type_complexity)]
fn capture_graph(
    json: &Json,
    file: &TestFile,
    case: &Case,
    registry: &Registry,
) -> Result<(Graph, Vec<Buffer>, Vec<(String, Buffer)>), String> {
    let text = serde_json::to_string(json).map_err(|e| e.to_string())?;
    let label = file.path.display().to_string();
    let mut graph = Graph::from_json_str(&text, &label, &file.base, registry)
        .map_err(|e| format!("the case's graph does not validate:\n{e}"))?;
    let sinks: Vec<(String, Buffer)> = graph
        .sinks
        .iter()
        .map(|s| (s.name.clone(), Arc::new(Mutex::new(Vec::new()))))
        .collect();
    let mut outs = Vec::new();
    let mut extra: Vec<SinkDef> = Vec::new();
    for e in &case.expect {
        if let Some((_, buf)) = sinks.iter().find(|(n, _)| *n == e.target) {
            outs.push(Arc::clone(buf));
            continue;
        }
        let buf = Arc::new(Mutex::new(Vec::new()));
        outs.push(Arc::clone(&buf));
        extra.push(capture_sink(
            &graph,
            &e.target,
            format!("expect {}", e.target),
            into_buffer(buf),
        )?);
    }
    // Every sink is captured (a test writes nothing anywhere), in the order
    // it would write.
    for (s, (_, buf)) in graph.sinks.iter_mut().zip(&sinks) {
        let order_by = match &s.kind {
            SinkKind::File { order_by, .. }
            | SinkKind::Stdout { order_by, .. }
            | SinkKind::Kafka { order_by, .. }
            | SinkKind::Capture { order_by, .. } => order_by.clone(),
            SinkKind::Null => (0..s.schema.fields().len()).collect(),
        };
        s.kind = SinkKind::Capture {
            order_by,
            capture: into_buffer(Arc::clone(buf)),
        };
    }
    graph.sinks.extend(extra);
    Ok((graph, outs, sinks))
}

/// A sink that hands the records out of output `name` (`node` or
/// `node.port`) to `capture`, ordered by all their fields (as a file sink
/// without `order_by` writes them); `sink` names it.
///
/// # Errors
/// When no output has that name.
pub fn capture_sink(
    graph: &Graph,
    name: &str,
    sink: String,
    capture: Arc<Capture>,
) -> Result<SinkDef, String> {
    let input = resolve_port(graph, name)?;
    let schema = graph.schema_of(&input).clone();
    let order_by = (0..schema.fields().len()).collect();
    Ok(SinkDef {
        name: sink,
        input,
        schema,
        kind: SinkKind::Capture { order_by, capture },
    })
}

/// A capture that appends each record to `buf`.
fn into_buffer(buf: Buffer) -> Arc<Capture> {
    Arc::new(Capture::new(move |epoch, line| {
        if let Ok(mut b) = buf.lock() {
            b.push((epoch, line.to_string()));
        }
    }))
}

/// One run's result: what it captured, or the job's error.
type RunResult = Result<Captured, String>;

/// One run of a case: (workers, result, time).
type CaseRun = (usize, RunResult, Duration);

/// Runs one case at `workers` workers.
fn run_case(file: &TestFile, case: &Case, workers: usize, registry: &Registry) -> RunResult {
    let dir = tempdir()?;
    let result = (|| {
        let json = case_graph(file, case, &dir.0)?;
        let (graph, outs, sinks) = capture_graph(&json, file, case, registry)?;
        crate::run(Arc::new(graph), &RunOptions::workers(workers)).map_err(|e| e.message)?;
        let take = |b: &Buffer| b.lock().map(|v| v.clone()).unwrap_or_default();
        Ok(Captured {
            outputs: outs.iter().map(take).collect(),
            sinks: sinks.iter().map(|(n, b)| (n.clone(), take(b))).collect(),
        })
    })();
    drop(dir);
    result
}

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> Result<TempDir, String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("lockstep-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&p).map_err(|e| format!("cannot create {}: {e}", p.display()))?;
    Ok(TempDir(p))
}

/// Runs every case of every file on a pool of `opts.jobs` threads and
/// compares; files that do not load are reported as errors.
pub fn run_tests(paths: &[PathBuf], opts: &TestOptions, registry: &Registry) -> Report {
    let mut workers = opts.workers.clone();
    workers.retain(|w| *w > 0);
    workers.sort_unstable();
    workers.dedup();
    if workers.is_empty() {
        workers.push(1);
    }
    let loaded: Vec<(PathBuf, Result<TestFile, GraphError>)> = paths
        .iter()
        .map(|p| (p.clone(), load(p, registry)))
        .collect();
    // Every (file, case, worker count) run, in report order.
    let mut tasks: Vec<(usize, usize, usize)> = Vec::new();
    for (f, (_, l)) in loaded.iter().enumerate() {
        if let Ok(tf) = l {
            for (c, case) in tf.cases.iter().enumerate() {
                if opts
                    .filter
                    .as_ref()
                    .is_some_and(|s| !case.name.contains(s.as_str()))
                {
                    continue;
                }
                for &w in &workers {
                    tasks.push((f, c, w));
                }
            }
        }
    }
    let results: Vec<Mutex<Option<(RunResult, Duration)>>> =
        tasks.iter().map(|_| Mutex::new(None)).collect();
    let queue = Mutex::new((0..tasks.len()).collect::<VecDeque<usize>>());
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.max(1).min(tasks.len().max(1)) {
            s.spawn(|| loop {
                let Some(t) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
                    return;
                };
                let (f, c, w) = tasks[t];
                let Ok(tf) = &loaded[f].1 else { continue };
                let started = Instant::now();
                let r = run_case(tf, &tf.cases[c], w, registry);
                if let Ok(mut slot) = results[t].lock() {
                    *slot = Some((r, started.elapsed()));
                }
            });
        }
    });
    let mut runs: BTreeMap<(usize, usize), Vec<CaseRun>> = BTreeMap::new();
    for (t, slot) in tasks.iter().zip(results) {
        let (r, d) = slot
            .into_inner()
            .ok()
            .flatten()
            .unwrap_or_else(|| (Err("the run did not report".into()), Duration::ZERO));
        runs.entry((t.0, t.1)).or_default().push((t.2, r, d));
    }
    let mut files = Vec::new();
    for (f, (path, l)) in loaded.into_iter().enumerate() {
        match l {
            Err(e) => files.push(FileResult {
                path,
                error: Some(e.to_string()),
                cases: Vec::new(),
            }),
            Ok(tf) => {
                let mut cases = Vec::new();
                for (c, case) in tf.cases.iter().enumerate() {
                    let Some(rs) = runs.remove(&(f, c)) else {
                        continue;
                    };
                    cases.push(compare::judge(case, rs, opts.update));
                }
                files.push(FileResult {
                    path,
                    error: None,
                    cases,
                });
            }
        }
    }
    Report { files }
}

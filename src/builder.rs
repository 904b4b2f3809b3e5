//! Building a graph from Rust: the same definitions as the JSON file, checked
//! by the same validation.

use std::path::{Path as FsPath, PathBuf};

use serde_json::{json, Map, Value as Json};

use crate::graph::{Graph, GraphError};
use crate::Registry;

/// Builds a graph in code. Each definition is the JSON object the graph file
/// would hold; [`GraphBuilder::build`] validates the whole graph exactly as
/// `lockstep validate` does.
///
/// ```
/// use serde_json::json;
/// let graph = lockstep::GraphBuilder::new("doubled")
///     .epoch_records(10)
///     .source("numbers", json!({"type": "generator", "count": 5,
///                               "fields": {"n": {"sequence": {}}}}))
///     .node("double", json!({"type": "map", "input": "numbers", "select": {"n2": "n * 2"}}))
///     .sink("out", json!({"type": "null", "input": "double"}))
///     .build(&lockstep::Registry::builtin())
///     .unwrap();
/// assert_eq!(graph.nodes.len(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct GraphBuilder {
    name: String,
    time: Json,
    sources: Map<String, Json>,
    nodes: Map<String, Json>,
    sinks: Map<String, Json>,
    base_dir: PathBuf,
}

impl GraphBuilder {
    /// A graph called `name` with epochs of 1000 records.
    pub fn new(name: &str) -> GraphBuilder {
        GraphBuilder {
            name: name.to_string(),
            time: json!({"epoch_records": 1000}),
            sources: Map::new(),
            nodes: Map::new(),
            sinks: Map::new(),
            base_dir: PathBuf::from("."),
        }
    }

    /// Epochs of `ms` milliseconds of event time.
    #[must_use]
    pub fn epoch_ms(mut self, ms: u64) -> Self {
        self.time = json!({ "epoch_ms": ms });
        self
    }

    /// Epochs of `n` records per partition.
    #[must_use]
    pub fn epoch_records(mut self, n: u64) -> Self {
        self.time = json!({ "epoch_records": n });
        self
    }

    /// Relative paths resolve against `dir`.
    #[must_use]
    pub fn base_dir(mut self, dir: &FsPath) -> Self {
        self.base_dir = dir.to_path_buf();
        self
    }

    /// Adds a source.
    #[must_use]
    pub fn source(mut self, name: &str, def: Json) -> Self {
        self.sources.insert(name.to_string(), def);
        self
    }

    /// Adds a node.
    #[must_use]
    pub fn node(mut self, name: &str, def: Json) -> Self {
        self.nodes.insert(name.to_string(), def);
        self
    }

    /// Adds a sink.
    #[must_use]
    pub fn sink(mut self, name: &str, def: Json) -> Self {
        self.sinks.insert(name.to_string(), def);
        self
    }

    /// The graph as the JSON a graph file would hold.
    pub fn to_json(&self) -> Json {
        json!({
            "version": 1,
            "name": self.name,
            "time": self.time,
            "sources": self.sources,
            "nodes": self.nodes,
            "sinks": self.sinks,
        })
    }

    /// Validates the graph with the node types of `registry`.
    ///
    /// # Errors
    /// Every problem, as `lockstep validate` would report it.
    pub fn build(&self, registry: &Registry) -> Result<Graph, GraphError> {
        let text = serde_json::to_string_pretty(&self.to_json()).unwrap_or_default();
        Graph::from_json_str(
            &text,
            &format!("<graph {}>", self.name),
            &self.base_dir,
            registry,
        )
    }
}

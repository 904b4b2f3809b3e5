//! The graph: loading, validation, and the validated model.

mod model;
mod pos;
pub mod spec;
mod validate;

use std::path::Path as FsPath;

use lockstep_operators::registry::Registry;

pub use model::{
    Capture, Diagnostic, Graph, GraphError, NodeDef, PortRef, Producer, Severity, SinkDef,
    SinkKind, SourceDef, SourceKind,
};
pub use pos::{LineCol, PosIndex};
pub use validate::{find_port, partition_path};

impl Graph {
    /// Reads and validates a graph file with the built-in node types.
    ///
    /// # Errors
    /// When the file cannot be read, or every problem with the graph.
    pub fn load(path: &FsPath) -> Result<Graph, GraphError> {
        Graph::load_with(path, &Registry::builtin())
    }

    /// Reads and validates a graph file with the node types of `registry`.
    ///
    /// # Errors
    /// When the file cannot be read, or every problem with the graph.
    pub fn load_with(path: &FsPath, registry: &Registry) -> Result<Graph, GraphError> {
        let label = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| GraphError {
            diagnostics: vec![Diagnostic {
                severity: Severity::Error,
                file: label.clone(),
                at: None,
                path: lockstep_operators::config::Path::root(),
                message: format!("cannot read the graph file: {e}"),
            }],
        })?;
        let base = path.parent().map(FsPath::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() {
            std::path::PathBuf::from(".")
        } else {
            base
        };
        validate::validate(&text, &label, &base, registry)
    }

    /// Validates graph text; `label` names it in messages and relative paths
    /// resolve against `base_dir`.
    ///
    /// # Errors
    /// Every problem with the graph.
    pub fn from_json_str(
        text: &str,
        label: &str,
        base_dir: &FsPath,
        registry: &Registry,
    ) -> Result<Graph, GraphError> {
        validate::validate(text, label, base_dir, registry)
    }
}

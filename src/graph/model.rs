//! The validated graph (the `Graph` stage): names resolved to indices,
//! schemas typed, nodes planned and in topological order. The compiler
//! accepts only this.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use lockstep_operators::config::Path;
use lockstep_operators::encode::Format;
use lockstep_operators::node::{Node, Port, TimeMode};
use lockstep_operators::value::Schema;

use super::pos::LineCol;
use super::spec::{GeneratorSpec, NexmarkSpec, OnError};

/// A validated job graph.
#[derive(Debug)]
pub struct Graph {
    /// The job's name.
    pub name: String,
    /// How epochs are derived.
    pub time: TimeMode,
    /// `checkpoint.every_epochs`, if given.
    pub checkpoint_every: Option<u64>,
    /// Sources, in declaration order.
    pub sources: Vec<SourceDef>,
    /// Nodes, in declaration order.
    pub nodes: Vec<NodeDef>,
    /// Indices into `nodes` in a topological order (declaration order where
    /// it can): the order operators are built in.
    pub order: Vec<usize>,
    /// Sinks, in declaration order.
    pub sinks: Vec<SinkDef>,
    /// Things that are allowed but probably not meant.
    pub warnings: Vec<Diagnostic>,
    /// A fingerprint per element that shapes state or output: `(kind, name,
    /// hex)` for `time` and every source, node and sink, in file order.
    pub shape: Vec<(String, String, String)>,
}

/// Which operator produces a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Producer {
    /// `graph.sources[i]`.
    Source(usize),
    /// `graph.nodes[i]`.
    Node(usize),
}

/// One output port of a source or node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRef {
    /// Who produces it.
    pub producer: Producer,
    /// The index into the producer's ports.
    pub port: usize,
    /// As the user wrote it (`name` or `name.port`).
    pub text: String,
}

/// A validated source.
#[derive(Debug)]
pub struct SourceDef {
    /// Its name.
    pub name: String,
    /// What it reads.
    pub kind: SourceKind,
    /// Its records' schema.
    pub schema: Schema,
    /// The index of the event-time field and the out-of-order bound.
    pub event_time: Option<(usize, u64)>,
    /// What a record that fails to parse does.
    pub on_error: OnError,
    /// Its ports: the main output, then `errors`.
    pub ports: Vec<Port>,
}

/// What a source reads.
#[derive(Debug, Clone)]
pub enum SourceKind {
    /// Files: one partition each, or one file split into byte ranges.
    File {
        /// The files, resolved against the graph's directory.
        files: Vec<PathBuf>,
        /// `split: K` of the single file.
        split: Option<u32>,
        /// jsonl or csv.
        format: Format,
    },
    /// Standard input, one partition.
    Stdin {
        /// jsonl or csv.
        format: Format,
    },
    /// Seeded test data.
    Generator(GeneratorSpec),
    /// Nexmark events.
    Nexmark(NexmarkSpec),
    /// A Kafka topic: its partition count comes from the brokers when the
    /// job starts ([`SourceKind::partitions`] is 0 until then).
    Kafka(KafkaSource),
}

/// A validated `kafka` source.
#[derive(Debug, Clone)]
pub struct KafkaSource {
    /// Bootstrap brokers.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// Where a fresh job starts.
    pub start: crate::kafka::Start,
    /// Stop at the high watermarks seen when the job first started.
    pub bounded: bool,
    /// Heartbeat after this long idle (0: never).
    pub idle_ms: u64,
    /// Commit offsets to this group (monitoring only).
    pub commit_group: Option<String>,
    /// Extra consumer properties.
    pub properties: indexmap::IndexMap<String, String>,
}

impl SourceKind {
    /// The number of partitions (fixed by the graph, never by `--workers`).
    pub fn partitions(&self) -> u32 {
        match self {
            SourceKind::File { files, split, .. } => {
                split.unwrap_or(u32::try_from(files.len()).unwrap_or(u32::MAX))
            }
            SourceKind::Stdin { .. } => 1,
            SourceKind::Generator(g) => g.partitions,
            SourceKind::Nexmark(n) => n.partitions,
            SourceKind::Kafka(_) => 0,
        }
    }
}

/// A validated node.
#[derive(Debug)]
pub struct NodeDef {
    /// Its name.
    pub name: String,
    /// Its node type.
    pub type_name: String,
    /// The planned node.
    pub node: Arc<dyn Node>,
    /// Its inputs, in the order the node expects them.
    pub inputs: Vec<PortRef>,
    /// Its output ports.
    pub ports: Vec<Port>,
    /// What a record that fails to evaluate does.
    pub on_error: OnError,
}

/// A validated sink.
#[derive(Debug)]
pub struct SinkDef {
    /// Its name.
    pub name: String,
    /// What it consumes.
    pub input: PortRef,
    /// The input's schema.
    pub schema: Schema,
    /// Where it writes.
    pub kind: SinkKind,
}

/// Where a sink writes.
#[derive(Debug, Clone)]
pub enum SinkKind {
    /// Files: one, or one per partition.
    File {
        /// The files, one per partition, resolved.
        paths: Vec<PathBuf>,
        /// jsonl or csv.
        format: Format,
        /// Field indices that order records within an epoch.
        order_by: Vec<usize>,
        /// Field indices hashed to choose a partition.
        key: Vec<usize>,
    },
    /// Standard output.
    Stdout {
        /// jsonl or csv.
        format: Format,
        /// Field indices that order records within an epoch.
        order_by: Vec<usize>,
    },
    /// Counts and discards.
    Null,
    /// A Kafka topic: one writer per topic partition.
    Kafka {
        /// Bootstrap brokers.
        brokers: String,
        /// The topic.
        topic: String,
        /// Field indices of the message key (`None`: no key).
        key: Option<Vec<usize>>,
        /// Field indices that order records within an epoch.
        order_by: Vec<usize>,
        /// Extra producer properties.
        properties: indexmap::IndexMap<String, String>,
    },
    /// Records handed to a function in memory, as jsonl lines in the order
    /// a file sink would write them (`lockstep test`, `lockstep tap`).
    /// Graph files cannot name it: tools add it after validation.
    Capture {
        /// Field indices that order records within an epoch.
        order_by: Vec<usize>,
        /// Where the records go.
        capture: Arc<Capture>,
    },
}

/// The receiver of a [`SinkKind::Capture`] sink: called by its one writer
/// with each record's epoch and jsonl line (no newline), epochs in order.
pub struct Capture(Box<CaptureFn>);

/// What a capture calls: `(epoch, line)`.
type CaptureFn = dyn Fn(u64, &str) + Send + Sync;

impl Capture {
    /// A capture that calls `f(epoch, line)` for each record.
    pub fn new(f: impl Fn(u64, &str) + Send + Sync + 'static) -> Capture {
        Capture(Box::new(f))
    }

    /// Hands one record over.
    pub fn record(&self, epoch: u64, line: &str) {
        (self.0)(epoch, line);
    }
}

impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Capture")
    }
}

impl Graph {
    /// The ports of a producer.
    pub fn ports(&self, p: Producer) -> &[Port] {
        match p {
            Producer::Source(i) => &self.sources[i].ports,
            Producer::Node(i) => &self.nodes[i].ports,
        }
    }

    /// The name of a producer.
    pub fn producer_name(&self, p: Producer) -> &str {
        match p {
            Producer::Source(i) => &self.sources[i].name,
            Producer::Node(i) => &self.nodes[i].name,
        }
    }

    /// The schema of a port.
    pub fn schema_of(&self, r: &PortRef) -> &Schema {
        &self.ports(r.producer)[r.port].schema
    }

    /// What a producer's bad records do.
    pub fn on_error(&self, p: Producer) -> OnError {
        match p {
            Producer::Source(i) => self.sources[i].on_error,
            Producer::Node(i) => self.nodes[i].on_error,
        }
    }
}

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The graph cannot run.
    Error,
    /// The graph runs, but probably not as meant.
    Warning,
}

/// A located problem in a graph file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The graph file as the user named it.
    pub file: String,
    /// Line and column, when known.
    pub at: Option<LineCol>,
    /// The JSON path.
    pub path: Path,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some(lc) => write!(f, "{}:{}:{}: ", self.file, lc.line, lc.col)?,
            None => write!(f, "{}: ", self.file)?,
        }
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A graph that did not validate: every problem, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphError {
    /// The errors, sorted by position.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for GraphError {}

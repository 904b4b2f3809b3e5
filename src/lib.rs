//! lockstep: a deterministic stream-processing engine on timely dataflow.
//!
//! A job is a JSON graph of sources, nodes and sinks ([`Graph`]). lockstep
//! validates it, compiles it into one timely dataflow per worker, and runs it
//! so that the output bytes depend only on the graph and on the ordered
//! contents of each input partition: never on the worker count, scheduling or
//! the clock.
//!
//! ```no_run
//! use std::sync::Arc;
//! let graph = lockstep::Graph::load(std::path::Path::new("examples/clicks/graph.json"))?;
//! let summary = lockstep::run(Arc::new(graph), &lockstep::RunOptions::workers(2))?;
//! eprintln!("{summary}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Crate layout: `lockstep-state` (keyed state) ← `lockstep-operators`
//! (values, expressions, node types) ← this crate (graph, sources, sinks,
//! runtime, CLI). Nothing depends on this crate but the binary and tests.

pub mod builder;
pub mod checkpoint;
pub mod cluster;
pub mod graph;
pub mod harness;
pub mod inspect;
pub mod kafka;
pub mod latency;
pub mod observe;
pub mod render;
pub mod runtime;
pub mod schema;
pub mod sink;
pub mod sink_kafka;
pub mod source;

pub use builder::GraphBuilder;
pub use graph::{Graph, GraphError};
pub use lockstep_operators as operators;
pub use lockstep_operators::registry::Registry;
pub use lockstep_state as state;
pub use runtime::{run, CheckpointStats, RunError, RunOptions, RunSummary};

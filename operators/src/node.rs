//! The node-type interface: how a node type parses its config, checks it
//! against its inputs' schemas, and builds its timely operators.
//!
//! A node type goes through the same three stages as the graph: its config is
//! parsed ([`NodeKind::parse`]), planned against its input schemas
//! ([`NodeConfig::plan`]), and the plan builds the operators on every worker
//! ([`Node::build`]), identically, so that every worker's dataflow matches.

use std::fmt::Debug;
use std::sync::Arc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::{OutputBuilder, OutputBuilderSession};
use timely::dataflow::operators::CapabilityTrait;
use timely::dataflow::{Scope, StreamVec};
use timely::progress::operate::FrontierInterest;

use crate::config::{Diag, Path};
use crate::encode::Encoder;
use crate::value::{Rec, Schema, Text, Value};

/// A stream of records between nodes; the timestamp is the epoch.
pub type Edge<'s> = StreamVec<'s, u64, Rec>;

/// How a job derives epochs (the graph's `time`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeMode {
    /// `{"epoch_ms": E}`: epochs of E milliseconds of event time.
    EpochMs(u64),
    /// `{"epoch_records": N}`: N records of each partition per epoch.
    EpochRecords(u64),
}

/// The name of the output port every expression-evaluating node has.
pub const ERRORS_PORT: &str = "errors";

/// One output port of a node: its name (`""` for the main output) and schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// `""` for the main output, else the name after the dot (`late`, `errors`).
    pub name: String,
    /// The schema of its records.
    pub schema: Schema,
}

impl Port {
    /// A port.
    pub fn new(name: impl Into<String>, schema: Schema) -> Port {
        Port {
            name: name.into(),
            schema,
        }
    }
}

/// What a node type is told when it plans.
#[derive(Clone, Debug)]
pub struct PlanCtx<'a> {
    /// The node's name in the graph.
    pub node: &'a str,
    /// The schemas of its inputs, in the order [`NodeConfig::inputs`] named them.
    pub inputs: &'a [Schema],
    /// How the job derives epochs.
    pub time: TimeMode,
}

/// A node type: one entry of the registry.
pub trait NodeKind: Send + Sync {
    /// The `type` users write.
    fn name(&self) -> &'static str;
    /// One line for docs and `--help`.
    fn summary(&self) -> &'static str;
    /// A complete example node (JSON, with `type`), reading from a source
    /// called `in` whose schema is [`example_schema`].
    fn example(&self) -> &'static str;
    /// Parses a node's config (the node object without `type` and `on_error`).
    ///
    /// # Errors
    /// Every problem found, with paths relative to the node.
    fn parse(&self, config: serde_json::Value) -> Result<Box<dyn NodeConfig>, Vec<Diag>>;
}

/// A parsed node config.
pub trait NodeConfig: Send + Sync + Debug {
    /// The upstream names it refers to (`name` or `name.port`), each with the
    /// path of the field that names it, in the order `plan` expects them.
    fn inputs(&self) -> Vec<(Path, String)>;
    /// Checks the config against the inputs' schemas (every expression is
    /// type-checked here) and returns the runnable node.
    ///
    /// # Errors
    /// Every problem found, with paths relative to the node.
    fn plan(&self, ctx: &PlanCtx<'_>) -> Result<Arc<dyn Node>, Vec<Diag>>;
}

/// A planned node, shared by every worker.
pub trait Node: Send + Sync + Debug {
    /// Its output ports: the main output first, then named ports.
    fn outputs(&self) -> Vec<Port>;
    /// Builds its operators; returns one stream per port of [`Node::outputs`].
    fn build<'s>(&self, scope: Scope<'s, u64>, inputs: Vec<Edge<'s>>) -> Vec<Edge<'s>>;
    /// The counters of the keys its state holds (summed over this process's
    /// workers); empty for stateless nodes.
    fn state_gauges(&self) -> Vec<Arc<lockstep_state::StateGauge>> {
        Vec::new()
    }
    /// The counter of items (stashed records, partial accumulators) it holds
    /// for epochs the frontier has not passed yet, summed over this
    /// process's workers. Sources slow down when such items pile up
    /// (backpressure: it shapes timing, never results).
    fn held_gauge(&self) -> Option<Arc<lockstep_state::StateGauge>> {
        None
    }
}

/// The schema of the source `in` that every registry example reads.
pub fn example_schema() -> Schema {
    use crate::value::Type;
    Schema::new([
        ("user", Type::String),
        ("url", Type::String),
        ("ts", Type::Timestamp),
        ("bytes", Type::Int),
        ("score", Type::Float),
    ])
}

/// The `errors` record for a record a node could not process: the node's
/// name, the reason, and the record as a JSON line (in the input's schema,
/// through `encoder`). Keeps the record's event time.
pub fn rejected(node: &str, reason: &str, encoder: &Encoder, rec: &Rec) -> Rec {
    error_record(node, reason, encoder.line(&rec.row), rec.time)
}

/// An `errors` record of a node (no partition or line): the node's name,
/// the reason, the raw text (a record, a key or a pair as a JSON line), at
/// event time `time`.
pub fn error_record(node: &str, reason: &str, raw: String, time: i64) -> Rec {
    Rec {
        time,
        row: vec![
            Value::str(node),
            Value::str(reason),
            Value::Str(Text::from(raw)),
            Value::Null,
            Value::Null,
        ],
    }
}

/// An operator's record output, as built.
pub type Output = OutputBuilder<u64, CapacityContainerBuilder<Vec<Rec>>>;

/// An operator's record outputs, activated for one scheduling.
pub type Outputs<'a> = Vec<OutputBuilderSession<'a, u64, CapacityContainerBuilder<Vec<Rec>>>>;

/// Adds `n` record outputs to `builder`: their handles and their streams.
pub fn new_outputs<'s>(
    builder: &mut OperatorBuilder<'s, u64>,
    n: usize,
) -> (Vec<Output>, Vec<Edge<'s>>) {
    (0..n)
        .map(|_| {
            let (o, s) = builder.new_output::<Vec<Rec>>();
            (OutputBuilder::from(o), s)
        })
        .unzip()
}

/// Sends `recs` (if any) on output `port` at the time of `cap`.
pub fn give_all<C: CapabilityTrait<u64>>(
    out: &mut Outputs<'_>,
    port: usize,
    cap: &C,
    recs: Vec<Rec>,
) {
    if !recs.is_empty() {
        out[port].session(cap).give_iterator(recs.into_iter());
    }
}

/// Builds a stateless operator with `ports` outputs: `logic` sends each input
/// record to at most one port (by returning its index), or drops it.
/// Records keep their epoch; nothing is buffered.
pub fn stateless<'s, L>(input: Edge<'s>, name: &str, ports: usize, mut logic: L) -> Vec<Edge<'s>>
where
    L: FnMut(Rec) -> Option<(usize, Rec)> + 'static,
{
    let mut builder = OperatorBuilder::new(name.to_string(), input.scope());
    let mut handle = builder.new_input(input, Pipeline);
    builder.set_notify_for(0, FrontierInterest::Never);
    let (mut outputs, streams) = new_outputs(&mut builder, ports);
    builder.build(move |_caps| {
        move |_frontiers| {
            let mut handles: Vec<_> = outputs.iter_mut().map(OutputBuilder::activate).collect();
            handle.for_each_stamp(|cap, data| {
                let mut sessions: Vec<_> = handles.iter_mut().map(|h| h.session(&cap)).collect();
                for batch in data {
                    for rec in batch.drain(..) {
                        if let Some((port, rec)) = logic(rec) {
                            sessions[port].give(rec);
                        }
                    }
                }
            });
        }
    });
    streams
}

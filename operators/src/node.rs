//! The node-type interface: how a node type parses its config, checks it
//! against its inputs' schemas, and builds its timely operators.
//!
//! A node type goes through the same three stages as the graph: its config is
//! parsed ([`NodeKind::parse`]), planned against its input schemas
//! ([`NodeConfig::plan`]), and the plan builds the operators on every worker
//! ([`Node::build`]), identically, so that every worker's dataflow matches.

use std::fmt::Debug;
use std::rc::Rc;
use std::sync::Arc;

use lockstep_state::{Checkpointer, KeyedState, StateDef, Table};

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
    /// The names of the state tables it keeps (its [`StateDef`]s), so that
    /// a checkpoint knows every table before the job starts; empty for
    /// stateless nodes.
    ///
    /// [`StateDef`]: lockstep_state::StateDef
    fn state_tables(&self) -> Vec<&'static str> {
        Vec::new()
    }
    /// Builds its operators in a job that checkpoints (`lockstep run
    /// --state`): a stateful node restores its tables from `state` and
    /// stages their changes as it finishes each epoch. Stateless nodes keep
    /// the default, which is [`Node::build`].
    fn build_checkpointed<'s>(
        &self,
        scope: Scope<'s, u64>,
        inputs: Vec<Edge<'s>>,
        state: &StateCtx,
    ) -> Vec<Edge<'s>> {
        let _ = state;
        self.build(scope, inputs)
    }
}

/// What a stateful node's operators are given to checkpoint their tables:
/// nothing when the job runs without `--state`.
#[derive(Clone, Default)]
pub struct StateCtx {
    ck: Option<Rc<Checkpointer>>,
    node: String,
    fail: Option<Arc<dyn Fn(String) + Send + Sync>>,
}

impl Debug for StateCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateCtx")
            .field("node", &self.node)
            .field("checkpointed", &self.ck.is_some())
            .finish()
    }
}

impl StateCtx {
    /// No checkpoints.
    pub fn none() -> StateCtx {
        StateCtx::default()
    }

    /// Checkpoints of node `node` through `ck`; `fail` stops the job with a
    /// message (a table that cannot be read or written).
    pub fn new(
        ck: Rc<Checkpointer>,
        node: &str,
        fail: Arc<dyn Fn(String) + Send + Sync>,
    ) -> StateCtx {
        StateCtx {
            ck: Some(ck),
            node: node.to_string(),
            fail: Some(fail),
        }
    }

    /// Opens the node's table `def` and restores the key groups this worker
    /// owns into `state` (turning its change tracking on). Returns the
    /// handle that stages changes, or `None` without checkpoints.
    pub fn open<K, V>(
        &self,
        def: &StateDef<K, V>,
        state: &mut KeyedState<K, V>,
        worker: usize,
        peers: usize,
    ) -> Checkpointed<K, V>
    where
        K: Ord + std::hash::Hash + Clone + AsRef<[u8]> + From<Vec<u8>>,
        V: Clone + serde::Serialize + serde::de::DeserializeOwned,
    {
        let Some(ck) = &self.ck else {
            return Checkpointed {
                table: None,
                ctx: self.clone(),
            };
        };
        let name = format!("node/{}/{}", self.node, def.name());
        let table = match ck.table(&name, def) {
            Ok(t) => t,
            Err(e) => {
                self.fail(format!("node \"{}\": {e}", self.node));
                return Checkpointed {
                    table: None,
                    ctx: self.clone(),
                };
            }
        };
        state.set_tracking(true);
        let groups = lockstep_state::KeyGroups::new(ck.key_groups());
        if let Err(e) = table.restore(state, |g| groups.owner(g, peers) == worker) {
            self.fail(format!(
                "node \"{}\": cannot restore table \"{}\": {e}",
                self.node,
                def.name()
            ));
        }
        Checkpointed {
            table: Some(table),
            ctx: self.clone(),
        }
    }

    /// The checkpointer and the id of the node's table `table`, for a node
    /// that lays a table out itself (one entry per record, say) instead of
    /// through [`StateCtx::open`]; `None` without checkpoints. An unknown
    /// table stops the job.
    pub fn raw_table(&self, table: &str) -> Option<(Rc<Checkpointer>, u32)> {
        let ck = self.ck.as_ref()?;
        let name = format!("node/{}/{table}", self.node);
        match ck.table_id(&name) {
            Some(id) => Some((Rc::clone(ck), id)),
            None => {
                self.fail(format!(
                    "node \"{}\": state table \"{table}\" was not declared in state_tables()",
                    self.node
                ));
                None
            }
        }
    }

    /// The node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Stops the job with `message`.
    pub fn fail(&self, message: String) {
        if let Some(f) = &self.fail {
            f(message);
        }
    }
}

/// A node's handle on one checkpointed table (or nothing, without
/// checkpoints).
pub struct Checkpointed<K, V> {
    table: Option<Table<K, V>>,
    ctx: StateCtx,
}

impl<K, V> Checkpointed<K, V>
where
    K: Ord + std::hash::Hash + Clone + AsRef<[u8]> + From<Vec<u8>>,
    V: Clone + serde::Serialize + serde::de::DeserializeOwned,
{
    /// Stages the changes of `state` made by epoch `epoch`: call it after
    /// finishing each epoch, before dropping that epoch's capabilities.
    pub fn stage(&self, epoch: u64, state: &mut KeyedState<K, V>) {
        if let Some(t) = &self.table {
            if let Err(e) = t.stage(epoch, state) {
                self.ctx.fail(format!(
                    "node \"{}\": cannot checkpoint: {e}",
                    self.ctx.node
                ));
            }
        }
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

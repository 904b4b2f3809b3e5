//! `aggregate`: running per-key aggregates as an append-only stream of
//! updates.
//!
//! In the epoch of a change, the node emits one record for each key whose
//! result differs from the last one it emitted for that key (key fields, then
//! the aggregates). An update's event time is the largest event time seen for
//! its key. There are no retractions in v1.
//!
//! Records fold into a per-epoch partial accumulator per key as they arrive
//! (every aggregate is a commutative monoid, see [`crate::agg`]); when the
//! frontier passes the epoch the partials merge into the keyed state and the
//! changed keys emit. Memory is one accumulator per key, not per record.

use std::collections::BTreeMap;
use std::sync::Arc;

use indexmap::IndexMap;
use lockstep_state::{KeyedState, StateDef, StateGauge};
use schemars::JsonSchema;
use serde::Deserialize;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::Scope;

use crate::agg::{Acc, Agg};
use crate::config::{parse_config, Diag, Path};
use crate::encode::{Encoder, Format};
use crate::keyed::{self, ByEpoch, Caps, KeyCols};
use crate::node::{
    error_record, give_all, new_outputs, rejected, Edge, Node, NodeConfig, NodeKind, PlanCtx, Port,
    StateCtx, ERRORS_PORT,
};
use crate::value::{errors_schema, Rec, Row, Schema, Type};
use crate::window::plan_aggs;

/// The `aggregate` node type.
#[derive(Debug)]
pub struct Aggregate;

/// `aggregate`'s config.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// The upstream.
    pub input: String,
    /// Key fields; empty for one global aggregate.
    #[serde(default)]
    pub key: Vec<String>,
    /// Output field → aggregate, in order.
    #[schemars(extend("minProperties" = 1))]
    pub aggregate: IndexMap<String, String>,
}

impl NodeKind for Aggregate {
    fn name(&self) -> &'static str {
        "aggregate"
    }
    fn summary(&self) -> &'static str {
        "Running per-key aggregates: in each epoch, one update for every key whose result changed."
    }
    fn example(&self) -> &'static str {
        r#"{"type": "aggregate", "input": "in", "key": ["user"], "aggregate": {"clicks": "count(*)", "bytes": "sum(bytes)", "last_url": "last(url)"}}"#
    }
    fn parse(&self, config: serde_json::Value) -> Result<Box<dyn NodeConfig>, Vec<Diag>> {
        let c = parse_config::<AggregateConfig>(config)?;
        if c.aggregate.is_empty() {
            return Err(vec![Diag::new(
                Path::of(&["aggregate"]),
                "give at least one aggregate, e.g. {\"n\": \"count(*)\"}",
            )]);
        }
        Ok(Box::new(c))
    }
}

impl NodeConfig for AggregateConfig {
    fn inputs(&self) -> Vec<(Path, String)> {
        vec![(Path::of(&["input"]), self.input.clone())]
    }
    fn plan(&self, ctx: &PlanCtx<'_>) -> Result<Arc<dyn Node>, Vec<Diag>> {
        let schema = ctx.inputs[0].clone();
        let mut diags = Vec::new();
        let key = keyed::resolve_key(&self.key, &schema, &Path::of(&["key"])).unwrap_or_else(|d| {
            diags.extend(d);
            Vec::new()
        });
        let aggs = plan_aggs(&self.aggregate, &schema, &mut diags);
        let mut names: Vec<(Path, String)> = self
            .key
            .iter()
            .enumerate()
            .map(|(i, k)| (Path::of(&["key"]).index(i), k.clone()))
            .collect();
        names.extend(
            self.aggregate
                .keys()
                .map(|n| (Path::of(&["aggregate", n]), n.clone())),
        );
        diags.extend(keyed::check_distinct(&names));
        if !diags.is_empty() {
            return Err(diags);
        }
        let key_schema = Schema::new(
            key.iter()
                .map(|&i| (schema.fields()[i].name.clone(), schema.fields()[i].ty)),
        );
        let mut fields: Vec<(String, Type)> = key
            .iter()
            .map(|&i| (schema.fields()[i].name.clone(), schema.fields()[i].ty))
            .collect();
        fields.extend(aggs.iter().map(|(n, a)| (n.clone(), a.ty)));
        Ok(Arc::new(AggregateNode {
            name: ctx.node.to_string(),
            out: Schema::new(fields),
            encoder: Encoder::new(&schema, Format::Jsonl),
            key_encoder: Encoder::new(&key_schema, Format::Jsonl),
            key: KeyCols::new(key),
            aggs: aggs.into_iter().map(|(_, a)| a).collect(),
            gauge: StateGauge::new(),
            held: StateGauge::new(),
        }))
    }
}

/// A planned `aggregate` node.
#[derive(Debug)]
pub struct AggregateNode {
    name: String,
    out: Schema,
    encoder: Encoder,
    key_encoder: Encoder,
    key: KeyCols,
    aggs: Vec<Agg>,
    gauge: Arc<StateGauge>,
    held: Arc<StateGauge>,
}

/// A key's state: its values, accumulators, largest event time, and the
/// results last emitted.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyAgg {
    /// The key's values.
    pub key: Row,
    /// One accumulator per aggregate.
    pub accs: Vec<Acc>,
    /// The largest event time seen for the key.
    pub time: i64,
    /// The results last emitted (`None` before the first update).
    pub emitted: Option<Row>,
}

/// Per key bytes: the key, partial accumulators, the largest event time.
type Partials = keyed::FastMap<Vec<u8>, (Row, Vec<Acc>, i64)>;

const KEYS: StateDef<Vec<u8>, KeyAgg> = StateDef::new("keys");

const MAIN: usize = 0;
const ERRORS: usize = 1;

impl Node for AggregateNode {
    fn outputs(&self) -> Vec<Port> {
        vec![
            Port::new("", self.out.clone()),
            Port::new(ERRORS_PORT, errors_schema()),
        ]
    }

    fn state_gauges(&self) -> Vec<Arc<StateGauge>> {
        vec![Arc::clone(&self.gauge)]
    }

    fn held_gauge(&self) -> Option<Arc<StateGauge>> {
        Some(Arc::clone(&self.held))
    }

    fn state_tables(&self) -> Vec<&'static str> {
        vec![KEYS.name()]
    }

    fn build<'s>(&self, scope: Scope<'s, u64>, inputs: Vec<Edge<'s>>) -> Vec<Edge<'s>> {
        self.build_checkpointed(scope, inputs, &StateCtx::none())
    }

    fn build_checkpointed<'s>(
        &self,
        scope: Scope<'s, u64>,
        mut inputs: Vec<Edge<'s>>,
        ctx: &StateCtx,
    ) -> Vec<Edge<'s>> {
        let input = inputs.remove(0);
        let mut builder = OperatorBuilder::new(format!("aggregate {}", self.name), scope);
        let mut handle = builder.new_input(input, Exchange::new(self.key.router(scope.peers())));
        let (mut outs, streams) = new_outputs(&mut builder, 2);
        let name = self.name.clone();
        let encoder = self.encoder.clone();
        let key_encoder = self.key_encoder.clone();
        let key = self.key.clone();
        let aggs = self.aggs.clone();
        let held = Arc::clone(&self.held);
        let mut state = KeyedState::new(&KEYS)
            .tracking(false)
            .with_gauge(Arc::clone(&self.gauge));
        let table = ctx.open(&KEYS, &mut state, scope.index(), scope.peers());
        builder.build(move |_caps| {
            // Per open epoch: per key bytes, the key, partial accumulators and
            // the largest event time.
            let mut pending: ByEpoch<Partials> = BTreeMap::new();
            // Emptied per-epoch maps, reused (a fresh map per epoch made the
            // allocator fault in fresh pages all the time).
            let mut spare: Vec<Partials> = Vec::new();
            let mut keybuf = Vec::new();
            move |frontiers| {
                let mut handles: Vec<_> = outs.iter_mut().map(OutputBuilder::activate).collect();
                let ports: Vec<usize> = handles.iter().map(|h| h.output_index()).collect();
                handle.for_each_stamp(|cap, data| {
                    let Some(&epoch) = cap.least() else { return };
                    let slot = pending.entry(epoch).or_insert_with(|| {
                        (
                            Caps::new(ports.iter().filter_map(|&p| cap.retain_least(p)).collect()),
                            spare.pop().unwrap_or_default(),
                        )
                    });
                    let mut errors = Vec::new();
                    let mut vals = Vec::with_capacity(aggs.len());
                    for batch in data {
                        for rec in batch.drain(..) {
                            vals.clear();
                            let mut failed = None;
                            for a in &aggs {
                                match a.arg(&rec.row) {
                                    Ok(v) => vals.push(v),
                                    Err(e) => {
                                        failed = Some(e.reason);
                                        break;
                                    }
                                }
                            }
                            if let Some(reason) = failed {
                                errors.push(rejected(&name, &reason, &encoder, &rec));
                                continue;
                            }
                            key.encode(&rec.row, &mut keybuf);
                            let entry = match slot.1.get_mut(keybuf.as_slice()) {
                                Some(e) => e,
                                None => slot.1.entry(keybuf.clone()).or_insert_with(|| {
                                    held.add(1);
                                    (
                                        key.values(&rec.row),
                                        aggs.iter().map(Agg::empty).collect(),
                                        rec.time,
                                    )
                                }),
                            };
                            for (acc, v) in entry.1.iter_mut().zip(&vals) {
                                acc.add(v, rec.time);
                            }
                            entry.2 = entry.2.max(rec.time);
                        }
                    }
                    give_all(&mut handles, ERRORS, &cap, errors);
                });
                while let Some(entry) = pending.first_entry() {
                    let epoch = *entry.key();
                    if frontiers[0].less_equal(&epoch) {
                        break;
                    }
                    let (caps, mut keys) = entry.remove();
                    held.add(-i64::try_from(keys.len()).unwrap_or(0));
                    let mut updates = Vec::new();
                    let mut errors = Vec::new();
                    for (kb, (kv, partial, time)) in keys.drain() {
                        let group = key.group(&kb);
                        let mut partial = Some(partial);
                        let (ka, _) = state.entry(group, kb, || KeyAgg {
                            key: kv,
                            accs: partial.take().unwrap_or_default(),
                            time,
                            emitted: None,
                        });
                        if let Some(partial) = partial {
                            for (a, b) in ka.accs.iter_mut().zip(&partial) {
                                a.merge(b);
                            }
                        }
                        ka.time = ka.time.max(time);
                        let results: Result<Row, String> = aggs
                            .iter()
                            .zip(&ka.accs)
                            .map(|(a, acc)| a.result(acc).map_err(|e| e.0))
                            .collect();
                        match results {
                            Ok(r) => {
                                if ka.emitted.as_ref() != Some(&r) {
                                    let mut row = ka.key.clone();
                                    row.extend(r.iter().cloned());
                                    ka.emitted = Some(r);
                                    updates.push(Rec { time: ka.time, row });
                                }
                            }
                            Err(reason) => {
                                let raw = key_encoder.line(&ka.key);
                                let reason = format!("key {raw}: {reason}");
                                errors.push(error_record(&name, &reason, raw, ka.time));
                            }
                        }
                    }
                    if spare.len() < 2 {
                        spare.push(keys);
                    }
                    give_all(&mut handles, MAIN, caps.get(MAIN), updates);
                    give_all(&mut handles, ERRORS, caps.get(ERRORS), errors);
                    table.stage(epoch, &mut state);
                }
            }
        });
        streams
    }
}

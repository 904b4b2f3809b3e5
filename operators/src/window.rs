//! `window`: per-key aggregates over event-time windows — tumbling, sliding
//! (hop) and session — with allowed lateness and a `late` port.
//!
//! Rules (spec "Windows, aggregates and joins"; docs/windows.md):
//! - windows are half-open `[start, end)`, aligned to multiples of the size
//!   (tumbling) or slide (sliding) from Unix time 0;
//! - a window fires in epoch `f(W) = ceil((end + allowed_lateness_ms) / E) - 1`
//!   (a session uses `end + 1`: a record at exactly `end` would still extend
//!   it); records of epoch `e` are applied before the windows with `f = e`
//!   fire; at end of input every window fires, still in its epoch `f(W)`;
//! - a record of epoch `e` is late for `W` iff `f(W) < e`; a sliding record
//!   is late only if all its windows are; a record that would extend or merge
//!   a session that has fired is late. Late records go to `late` unchanged.
//!
//! Tumbling and sliding panes are order-insensitive: records fold into a
//! per-epoch partial accumulator per (key, window) as they arrive, and the
//! partials merge into state when the frontier passes their epoch. Sessions
//! are order-sensitive (lateness depends on what fired and what a record
//! joins), so each epoch's records are stashed and applied in the spec's
//! order — event time, then the record by the total order — once the
//! frontier passes the epoch.

use std::cmp::Ordering;
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

use crate::agg::{self, Acc, Agg};
use crate::config::{parse_config, Diag, Path};
use crate::encode::{Encoder, Format};
use crate::keyed::{self, bounds, fire_epoch, is_late, ByEpoch, Caps, KeyCols};
use crate::node::{
    error_record, give_all, new_outputs, rejected, Checkpointed, Edge, Node, NodeConfig, NodeKind,
    Outputs, PlanCtx, Port, StateCtx, TimeMode, ERRORS_PORT,
};
use crate::value::{cmp_total, errors_schema, Field, Rec, Row, Schema, Type, Value};
use lockstep_state::store::FINISHED;

/// The `window` node type.
#[derive(Debug)]
pub struct Window;

/// `window`'s config.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// The upstream.
    pub input: String,
    /// Key fields; empty for one global window stream.
    #[serde(default)]
    pub key: Vec<String>,
    /// The window kind.
    pub window: WindowSpec,
    /// How long after its end a window still accepts records (ms).
    #[serde(default)]
    pub allowed_lateness_ms: u64,
    /// Output field → aggregate, in order.
    #[serde(default)]
    pub aggregate: IndexMap<String, String>,
}

/// The `window` field: exactly one of its members.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct WindowSpec {
    /// Tumbling windows of this many milliseconds: `{"tumbling_ms": N}`.
    #[schemars(range(min = 1))]
    pub tumbling_ms: Option<u64>,
    /// Sliding windows: `{"sliding": {"size_ms": S, "slide_ms": D}}`.
    pub sliding: Option<SlidingSpec>,
    /// Session windows: `{"session": {"gap_ms": G}}`.
    pub session: Option<SessionSpec>,
}

/// A sliding (hop) window.
#[derive(Debug, Deserialize, Clone, Copy, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlidingSpec {
    /// Window length.
    #[schemars(range(min = 1))]
    pub size_ms: u64,
    /// Distance between window starts.
    #[schemars(range(min = 1))]
    pub slide_ms: u64,
}

/// A session window.
#[derive(Debug, Deserialize, Clone, Copy, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionSpec {
    /// Records of a key at most this far apart are in one session.
    #[schemars(range(min = 1))]
    pub gap_ms: u64,
}

/// A window kind, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `[k·size, (k+1)·size)`.
    Tumbling(i64),
    /// `[k·slide, k·slide + size)`: (size, slide).
    Sliding(i64, i64),
    /// Sessions with this gap.
    Session(i64),
}

impl Kind {
    /// The windows (start, end) a record at `t` belongs to, latest first.
    ///
    /// # Errors
    /// When a window's bounds do not fit in a timestamp (event times within
    /// one window size of the ends of the i64 range).
    fn windows(self, t: i64, out: &mut Vec<(i64, i64)>) -> Result<(), String> {
        out.clear();
        let (size, slide) = match self {
            Kind::Tumbling(size) => (size, size),
            Kind::Sliding(size, slide) => (size, slide),
            Kind::Session(gap) => {
                return match t.checked_add(gap) {
                    Some(_) => Ok(()),
                    None => Err(out_of_range(t)),
                };
            }
        };
        let (t, size, slide) = (i128::from(t), i128::from(size), i128::from(slide));
        let mut s = t.div_euclid(slide) * slide;
        while s + size > t {
            match (i64::try_from(s), i64::try_from(s + size)) {
                (Ok(a), Ok(b)) => out.push((a, b)),
                _ => return Err(out_of_range(i64::try_from(t).unwrap_or(0))),
            }
            s -= slide;
        }
        Ok(())
    }
}

fn out_of_range(t: i64) -> String {
    format!("event time {t} is too close to the end of the timestamp range: its window's bounds do not fit in a timestamp")
}

/// The most sliding windows one record may belong to (`size_ms / slide_ms`):
/// every record is folded into each of them.
pub const MAX_WINDOWS_PER_RECORD: i64 = 1000;

/// Parses and checks the `window` field.
fn check_spec(w: &WindowSpec) -> Result<Kind, Vec<Diag>> {
    let at = Path::of(&["window"]);
    let count = usize::from(w.tumbling_ms.is_some())
        + usize::from(w.sliding.is_some())
        + usize::from(w.session.is_some());
    if count != 1 {
        return Err(vec![Diag::new(
            at,
            format!(
                "give exactly one window kind: {{\"tumbling_ms\": N}}, {{\"sliding\": {{\"size_ms\": S, \"slide_ms\": D}}}} or {{\"session\": {{\"gap_ms\": G}}}} (got {count})"
            ),
        )]);
    }
    let pos = |v: u64, p: Path, what: &str| -> Result<i64, Diag> {
        match i64::try_from(v) {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(Diag::new(
                p,
                format!(
                    "{what} must be a positive number of milliseconds (at most 2^63-1), got {v}"
                ),
            )),
        }
    };
    if let Some(t) = w.tumbling_ms {
        return pos(t, at.key("tumbling_ms"), "tumbling_ms")
            .map(Kind::Tumbling)
            .map_err(|d| vec![d]);
    }
    if let Some(s) = w.sliding {
        let p = at.key("sliding");
        let size = pos(s.size_ms, p.key("size_ms"), "size_ms");
        let slide = pos(s.slide_ms, p.key("slide_ms"), "slide_ms");
        return match (size, slide) {
            (Ok(size), Ok(slide)) if slide > size => Err(vec![Diag::new(
                p.key("slide_ms"),
                format!("slide_ms ({slide}) must not exceed size_ms ({size}): records between windows would belong to none"),
            )]),
            (Ok(size), Ok(slide)) if size / slide > MAX_WINDOWS_PER_RECORD => Err(vec![Diag::new(
                p.key("slide_ms"),
                format!(
                    "size_ms / slide_ms is {}: each record would belong to that many windows; at most {MAX_WINDOWS_PER_RECORD} are allowed (raise slide_ms)",
                    size / slide
                ),
            )]),
            (Ok(size), Ok(slide)) => Ok(Kind::Sliding(size, slide)),
            (a, b) => Err(a.err().into_iter().chain(b.err()).collect()),
        };
    }
    if let Some(s) = w.session {
        return pos(s.gap_ms, at.key("session").key("gap_ms"), "gap_ms")
            .map(Kind::Session)
            .map_err(|d| vec![d]);
    }
    Err(Vec::new())
}

impl NodeKind for Window {
    fn name(&self) -> &'static str {
        "window"
    }
    fn summary(&self) -> &'static str {
        "Per-key aggregates over tumbling, sliding or session event-time windows; late records go to `late`."
    }
    fn example(&self) -> &'static str {
        r#"{"type": "window", "input": "in", "key": ["user"], "window": {"tumbling_ms": 60000}, "allowed_lateness_ms": 0, "aggregate": {"clicks": "count(*)", "bytes": "sum(bytes)"}}"#
    }
    fn parse(&self, config: serde_json::Value) -> Result<Box<dyn NodeConfig>, Vec<Diag>> {
        Ok(Box::new(parse_config::<WindowConfig>(config)?))
    }
}

/// Plans the aggregates of a keyed node: compiles each against `input`,
/// returns them and their output fields.
pub(crate) fn plan_aggs(
    aggs: &IndexMap<String, String>,
    input: &Schema,
    diags: &mut Vec<Diag>,
) -> Vec<(String, Agg)> {
    let mut out = Vec::new();
    for (name, src) in aggs {
        match agg::compile(src, input) {
            Ok(a) => out.push((name.clone(), a)),
            Err(m) => diags.push(Diag::new(Path::of(&["aggregate", name]), m)),
        }
    }
    out
}

impl NodeConfig for WindowConfig {
    fn inputs(&self) -> Vec<(Path, String)> {
        vec![(Path::of(&["input"]), self.input.clone())]
    }
    fn plan(&self, ctx: &PlanCtx<'_>) -> Result<Arc<dyn Node>, Vec<Diag>> {
        let schema = ctx.inputs[0].clone();
        let mut diags = Vec::new();
        let epoch_ms = match ctx.time {
            TimeMode::EpochMs(e) => e,
            TimeMode::EpochRecords(_) => {
                diags.push(Diag::new(
                    Path::of(&["window"]),
                    "a window needs event time, but this job counts epochs in records (\"time\": {\"epoch_records\": N}); use \"time\": {\"epoch_ms\": E} and give every source an \"event_time\"",
                ));
                1
            }
        };
        let kind = check_spec(&self.window).unwrap_or_else(|d| {
            diags.extend(d);
            Kind::Tumbling(1)
        });
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
        names.push((Path::of(&["window"]), "window_start".into()));
        names.push((Path::of(&["window"]), "window_end".into()));
        names.extend(
            self.aggregate
                .keys()
                .map(|n| (Path::of(&["aggregate", n]), n.clone())),
        );
        // A key field named window_start/window_end clashes with the bounds.
        for (i, k) in self.key.iter().enumerate() {
            if (k == "window_start" || k == "window_end") && schema.index_of(k).is_some() {
                diags.push(Diag::new(
                    Path::of(&["key"]).index(i),
                    format!("key field \"{k}\" clashes with the window's own {k}; rename it with a map first"),
                ));
            }
        }
        let names: Vec<(Path, String)> = names
            .into_iter()
            .filter(|(p, n)| {
                !(p.0
                    .first()
                    .is_some_and(|s| matches!(s, crate::config::Seg::Key(k) if k == "key"))
                    && (n == "window_start" || n == "window_end"))
            })
            .collect();
        diags.extend(keyed::check_distinct(&names));
        if !diags.is_empty() {
            return Err(diags);
        }
        let mut fields: Vec<(String, Type)> = key
            .iter()
            .map(|&i| {
                let f: &Field = &schema.fields()[i];
                (f.name.clone(), f.ty)
            })
            .collect();
        fields.push(("window_start".into(), keyed::BOUND_TYPE));
        fields.push(("window_end".into(), keyed::BOUND_TYPE));
        fields.extend(aggs.iter().map(|(n, a)| (n.clone(), a.ty)));
        let key_schema = Schema::new(
            key.iter()
                .map(|&i| (schema.fields()[i].name.clone(), schema.fields()[i].ty)),
        );
        Ok(Arc::new(WindowNode {
            shared: WindowShared {
                name: ctx.node.to_string(),
                encoder: Encoder::new(&schema, Format::Jsonl),
                key_encoder: Encoder::new(&key_schema, Format::Jsonl),
                key: KeyCols::new(key),
                aggs: aggs.into_iter().map(|(_, a)| a).collect(),
                kind,
                lateness: self.allowed_lateness_ms,
                epoch_ms,
            },
            out: Schema::new(fields),
            schema,
            gauge: StateGauge::new(),
            held: StateGauge::new(),
        }))
    }
}

/// A planned `window` node.
#[derive(Debug)]
pub struct WindowNode {
    shared: WindowShared,
    schema: Schema,
    out: Schema,
    gauge: Arc<StateGauge>,
    held: Arc<StateGauge>,
}

const MAIN: usize = 0;
const LATE: usize = 1;
const ERRORS: usize = 2;

/// A tumbling or sliding window's state: its key, bounds and accumulators.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pane {
    /// The key's values.
    pub key: Row,
    /// Window start (inclusive).
    pub start: i64,
    /// Window end (exclusive).
    pub end: i64,
    /// One accumulator per aggregate.
    pub accs: Vec<Acc>,
}

/// One live session of a key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Session {
    /// Its first record's event time.
    pub start: i64,
    /// Its last record's event time (`window_end` is `last + gap`).
    pub last: i64,
    /// One accumulator per aggregate.
    pub accs: Vec<Acc>,
}

/// A key's sessions: the live ones in time order, and how far the sessions
/// that already fired reach (`last + gap` of the latest), which makes a
/// record that would extend or merge one of them late.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sessions {
    /// The key's values.
    pub key: Row,
    /// Live sessions, disjoint, in time order.
    pub live: Vec<Session>,
    /// `window_end` of the latest fired session. Kept while the job runs:
    /// a live session can be extended backwards, record by record, until a
    /// late record touches both it and a fired session, so no horizon makes
    /// forgetting this safe. One i64 per key, not per session.
    pub fired_until: Option<i64>,
}

/// Tumbling and sliding panes: key bytes then the window start, as
/// memcomparable bytes, so a key's windows are adjacent and in time order.
const PANES: StateDef<Vec<u8>, Pane> = StateDef::new("panes");
/// Sessions per key bytes.
const SESSIONS: StateDef<Vec<u8>, Sessions> = StateDef::new("sessions");

fn pane_key(key: &[u8], start: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 9);
    k.extend_from_slice(key);
    crate::value::encode_key(&Value::Int(start), &mut k);
    k
}

impl Node for WindowNode {
    fn outputs(&self) -> Vec<Port> {
        vec![
            Port::new("", self.out.clone()),
            Port::new("late", self.schema.clone()),
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
        vec![PANES.name(), SESSIONS.name()]
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
        let mut builder = OperatorBuilder::new(format!("window {}", self.shared.name), scope);
        let mut handle =
            builder.new_input(input, Exchange::new(self.shared.key.router(scope.peers())));
        let (mut outs, streams) = new_outputs(&mut builder, 3);
        let mut op = WindowOp {
            node: self.shared.clone(),
            panes: KeyedState::new(&PANES)
                .tracking(false)
                .with_gauge(Arc::clone(&self.gauge)),
            sessions: KeyedState::new(&SESSIONS)
                .tracking(false)
                .with_gauge(Arc::clone(&self.gauge)),
            pending: BTreeMap::new(),
            stash: BTreeMap::new(),
            fires: BTreeMap::new(),
            held: Arc::clone(&self.held),
            spare: Vec::new(),
            spare_fires: Vec::new(),
            panes_ck: None,
            sessions_ck: None,
        };
        let (worker, peers) = (scope.index(), scope.peers());
        op.panes_ck = Some(ctx.open(&PANES, &mut op.panes, worker, peers));
        op.sessions_ck = Some(ctx.open(&SESSIONS, &mut op.sessions, worker, peers));
        builder.build(move |caps| {
            // Restored windows fire as if they had never been away.
            op.schedule_restored(&Caps::new(caps));
            let mut keybuf = Vec::new();
            let mut wins = Vec::new();
            let mut vals = Vec::new();
            move |frontiers| {
                let mut handles: Vec<_> = outs.iter_mut().map(OutputBuilder::activate).collect();
                let ports: Vec<usize> = handles.iter().map(|h| h.output_index()).collect();
                handle.for_each_stamp(|cap, data| {
                    let Some(&epoch) = cap.least() else { return };
                    let caps =
                        || Caps::new(ports.iter().filter_map(|&p| cap.retain_least(p)).collect());
                    if let Kind::Session(_) = op.node.kind {
                        let slot = op
                            .stash
                            .entry(epoch)
                            .or_insert_with(|| (caps(), Vec::new()));
                        let before = slot.1.len();
                        let mut errors = Vec::new();
                        for batch in data {
                            for rec in batch.drain(..) {
                                let n = &op.node;
                                // A session's end (last + gap) must fit too.
                                if let Err(e) = n.windows_of(&rec, &mut wins) {
                                    errors.push(e);
                                    continue;
                                }
                                n.key.encode(&rec.row, &mut keybuf);
                                slot.1.push((keybuf.clone(), rec));
                            }
                        }
                        op.held
                            .add(i64::try_from(slot.1.len() - before).unwrap_or(0));
                        give_all(&mut handles, ERRORS, &cap, errors);
                        return;
                    }
                    let mut late = Vec::new();
                    let mut errors = Vec::new();
                    let mut created = 0i64;
                    let slot = op
                        .pending
                        .entry(epoch)
                        .or_insert_with(|| (caps(), op.spare.pop().unwrap_or_default()));
                    for batch in data {
                        for rec in batch.drain(..) {
                            let n = &op.node;
                            if let Err(e) = n.windows_of(&rec, &mut wins) {
                                errors.push(e);
                                continue;
                            }
                            wins.retain(|&(_, end)| {
                                !is_late(fire_epoch(end, n.lateness, n.epoch_ms), epoch)
                            });
                            if wins.is_empty() {
                                late.push(rec);
                                continue;
                            }
                            if let Err(reason) = n.args_into(&rec, &mut vals) {
                                errors.push(rejected(&n.name, &reason, &n.encoder, &rec));
                                continue;
                            }
                            n.key.encode(&rec.row, &mut keybuf);
                            let entry = match slot.1.get_mut(keybuf.as_slice()) {
                                Some(e) => e,
                                None => slot
                                    .1
                                    .entry(keybuf.clone())
                                    .or_insert_with(|| (n.key.values(&rec.row), Vec::new())),
                            };
                            for &(start, end) in &wins {
                                // Panes sorted by start: appending in the
                                // common in-order case, a binary search always.
                                let pos = match entry
                                    .1
                                    .binary_search_by_key(&start, |p: &Pane| p.start)
                                {
                                    Ok(i) => i,
                                    Err(i) => {
                                        created += 1;
                                        entry.1.insert(
                                            i,
                                            Pane {
                                                key: Row::new(),
                                                start,
                                                end,
                                                accs: n.aggs.iter().map(Agg::empty).collect(),
                                            },
                                        );
                                        i
                                    }
                                };
                                for (acc, v) in entry.1[pos].accs.iter_mut().zip(&vals) {
                                    acc.add(v, rec.time);
                                }
                            }
                        }
                    }
                    op.held.add(created);
                    give_all(&mut handles, LATE, &cap, late);
                    give_all(&mut handles, ERRORS, &cap, errors);
                });
                op.advance(&frontiers[0], &mut handles);
            }
        });
        streams
    }
}

/// What every worker's operator knows of the node.
#[derive(Clone, Debug)]
struct WindowShared {
    name: String,
    encoder: Encoder,
    key_encoder: Encoder,
    key: KeyCols,
    aggs: Vec<Agg>,
    kind: Kind,
    lateness: u64,
    epoch_ms: u64,
}

impl WindowShared {
    /// The windows of a record, or its `errors` record when their bounds do
    /// not fit in a timestamp.
    fn windows_of(&self, rec: &Rec, wins: &mut Vec<(i64, i64)>) -> Result<(), Rec> {
        self.kind
            .windows(rec.time, wins)
            .map_err(|reason| rejected(&self.name, &reason, &self.encoder, rec))
    }

    /// The aggregates' arguments for one record.
    fn args(&self, rec: &Rec) -> Result<Vec<Value>, String> {
        let mut out = Vec::with_capacity(self.aggs.len());
        self.args_into(rec, &mut out).map(|()| out)
    }

    /// The aggregates' arguments for one record, into a reused buffer.
    fn args_into(&self, rec: &Rec, out: &mut Vec<Value>) -> Result<(), String> {
        out.clear();
        for a in &self.aggs {
            out.push(a.arg(&rec.row).map_err(|e| e.reason)?);
        }
        Ok(())
    }

    fn session_fire(&self, last: i64, gap: i64) -> i64 {
        fire_epoch(
            last.saturating_add(gap).saturating_add(1),
            self.lateness,
            self.epoch_ms,
        )
    }

    /// The result record of a window, or the `errors` record when an
    /// aggregate cannot be computed.
    fn result(&self, key: &[Value], start: i64, end: i64, accs: &[Acc]) -> Result<Rec, Rec> {
        let mut row: Row = Vec::with_capacity(key.len() + 2 + accs.len());
        row.extend_from_slice(key);
        row.extend(bounds(start, end));
        for (a, acc) in self.aggs.iter().zip(accs) {
            match a.result(acc) {
                Ok(v) => row.push(v),
                Err(e) => {
                    let raw = self.key_encoder.line(key);
                    let reason = format!("window [{start}, {end}) of key {raw}: {e}");
                    return Err(error_record(
                        &self.name,
                        &reason,
                        raw,
                        end.saturating_sub(1),
                    ));
                }
            }
        }
        Ok(Rec {
            time: end.saturating_sub(1),
            row,
        })
    }
}

/// Per key bytes: the key and its partial panes.
type PanePartials = keyed::FastMap<Vec<u8>, (Row, Vec<Pane>)>;

type Handles<'a> = Outputs<'a>;

/// One worker's window operator.
struct WindowOp {
    node: WindowShared,
    panes: KeyedState<Vec<u8>, Pane>,
    sessions: KeyedState<Vec<u8>, Sessions>,
    /// Tumbling/sliding: per open epoch, partial panes per key bytes.
    pending: ByEpoch<PanePartials>,
    /// Sessions: per open epoch, the records with their key bytes.
    stash: ByEpoch<Vec<(Vec<u8>, Rec)>>,
    /// Per fire epoch, the windows that fire in it: (key group, state key,
    /// session start).
    /// Entries of sessions that were extended later are stale: a session
    /// fires only in the epoch its current end gives.
    fires: ByEpoch<Vec<(u32, Vec<u8>, i64)>>,
    /// Items held for open epochs (backpressure).
    held: Arc<StateGauge>,
    /// Emptied per-epoch maps, reused: allocating and growing a fresh map
    /// per epoch made the allocator fault fresh pages in all the time.
    spare: Vec<PanePartials>,
    /// Emptied fire lists, reused likewise.
    spare_fires: Vec<Vec<(u32, Vec<u8>, i64)>>,
    /// Checkpoint handles of the two tables.
    panes_ck: Option<Checkpointed<Vec<u8>, Pane>>,
    sessions_ck: Option<Checkpointed<Vec<u8>, Sessions>>,
}

fn first_key<T>(m: &BTreeMap<u64, T>) -> Option<u64> {
    m.keys().next().copied()
}

impl WindowOp {
    /// Does every epoch the frontier has passed: applies its records, then
    /// fires its windows.
    fn advance(
        &mut self,
        frontier: &timely::progress::frontier::MutableAntichain<u64>,
        out: &mut Handles<'_>,
    ) {
        loop {
            let next = [
                first_key(&self.pending),
                first_key(&self.stash),
                first_key(&self.fires),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(e) = next else { break };
            if frontier.less_equal(&e) {
                break;
            }
            // The epoch's capabilities are held until its changes are
            // staged (the checkpoint contract).
            let mut held = Vec::with_capacity(3);
            if let Some((caps, keys)) = self.pending.remove(&e) {
                let n: usize = keys.values().map(|(_, parts)| parts.len()).sum();
                self.held.add(-i64::try_from(n).unwrap_or(0));
                self.apply_panes(e, &caps, keys);
                held.push(caps);
            }
            if let Some((caps, recs)) = self.stash.remove(&e) {
                self.held.add(-i64::try_from(recs.len()).unwrap_or(0));
                self.apply_sessions(e, &caps, recs, out);
                held.push(caps);
            }
            if let Some((caps, wins)) = self.fires.remove(&e) {
                self.fire(e, &caps, wins, out);
                held.push(caps);
            }
            self.stage(e);
            drop(held);
        }
        // End of input: every window has fired and nothing can be late any
        // more, so the sessions' fired_until marks are dropped too.
        if frontier.frontier().is_empty() && !self.sessions.is_empty() {
            let keys: Vec<(u32, Vec<u8>)> = self
                .sessions
                .iter()
                .map(|(g, k, _)| (g, k.clone()))
                .collect();
            for (g, k) in keys {
                self.sessions.delete(g, &k);
            }
            self.stage(FINISHED);
        }
    }

    /// Stages the tables' changes made by epoch `e`.
    fn stage(&mut self, e: u64) {
        if let Some(c) = &self.panes_ck {
            c.stage(e, &mut self.panes);
        }
        if let Some(c) = &self.sessions_ck {
            c.stage(e, &mut self.sessions);
        }
    }

    /// Schedules the fires of restored windows, under capabilities delayed
    /// from the operator's initial ones.
    fn schedule_restored(&mut self, init: &Caps) {
        let panes: Vec<(u32, Vec<u8>, i64, i64)> = self
            .panes
            .iter()
            .map(|(g, k, p)| (g, k.clone(), p.start, p.end))
            .collect();
        for (g, sk, start, end) in panes {
            let f = fire_epoch(end, self.node.lateness, self.node.epoch_ms);
            self.schedule(f, init, (g, sk, start));
        }
        if let Kind::Session(gap) = self.node.kind {
            let live: Vec<(u32, Vec<u8>, i64, i64)> = self
                .sessions
                .iter()
                .flat_map(|(g, k, ks)| ks.live.iter().map(move |s| (g, k.clone(), s.start, s.last)))
                .collect();
            for (g, kb, start, last) in live {
                let f = self.node.session_fire(last, gap);
                self.schedule(f, init, (g, kb, start));
            }
        }
    }

    fn schedule(&mut self, fire: i64, caps: &Caps, at: (u32, Vec<u8>, i64)) {
        // fire >= the current epoch >= 0 here: late windows are never created.
        let f = u64::try_from(fire).unwrap_or(0);
        let spare = &mut self.spare_fires;
        self.fires
            .entry(f)
            .or_insert_with(|| (caps.delayed(f), spare.pop().unwrap_or_default()))
            .1
            .push(at);
    }

    fn apply_panes(&mut self, _e: u64, caps: &Caps, mut keys: PanePartials) {
        for (kb, (key, parts)) in keys.drain() {
            let group = self.node.key.group(&kb);
            for part in parts {
                let sk = pane_key(&kb, part.start);
                let (start, end) = (part.start, part.end);
                let mut accs = Some(part.accs);
                let (pane, created) = self.panes.entry(group, sk.clone(), || Pane {
                    key: key.clone(),
                    start,
                    end,
                    accs: accs.take().unwrap_or_default(),
                });
                if let Some(partial) = accs {
                    for (a, b) in pane.accs.iter_mut().zip(&partial) {
                        a.merge(b);
                    }
                }
                if created {
                    let f = fire_epoch(end, self.node.lateness, self.node.epoch_ms);
                    self.schedule(f, caps, (group, sk, start));
                }
            }
        }
        // The emptied map keeps its capacity for a later epoch.
        if self.spare.len() < 2 {
            self.spare.push(keys);
        }
    }

    fn apply_sessions(
        &mut self,
        e: u64,
        caps: &Caps,
        mut recs: Vec<(Vec<u8>, Rec)>,
        out: &mut Handles<'_>,
    ) {
        let Kind::Session(gap) = self.node.kind else {
            return;
        };
        recs.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then(a.1.time.cmp(&b.1.time))
                .then_with(|| cmp_rows(&a.1.row, &b.1.row))
        });
        let mut late = Vec::new();
        let mut errors = Vec::new();
        for (kb, rec) in recs {
            let t = rec.time;
            let group = self.node.key.group(&kb);
            let n = &self.node;
            let ks = self.sessions.get(group, &kb);
            if ks.and_then(|s| s.fired_until).is_some_and(|fu| t <= fu) {
                late.push(rec);
                continue;
            }
            // The live sessions this record touches.
            let touching: Vec<usize> = ks
                .map(|s| {
                    s.live
                        .iter()
                        .enumerate()
                        .filter(|(_, x)| {
                            x.start.saturating_sub(gap) <= t && t <= x.last.saturating_add(gap)
                        })
                        .map(|(i, _)| i)
                        .collect()
                })
                .unwrap_or_default();
            if touching.is_empty() && is_late(n.session_fire(t, gap), e) {
                late.push(rec);
                continue;
            }
            let vals = match n.args(&rec) {
                Ok(v) => v,
                Err(reason) => {
                    errors.push(rejected(&n.name, &reason, &n.encoder, &rec));
                    continue;
                }
            };
            let mut merged = Session {
                start: t,
                last: t,
                accs: n.aggs.iter().map(Agg::empty).collect(),
            };
            for (acc, v) in merged.accs.iter_mut().zip(&vals) {
                acc.add(v, t);
            }
            let key_row = n.key.values(&rec.row);
            let (ks, _) = self.sessions.entry(group, kb.clone(), || Sessions {
                key: key_row,
                live: Vec::new(),
                fired_until: None,
            });
            for &i in touching.iter().rev() {
                let old = ks.live.remove(i);
                merged.start = merged.start.min(old.start);
                merged.last = merged.last.max(old.last);
                for (a, b) in merged.accs.iter_mut().zip(&old.accs) {
                    a.merge(b);
                }
            }
            let at = ks.live.partition_point(|x| x.start < merged.start);
            let (start, last) = (merged.start, merged.last);
            ks.live.insert(at, merged);
            let f = self.node.session_fire(last, gap);
            self.schedule(f, caps, (group, kb, start));
        }
        give_all(out, LATE, caps.get(LATE), late);
        give_all(out, ERRORS, caps.get(ERRORS), errors);
    }

    fn fire(
        &mut self,
        e: u64,
        caps: &Caps,
        mut wins: Vec<(u32, Vec<u8>, i64)>,
        out: &mut Handles<'_>,
    ) {
        let mut results = Vec::with_capacity(wins.len());
        let mut errors = Vec::new();
        for (group, sk, start) in wins.drain(..) {
            let r = match self.node.kind {
                Kind::Session(gap) => {
                    let Some(ks) = self.sessions.get_mut(group, &sk) else {
                        continue;
                    };
                    // A stale entry: the session was merged away, or extended
                    // to fire later.
                    let fire = |s: &Session| self.node.session_fire(s.last, gap);
                    let Some(i) = ks
                        .live
                        .iter()
                        .position(|s| s.start == start && i128::from(fire(s)) == i128::from(e))
                    else {
                        continue;
                    };
                    let s = ks.live.remove(i);
                    let end = s.last.saturating_add(gap);
                    ks.fired_until = Some(ks.fired_until.map_or(end, |f| f.max(end)));
                    self.node.result(&ks.key, s.start, end, &s.accs)
                }
                _ => {
                    let Some(p) = self.panes.delete(group, &sk) else {
                        continue;
                    };
                    self.node.result(&p.key, p.start, p.end, &p.accs)
                }
            };
            match r {
                Ok(r) => results.push(r),
                Err(e) => errors.push(e),
            }
        }
        give_all(out, MAIN, caps.get(MAIN), results);
        // The emptied list keeps its capacity for a later fire epoch.
        if self.spare_fires.len() < 4 {
            self.spare_fires.push(wins);
        }
        give_all(out, ERRORS, caps.get(ERRORS), errors);
    }
}

/// The spec's total order over rows (field by field).
pub(crate) fn cmp_rows(a: &[Value], b: &[Value]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        match cmp_total(x, y) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    a.len().cmp(&b.len())
}

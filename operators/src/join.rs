//! `join`: inner equi-join of two streams, unbounded or in tumbling windows.
//!
//! - Null keys never match. Each matching pair is emitted once, in the epoch
//!   of the later of its two records; its event time is the later event time.
//! - Unbounded: both sides are kept for ever.
//! - Windowed (`"window": {"tumbling_ms": N}`): both records' event times
//!   fall in the same window `[start, end)`; a record whose window has fired
//!   (`f(W)` less than its epoch) goes to `late`; a window's state is dropped
//!   when it fires.
//!
//! Each epoch's records are stashed per key and joined once the frontier
//! passes the epoch: new left × old right, old left × new right, new × new;
//! then the new records join the state, sorted, so state bytes never depend
//! on arrival order.
//!
//! The `late` port of a windowed join carries `side` (`"left"` or `"right"`)
//! and `record` (the record as a JSON object).

use std::collections::BTreeMap;
use std::sync::Arc;

use indexmap::IndexMap;
use std::rc::Rc;

use lockstep_state::store::StoreError;
use lockstep_state::{
    decode_value, encode_value_into, Checkpointer, KeyGroups, KeyedState, StateDef, StateGauge,
};
use schemars::JsonSchema;
use serde::Deserialize;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::Scope;

use crate::config::{parse_config, Diag, Path};
use crate::encode::{Encoder, Format};
use crate::expr::{self, Expr, Resolve};
use crate::filter::compile_condition_in;
use crate::keyed::{self, fire_epoch, is_late, ByEpoch, Caps, KeyCols};
use crate::node::{
    error_record, give_all, new_outputs, rejected, Edge, Node, NodeConfig, NodeKind, PlanCtx, Port,
    StateCtx, TimeMode, ERRORS_PORT,
};
use crate::suggest;
use crate::value::{errors_schema, Rec, Row, Schema, Text, Type, Value};
use crate::window::cmp_rows;

/// The `join` node type.
#[derive(Debug)]
pub struct Join;

/// `join`'s config.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinConfig {
    /// The left upstream.
    pub left: String,
    /// The right upstream.
    pub right: String,
    /// Equality conditions: `[left_field, right_field]` pairs.
    #[schemars(length(min = 1))]
    pub on: Vec<(String, String)>,
    /// Optional tumbling window both records must share.
    #[serde(default)]
    pub window: Option<JoinWindow>,
    /// Optional condition over the pair.
    #[serde(default, rename = "where")]
    pub condition: Option<String>,
    /// Output field → expression over `left.x`, `right.y` (and
    /// `window_start`, `window_end` in a windowed join).
    #[schemars(extend("minProperties" = 1))]
    pub select: IndexMap<String, String>,
}

/// A join's window.
#[derive(Debug, Deserialize, Clone, Copy, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinWindow {
    /// Window length in milliseconds.
    #[schemars(range(min = 1))]
    pub tumbling_ms: u64,
}

impl NodeKind for Join {
    fn name(&self) -> &'static str {
        "join"
    }
    fn summary(&self) -> &'static str {
        "Inner equi-join of two streams, unbounded or within tumbling event-time windows."
    }
    fn example(&self) -> &'static str {
        r#"{"type": "join", "left": "in", "right": "in", "on": [["user", "user"]], "window": {"tumbling_ms": 60000}, "where": "left.ts < right.ts", "select": {"user": "left.user", "from": "left.url", "to": "right.url", "window_start": "window_start"}}"#
    }
    fn parse(&self, config: serde_json::Value) -> Result<Box<dyn NodeConfig>, Vec<Diag>> {
        let c = parse_config::<JoinConfig>(config)?;
        let mut diags = Vec::new();
        if c.on.is_empty() {
            diags.push(Diag::new(
                Path::of(&["on"]),
                "give at least one pair of fields to join on, e.g. [[\"seller\", \"id\"]]",
            ));
        }
        if let Some(w) = c.window {
            if w.tumbling_ms == 0 || i64::try_from(w.tumbling_ms).is_err() {
                diags.push(Diag::new(
                    Path::of(&["window", "tumbling_ms"]),
                    format!(
                        "tumbling_ms must be a positive number of milliseconds (at most 2^63-1), got {}",
                        w.tumbling_ms
                    ),
                ));
            }
        }
        if c.select.is_empty() {
            diags.push(Diag::new(
                Path::of(&["select"]),
                "give at least one output field, e.g. {\"id\": \"left.id\"}",
            ));
        }
        if diags.is_empty() {
            Ok(Box::new(c))
        } else {
            Err(diags)
        }
    }
}

/// The scope of a join's expressions: `left.x`, `right.y`, and in a windowed
/// join `window_start` and `window_end`, over the pair row
/// `left ++ right ++ [window_start, window_end]`.
struct PairScope<'a> {
    left: &'a Schema,
    right: &'a Schema,
    windowed: bool,
}

impl Resolve for PairScope<'_> {
    fn resolve(&self, parts: &[String]) -> Result<(usize, Type), String> {
        let nl = self.left.len();
        let nr = self.right.len();
        match parts {
            [side, f] if side == "left" || side == "right" => {
                let (schema, base) = if side == "left" {
                    (self.left, 0)
                } else {
                    (self.right, nl)
                };
                match schema.index_of(f) {
                    Some(i) => Ok((base + i, schema.fields()[i].ty)),
                    None => Err(keyed::unknown_field(f, schema).replacen(
                        "unknown field",
                        &format!("unknown field of {side}:"),
                        1,
                    )),
                }
            }
            [one] if self.windowed && one == "window_start" => Ok((nl + nr, Type::Timestamp)),
            [one] if self.windowed && one == "window_end" => Ok((nl + nr + 1, Type::Timestamp)),
            [one] => {
                let mut hint = Vec::new();
                if self.left.index_of(one).is_some() {
                    hint.push(format!("left.{one}"));
                }
                if self.right.index_of(one).is_some() {
                    hint.push(format!("right.{one}"));
                }
                if (one == "window_start" || one == "window_end") && !self.windowed {
                    return Err(format!(
                        "{one} exists only in a windowed join (add \"window\": {{\"tumbling_ms\": N}})"
                    ));
                }
                if hint.is_empty() {
                    let all: Vec<String> = self
                        .left
                        .names()
                        .map(|n| format!("left.{n}"))
                        .chain(self.right.names().map(|n| format!("right.{n}")))
                        .collect();
                    let h = suggest::hint(one, all.iter().map(String::as_str));
                    Err(format!(
                        "unknown field \"{one}\"{h}; a join's expressions name fields as left.x or right.y"
                    ))
                } else {
                    Err(format!(
                        "a join's expressions name fields by side: write {}",
                        hint.join(" or ")
                    ))
                }
            }
            _ => Err(format!(
                "unknown field \"{}\"; a join's expressions name fields as left.x or right.y",
                parts.join(".")
            )),
        }
    }
}

impl NodeConfig for JoinConfig {
    fn inputs(&self) -> Vec<(Path, String)> {
        vec![
            (Path::of(&["left"]), self.left.clone()),
            (Path::of(&["right"]), self.right.clone()),
        ]
    }

    fn plan(&self, ctx: &PlanCtx<'_>) -> Result<Arc<dyn Node>, Vec<Diag>> {
        let (left, right) = (&ctx.inputs[0], &ctx.inputs[1]);
        let mut diags = Vec::new();
        let mut epoch_ms = 1;
        if self.window.is_some() {
            match ctx.time {
                TimeMode::EpochMs(e) => epoch_ms = e,
                TimeMode::EpochRecords(_) => diags.push(Diag::new(
                    Path::of(&["window"]),
                    "a windowed join needs event time, but this job counts epochs in records (\"time\": {\"epoch_records\": N}); use \"time\": {\"epoch_ms\": E} and give every source an \"event_time\"",
                )),
            }
        }
        let mut lk = Vec::new();
        let mut rk = Vec::new();
        for (i, (l, r)) in self.on.iter().enumerate() {
            let at = Path::of(&["on"]).index(i);
            let li = left.index_of(l);
            let ri = right.index_of(r);
            if li.is_none() {
                diags.push(Diag::new(
                    at.index(0),
                    format!("left side: {}", keyed::unknown_field(l, left)),
                ));
            }
            if ri.is_none() {
                diags.push(Diag::new(
                    at.index(1),
                    format!("right side: {}", keyed::unknown_field(r, right)),
                ));
            }
            if let (Some(li), Some(ri)) = (li, ri) {
                let (lt, rt) = (left.fields()[li].ty, right.fields()[ri].ty);
                if lt != rt {
                    diags.push(Diag::new(
                        at,
                        format!(
                            "join keys must have the same type, but left.{l} is {lt} and right.{r} is {rt}; convert one side first with a map (CAST({} AS {rt}))",
                            l
                        ),
                    ));
                }
                lk.push(li);
                rk.push(ri);
            }
        }
        let scope = PairScope {
            left,
            right,
            windowed: self.window.is_some(),
        };
        let cond = match &self.condition {
            Some(src) => match compile_condition_in(src, &scope, Path::of(&["where"]), "where") {
                Ok(e) => Some(e),
                Err(d) => {
                    diags.push(d);
                    None
                }
            },
            None => None,
        };
        let mut select = Vec::new();
        let mut fields = Vec::new();
        for (name, src) in &self.select {
            match expr::compile(src, &scope) {
                Ok(e) => {
                    fields.push((name.clone(), e.ty().unwrap_or(Type::String)));
                    select.push(e);
                }
                Err(e) => diags.push(Diag::new(Path::of(&["select", name]), e.message)),
            }
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        let pair_fields: Vec<(String, Type)> = left
            .fields()
            .iter()
            .map(|f| (format!("left.{}", f.name), f.ty))
            .chain(
                right
                    .fields()
                    .iter()
                    .map(|f| (format!("right.{}", f.name), f.ty)),
            )
            .chain([
                ("window_start".to_string(), Type::Timestamp),
                ("window_end".to_string(), Type::Timestamp),
            ])
            .collect();
        Ok(Arc::new(JoinNode {
            name: ctx.node.to_string(),
            out: Schema::new(fields),
            encoders: [
                Encoder::new(left, Format::Jsonl),
                Encoder::new(right, Format::Jsonl),
            ],
            pair_encoder: Encoder::new(&Schema::new(pair_fields), Format::Jsonl),
            keys: [KeyCols::new(lk), KeyCols::new(rk)],
            cond,
            select,
            window: self.window.and_then(|w| i64::try_from(w.tumbling_ms).ok()),
            epoch_ms,
            gauge: StateGauge::new(),
            held: StateGauge::new(),
        }))
    }
}

/// A planned `join` node.
#[derive(Debug)]
pub struct JoinNode {
    name: String,
    out: Schema,
    encoders: [Encoder; 2],
    pair_encoder: Encoder,
    keys: [KeyCols; 2],
    cond: Option<Expr>,
    select: Vec<Expr>,
    window: Option<i64>,
    epoch_ms: u64,
    gauge: Arc<StateGauge>,
    held: Arc<StateGauge>,
}

/// The schema of a windowed join's `late` port.
pub fn late_schema() -> Schema {
    Schema::new([("side", Type::String), ("record", Type::Json)])
}

/// Both sides' records of a key (and window), each sorted by event time and
/// then by the total order.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sides {
    /// The left side's records.
    pub left: Vec<Rec>,
    /// The right side's records.
    pub right: Vec<Rec>,
}

const SIDES: StateDef<Vec<u8>, Sides> = StateDef::new("sides");

/// The checkpointed table of a join: one entry per stored record, keyed
/// `state key ‖ side (0 left, 1 right) ‖ sequence (u64, big-endian)`, so
/// that a checkpoint writes each record once, when it arrives, and deletes
/// it when its window closes, instead of rewriting a key's growing sides.
const RECORDS: &str = "records";

/// A worker's handle on the `records` table.
struct JoinCk {
    ck: Rc<Checkpointer>,
    table: u32,
    ctx: StateCtx,
}

impl JoinCk {
    /// Opens the table and restores the key groups this worker owns into
    /// `sides`; `None` without checkpoints.
    fn open(
        ctx: &StateCtx,
        sides: &mut KeyedState<Vec<u8>, Sides>,
        worker: usize,
        peers: usize,
    ) -> Option<JoinCk> {
        let (ck, table) = ctx.raw_table(RECORDS)?;
        let t = JoinCk {
            ck,
            table,
            ctx: ctx.clone(),
        };
        if let Err(e) = t.restore(sides, worker, peers) {
            ctx.fail(format!(
                "node \"{}\": cannot restore its records: {e}",
                ctx.node()
            ));
        }
        Some(t)
    }

    fn restore(
        &self,
        sides: &mut KeyedState<Vec<u8>, Sides>,
        worker: usize,
        peers: usize,
    ) -> Result<(), StoreError> {
        if self.ck.resume().is_none() {
            return Ok(());
        }
        let groups = KeyGroups::new(self.ck.key_groups());
        for g in (0..self.ck.key_groups()).filter(|g| groups.owner(*g, peers) == worker) {
            let mut found: BTreeMap<Vec<u8>, Sides> = BTreeMap::new();
            self.ck
                .store()
                .scan_group(self.table, g, &mut |_, key, value| {
                    let Some(split) = key.len().checked_sub(9) else {
                        return Err(StoreError("a join record key is too short".into()));
                    };
                    let rec: Rec = decode_value(value)?;
                    let s = found.entry(key[..split].to_vec()).or_default();
                    if key[split] == 0 {
                        s.left.push(rec);
                    } else {
                        s.right.push(rec);
                    }
                    Ok(())
                })?;
            for (sk, mut s) in found {
                // Kept sorted in memory; the stored order is by arrival.
                sort_recs(&mut s.left);
                sort_recs(&mut s.right);
                sides.load(g, sk, s);
            }
        }
        Ok(())
    }

    fn key(sk: &[u8], side: u8, seq: usize) -> Vec<u8> {
        let mut k = Vec::with_capacity(sk.len() + 9);
        k.extend_from_slice(sk);
        k.push(side);
        k.extend_from_slice(&(seq as u64).to_be_bytes());
        k
    }

    /// Stages records `new` of a side that held `held` before, made by
    /// epoch `e`.
    fn appended(&self, e: u64, group: u32, sk: &[u8], side: u8, held: usize, new: &[Rec]) {
        for (i, rec) in new.iter().enumerate() {
            let staged = self.ck.stage_with(
                e,
                self.table,
                group,
                &Self::key(sk, side, held + i),
                |out| encode_value_into(out, rec).map(|()| true),
            );
            if let Err(err) = staged {
                self.ctx.fail(format!(
                    "node \"{}\": cannot checkpoint a record: {err}",
                    self.ctx.node()
                ));
            }
        }
    }

    /// Stages the deletion of a closed window's records, made by epoch `e`.
    fn deleted(&self, e: u64, group: u32, sk: &[u8], old: &Sides) {
        for (side, n) in [(0u8, old.left.len()), (1u8, old.right.len())] {
            for seq in 0..n {
                self.ck
                    .stage(e, self.table, group, &Self::key(sk, side, seq), None);
            }
        }
    }
}

const MAIN: usize = 0;
const ERRORS: usize = 1;
const LATE: usize = 2;

fn sort_recs(recs: &mut [Rec]) {
    recs.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| cmp_rows(&a.row, &b.row)));
}

/// The state key of a record: key bytes, then the window start in a windowed join.
fn state_key(key: &[u8], window: Option<i64>) -> Vec<u8> {
    let mut k = key.to_vec();
    if let Some(s) = window {
        crate::value::encode_key(&Value::Int(s), &mut k);
    }
    k
}

struct JoinShared {
    name: String,
    pair_encoder: Encoder,
    cond: Option<Expr>,
    select: Vec<Expr>,
    window: Option<i64>,
}

impl JoinShared {
    /// The output of one pair, if it passes `where`; an `errors` record if an
    /// expression fails.
    fn pair(
        &self,
        l: &Rec,
        r: &Rec,
        win: Option<(i64, i64)>,
        row: &mut Row,
    ) -> Option<Result<Rec, Rec>> {
        row.clear();
        row.extend(l.row.iter().cloned());
        row.extend(r.row.iter().cloned());
        let (ws, we) = win.map_or((Value::Null, Value::Null), |(s, e)| {
            (Value::Ts(s), Value::Ts(e))
        });
        row.push(ws);
        row.push(we);
        let time = l.time.max(r.time);
        let fail = |reason: &str, row: &Row| {
            error_record(&self.name, reason, self.pair_encoder.line(row), time)
        };
        if let Some(c) = &self.cond {
            match c.eval_predicate(row) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => return Some(Err(fail(&e.reason, row))),
            }
        }
        let mut out = Vec::with_capacity(self.select.len());
        for e in &self.select {
            match e.eval(row) {
                Ok(v) => out.push(v),
                Err(e) => return Some(Err(fail(&e.reason, row))),
            }
        }
        Some(Ok(Rec { time, row: out }))
    }
}

type Stash = keyed::FastMap<Vec<u8>, (u32, [Vec<Rec>; 2])>;

impl Node for JoinNode {
    fn outputs(&self) -> Vec<Port> {
        let mut ports = vec![
            Port::new("", self.out.clone()),
            Port::new(ERRORS_PORT, errors_schema()),
        ];
        if self.window.is_some() {
            ports.push(Port::new("late", late_schema()));
        }
        ports
    }

    fn state_gauges(&self) -> Vec<Arc<StateGauge>> {
        vec![Arc::clone(&self.gauge)]
    }

    fn held_gauge(&self) -> Option<Arc<StateGauge>> {
        Some(Arc::clone(&self.held))
    }

    fn state_tables(&self) -> Vec<&'static str> {
        vec![RECORDS]
    }

    fn build<'s>(&self, scope: Scope<'s, u64>, inputs: Vec<Edge<'s>>) -> Vec<Edge<'s>> {
        self.build_checkpointed(scope, inputs, &StateCtx::none())
    }

    #[allow(clippy::too_many_lines)]
    fn build_checkpointed<'s>(
        &self,
        scope: Scope<'s, u64>,
        mut inputs: Vec<Edge<'s>>,
        ctx: &StateCtx,
    ) -> Vec<Edge<'s>> {
        let right_in = inputs.remove(1);
        let left_in = inputs.remove(0);
        let mut builder = OperatorBuilder::new(format!("join {}", self.name), scope);
        let mut handles_in = Vec::new();
        for (i, input) in [left_in, right_in].into_iter().enumerate() {
            handles_in
                .push(builder.new_input(input, Exchange::new(self.keys[i].router(scope.peers()))));
        }
        let nports = if self.window.is_some() { 3 } else { 2 };
        let (mut outs, streams) = new_outputs(&mut builder, nports);
        let sh = JoinShared {
            name: self.name.clone(),
            pair_encoder: self.pair_encoder.clone(),
            cond: self.cond.clone(),
            select: self.select.clone(),
            window: self.window,
        };
        let keys = self.keys.clone();
        let encoders = self.encoders.clone();
        let epoch_ms = self.epoch_ms;
        let held = Arc::clone(&self.held);
        let mut sides = KeyedState::new(&SIDES)
            .tracking(false)
            .with_gauge(Arc::clone(&self.gauge));
        let table = JoinCk::open(ctx, &mut sides, scope.index(), scope.peers());
        builder.build(move |caps| {
            let mut stash: ByEpoch<Stash> = BTreeMap::new();
            let mut size_hint = 0usize;
            // Emptied per-epoch maps, reused (a fresh map per epoch made the
            // allocator fault in fresh pages all the time).
            let mut spare: Vec<Stash> = Vec::new();
            // Windowed: per fire epoch, the state keys whose window fires then.
            let mut fires: ByEpoch<Vec<(u32, Vec<u8>)>> = BTreeMap::new();
            if let Some(size) = sh.window {
                // Restored windows close as if they had never been away.
                let init = Caps::new(caps);
                for (group, sk, s) in sides.iter() {
                    let Some(first) = s.left.first().or(s.right.first()) else {
                        continue;
                    };
                    let start = first.time.div_euclid(size).saturating_mul(size);
                    let f = fire_epoch(start.saturating_add(size), 0, epoch_ms);
                    let f = u64::try_from(f).unwrap_or(0);
                    fires
                        .entry(f)
                        .or_insert_with(|| (init.delayed(f), Vec::new()))
                        .1
                        .push((group, sk.clone()));
                }
            }
            let mut keybuf = Vec::new();
            let mut pair = Row::new();
            move |frontiers| {
                let mut handles: Vec<_> = outs.iter_mut().map(OutputBuilder::activate).collect();
                let ports: Vec<usize> = handles.iter().map(|h| h.output_index()).collect();
                for (side, input) in handles_in.iter_mut().enumerate() {
                    input.for_each_stamp(|cap, data| {
                        let Some(&epoch) = cap.least() else { return };
                        let slot = stash.entry(epoch).or_insert_with(|| {
                            (
                                Caps::new(
                                    ports.iter().filter_map(|&p| cap.retain_least(p)).collect(),
                                ),
                                // Sized like the last epoch's: no rehashing as it fills.
                                spare.pop().unwrap_or_else(|| {
                                    Stash::with_capacity_and_hasher(size_hint, Default::default())
                                }),
                            )
                        });
                        let mut late = Vec::new();
                        let mut errors = Vec::new();
                        let mut added = 0i64;
                        for batch in data {
                            for rec in batch.drain(..) {
                                let mut win = None;
                                if let Some(size) = sh.window {
                                    let start = rec.time.div_euclid(size).saturating_mul(size);
                                    let Some(end) = start.checked_add(size) else {
                                        errors.push(rejected(
                                            &sh.name,
                                            &format!("event time {} is too close to the end of the timestamp range: its window's bounds do not fit in a timestamp", rec.time),
                                            &encoders[side],
                                            &rec,
                                        ));
                                        continue;
                                    };
                                    if is_late(fire_epoch(end, 0, epoch_ms), epoch) {
                                        late.push(late_record(side, &encoders[side], rec));
                                        continue;
                                    }
                                    win = Some(start);
                                }
                                if keys[side].has_null(&rec.row) {
                                    continue; // null keys never match
                                }
                                keys[side].encode(&rec.row, &mut keybuf);
                                let sk = state_key(&keybuf, win);
                                let group = keys[side].group(&keybuf);
                                slot.1
                                    .entry(sk)
                                    .or_insert_with(|| (group, [Vec::new(), Vec::new()]))
                                    .1[side]
                                    .push(rec);
                                added += 1;
                            }
                        }
                        held.add(added);
                        give_all(&mut handles, LATE, &cap, late);
                        give_all(&mut handles, ERRORS, &cap, errors);
                    });
                }
                loop {
                    let next = [stash.keys().next().copied(), fires.keys().next().copied()]
                        .into_iter()
                        .flatten()
                        .min();
                    let Some(e) = next else { break };
                    if frontiers[0].less_equal(&e) || frontiers[1].less_equal(&e) {
                        break;
                    }
                    if let Some((caps, mut groups)) = stash.remove(&e) {
                        let n: usize = groups.values().map(|(_, [l, r])| l.len() + r.len()).sum();
                        held.add(-i64::try_from(n).unwrap_or(0));
                        size_hint = groups.len();
                        let mut results = Vec::new();
                        let mut errors = Vec::new();
                        for (sk, (group, [mut nl, mut nr])) in groups.drain() {
                            sort_recs(&mut nl);
                            sort_recs(&mut nr);
                            let win = sh.window.map(|size| {
                                let s = nl
                                    .first()
                                    .or(nr.first())
                                    .map_or(0, |r| r.time.div_euclid(size).saturating_mul(size));
                                (s, s.saturating_add(size))
                            });
                            let mut emit = |l: &Rec, r: &Rec| match sh.pair(l, r, win, &mut pair) {
                                Some(Ok(o)) => results.push(o),
                                Some(Err(e)) => errors.push(e),
                                None => {}
                            };
                            let (old, fresh) = sides.entry(group, sk.clone(), Sides::default);
                            if let Some(t) = &table {
                                t.appended(e, group, &sk, 0, old.left.len(), &nl);
                                t.appended(e, group, &sk, 1, old.right.len(), &nr);
                            }
                            for l in &nl {
                                for r in old.right.iter().chain(&nr) {
                                    emit(l, r);
                                }
                            }
                            for l in &old.left {
                                for r in &nr {
                                    emit(l, r);
                                }
                            }
                            merge_sorted(&mut old.left, nl);
                            merge_sorted(&mut old.right, nr);
                            if let (true, Some(size), Some((start, _))) = (fresh, sh.window, win) {
                                let f = fire_epoch(start.saturating_add(size), 0, epoch_ms);
                                let f = u64::try_from(f).unwrap_or(0);
                                fires
                                    .entry(f)
                                    .or_insert_with(|| (caps.delayed(f), Vec::new()))
                                    .1
                                    .push((group, sk));
                            }
                        }
                        give_all(&mut handles, MAIN, caps.get(MAIN), results);
                        give_all(&mut handles, ERRORS, caps.get(ERRORS), errors);
                        if spare.len() < 2 {
                            spare.push(groups);
                        }
                    }
                    if let Some((_caps, done)) = fires.remove(&e) {
                        for (group, sk) in done {
                            let old = sides.delete(group, &sk);
                            if let (Some(t), Some(old)) = (&table, old) {
                                t.deleted(e, group, &sk, &old);
                            }
                        }
                    }
                }
            }
        });
        streams
    }
}

/// Appends sorted `new` to sorted `all`, keeping the order.
fn merge_sorted(all: &mut Vec<Rec>, new: Vec<Rec>) {
    if new.is_empty() {
        return;
    }
    if all.is_empty() {
        *all = new;
        return;
    }
    let in_order = match (all.last(), new.first()) {
        (Some(a), Some(b)) => {
            a.time.cmp(&b.time).then_with(|| cmp_rows(&a.row, &b.row))
                != std::cmp::Ordering::Greater
        }
        _ => true,
    };
    all.extend(new);
    if !in_order {
        sort_recs(all);
    }
}

/// A record that arrived after its window fired, for the `late` port.
fn late_record(side: usize, encoder: &Encoder, rec: Rec) -> Rec {
    let text = encoder.line(&rec.row);
    let canonical = crate::json::canonicalize(&text).unwrap_or(text);
    Rec {
        time: rec.time,
        row: vec![
            Value::str(if side == 0 { "left" } else { "right" }),
            Value::Json(Text::from(canonical)),
        ],
    }
}

//! Typed state handles and in-memory keyed state with per-epoch change tracking.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A named, typed state table that an operator declares up front, so that
/// checkpoints know every table:
/// `const COUNTS: StateDef<Vec<u8>, u64> = StateDef::new("counts");`
#[derive(Debug)]
pub struct StateDef<K, V> {
    name: &'static str,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> StateDef<K, V> {
    /// A table called `name`, unique within its operator.
    pub const fn new(name: &'static str) -> Self {
        StateDef {
            name,
            _types: PhantomData,
        }
    }

    /// The table's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

/// What happened to one key since changes were last taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change<V> {
    /// The key now has this value.
    Put(V),
    /// The key was removed.
    Delete,
}

/// The number of keys an operator's state tables hold, summed over the
/// workers of a process, and the most they ever held: the state-size counter
/// that run summaries report and tests read. Shared (`Arc`) by the tables of
/// one node on every worker.
#[derive(Debug, Default)]
pub struct StateGauge {
    keys: AtomicI64,
    peak: AtomicI64,
    /// The mean size in bytes of the entries (key and encoded value) that
    /// the last checkpoint wrote; 0 before one.
    entry_bytes: AtomicI64,
}

impl StateGauge {
    /// A gauge at zero.
    pub fn new() -> Arc<StateGauge> {
        Arc::new(StateGauge::default())
    }

    /// Adds `delta` keys (negative when keys are removed).
    pub fn add(&self, delta: i64) {
        let now = self.keys.fetch_add(delta, Ordering::Relaxed) + delta;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    /// Keys held now.
    pub fn keys(&self) -> i64 {
        self.keys.load(Ordering::Relaxed)
    }

    /// The most keys held at once since the last [`reset`](StateGauge::reset).
    pub fn peak(&self) -> i64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Back to zero (before a run).
    pub fn reset(&self) {
        self.keys.store(0, Ordering::Relaxed);
        self.peak.store(0, Ordering::Relaxed);
        self.entry_bytes.store(0, Ordering::Relaxed);
    }

    /// Notes the mean size of the entries a checkpoint just wrote.
    pub fn note_entry_bytes(&self, mean: i64) {
        self.entry_bytes.store(mean, Ordering::Relaxed);
    }

    /// An estimate of the bytes the state holds, as checkpoints encode it:
    /// keys held now times the mean entry size of the last checkpoint that
    /// wrote entries (`None` before one: without `--state`, or early).
    pub fn bytes(&self) -> Option<i64> {
        let e = self.entry_bytes.load(Ordering::Relaxed);
        (e > 0).then(|| self.keys().max(0).saturating_mul(e))
    }
}

/// One table of keyed working state, organised by key group. When change
/// tracking is on, every write marks its key dirty and
/// [`take_changes`](KeyedState::take_changes) returns the net change of each
/// dirty key in key-group and key order, so that a checkpoint writes only what
/// changed, in a deterministic order. Without a checkpoint to feed, tracking
/// is off and costs nothing.
#[derive(Debug)]
pub struct KeyedState<K: Ord + Hash + Clone, V: Clone> {
    name: &'static str,
    /// Hash maps: lookups are what operators do per record; the few
    /// callers that need order (`iter`, `key_groups`, `take_changes`) sort.
    groups: HashMap<u32, HashMap<K, V, Fixed>, Fixed>,
    /// Keys written since changes were last taken, per key group (hash
    /// sets: a write to a key already marked costs a lookup, not a clone;
    /// taking changes sorts them).
    dirty: HashMap<u32, HashSet<K, Fixed>, Fixed>,
    /// The (emptied) buffer that dirty keys are drained into.
    drained: Vec<(u32, K)>,
    tracking: bool,
    len: usize,
    gauge: Option<Arc<StateGauge>>,
}

/// The fixed-seed hasher of the in-memory tables.
type Fixed = foldhash::fast::FixedState;

impl<K: Ord + Hash + Clone, V: Clone> KeyedState<K, V> {
    /// Empty state for a declared table, with change tracking on.
    pub fn new(def: &StateDef<K, V>) -> Self {
        KeyedState {
            name: def.name(),
            groups: HashMap::default(),
            dirty: HashMap::default(),
            drained: Vec::new(),
            tracking: true,
            len: 0,
            gauge: None,
        }
    }

    /// Turns change tracking on or off (off: [`take_changes`](KeyedState::take_changes)
    /// returns nothing).
    #[must_use]
    pub fn tracking(mut self, on: bool) -> Self {
        self.tracking = on;
        self
    }

    /// Turns change tracking on or off in place.
    pub fn set_tracking(&mut self, on: bool) {
        self.tracking = on;
    }

    /// Counts this table's keys in `gauge`.
    #[must_use]
    pub fn with_gauge(mut self, gauge: Arc<StateGauge>) -> Self {
        self.gauge = Some(gauge);
        self
    }

    /// The gauge counting this table's keys.
    pub fn gauge(&self) -> Option<&Arc<StateGauge>> {
        self.gauge.as_ref()
    }

    fn counted(&mut self, delta: i64) {
        if let Some(g) = &self.gauge {
            g.add(delta);
        }
    }

    fn mark(&mut self, group: u32, key: &K) {
        if self.tracking {
            let set = self.dirty.entry(group).or_default();
            if !set.contains(key) {
                set.insert(key.clone());
            }
        }
    }

    /// The dirty keys, in key-group and key order, forgotten.
    fn take_dirty(&mut self) -> Vec<(u32, K)> {
        let mut all = std::mem::take(&mut self.drained);
        all.extend(
            self.dirty
                .iter_mut()
                .flat_map(|(g, set)| set.drain().map(move |k| (*g, k))),
        );
        all.sort_unstable();
        all
    }

    /// The value of `key` for writing (marks it changed), if present.
    pub fn get_mut(&mut self, group: u32, key: &K) -> Option<&mut V> {
        if self.tracking && self.get(group, key).is_some() {
            self.mark(group, key);
        }
        self.groups.get_mut(&group).and_then(|g| g.get_mut(key))
    }

    /// The value of `key` for writing (marks it changed), inserting
    /// `make()` first if absent; also whether it was inserted. One lookup.
    pub fn entry(&mut self, group: u32, key: K, make: impl FnOnce() -> V) -> (&mut V, bool) {
        self.mark(group, &key);
        let g = self.groups.entry(group).or_default();
        match g.entry(key) {
            std::collections::hash_map::Entry::Occupied(o) => (o.into_mut(), false),
            std::collections::hash_map::Entry::Vacant(v) => {
                self.len += 1;
                if let Some(gauge) = &self.gauge {
                    gauge.add(1);
                }
                (v.insert(make()), true)
            }
        }
    }

    /// The table's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The value of `key` in key group `group`.
    pub fn get(&self, group: u32, key: &K) -> Option<&V> {
        self.groups.get(&group).and_then(|g| g.get(key))
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, group: u32, key: K, value: V) {
        self.mark(group, &key);
        self.load(group, key, value);
    }

    /// Removes `key`; returns its old value.
    pub fn delete(&mut self, group: u32, key: &K) -> Option<V> {
        // An emptied group keeps its map (and its capacity): windows empty
        // and refill the same groups all the time, and dropping the map made
        // every refill allocate and grow it again.
        let old = self.groups.get_mut(&group)?.remove(key)?;
        self.len -= 1;
        self.counted(-1);
        self.mark(group, key);
        Some(old)
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The key groups that hold at least one key, in order.
    pub fn key_groups(&self) -> impl Iterator<Item = u32> + '_ {
        let mut g: Vec<u32> = self
            .groups
            .iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(g, _)| *g)
            .collect();
        g.sort_unstable();
        g.into_iter()
    }

    /// Every `(group, key, value)`, in key-group and key order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &K, &V)> {
        let mut all: Vec<(u32, &K, &V)> = self
            .groups
            .iter()
            .flat_map(|(g, m)| m.iter().map(move |(k, v)| (*g, k, v)))
            .collect();
        all.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        all.into_iter()
    }

    /// Inserts a restored entry: counted, but not marked changed (it is
    /// already in the checkpoint).
    pub fn load(&mut self, group: u32, key: K, value: V) {
        if self
            .groups
            .entry(group)
            .or_default()
            .insert(key, value)
            .is_none()
        {
            self.len += 1;
            self.counted(1);
        }
    }

    /// Calls `f(group, key, value)` with the current value (`None`: deleted)
    /// of every key written since the last call, in key-group and key
    /// order, and forgets them. Nothing is cloned.
    pub fn drain_changes(&mut self, mut f: impl FnMut(u32, &K, Option<&V>)) {
        let mut dirty = self.take_dirty();
        for (g, k) in &dirty {
            f(*g, k, self.get(*g, k));
        }
        // The buffer keeps its capacity for the next epoch.
        dirty.clear();
        self.drained = dirty;
    }

    /// The net change of every key written since the last call, in key-group
    /// and key order, and forgets them.
    pub fn take_changes(&mut self) -> Vec<(u32, K, Change<V>)> {
        let mut out = Vec::new();
        self.drain_changes(|g, k, v| {
            out.push((
                g,
                k.clone(),
                v.map_or(Change::Delete, |v| Change::Put(v.clone())),
            ));
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const T: StateDef<u16, u32> = StateDef::new("t");

    #[derive(Clone, Debug)]
    enum Op {
        Put(u32, u16, u32),
        Delete(u32, u16),
        Take,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u32..4, 0u16..16, any::<u32>()).prop_map(|(g, k, v)| Op::Put(g, k, v)),
            (0u32..4, 0u16..16).prop_map(|(g, k)| Op::Delete(g, k)),
            Just(Op::Take),
        ]
    }

    proptest! {
        /// The state agrees with a BTreeMap model, and applying the taken
        /// changes to a copy of the last checkpoint reproduces the state.
        #[test]
        fn matches_model(ops in proptest::collection::vec(op(), 0..200)) {
            let mut s = KeyedState::new(&T);
            let mut model: BTreeMap<(u32, u16), u32> = BTreeMap::new();
            let mut checkpoint: BTreeMap<(u32, u16), u32> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Put(g, k, v) => { s.put(g, k, v); model.insert((g, k), v); }
                    Op::Delete(g, k) => {
                        prop_assert_eq!(s.delete(g, &k), model.remove(&(g, k)));
                    }
                    Op::Take => {
                        let changes = s.take_changes();
                        let keys: Vec<_> = changes.iter().map(|(g, k, _)| (*g, *k)).collect();
                        let mut sorted = keys.clone();
                        sorted.sort();
                        prop_assert_eq!(keys, sorted);
                        for (g, k, c) in changes {
                            match c {
                                Change::Put(v) => { checkpoint.insert((g, k), v); }
                                Change::Delete => { checkpoint.remove(&(g, k)); }
                            }
                        }
                        prop_assert_eq!(&checkpoint, &model);
                    }
                }
                prop_assert_eq!(s.len(), model.len());
                let got: BTreeMap<(u32, u16), u32> = s.iter().map(|(g, k, v)| ((g, *k), *v)).collect();
                prop_assert_eq!(&got, &model);
            }
        }
    }
}

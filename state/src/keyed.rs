//! Typed state handles and in-memory keyed state with per-epoch change tracking.

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;

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

/// One table of keyed working state, organised by key group. Every write marks
/// its key dirty; [`take_changes`](KeyedState::take_changes) returns the net
/// change of each dirty key in key-group and key order, so that a checkpoint
/// writes only what changed, in a deterministic order.
#[derive(Debug)]
pub struct KeyedState<K: Ord + Clone, V: Clone> {
    name: &'static str,
    groups: BTreeMap<u32, BTreeMap<K, V>>,
    dirty: BTreeSet<(u32, K)>,
    len: usize,
}

impl<K: Ord + Clone, V: Clone> KeyedState<K, V> {
    /// Empty state for a declared table.
    pub fn new(def: &StateDef<K, V>) -> Self {
        KeyedState {
            name: def.name(),
            groups: BTreeMap::new(),
            dirty: BTreeSet::new(),
            len: 0,
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
        self.dirty.insert((group, key.clone()));
        if self
            .groups
            .entry(group)
            .or_default()
            .insert(key, value)
            .is_none()
        {
            self.len += 1;
        }
    }

    /// Removes `key`; returns its old value.
    pub fn delete(&mut self, group: u32, key: &K) -> Option<V> {
        let g = self.groups.get_mut(&group)?;
        let old = g.remove(key)?;
        if g.is_empty() {
            self.groups.remove(&group);
        }
        self.len -= 1;
        self.dirty.insert((group, key.clone()));
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
        self.groups.keys().copied()
    }

    /// Every `(group, key, value)`, in key-group and key order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &K, &V)> {
        self.groups
            .iter()
            .flat_map(|(g, m)| m.iter().map(move |(k, v)| (*g, k, v)))
    }

    /// The net change of every key written since the last call, in key-group
    /// and key order, and forgets them.
    pub fn take_changes(&mut self) -> Vec<(u32, K, Change<V>)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|(g, k)| {
                let change = match self.get(g, &k) {
                    Some(v) => Change::Put(v.clone()),
                    None => Change::Delete,
                };
                (g, k, change)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

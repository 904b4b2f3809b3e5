//! What the keyed node types (`aggregate`, `window`, `join`) share: key
//! extraction and routing by key group, the fire-epoch rule, config checks,
//! and the per-epoch bookkeeping of capabilities.

use std::collections::BTreeMap;

use lockstep_state::{key_hash, KeyGroups};
use timely::dataflow::operators::Capability;

use crate::config::{Diag, Path};
use crate::suggest;
use crate::value::{canonical_float, encode_key, Row, Schema, Type, Value};

/// The key of a keyed node: which fields of the input, and how a key maps to
/// its key group (the fixed hash of its memcomparable bytes, mod G).
#[derive(Clone, Debug)]
pub struct KeyCols {
    /// Field indexes in the input schema, in key order.
    pub idx: Vec<usize>,
    groups: KeyGroups,
}

impl KeyCols {
    /// A key over the fields `idx`.
    pub fn new(idx: Vec<usize>) -> KeyCols {
        KeyCols {
            idx,
            groups: KeyGroups::default(),
        }
    }

    /// Writes the key's bytes (the concatenated memcomparable encodings of its
    /// fields) into `out`, replacing its contents.
    pub fn encode(&self, row: &[Value], out: &mut Vec<u8>) {
        out.clear();
        for &i in &self.idx {
            encode_key(&row[i], out);
        }
    }

    /// The key group of key bytes.
    pub fn group(&self, bytes: &[u8]) -> u32 {
        self.groups.group_of(key_hash(bytes))
    }

    /// The key group of a row's key; timely's exchange sends it to worker
    /// `group mod peers`, the key group's owner.
    pub fn route(&self, row: &[Value], buf: &mut Vec<u8>) -> u64 {
        self.encode(row, buf);
        u64::from(self.group(buf))
    }

    /// The exchange function for `peers` workers: [`route`](KeyCols::route),
    /// or nothing to compute when there is one worker.
    pub fn router(&self, peers: usize) -> impl FnMut(&crate::value::Rec) -> u64 + 'static {
        let key = self.clone();
        let mut buf = Vec::new();
        move |r| {
            if peers == 1 {
                0
            } else {
                key.route(&r.row, &mut buf)
            }
        }
    }

    /// The key's values as output: floats made canonical (`-0.0` is `0.0`),
    /// as they group.
    pub fn values(&self, row: &[Value]) -> Row {
        self.idx
            .iter()
            .map(|&i| match &row[i] {
                Value::Float(f) => Value::Float(canonical_float(*f)),
                v => v.clone(),
            })
            .collect()
    }

    /// Whether any key field is null.
    pub fn has_null(&self, row: &[Value]) -> bool {
        self.idx.iter().any(|&i| row[i].is_null())
    }
}

/// Resolves key field names against `schema`; errors point at `at[i]`.
pub fn resolve_key(names: &[String], schema: &Schema, at: &Path) -> Result<Vec<usize>, Vec<Diag>> {
    let mut diags = Vec::new();
    let mut idx = Vec::new();
    for (i, n) in names.iter().enumerate() {
        match schema.index_of(n) {
            Some(j) => {
                if idx.contains(&j) {
                    diags.push(Diag::new(
                        at.index(i),
                        format!("key field \"{n}\" is listed twice"),
                    ));
                }
                idx.push(j);
            }
            None => diags.push(Diag::new(at.index(i), unknown_field(n, schema))),
        }
    }
    if diags.is_empty() {
        Ok(idx)
    } else {
        Err(diags)
    }
}

/// `unknown field "x" (did you mean "y"?)`, or the fields the input has.
pub fn unknown_field(name: &str, schema: &Schema) -> String {
    let hint = suggest::hint(name, schema.names());
    if hint.is_empty() {
        let names: Vec<&str> = schema.names().collect();
        format!(
            "unknown field \"{name}\" (the input has: {})",
            names.join(", ")
        )
    } else {
        format!("unknown field \"{name}\"{hint}")
    }
}

/// The first epoch in which a window ending at `end` (exclusive) may fire:
/// `ceil((end + lateness) / E) - 1`. Negative when every record is late for
/// it (epochs start at 0).
pub fn fire_epoch(end: i64, lateness: u64, epoch_ms: u64) -> i64 {
    // In range (all but extreme times): i64 arithmetic.
    if let (Ok(l), Ok(e)) = (i64::try_from(lateness), i64::try_from(epoch_ms.max(1))) {
        if let Some(x) = end.checked_add(l) {
            if let Some(f) = x
                .div_euclid(e)
                .checked_add(i64::from(x.rem_euclid(e) != 0))
                .and_then(|c| c.checked_sub(1))
            {
                return f;
            }
        }
    }
    let e = i128::from(epoch_ms.max(1));
    let x = i128::from(end) + i128::from(lateness);
    // ceil(x / e) for any sign of x.
    let ceil = -((-x).div_euclid(e));
    i64::try_from(ceil - 1).unwrap_or(if ceil > 0 { i64::MAX } else { i64::MIN })
}

/// Whether a record of epoch `epoch` is late for a window that fires in
/// `fire` ([`fire_epoch`]): `fire < epoch`.
pub fn is_late(fire: i64, epoch: u64) -> bool {
    i128::from(fire) < i128::from(epoch)
}

/// Checks that output field names are distinct: each clash is an error at the
/// later field's path.
pub fn check_distinct(names: &[(Path, String)]) -> Vec<Diag> {
    let mut diags = Vec::new();
    for (i, (p, n)) in names.iter().enumerate() {
        if let Some((_, first)) = names[..i].iter().find(|(_, m)| m == n) {
            diags.push(Diag::new(
                p.clone(),
                format!("output field \"{first}\" is already defined; choose another name"),
            ));
        }
    }
    diags
}

/// The capabilities an operator holds for one epoch, one per output port.
pub struct Caps {
    caps: Vec<Capability<u64>>,
}

impl Caps {
    /// Capabilities for every port.
    pub fn new(caps: Vec<Capability<u64>>) -> Caps {
        Caps { caps }
    }

    /// The capability for `port`.
    pub fn get(&self, port: usize) -> &Capability<u64> {
        &self.caps[port]
    }

    /// The same capabilities at the later epoch `t`.
    pub fn delayed(&self, t: u64) -> Caps {
        Caps {
            caps: self.caps.iter().map(|c| c.delayed(&t)).collect(),
        }
    }
}

/// A map for per-epoch partials, keyed by key bytes: fast, with a fixed seed.
///
/// Its iteration order decides only the order in which an operator applies
/// an epoch's keys and emits their results — never a result: each key's
/// state changes once per epoch, independently of the others (and the state
/// tables hand out changes and contents sorted); and no output depends on
/// emission order within an epoch, since sinks sort each epoch by the total
/// order and order-sensitive operators sort their stash before use.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;

/// Epoch-indexed work: an entry per epoch that still has something to do
/// once the input frontier passes it, each holding that epoch's capabilities.
pub type ByEpoch<T> = BTreeMap<u64, (Caps, T)>;

/// A window's bounds as output values.
pub fn bounds(start: i64, end: i64) -> [Value; 2] {
    [Value::Ts(start), Value::Ts(end)]
}

/// The output type of `window_start` and `window_end`.
pub const BOUND_TYPE: Type = Type::Timestamp;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fire_epoch_is_the_ceiling_rule_everywhere() {
        let reference = |end: i64, l: u64, e: u64| -> i64 {
            let x = i128::from(end) + i128::from(l);
            let e = i128::from(e);
            let c = if x >= 0 { (x + e - 1) / e } else { -((-x) / e) };
            i64::try_from(c - 1).unwrap_or(if c > 0 { i64::MAX } else { i64::MIN })
        };
        for end in [
            i64::MIN,
            -5001,
            -5000,
            -4999,
            -1,
            0,
            1,
            999,
            1000,
            1001,
            2000,
            i64::MAX - 1,
            i64::MAX,
        ] {
            for l in [0u64, 1, 999, 1000, u64::MAX] {
                for e in [1u64, 7, 1000, u64::MAX] {
                    assert_eq!(
                        fire_epoch(end, l, e),
                        reference(end, l, e),
                        "end {end} lateness {l} E {e}"
                    );
                }
            }
        }
        assert_eq!(fire_epoch(1000, 0, 1000), 0);
        assert_eq!(fire_epoch(1001, 0, 1000), 1);
        assert_eq!(fire_epoch(0, 0, 1000), -1);
    }
}

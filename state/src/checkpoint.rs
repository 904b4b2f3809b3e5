//! A worker's side of checkpoints: operators, sources and sinks stage their
//! changes here as they finish epochs; when the worker's frontier passes a
//! checkpoint epoch, [`Checkpointer::checkpoint`] writes them as one batch.
//!
//! The protocol (architecture.md, "State and checkpoints"):
//!
//! - Whoever changes checkpointed data stages the change tagged with the
//!   epoch whose processing made it, before it releases its capability for
//!   that epoch. So once the worker's frontier has passed epoch `c`, every
//!   change tagged `c` or lower on this worker is staged.
//! - A checkpoint is due when `frontier / K` increases: at epoch
//!   `c = floor(frontier / K) * K - 1`, or [`FINISHED`] when the input is
//!   exhausted. The worker writes the net change of every key staged with a
//!   tag at or below `c`, its marker "worker w completed c" and a history
//!   record, in one synced `WriteBatch`.
//! - Markers are broadcast to every worker (through the dataflow, by the
//!   runtime); a checkpoint is complete when every worker has its marker.
//!   A worker folds its own checkpoints that are complete into the `state`
//!   column family in its next batch, so the database holds each key once
//!   plus the checkpoints in flight.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::hash::Hash;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::store::{base_key, CheckpointRecord, Entry, Store, StoreError, FINISHED};
use crate::{KeyedState, StateDef};

/// The version byte in front of every state value (then bincode 1.3 of the
/// value, little-endian, fixed-size integers).
pub const VALUE_FORMAT: u8 = 1;

/// How many checkpoint records each worker keeps for `lockstep state`.
const HISTORY: usize = 64;

/// A worker folds its complete checkpoints into the folded state once their
/// changes take this many bytes (so `pending` holds at most about this much
/// per worker, plus the checkpoints not yet complete).
const FOLD_BYTES: usize = 16 << 20;

/// The bytes an entry takes.
fn entry_bytes(e: &Entry) -> usize {
    e.0.len() + e.1.as_ref().map_or(0, Vec::len) + 48
}

/// The net change of each key over `entries` (in the order they were made),
/// in key order.
fn net(entries: impl Iterator<Item = Entry>) -> Vec<Entry> {
    let mut last: HashMap<Vec<u8>, Option<Vec<u8>>, foldhash::fast::FixedState> =
        HashMap::default();
    for (k, v) in entries {
        last.insert(k, v);
    }
    let mut out: Vec<Entry> = last.into_iter().collect();
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Encodes a state value: [`VALUE_FORMAT`] then bincode.
///
/// # Errors
/// A value bincode cannot encode (none of lockstep's).
pub fn encode_value<V: Serialize>(v: &V) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![VALUE_FORMAT];
    bincode::serialize_into(&mut out, v)
        .map_err(|e| StoreError(format!("cannot encode a state value: {e}")))?;
    Ok(out)
}

/// Decodes a state value written by [`encode_value`].
///
/// # Errors
/// An unknown version byte or bytes that do not decode.
pub fn decode_value<V: DeserializeOwned>(bytes: &[u8]) -> Result<V, StoreError> {
    match bytes.split_first() {
        Some((&VALUE_FORMAT, rest)) => bincode::deserialize(rest)
            .map_err(|e| StoreError(format!("a state value does not decode: {e}"))),
        Some((v, _)) => Err(StoreError(format!(
            "a state value has format {v}; this version reads {VALUE_FORMAT}"
        ))),
        None => Err(StoreError("a state value is empty".to_string())),
    }
}

/// Where a job's checkpoints go, shared by one worker's operators.
#[derive(Debug)]
pub struct Checkpointer {
    store: Arc<Store>,
    worker: u32,
    peers: u32,
    every: u64,
    key_groups: u32,
    tables: Arc<Vec<String>>,
    resume: Option<u64>,
    inner: RefCell<Inner>,
    crash_at: Option<(u64, CrashPoint)>,
}

/// Where the crash-test hook stops the process inside a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CrashPoint {
    /// After syncing the sink files, before the batch is written.
    Before,
    /// After the batch is written, before the worker carries on.
    After,
}

/// The crash-test hook: `LOCKSTEP_CRASH_AT_CHECKPOINT=N:before` (or
/// `N:after`) aborts the process inside worker 0's N-th checkpoint of the
/// run (1-based), as a `kill -9` landing there would. For crash tests only.
fn crash_hook() -> Option<(u64, CrashPoint)> {
    let v = std::env::var("LOCKSTEP_CRASH_AT_CHECKPOINT").ok()?;
    let (n, at) = v.split_once(':')?;
    let at = match at {
        "before" => CrashPoint::Before,
        "after" => CrashPoint::After,
        _ => return None,
    };
    Some((n.parse().ok()?, at))
}

#[derive(Debug, Default)]
struct Inner {
    /// Staged changes by the epoch that made them.
    staged: BTreeMap<u64, Vec<Entry>>,
    /// This worker's checkpoints not folded yet: their changes, to fold into
    /// `state` once every worker completed them.
    unfolded: VecDeque<(u64, Vec<Entry>)>,
    /// The bytes of `unfolded`.
    unfolded_bytes: usize,
    last: Option<u64>,
    /// Each worker's last marker, as far as this worker knows.
    known: Vec<Option<u64>>,
    /// Epochs of this worker's history records, oldest first.
    history: VecDeque<u64>,
    /// Files whose written bytes a checkpoint commits: synced before it.
    files: BTreeMap<String, (Arc<File>, bool)>,
    /// Markers written and not yet broadcast.
    outbox: Vec<u64>,
    records: Vec<(u64, CheckpointRecord)>,
    written: u64,
}

impl Checkpointer {
    /// The checkpointer of worker `worker` of `peers`, checkpointing every
    /// `every` epochs, resuming after `resume` (the settled store's epoch).
    pub fn new(
        store: Arc<Store>,
        worker: u32,
        peers: u32,
        every: u64,
        key_groups: u32,
        tables: Arc<Vec<String>>,
        resume: Option<u64>,
    ) -> Checkpointer {
        Checkpointer {
            store,
            worker,
            peers,
            every: every.max(1),
            key_groups,
            tables,
            resume,
            inner: RefCell::new(Inner {
                last: resume,
                known: vec![resume; peers as usize],
                ..Inner::default()
            }),
            crash_at: if worker == 0 { crash_hook() } else { None },
        }
    }

    fn crash_hook(&self, written: u64, at: CrashPoint) {
        if self.crash_at == Some((written, at)) {
            eprintln!(
                "lockstep: LOCKSTEP_CRASH_AT_CHECKPOINT: aborting in checkpoint {written} ({at:?})"
            );
            std::process::abort();
        }
    }

    /// The epoch the job resumes after (`None`: from the beginning).
    pub fn resume(&self) -> Option<u64> {
        self.resume
    }

    /// This worker's index.
    pub fn worker(&self) -> u32 {
        self.worker
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The id of the table called `name`, if the job declared it.
    pub fn table_id(&self, name: &str) -> Option<u32> {
        self.tables
            .iter()
            .position(|t| t == name)
            .and_then(|i| u32::try_from(i).ok())
    }

    /// A typed handle on table `name` (a node's table is
    /// `node/<node>/<table>`).
    ///
    /// # Errors
    /// When the job did not declare the table.
    pub fn table<K, V>(
        self: &Rc<Self>,
        name: &str,
        _def: &StateDef<K, V>,
    ) -> Result<Table<K, V>, StoreError> {
        let id = self.table_id(name).ok_or_else(|| {
            StoreError(format!(
                "state table \"{name}\" was not declared (a node type must list its tables in state_tables())"
            ))
        })?;
        Ok(Table {
            id,
            ck: Rc::clone(self),
            _types: PhantomData,
        })
    }

    /// Stages a change of `(table, group, key)` made by epoch `tag`.
    pub fn stage(&self, tag: u64, table: u32, group: u32, key: &[u8], value: Option<Vec<u8>>) {
        self.inner
            .borrow_mut()
            .staged
            .entry(tag)
            .or_default()
            .push((base_key(table, group, key), value));
    }

    /// The value of `(table, group, key)` at the resume point.
    ///
    /// # Errors
    /// Read errors.
    pub fn read(&self, table: u32, group: u32, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if self.resume.is_none() {
            return Ok(None);
        }
        self.store.get(&base_key(table, group, key))
    }

    /// Registers a file whose bytes a checkpoint commits, under `name`.
    pub fn register_file(&self, name: &str, file: Arc<File>) {
        self.inner
            .borrow_mut()
            .files
            .insert(name.to_string(), (file, false));
    }

    /// Notes that file `name` was written since the last checkpoint.
    pub fn file_written(&self, name: &str) {
        if let Some(f) = self.inner.borrow_mut().files.get_mut(name) {
            f.1 = true;
        }
    }

    /// The checkpoint epoch that covers changes made by epoch `tag`: the
    /// first `m * K - 1` at or after it.
    fn version_of(&self, tag: u64) -> u64 {
        (tag / self.every)
            .checked_add(1)
            .and_then(|m| m.checked_mul(self.every))
            .map_or(FINISHED, |b| b - 1)
    }

    /// The checkpoint due at worker frontier `frontier` (`None`: input
    /// exhausted), if any: `floor(f / K) * K - 1` when that is past the last
    /// one, or [`FINISHED`].
    pub fn due(&self, frontier: Option<u64>) -> Option<u64> {
        let last = self.inner.borrow().last;
        let c = match frontier {
            None => FINISHED,
            Some(f) => (f / self.every).checked_mul(self.every)?.checked_sub(1)?,
        };
        (last.is_none_or(|l| c > l) && last != Some(FINISHED)).then_some(c)
    }

    /// The last checkpoint this worker wrote (or resumed from).
    pub fn last(&self) -> Option<u64> {
        self.inner.borrow().last
    }

    /// Writes checkpoint `epoch`: syncs the registered files written since
    /// the last one, then one batch with the net change of every key staged
    /// at or below `epoch`, the folding of complete checkpoints, the marker
    /// and a history record.
    ///
    /// # Errors
    /// A file that cannot be synced or a failed write: the checkpoint is not
    /// written, and the last complete one stays intact.
    pub fn checkpoint(&self, epoch: u64) -> Result<CheckpointRecord, StoreError> {
        let started = Instant::now();
        let mut inner = self.inner.borrow_mut();
        for (name, (file, dirty)) in &mut inner.files {
            if *dirty {
                file.sync_data().map_err(|e| {
                    StoreError(format!(
                        "checkpoint at epoch {epoch} failed: cannot sync {name}: {e}"
                    ))
                })?;
                *dirty = false;
            }
        }
        let later = match epoch.checked_add(1) {
            Some(next) => inner.staged.split_off(&next),
            None => BTreeMap::new(),
        };
        let ready = std::mem::replace(&mut inner.staged, later);
        // Net changes per checkpoint epoch: a change made by epoch t belongs
        // to the first checkpoint epoch at or after t. A worker whose
        // frontier jumped over several checkpoint epochs still records its
        // state at each of them, so the resume point (the least marker over
        // all workers) is a state every worker can restore exactly.
        let mut per: BTreeMap<u64, Vec<Vec<Entry>>> = BTreeMap::new();
        for (tag, entries) in ready {
            per.entry(self.version_of(tag).min(epoch))
                .or_default()
                .push(entries);
        }
        let changes: Vec<(u64, Vec<Entry>)> = per
            .into_iter()
            .map(|(v, mut lists)| {
                // One epoch's changes name each key once (each table stages
                // once per epoch); several epochs' are merged, later first.
                let entries = if lists.len() == 1 {
                    lists.pop().unwrap_or_default()
                } else {
                    net(lists.into_iter().flatten())
                };
                (v, entries)
            })
            .collect();
        let min = inner.known.iter().copied().min().flatten();
        // Fold complete checkpoints lazily, once their changes pass
        // FOLD_BYTES: a window created and closed in between never reaches
        // the folded state at all.
        let mut folded = Vec::new();
        let mut fold = Vec::new();
        if inner.unfolded_bytes >= FOLD_BYTES {
            let mut lists = Vec::new();
            while inner
                .unfolded
                .front()
                .is_some_and(|(e, _)| min.is_some_and(|m| *e <= m))
            {
                if let Some((e, entries)) = inner.unfolded.pop_front() {
                    folded.push(e);
                    lists.push(entries);
                }
            }
            fold = net(lists.into_iter().flatten());
        }
        let mut forget = Vec::new();
        while inner.history.len() >= HISTORY {
            if let Some(e) = inner.history.pop_front() {
                forget.push(e);
            }
        }
        inner.written += 1;
        let nth = inner.written;
        self.crash_hook(nth, CrashPoint::Before);
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut record = CheckpointRecord {
            unix_ms,
            ..CheckpointRecord::default()
        };
        let written = self.store.write_checkpoint(
            self.worker,
            epoch,
            &changes,
            &folded,
            &fold,
            &forget,
            &CheckpointRecord {
                micros: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                ..record.clone()
            },
        );
        let bytes = match written {
            Ok(b) => b,
            Err(e) => return Err(e),
        };
        self.crash_hook(nth, CrashPoint::After);
        record.bytes = bytes;
        record.entries = changes.iter().map(|(_, c)| c.len() as u64).sum();
        record.micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        if !folded.is_empty() {
            inner.unfolded_bytes = inner.unfolded.iter().flat_map(|(_, c)| c).map(entry_bytes).sum();
        }
        inner.unfolded_bytes += changes.iter().flat_map(|(_, c)| c).map(entry_bytes).sum::<usize>();
        inner.unfolded.extend(changes);
        inner.history.push_back(epoch);
        inner.last = Some(epoch);
        let w = self.worker as usize;
        inner.known[w] = Some(epoch);
        inner.outbox.push(epoch);
        inner.records.push((epoch, record.clone()));
        Ok(record)
    }

    /// Markers written since the last call, to broadcast.
    pub fn take_outbox(&self) -> Vec<u64> {
        std::mem::take(&mut self.inner.borrow_mut().outbox)
    }

    /// Notes that `worker` completed `epoch`.
    pub fn observe(&self, worker: u32, epoch: u64) {
        let mut inner = self.inner.borrow_mut();
        if let Some(k) = inner.known.get_mut(worker as usize) {
            if k.is_none_or(|e| epoch > e) {
                *k = Some(epoch);
            }
        }
    }

    /// The newest checkpoint every worker is known to have completed.
    pub fn known_complete(&self) -> Option<u64> {
        self.inner.borrow().known.iter().copied().min().flatten()
    }

    /// The records of this worker's checkpoints so far (for metrics).
    pub fn records(&self) -> Vec<(u64, CheckpointRecord)> {
        self.inner.borrow().records.clone()
    }

    /// The number of key groups.
    pub fn key_groups(&self) -> u32 {
        self.key_groups
    }

    /// The number of workers.
    pub fn peers(&self) -> u32 {
        self.peers
    }
}

/// A typed handle on one checkpointed table, for one worker.
#[derive(Debug)]
pub struct Table<K, V> {
    id: u32,
    ck: Rc<Checkpointer>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Table<K, V>
where
    K: Ord + Hash + Clone + AsRef<[u8]> + From<Vec<u8>>,
    V: Clone + Serialize + DeserializeOwned,
{
    /// Loads the table's entries in the key groups `owns` accepts into
    /// `state` (without marking them changed); returns how many.
    ///
    /// # Errors
    /// Read errors, or a value that does not decode.
    pub fn restore(
        &self,
        state: &mut KeyedState<K, V>,
        owns: impl Fn(u32) -> bool,
    ) -> Result<usize, StoreError> {
        if self.ck.resume.is_none() {
            return Ok(0);
        }
        let mut n = 0;
        for g in (0..self.ck.key_groups).filter(|g| owns(*g)) {
            self.ck
                .store
                .scan_group(self.id, g, &mut |group, key, value| {
                    let v: V = decode_value(value)?;
                    state.load(group, K::from(key.to_vec()), v);
                    n += 1;
                    Ok(())
                })?;
        }
        Ok(n)
    }

    /// Stages the net change of every key written since the last call,
    /// tagged with `epoch` (the epoch whose processing made them).
    ///
    /// # Errors
    /// A value that cannot be encoded.
    pub fn stage(&self, epoch: u64, state: &mut KeyedState<K, V>) -> Result<(), StoreError> {
        let mut failed = None;
        state.drain_changes(|group, key, value| {
            let v = match value.map(encode_value).transpose() {
                Ok(v) => v,
                Err(e) => {
                    failed = Some(e);
                    return;
                }
            };
            self.ck.stage(epoch, self.id, group, key.as_ref(), v);
        });
        failed.map_or(Ok(()), Err)
    }
}

//! A worker's side of checkpoints: operators, sources and sinks stage their
//! changes here as they finish epochs; when the worker's frontier passes a
//! checkpoint epoch, [`Checkpointer::checkpoint`] writes them as one batch.
//!
//! The protocol (the design's "State and checkpoints", as built; see
//! docs/checkpoints.md and docs/state-format.md):
//!
//! - Whoever changes checkpointed data stages the change tagged with the
//!   epoch whose processing made it, before it releases its capability for
//!   that epoch. So once the worker's frontier has passed epoch `c`, every
//!   change tagged `c` or lower on this worker is staged.
//! - Worker 0 decides the checkpoints: when `frontier / K` increases, epoch
//!   `c = floor(frontier / K) * K - 1` ([`Checkpointer::due`],
//!   [`Checkpointer::decide`]). The runtime broadcasts its decisions, so every
//!   worker writes the same checkpoints; the last one, when the input is
//!   exhausted, is [`FINISHED`].
//! - A worker writes a decided checkpoint once its own frontier has passed
//!   it: every change staged with a tag at or below `c` (the version of `c`),
//!   its marker "worker w completed c" and a history record, in one synced
//!   `WriteBatch`.
//! - Markers are broadcast to every worker (through the dataflow, by the
//!   runtime); a checkpoint is complete when every worker has its marker. A
//!   worker folds its own complete checkpoints into the `state` column family
//!   lazily, once their changes pass 8 MiB (what was created and deleted in
//!   between never reaches it), so the database holds each key once plus
//!   about that much per worker and the checkpoints in flight.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs::File;
use std::hash::Hash;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::store::{base_key, Changes, CheckpointRecord, Store, StoreError, FINISHED};
use crate::{KeyedState, StateDef};

/// The version byte in front of every state value (then bincode 1.3 of the
/// value, little-endian, fixed-size integers).
pub const VALUE_FORMAT: u8 = 1;

/// How many checkpoint records each worker keeps for `lockstep state`.
const HISTORY: usize = crate::store::HISTORY_KEPT;

/// A worker folds its complete checkpoints into the folded state once their
/// changes take this many bytes (so `pending` holds at most about this much
/// per worker, plus the checkpoints not yet complete).
const FOLD_BYTES: usize = 8 << 20;

/// Encodes a state value: [`VALUE_FORMAT`] then bincode.
///
/// # Errors
/// A value bincode cannot encode (none of lockstep's).
pub fn encode_value<V: Serialize>(v: &V) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    encode_value_into(&mut out, v)?;
    Ok(out)
}

/// Appends a state value's encoding ([`VALUE_FORMAT`] then bincode) to `out`.
///
/// # Errors
/// A value bincode cannot encode (none of lockstep's).
pub fn encode_value_into<V: Serialize>(out: &mut Vec<u8>, v: &V) -> Result<(), StoreError> {
    out.push(VALUE_FORMAT);
    bincode::serialize_into(out, v)
        .map_err(|e| StoreError(format!("cannot encode a state value: {e}")))
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
    every: u64,
    key_groups: u32,
    tables: Arc<Vec<String>>,
    resume: Option<u64>,
    inner: RefCell<Inner>,
    crash_at: Option<(Option<u64>, CrashPoint)>,
    fold_bytes: usize,
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
/// run (1-based), as a `kill -9` landing there would; `final:before` inside
/// its final one. For crash tests and benchmarks only.
fn crash_hook() -> Option<(Option<u64>, CrashPoint)> {
    let v = std::env::var("LOCKSTEP_CRASH_AT_CHECKPOINT").ok()?;
    let (n, at) = v.split_once(':')?;
    let at = match at {
        "before" => CrashPoint::Before,
        "after" => CrashPoint::After,
        _ => return None,
    };
    let n = if n == "final" {
        None
    } else {
        Some(n.parse().ok()?)
    };
    Some((n, at))
}

#[derive(Debug, Default)]
struct Inner {
    /// Staged changes by the epoch that made them.
    staged: BTreeMap<u64, Changes>,
    /// Emptied change buffers, reused (fresh ones fault in fresh pages).
    spare: Vec<Changes>,
    /// This worker's checkpoints not folded yet: their changes, to fold into
    /// `state` once every worker completed them.
    unfolded: VecDeque<(u64, Vec<Changes>)>,
    /// The bytes of `unfolded`.
    unfolded_bytes: usize,
    /// Scratch space for the checkpoint's `pending` value.
    blob: Vec<u8>,
    last: Option<u64>,
    /// Checkpoint epochs decided (by worker 0) and not yet written here.
    decided: VecDeque<u64>,
    /// The last epoch decided.
    last_decided: Option<u64>,
    /// Decisions made here (worker 0) and not yet broadcast.
    decisions_out: Vec<u64>,
    /// Each worker's last marker, as far as this worker knows.
    known: Vec<Option<u64>>,
    /// Epochs of this worker's history records, oldest first.
    history: VecDeque<u64>,
    /// Files whose written bytes a checkpoint commits: synced before it.
    files: BTreeMap<String, (Arc<File>, bool)>,
    /// Markers written and not yet broadcast.
    outbox: Vec<u64>,
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
            every: every.max(1),
            key_groups,
            tables,
            resume,
            inner: RefCell::new(Inner {
                last: resume,
                last_decided: resume,
                known: vec![resume; peers as usize],
                ..Inner::default()
            }),
            crash_at: if worker == 0 { crash_hook() } else { None },
            fold_bytes: FOLD_BYTES,
        }
    }

    /// Folds complete checkpoints once their changes take `bytes` (default
    /// 8 MiB; 0 folds at every checkpoint).
    #[must_use]
    pub fn with_fold_bytes(mut self, bytes: usize) -> Self {
        self.fold_bytes = bytes;
        self
    }

    fn crash_hook(&self, written: u64, epoch: u64, at: CrashPoint) {
        let target = if epoch == FINISHED {
            None
        } else {
            Some(written)
        };
        if self.crash_at == Some((target, at)) || self.crash_at == Some((Some(written), at)) {
            let last = if epoch == FINISHED {
                ", the final one"
            } else {
                ""
            };
            eprintln!(
                "lockstep: LOCKSTEP_CRASH_AT_CHECKPOINT: aborting in checkpoint {written} ({at:?}{last})"
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
        let _ = self.stage_with(tag, table, group, key, |out| {
            if let Some(v) = &value {
                out.extend_from_slice(v);
            }
            Ok::<bool, StoreError>(value.is_some())
        });
    }

    /// Stages a change of `(table, group, key)` made by epoch `tag`, its
    /// value written by `value` straight into the staging buffer (which
    /// returns whether there is one: `false` is a deletion).
    ///
    /// # Errors
    /// The error `value` returns.
    pub fn stage_with<E>(
        &self,
        tag: u64,
        table: u32,
        group: u32,
        key: &[u8],
        value: impl FnOnce(&mut Vec<u8>) -> Result<bool, E>,
    ) -> Result<(), E> {
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        let changes = inner
            .staged
            .entry(tag)
            .or_insert_with(|| inner.spare.pop().unwrap_or_default());
        changes.push(table, group, key, value)
    }

    /// The value of `(table, group, key)` at the resume point, decoded.
    ///
    /// # Errors
    /// Read errors, or a value that does not decode.
    pub fn read<T: DeserializeOwned>(
        &self,
        table: u32,
        group: u32,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        if self.resume.is_none() {
            return Ok(None);
        }
        self.store.get_value(&base_key(table, group, key))
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

    /// Worker 0's decision: the checkpoint that its frontier `frontier` has
    /// made due, `floor(f / K) * K - 1`, if it is past the last one decided.
    /// Every worker writes the decided checkpoints, so all of them hold
    /// their state at the same epochs.
    pub fn due(&self, frontier: u64) -> Option<u64> {
        let last = self.inner.borrow().last_decided;
        let c = (frontier / self.every)
            .checked_mul(self.every)?
            .checked_sub(1)?;
        last.is_none_or(|l| c > l).then_some(c)
    }

    /// Records a checkpoint decided by worker 0 (here or received).
    pub fn decide(&self, epoch: u64) {
        let mut inner = self.inner.borrow_mut();
        if inner.last_decided.is_none_or(|l| epoch > l) {
            inner.last_decided = Some(epoch);
            inner.decided.push_back(epoch);
            if self.worker == 0 {
                inner.decisions_out.push(epoch);
            }
        }
    }

    /// Decisions made here and not yet broadcast.
    pub fn take_decisions(&self) -> Vec<u64> {
        std::mem::take(&mut self.inner.borrow_mut().decisions_out)
    }

    /// The next decided checkpoint this worker can write: its frontier
    /// (`None`: everything is done) has passed it.
    pub fn next_ready(&self, frontier: Option<u64>) -> Option<u64> {
        let inner = self.inner.borrow();
        let c = *inner.decided.front()?;
        frontier.is_none_or(|f| c < f).then_some(c)
    }

    /// Whether the final checkpoint is still to be written.
    pub fn finish_due(&self) -> bool {
        self.inner.borrow().last != Some(FINISHED)
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
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        for (name, (file, dirty)) in &mut inner.files {
            if *dirty {
                file.sync_data().map_err(|e| {
                    let advice = if e.kind() == std::io::ErrorKind::StorageFull {
                        "the disk is full; free some space and run the same command again (the last complete checkpoint is intact)"
                    } else {
                        "check the output file's disk; the last complete checkpoint is intact, so run the same command again once it is fixed"
                    };
                    StoreError(format!(
                        "checkpoint at epoch {epoch} failed: cannot sync {name}: {e}\n  {advice}"
                    ))
                })?;
                *dirty = false;
            }
        }
        if inner.decided.front() == Some(&epoch) {
            inner.decided.pop_front();
        }
        let later = match epoch.checked_add(1) {
            Some(next) => inner.staged.split_off(&next),
            None => BTreeMap::new(),
        };
        let ready = std::mem::replace(&mut inner.staged, later);
        // All changes made by epochs up to this checkpoint are its version.
        // One epoch's changes name each key once (each table stages once per
        // epoch); of several epochs', the latest change of each key is
        // written (a window touched in each of them is written once).
        let lists: Vec<Changes> = ready.into_values().collect();
        let changes: Vec<(&[u8], Option<&[u8]>)> = if lists.len() == 1 {
            lists.iter().flat_map(Changes::iter).collect()
        } else {
            let total: usize = lists.iter().map(Changes::len).sum();
            let mut seen: HashSet<&[u8], foldhash::fast::FixedState> =
                HashSet::with_capacity_and_hasher(total, foldhash::fast::FixedState::default());
            lists
                .iter()
                .rev()
                .flat_map(Changes::iter)
                .filter(|(k, _)| seen.insert(k))
                .collect()
        };
        let min = inner.known.iter().copied().min().flatten();
        // Fold complete checkpoints lazily, once their changes pass
        // FOLD_BYTES: a window created and closed in between never reaches
        // the folded state at all.
        let mut folded = Vec::new();
        let fold_count = if inner.unfolded_bytes >= self.fold_bytes {
            inner
                .unfolded
                .iter()
                .take_while(|(e, _)| min.is_some_and(|m| *e <= m))
                .count()
        } else {
            0
        };
        folded.extend(inner.unfolded.iter().take(fold_count).map(|(e, _)| *e));
        // Folded in the order they were made: the last change of a key wins
        // (the folded family's memtable is a vector, so each is an append).
        let fold: Vec<(&[u8], Option<&[u8]>)> = inner
            .unfolded
            .iter()
            .take(fold_count)
            .flat_map(|(_, c)| c)
            .flat_map(Changes::iter)
            .collect();
        let mut forget = Vec::new();
        while inner.history.len() >= HISTORY {
            if let Some(e) = inner.history.pop_front() {
                forget.push(e);
            }
        }
        inner.written += 1;
        let nth = inner.written;
        self.crash_hook(nth, epoch, CrashPoint::Before);
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
            &mut inner.blob,
        );
        let entries = changes.len() as u64;
        drop(changes);
        drop(fold);
        let bytes = written?;
        self.crash_hook(nth, epoch, CrashPoint::After);
        record.bytes = bytes;
        record.entries = entries;
        record.micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        for _ in 0..fold_count {
            if let Some((_, lists)) = inner.unfolded.pop_front() {
                for mut c in lists {
                    inner.unfolded_bytes -= c.bytes();
                    c.clear();
                    // Keep emptied buffers (their pages are mapped already)
                    // up to about what a fold recycles.
                    let kept: usize = inner.spare.iter().map(Changes::capacity).sum();
                    if kept < 2 * self.fold_bytes.min(FOLD_BYTES) {
                        inner.spare.push(c);
                    }
                }
            }
        }
        inner.unfolded_bytes += lists.iter().map(Changes::bytes).sum::<usize>();
        inner.unfolded.push_back((epoch, lists));
        inner.history.push_back(epoch);
        inner.last = Some(epoch);
        let w = self.worker as usize;
        inner.known[w] = Some(epoch);
        inner.outbox.push(epoch);
        Ok(record)
    }

    /// This worker's changes not folded yet, in checkpoint order (at the end
    /// of a run, for [`Store::finish`]).
    pub fn take_unfolded(&self) -> Vec<Changes> {
        let mut inner = self.inner.borrow_mut();
        inner.unfolded_bytes = 0;
        inner.unfolded.drain(..).flat_map(|(_, c)| c).collect()
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

    /// The number of key groups.
    pub fn key_groups(&self) -> u32 {
        self.key_groups
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
        // Sizes of the entries written, for the state-bytes estimate.
        let (mut entries, mut bytes) = (0i64, 0i64);
        state.drain_changes(|group, key, value| {
            let staged = self
                .ck
                .stage_with(epoch, self.id, group, key.as_ref(), |out| {
                    let Some(v) = value else { return Ok(false) };
                    let before = out.len();
                    out.push(VALUE_FORMAT);
                    bincode::serialize_into(&mut *out, v)
                        .map_err(|e| StoreError(format!("cannot encode a state value: {e}")))?;
                    entries += 1;
                    bytes +=
                        i64::try_from(out.len() - before + key.as_ref().len()).unwrap_or(i64::MAX);
                    Ok(true)
                });
            if let Err(e) = staged {
                failed = Some(e);
            }
        });
        if entries > 0 {
            if let Some(g) = state.gauge() {
                g.note_entry_bytes(bytes / entries);
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

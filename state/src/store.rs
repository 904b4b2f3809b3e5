//! The checkpoint store: one RocksDB database per process under `--state DIR`.
//!
//! Layout (all integers big-endian, so byte order is numeric order; the
//! layout is versioned by [`STORE_FORMAT`] and documented in
//! docs/state-format.md):
//!
//! | column family | key | value |
//! |---|---|---|
//! | `meta` | `"manifest"` | the [`Manifest`] as JSON |
//! | `meta` | `"marker" ‖ worker u32` | epoch u64: the worker's last checkpoint |
//! | `meta` | `"history" ‖ epoch u64 ‖ worker u32` | [`CheckpointRecord`] (bincode) |
//! | `state` | `table u32 ‖ key group u32 ‖ key` | value bytes (the folded state) |
//! | `pending` | `epoch u64 ‖ worker u32` | the worker's changes at that checkpoint, one after another: `key length u32 ‖ state key ‖ value length u32 ‖ value` (length `u32::MAX` and no value: deleted) |
//! | `decisions` | `table u32 ‖ partition u32 ‖ sequence u64` | decision bytes |
//!
//! `state` holds every table's contents as of a checkpoint that all workers
//! completed; `pending` holds each worker's changes of later checkpoints,
//! one version per checkpoint epoch. A restart (and the end of a run) folds
//! the pending versions at or below the resume epoch into `state` and drops
//! the rest, so the database holds the state once plus the checkpoints in
//! flight: it does not grow with the length of a run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};
use serde::{Deserialize, Serialize};

/// The version of the store's layout. A store with a larger version was
/// written by a newer lockstep and is refused.
pub const STORE_FORMAT: u32 = 1;

/// How many history records a restart keeps per worker (a run keeps as
/// many of its own).
pub const HISTORY_KEPT: usize = 64;

/// The marker epoch of a run that finished its input: nothing is left to do.
pub const FINISHED: u64 = u64::MAX;

const CF_META: &str = "meta";
const CF_STATE: &str = "state";
const CF_PENDING: &str = "pending";
const CF_DECISIONS: &str = "decisions";
const MANIFEST: &[u8] = b"manifest";
const MARKER: &[u8] = b"marker";
const HISTORY: &[u8] = b"history";

/// A store error: what failed, where, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

fn db_error(dir: &Path, what: &str, e: &rocksdb::Error) -> StoreError {
    let text = e.to_string();
    let lower = text.to_lowercase();
    let advice = if lower.contains("lock") {
        format!(
            "{} is in use by another running lockstep job (RocksDB's LOCK file is held); \
             wait for that job to finish or stop it, or use another --state directory",
            dir.display()
        )
    } else if lower.contains("no space") {
        "the disk is full; free some space and run the same command again (the last complete checkpoint is intact)".to_string()
    } else if lower.contains("corrupt") || lower.contains("checksum") || lower.contains("truncated")
    {
        format!(
            "the state in {} is damaged; restore the directory from a backup, or start over \
             with --fresh (which deletes it and reruns the job from the beginning)",
            dir.display()
        )
    } else {
        format!(
            "check that {} is a readable, writable directory",
            dir.display()
        )
    };
    StoreError(format!(
        "state {}: {what}: {text}\n  {advice}",
        dir.display()
    ))
}

/// What shapes a job's state and output, recorded when its state is created
/// and checked on every restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`STORE_FORMAT`] of the lockstep that created the store.
    pub store_format: u32,
    /// The version of the output encoding (sink bytes).
    pub output_format: u32,
    /// The number of key groups (fixed for the life of the state).
    pub key_groups: u32,
    /// The worker count of the last run, over all its processes (markers
    /// are per worker).
    pub workers: u32,
    /// The process count of the last run, and this store's process: its
    /// workers are `process * workers / processes ..` (one store per
    /// process; 1 and 0 for a single-process job).
    #[serde(default = "one")]
    pub processes: u32,
    /// See `processes`.
    #[serde(default)]
    pub process: u32,
    /// The job's name.
    pub job: String,
    /// A fingerprint per element that shapes state or output:
    /// `[kind, name, hex]`, e.g. `["node", "per_user", "9f…"]`.
    pub shape: Vec<(String, String, String)>,
    /// Every state table, by id (its index): `source/clicks`,
    /// `node/per_user/panes`, `sink/out`.
    pub tables: Vec<String>,
    /// The lockstep version that last wrote the manifest.
    pub written_by: String,
}

fn one() -> u32 {
    1
}

impl Manifest {
    /// The workers whose markers this store holds.
    pub fn own_workers(&self) -> std::ops::Range<u32> {
        let per = self.workers / self.processes.max(1);
        self.process * per..(self.process + 1) * per
    }

    /// Every difference that makes `self` (the stored manifest) unusable for
    /// a job described by `now`, one line each; empty when they agree.
    pub fn differences(&self, now: &Manifest) -> Vec<String> {
        let mut out = Vec::new();
        if self.store_format > STORE_FORMAT {
            out.push(format!(
                "it was written by a newer lockstep ({}; state format {}, this version reads {STORE_FORMAT})",
                self.written_by, self.store_format
            ));
            return out;
        }
        if self.output_format != now.output_format {
            out.push(format!(
                "the output format changed (version {} then, {} now)",
                self.output_format, now.output_format
            ));
        }
        if self.key_groups != now.key_groups {
            out.push(format!(
                "the key group count changed ({} then, {} now)",
                self.key_groups, now.key_groups
            ));
        }
        let then: BTreeMap<(&str, &str), &str> = self
            .shape
            .iter()
            .map(|(k, n, h)| ((k.as_str(), n.as_str()), h.as_str()))
            .collect();
        let current: BTreeMap<(&str, &str), &str> = now
            .shape
            .iter()
            .map(|(k, n, h)| ((k.as_str(), n.as_str()), h.as_str()))
            .collect();
        for (k, n, h) in &self.shape {
            match current.get(&(k.as_str(), n.as_str())) {
                None => out.push(format!("{k} \"{n}\" was removed")),
                Some(h2) if *h2 != h => {
                    let what = if k == "time" {
                        "\"time\" changed".to_string()
                    } else {
                        format!("{k} \"{n}\" changed")
                    };
                    out.push(what);
                }
                Some(_) => {}
            }
        }
        for (k, n, _) in &now.shape {
            if !then.contains_key(&(k.as_str(), n.as_str())) {
                out.push(format!("{k} \"{n}\" was added"));
            }
        }
        out
    }
}

/// What one worker wrote at one checkpoint, for `lockstep state checkpoints`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// Wall-clock time of the write, in ms since the Unix epoch (shown to
    /// people only; never read by a job).
    pub unix_ms: u64,
    /// Bytes in the worker's write batch.
    pub bytes: u64,
    /// Entries (changed keys, partition and sink positions) in it.
    pub entries: u64,
    /// How long the write took (including syncing sink files), in µs.
    pub micros: u64,
}

/// The database of one process.
pub struct Store {
    db: DB,
    dir: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

/// How to open a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// For a run: create the directory (not its parents) and the database
    /// if missing.
    Create,
    /// For inspection: the directory must hold a store already. The
    /// database is opened normally (taking RocksDB's lock, so a running job
    /// is detected), and nothing is written.
    Existing,
}

/// A raw key and value of a column family.
pub type RawEntry = (Vec<u8>, Vec<u8>);

/// A key of `state`: table, key group, key bytes.
pub fn base_key(table: u32, group: u32, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&table.to_be_bytes());
    k.extend_from_slice(&group.to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// Splits a `state` key into table, key group and key bytes.
pub fn split_base_key(k: &[u8]) -> Option<(u32, u32, &[u8])> {
    let table = u32::from_be_bytes(k.get(0..4)?.try_into().ok()?);
    let group = u32::from_be_bytes(k.get(4..8)?.try_into().ok()?);
    Some((table, group, &k[8..]))
}

fn marker_key(worker: u32) -> Vec<u8> {
    let mut k = MARKER.to_vec();
    k.extend_from_slice(&worker.to_be_bytes());
    k
}

fn history_key(epoch: u64, worker: u32) -> Vec<u8> {
    let mut k = HISTORY.to_vec();
    k.extend_from_slice(&epoch.to_be_bytes());
    k.extend_from_slice(&worker.to_be_bytes());
    k
}

fn u64_of(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.get(0..8)?.try_into().ok()?))
}

/// Changes in one buffer: `state` keys and values back to back, so that
/// staging a change allocates nothing.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    bytes: Vec<u8>,
    /// Per change: where its key starts, where it ends (and its value
    /// starts), where its value ends (equal to the key's end: deleted).
    idx: Vec<(usize, usize, usize)>,
}

impl Changes {
    /// Adds a change of `(table, group, key)`: `value` writes the value
    /// into the buffer it is given and returns whether there is one
    /// (`false`: the key was deleted).
    ///
    /// # Errors
    /// The error `value` returns (nothing is added then).
    pub fn push<E>(
        &mut self,
        table: u32,
        group: u32,
        key: &[u8],
        value: impl FnOnce(&mut Vec<u8>) -> Result<bool, E>,
    ) -> Result<(), E> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&table.to_be_bytes());
        self.bytes.extend_from_slice(&group.to_be_bytes());
        self.bytes.extend_from_slice(key);
        let mid = self.bytes.len();
        match value(&mut self.bytes) {
            Ok(present) => {
                if !present {
                    self.bytes.truncate(mid);
                }
                self.idx.push((start, mid, self.bytes.len()));
                Ok(())
            }
            Err(e) => {
                self.bytes.truncate(start);
                Err(e)
            }
        }
    }

    /// The changes in the order they were added: `state` key and value
    /// (`None`: deleted).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> + '_ {
        self.idx
            .iter()
            .map(|&(s, m, e)| (&self.bytes[s..m], (e > m).then(|| &self.bytes[m..e])))
    }

    /// How many changes.
    pub fn len(&self) -> usize {
        self.idx.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.idx.is_empty()
    }

    /// The bytes they take.
    pub fn bytes(&self) -> usize {
        self.bytes.len() + self.idx.len() * 24
    }

    /// The bytes it can hold without growing.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity() + self.idx.capacity() * 24
    }

    /// Empties it, keeping its memory.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.idx.clear();
    }

    /// The net change of each key over `changes` (in the order they were
    /// made): the last change of each key, in the order of first appearance.
    pub fn net<'a>(
        lists: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    ) -> Vec<(&'a [u8], Option<&'a [u8]>)> {
        let mut at: std::collections::HashMap<&[u8], usize, foldhash::fast::FixedState> =
            std::collections::HashMap::default();
        let mut out: Vec<(&[u8], Option<&[u8]>)> = Vec::new();
        for (k, v) in lists {
            match at.entry(k) {
                std::collections::hash_map::Entry::Occupied(o) => out[*o.get()].1 = v,
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(out.len());
                    out.push((k, v));
                }
            }
        }
        out
    }
}

/// Appends one change to a `pending` blob: key length `u32`, key, then the
/// value's length `u32` and the value, or `u32::MAX` when the key was
/// deleted (all big-endian).
fn blob_push(blob: &mut Vec<u8>, key: &[u8], value: Option<&[u8]>) {
    blob.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_be_bytes());
    blob.extend_from_slice(key);
    match value {
        Some(v) => {
            blob.extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX - 1).to_be_bytes());
            blob.extend_from_slice(v);
        }
        None => blob.extend_from_slice(&u32::MAX.to_be_bytes()),
    }
}

/// One change: a `state` key and its value (`None`: deleted).
pub type Change<'a> = (&'a [u8], Option<&'a [u8]>);

/// The changes of a `pending` blob, in order; `None` if it is damaged.
fn blob_entries(blob: &[u8]) -> Option<Vec<Change<'_>>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = blob.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_be_bytes(b) as usize)
    };
    while at < blob.len() {
        let klen = u32_at(at)?;
        let key = blob.get(at + 4..at + 4 + klen)?;
        at += 4 + klen;
        let vlen = u32_at(at)?;
        at += 4;
        if vlen == u32::MAX as usize {
            out.push((key, None));
        } else {
            out.push((key, Some(blob.get(at..at + vlen)?)));
            at += vlen;
        }
    }
    Some(out)
}

/// The key of a worker's `pending` blob for checkpoint `epoch`.
fn blob_key(epoch: u64, worker: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&epoch.to_be_bytes());
    k[8..].copy_from_slice(&worker.to_be_bytes());
    k
}

/// A visitor of table entries: `(key group, key bytes, value bytes)`.
pub type Visit<'a> = dyn FnMut(u32, &[u8], &[u8]) -> Result<(), StoreError> + 'a;

impl Store {
    /// Opens (or, with [`OpenMode::Create`], creates) the store in `dir`.
    ///
    /// # Errors
    /// A missing directory (for inspection) or parent, a directory that holds
    /// something else, a database locked by a running job, or damaged files;
    /// each message says what to do.
    pub fn open(dir: &Path, mode: OpenMode) -> Result<Store, StoreError> {
        let has_db = dir.join("CURRENT").exists();
        match mode {
            OpenMode::Existing if !dir.exists() => {
                return Err(StoreError(format!(
                    "state {}: no such directory; give the --state directory of a job",
                    dir.display()
                )))
            }
            OpenMode::Existing if !has_db => {
                return Err(StoreError(format!(
                    "state {}: holds no lockstep state (no RocksDB database in it); give the --state directory of a job",
                    dir.display()
                )))
            }
            OpenMode::Create if !dir.exists() => {
                std::fs::create_dir(dir).map_err(|e| {
                    StoreError(format!(
                        "state {}: cannot create the directory: {e}; check that its parent exists and is writable",
                        dir.display()
                    ))
                })?;
            }
            OpenMode::Create if !has_db => {
                let empty = std::fs::read_dir(dir)
                    .map_err(|e| StoreError(format!("state {}: cannot read: {e}", dir.display())))?
                    .next()
                    .is_none();
                if !empty {
                    return Err(StoreError(format!(
                        "state {}: the directory is not empty and holds no lockstep state; \
                         give a new or empty directory (lockstep will not write into other files)",
                        dir.display()
                    )));
                }
            }
            _ => {}
        }
        let mut opts = Options::default();
        opts.create_if_missing(mode == OpenMode::Create);
        opts.create_missing_column_families(mode == OpenMode::Create);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // A torn write at the end of the log (a crash mid-write) is dropped:
        // the database opens at the last complete write batch.
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        opts.set_paranoid_checks(true);
        opts.set_max_background_jobs(1);
        // (Vector memtables, below, cannot take concurrent writes.)
        opts.set_allow_concurrent_memtable_write(false);
        // The small `meta` family would otherwise pin every log file until
        // it fills its own memtable: flush it when the logs pass 64 MiB.
        opts.set_max_total_wal_size(64 << 20);
        opts.set_keep_log_file_num(2);
        opts.set_manifest_preallocation_size(64 << 10);
        // No space is reserved ahead (fallocate): a full disk then shows up
        // as a failed checkpoint write, with the last complete one intact,
        // rather than as room that is taken but never used.
        let opts = opts
            .get_options_from_string("allow_fallocate=false")
            .map_err(|e| db_error(dir, "cannot configure the database", &e))?;
        let cfs = [CF_META, CF_STATE, CF_PENDING, CF_DECISIONS].map(|name| {
            let mut o = Options::default();
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            if name == CF_PENDING || name == CF_STATE {
                // Written by checkpoints and folds, read only when a job
                // starts (after `settle` flushes them): a vector memtable,
                // sorted when flushed, makes an insert an append instead of
                // a skip-list search (which a fold of many keys pays per key).
                o.set_memtable_factory(rocksdb::MemtableFactory::Vector);
            }
            ColumnFamilyDescriptor::new(name, o)
        });
        let db = DB::open_cf_descriptors(&opts, dir, cfs)
            .map_err(|e| db_error(dir, "cannot open the database", &e))?;
        Ok(Store {
            db,
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db.cf_handle(name).ok_or_else(|| {
            StoreError(format!(
                "state {}: the database has no column family \"{name}\"; it was not written by lockstep, \
                 or is damaged (start over with --fresh)",
                self.dir.display()
            ))
        })
    }

    fn err(&self, what: &str, e: &rocksdb::Error) -> StoreError {
        db_error(&self.dir, what, e)
    }

    /// The stored manifest, if the store has one.
    ///
    /// # Errors
    /// Read errors, or a manifest that does not parse.
    pub fn manifest(&self) -> Result<Option<Manifest>, StoreError> {
        let raw = self
            .db
            .get_cf(self.cf(CF_META)?, MANIFEST)
            .map_err(|e| self.err("cannot read the manifest", &e))?;
        let Some(raw) = raw else { return Ok(None) };
        // A newer format may have fields this version does not know: look
        // at the version first.
        let v: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| {
            StoreError(format!(
                "state {}: the manifest is damaged ({e}); start over with --fresh",
                self.dir.display()
            ))
        })?;
        let format = v.get("store_format").and_then(serde_json::Value::as_u64);
        if let Some(f) = format.filter(|f| *f > u64::from(STORE_FORMAT)) {
            let by = v.get("written_by").and_then(|w| w.as_str()).unwrap_or("?");
            return Err(StoreError(format!(
                "state {}: it was written by a newer lockstep ({by}; state format {f}, this version reads {STORE_FORMAT}); \
                 run it with that version, or start over with --fresh",
                self.dir.display()
            )));
        }
        serde_json::from_value(v).map(Some).map_err(|e| {
            StoreError(format!(
                "state {}: the manifest is damaged ({e}); start over with --fresh",
                self.dir.display()
            ))
        })
    }

    /// Writes the manifest (synced).
    ///
    /// # Errors
    /// Write errors.
    pub fn write_manifest(&self, m: &Manifest) -> Result<(), StoreError> {
        let text = serde_json::to_vec_pretty(m).map_err(|e| StoreError(e.to_string()))?;
        let mut b = WriteBatch::default();
        b.put_cf(self.cf(CF_META)?, MANIFEST, text);
        self.write(b, "cannot write the manifest")
    }

    fn write(&self, b: WriteBatch, what: &str) -> Result<(), StoreError> {
        let mut w = WriteOptions::default();
        w.set_sync(true);
        self.db.write_opt(b, &w).map_err(|e| self.err(what, &e))
    }

    /// Every worker's last checkpoint epoch.
    ///
    /// # Errors
    /// Read errors.
    pub fn markers(&self) -> Result<BTreeMap<u32, u64>, StoreError> {
        let mut out = BTreeMap::new();
        for item in self.db.iterator_cf(
            self.cf(CF_META)?,
            IteratorMode::From(MARKER, Direction::Forward),
        ) {
            let (k, v) = item.map_err(|e| self.err("cannot read markers", &e))?;
            let Some(w) = k.strip_prefix(MARKER) else {
                break;
            };
            let w = u32::from_be_bytes(w.try_into().map_err(|_| self.damaged("marker key"))?);
            out.insert(w, u64_of(&v).ok_or_else(|| self.damaged("marker"))?);
        }
        Ok(out)
    }

    fn damaged(&self, what: &str) -> StoreError {
        StoreError(format!(
            "state {}: a {what} is damaged; start over with --fresh",
            self.dir.display()
        ))
    }

    /// The epoch every worker of the last run completed: the resume point.
    /// `None` when some worker completed no checkpoint.
    ///
    /// # Errors
    /// Read errors.
    pub fn complete(&self, workers: std::ops::Range<u32>) -> Result<Option<u64>, StoreError> {
        let m = self.markers()?;
        Ok(workers
            .map(|w| m.get(&w).copied())
            .collect::<Option<Vec<u64>>>()
            .and_then(|v| v.into_iter().min()))
    }

    /// Settles the store at `resume` (the epoch every worker of the last
    /// run completed, over all its processes; see [`Store::complete`]): folds every pending version at or below it into `state`,
    /// drops the later ones (output of a run that got ahead is replayed), and
    /// sets the markers of the new run's workers to it, and writes its
    /// manifest. One synced batch: a crash during it leaves the store as it
    /// was. Returns the resume
    /// epoch (`None`: no complete checkpoint, and the store is emptied of
    /// state so that the job starts from the beginning).
    ///
    /// # Errors
    /// Read and write errors.
    pub fn settle(
        &self,
        resume: Option<u64>,
        manifest: &Manifest,
    ) -> Result<Option<u64>, StoreError> {
        let new_workers = manifest.own_workers();
        let (meta, state, pending) = (self.cf(CF_META)?, self.cf(CF_STATE)?, self.cf(CF_PENDING)?);
        let mut b = WriteBatch::default();
        for item in self.db.iterator_cf(pending, IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.err("cannot read pending changes", &e))?;
            let epoch = u64_of(&k).ok_or_else(|| self.damaged("pending key"))?;
            if resume.is_some_and(|r| epoch <= r) {
                for (key, value) in
                    blob_entries(&v).ok_or_else(|| self.damaged("pending checkpoint"))?
                {
                    match value {
                        Some(value) => b.put_cf(state, key, value),
                        None => b.delete_cf(state, key),
                    }
                }
            }
            b.delete_cf(pending, &k);
        }
        if resume.is_none() {
            // No complete checkpoint: start from the beginning. Decisions
            // stay: output of the lost run may already be outside (a Kafka
            // topic), and the replay must decide as it did.
            for cf in [state] {
                for item in self.db.iterator_cf(cf, IteratorMode::Start) {
                    let (k, _) = item.map_err(|e| self.err("cannot read state", &e))?;
                    b.delete_cf(cf, &k);
                }
            }
        }
        for w in self.markers()?.keys() {
            b.delete_cf(meta, marker_key(*w));
        }
        // History: the newest records of each worker of the new run (each
        // run prunes only its own), none of workers that are gone.
        let mut per_worker: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for (e, w, _) in self.history()? {
            per_worker.entry(w).or_default().push(e);
        }
        for (w, mut epochs) in per_worker {
            epochs.sort_unstable();
            let keep = if new_workers.contains(&w) {
                HISTORY_KEPT
            } else {
                0
            };
            let drop = epochs.len().saturating_sub(keep);
            for e in &epochs[..drop] {
                b.delete_cf(meta, history_key(*e, w));
            }
        }
        if let Some(r) = resume {
            for w in new_workers {
                b.put_cf(meta, marker_key(w), r.to_be_bytes());
            }
        }
        let text = serde_json::to_vec_pretty(manifest).map_err(|e| StoreError(e.to_string()))?;
        b.put_cf(meta, MANIFEST, text);
        self.write(b, "cannot settle the last checkpoint")?;
        // Vector memtables are sorted anew for every read: flush them, so
        // that restoring reads sorted files.
        for name in [CF_STATE, CF_PENDING] {
            self.db
                .flush_cf(self.cf(name)?)
                .map_err(|e| self.err("cannot flush the settled checkpoint", &e))?;
        }
        Ok(resume)
    }

    /// Every entry of the `state` (`decisions`: false) or `decisions`
    /// (true) column family, in key order: for moving state between the
    /// processes of a rescaled cluster.
    ///
    /// # Errors
    /// Read errors.
    pub fn entries(&self, decisions: bool) -> Result<Vec<RawEntry>, StoreError> {
        let cf = self.cf(if decisions { CF_DECISIONS } else { CF_STATE })?;
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.err("cannot read state", &e))?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Writes entries another process moved here (`(decisions, key,
    /// value)`), as one synced batch.
    ///
    /// # Errors
    /// Write errors.
    pub fn put_entries(
        &self,
        entries: &[(bool, Vec<u8>, Vec<u8>)],
        adopt: Option<(&Manifest, Option<u64>)>,
    ) -> Result<(), StoreError> {
        let (state, decisions) = (self.cf(CF_STATE)?, self.cf(CF_DECISIONS)?);
        let mut b = WriteBatch::default();
        for (d, k, v) in entries {
            b.put_cf(if *d { decisions } else { state }, k, v);
        }
        // A new store records its layout with the state it receives: a
        // crash before the move ends then finds it holding its part.
        if let Some((manifest, resume)) = adopt {
            let meta = self.cf(CF_META)?;
            if let Some(r) = resume {
                for w in manifest.own_workers() {
                    b.put_cf(meta, marker_key(w), r.to_be_bytes());
                }
            }
            let text =
                serde_json::to_vec_pretty(manifest).map_err(|e| StoreError(e.to_string()))?;
            b.put_cf(meta, MANIFEST, text);
        }
        self.write(b, "cannot write state moved from another process")
    }

    /// Ends a move of state between processes, as one synced batch: deletes
    /// the entries this process sent away (`(decisions, key)`), replaces
    /// every marker by markers at `resume` for the workers `manifest` gives
    /// this process, and writes `manifest` (the new layout).
    ///
    /// # Errors
    /// Write errors.
    pub fn finish_move(
        &self,
        sent: &[(bool, Vec<u8>)],
        manifest: &Manifest,
        resume: Option<u64>,
    ) -> Result<(), StoreError> {
        let (meta, state, decisions) = (
            self.cf(CF_META)?,
            self.cf(CF_STATE)?,
            self.cf(CF_DECISIONS)?,
        );
        let mut b = WriteBatch::default();
        for (d, k) in sent {
            b.delete_cf(if *d { decisions } else { state }, k);
        }
        for w in self.markers()?.keys() {
            b.delete_cf(meta, marker_key(*w));
        }
        if let Some(r) = resume {
            for w in manifest.own_workers() {
                b.put_cf(meta, marker_key(w), r.to_be_bytes());
            }
        }
        let text = serde_json::to_vec_pretty(manifest).map_err(|e| StoreError(e.to_string()))?;
        b.put_cf(meta, MANIFEST, text);
        self.write(b, "cannot finish moving state between processes")?;
        self.db
            .flush_cf(state)
            .map_err(|e| self.err("cannot flush moved state", &e))
    }

    /// Writes one worker's checkpoint at `epoch` as one synced batch: its
    /// changes since its last checkpoint (`changes`: per checkpoint epoch up
    /// to `epoch`, the net changes of the epochs it covers, into `pending`),
    /// the folding of earlier checkpoints of this worker that every worker
    /// has completed (`folded`: their epochs, whose `pending` entries are
    /// deleted, and `fold`: their net changes, written to `state`), its
    /// marker and a history record. `blob` is scratch space (kept between
    /// calls so that its memory is reused). Returns the batch's size in bytes.
    ///
    /// # Errors
    /// Write errors (a full disk among them): the checkpoint is then not
    /// written at all, and the last complete one is intact.
    #[allow(clippy::too_many_arguments)]
    pub fn write_checkpoint(
        &self,
        worker: u32,
        epoch: u64,
        changes: &[(&[u8], Option<&[u8]>)],
        folded: &[u64],
        fold: &[(&[u8], Option<&[u8]>)],
        forget_history: &[u64],
        record: &CheckpointRecord,
        blob: &mut Vec<u8>,
    ) -> Result<u64, StoreError> {
        let (meta, state, pending) = (self.cf(CF_META)?, self.cf(CF_STATE)?, self.cf(CF_PENDING)?);
        let size: usize = changes
            .iter()
            .chain(fold)
            .map(|(k, v)| k.len() + v.map_or(0, <[u8]>::len) + 32)
            .sum();
        let mut b = WriteBatch::with_capacity_bytes(size + 4096);
        // The checkpoint's changes go in as one value: one log record and one
        // memtable entry per checkpoint, however many keys changed.
        blob.clear();
        for (k, v) in changes {
            blob_push(blob, k, *v);
        }
        b.put_cf(pending, blob_key(epoch, worker), &*blob);
        for (k, v) in fold {
            match v {
                Some(v) => b.put_cf(state, k, v),
                None => b.delete_cf(state, k),
            }
        }
        for e in folded {
            b.delete_cf(pending, blob_key(*e, worker));
        }
        for e in forget_history {
            b.delete_cf(meta, history_key(*e, worker));
        }
        b.put_cf(meta, marker_key(worker), epoch.to_be_bytes());
        let mut record = record.clone();
        record.bytes = b.size_in_bytes() as u64;
        record.entries = changes.len() as u64;
        let rec = bincode::serialize(&record).map_err(|e| StoreError(e.to_string()))?;
        b.put_cf(meta, history_key(epoch, worker), rec);
        let bytes = record.bytes;
        self.write(b, &format!("checkpoint at epoch {epoch} failed"))?;
        Ok(bytes)
    }

    /// Folds every worker's changes not folded yet (`leftovers`, each
    /// worker's checkpoints in order) into `state` at the end of a run that
    /// finished, drops `pending`, and writes the manifest: one synced batch.
    /// Every worker's marker is [`FINISHED`] already.
    ///
    /// # Errors
    /// Write errors (the store then stays as the workers left it, which a
    /// restart settles).
    pub fn finish(
        &self,
        manifest: &Manifest,
        leftovers: &[Vec<Changes>],
    ) -> Result<(), StoreError> {
        let (meta, state, pending) = (self.cf(CF_META)?, self.cf(CF_STATE)?, self.cf(CF_PENDING)?);
        let mut b = WriteBatch::default();
        for worker in leftovers {
            // Workers own disjoint keys; each worker's changes net in order.
            for (k, v) in Changes::net(worker.iter().flat_map(Changes::iter)) {
                match v {
                    Some(v) => b.put_cf(state, k, v),
                    None => b.delete_cf(state, k),
                }
            }
        }
        b.delete_range_cf(pending, Vec::new(), vec![0xffu8; 32]);
        let text = serde_json::to_vec_pretty(manifest).map_err(|e| StoreError(e.to_string()))?;
        b.put_cf(meta, MANIFEST, text);
        self.write(b, "cannot fold the final checkpoint")
    }

    /// The value of one `state` key, decoded ([`crate::decode_value`]).
    ///
    /// # Errors
    /// Read errors, or a value that does not decode.
    pub fn get_value<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        self.get(key)?.map(|v| crate::decode_value(&v)).transpose()
    }

    /// The value of one `state` key.
    ///
    /// # Errors
    /// Read errors.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db
            .get_cf(self.cf(CF_STATE)?, key)
            .map_err(|e| self.err("cannot read state", &e))
    }

    /// Calls `f(key group, key, value)` for every entry of `table` in key
    /// group `group`, in key order.
    ///
    /// # Errors
    /// Read errors, or an error `f` returns.
    pub fn scan_group(&self, table: u32, group: u32, f: &mut Visit<'_>) -> Result<(), StoreError> {
        let prefix = base_key(table, group, &[]);
        self.scan_prefix(&prefix, f)
    }

    /// Calls `f(key group, key, value)` for every entry of `table`, in key
    /// group and key order.
    ///
    /// # Errors
    /// Read errors, or an error `f` returns.
    pub fn scan_table(&self, table: u32, f: &mut Visit<'_>) -> Result<(), StoreError> {
        self.scan_prefix(&table.to_be_bytes(), f)
    }

    fn scan_prefix(&self, prefix: &[u8], f: &mut Visit<'_>) -> Result<(), StoreError> {
        for item in self.db.iterator_cf(
            self.cf(CF_STATE)?,
            IteratorMode::From(prefix, Direction::Forward),
        ) {
            let (k, v) = item.map_err(|e| self.err("cannot read state", &e))?;
            if !k.starts_with(prefix) {
                break;
            }
            let (_, group, key) = split_base_key(&k).ok_or_else(|| self.damaged("state key"))?;
            f(group, key, &v)?;
        }
        Ok(())
    }

    /// Calls `f(key group, key, value)` for every entry of `table` as of
    /// checkpoint `at`: the folded state with the pending versions at or
    /// below `at` applied (what a restart would restore), in key group and
    /// key order. For inspection: it holds the table in memory.
    ///
    /// # Errors
    /// Read errors, or an error `f` returns.
    pub fn scan_table_at(
        &self,
        table: u32,
        at: Option<u64>,
        f: &mut Visit<'_>,
    ) -> Result<(), StoreError> {
        let prefix = table.to_be_bytes();
        let mut all: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        self.scan_prefix(&prefix, &mut |g, k, v| {
            all.insert(base_key(table, g, k), v.to_vec());
            Ok(())
        })?;
        if let Some(at) = at {
            for item in self
                .db
                .iterator_cf(self.cf(CF_PENDING)?, IteratorMode::Start)
            {
                let (k, v) = item.map_err(|e| self.err("cannot read pending changes", &e))?;
                let epoch = u64_of(&k).ok_or_else(|| self.damaged("pending key"))?;
                if epoch > at {
                    break;
                }
                for (key, value) in
                    blob_entries(&v).ok_or_else(|| self.damaged("pending checkpoint"))?
                {
                    if !key.starts_with(&prefix) {
                        continue;
                    }
                    match value {
                        Some(value) => all.insert(key.to_vec(), value.to_vec()),
                        None => all.remove(key),
                    };
                }
            }
        }
        for (k, v) in all {
            let (_, group, key) = split_base_key(&k).ok_or_else(|| self.damaged("state key"))?;
            f(group, key, &v)?;
        }
        Ok(())
    }

    /// Every checkpoint record: `(epoch, worker, record)`, by epoch.
    ///
    /// # Errors
    /// Read errors.
    pub fn history(&self) -> Result<Vec<(u64, u32, CheckpointRecord)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(
            self.cf(CF_META)?,
            IteratorMode::From(HISTORY, Direction::Forward),
        ) {
            let (k, v) = item.map_err(|e| self.err("cannot read history", &e))?;
            let Some(rest) = k.strip_prefix(HISTORY) else {
                break;
            };
            let epoch = u64_of(rest).ok_or_else(|| self.damaged("history key"))?;
            let worker = rest
                .get(8..12)
                .and_then(|w| w.try_into().ok())
                .map(u32::from_be_bytes)
                .ok_or_else(|| self.damaged("history key"))?;
            let rec: CheckpointRecord =
                bincode::deserialize(&v).map_err(|_| self.damaged("history record"))?;
            out.push((epoch, worker, rec));
        }
        Ok(out)
    }

    /// Pending (not yet folded) changes: `(epoch, worker, entries)`.
    ///
    /// # Errors
    /// Read errors.
    pub fn pending_counts(&self) -> Result<BTreeMap<(u64, u32), u64>, StoreError> {
        let mut out = BTreeMap::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_PENDING)?, IteratorMode::Start)
        {
            let (k, v) = item.map_err(|e| self.err("cannot read pending changes", &e))?;
            let epoch = u64_of(&k).ok_or_else(|| self.damaged("pending key"))?;
            let worker = k
                .get(8..12)
                .and_then(|w| w.try_into().ok())
                .map(u32::from_be_bytes)
                .ok_or_else(|| self.damaged("pending key"))?;
            let n = blob_entries(&v)
                .ok_or_else(|| self.damaged("pending checkpoint"))?
                .len();
            *out.entry((epoch, worker)).or_default() += n as u64;
        }
        Ok(out)
    }

    /// Appends a decision of partition `part` of `table` at `seq`, synced,
    /// before any output depends on it.
    ///
    /// # Errors
    /// Write errors.
    pub fn log_decision(
        &self,
        table: u32,
        part: u32,
        seq: u64,
        decision: &[u8],
    ) -> Result<(), StoreError> {
        let mut k = base_key(table, part, &[]);
        k.extend_from_slice(&seq.to_be_bytes());
        let mut b = WriteBatch::default();
        b.put_cf(self.cf(CF_DECISIONS)?, k, decision);
        self.write(b, "cannot log a decision")
    }

    /// The logged decisions of partition `part` of `table`, in order.
    ///
    /// # Errors
    /// Read errors.
    pub fn decisions(&self, table: u32, part: u32) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let prefix = base_key(table, part, &[]);
        let mut out = Vec::new();
        for item in self.db.iterator_cf(
            self.cf(CF_DECISIONS)?,
            IteratorMode::From(&prefix, Direction::Forward),
        ) {
            let (k, v) = item.map_err(|e| self.err("cannot read decisions", &e))?;
            if !k.starts_with(&prefix) {
                break;
            }
            let seq = u64_of(&k[8..]).ok_or_else(|| self.damaged("decision key"))?;
            out.push((seq, v.to_vec()));
        }
        Ok(out)
    }

    /// Approximate bytes on disk of the live data (SST files and memtables).
    pub fn disk_bytes(&self) -> u64 {
        let mut total = 0;
        for name in [CF_META, CF_STATE, CF_PENDING, CF_DECISIONS] {
            if let Ok(cf) = self.cf(name) {
                for prop in [
                    "rocksdb.total-sst-files-size",
                    "rocksdb.cur-size-all-mem-tables",
                ] {
                    if let Ok(Some(n)) = self.db.property_int_value_cf(cf, prop) {
                        total += n;
                    }
                }
            }
        }
        total
    }
}

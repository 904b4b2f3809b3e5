//! Checkpoints of a job run with `--state DIR`: opening and checking the
//! store before the workers start, rolling file sinks back to their
//! committed bytes, the per-worker checkpoint loop, and the records that
//! sources and sinks keep in it.
//!
//! The protocol is in `lockstep_state::checkpoint`; the byte layout in
//! docs/state-format.md.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use lockstep_operators::encode::{Encoder, OUTPUT_FORMAT};
use lockstep_operators::node::TimeMode;
use lockstep_state::store::{Manifest, OpenMode, Store, StoreError, STORE_FORMAT};
use lockstep_state::{decode_value, encode_value, DEFAULT_KEY_GROUPS};

use crate::source::reader::FilePart;

use crate::graph::{Graph, SinkKind, SourceKind};

/// A source partition's checkpoint: everything needed to replay it into
/// the same epochs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionPos {
    /// Where to read on: a byte offset (files), a record index
    /// (generators), an event offset (nexmark).
    pub position: u64,
    /// The largest event time read so far.
    pub max_time: Option<i64>,
    /// Items read so far (records and rejected lines).
    pub count: u64,
    /// Whether the partition is exhausted.
    pub done: bool,
}

/// A file sink partition's committed bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkPos {
    /// The file's committed length in bytes.
    pub len: u64,
    /// CRC-32 (IEEE) of those bytes.
    pub crc: u32,
    /// Records in them.
    pub records: u64,
}

/// The key of a partition (of a source or a sink) in its table.
pub fn part_key(part: u32) -> [u8; 4] {
    part.to_be_bytes()
}

/// The table of source `name`.
pub fn source_table(name: &str) -> String {
    format!("source/{name}")
}

/// The table of sink `name`.
pub fn sink_table(name: &str) -> String {
    format!("sink/{name}")
}

/// K of the spec's rule "a checkpoint whenever `frontier / K` increases":
/// `checkpoint.every_epochs`, else 1 for `epoch_records` and
/// `ceil(1000 / E)` (about a second of event time) for `epoch_ms`.
pub fn every(graph: &Graph) -> u64 {
    graph.checkpoint_every.unwrap_or(match graph.time {
        TimeMode::EpochRecords(_) => 1,
        TimeMode::EpochMs(e) => 1000u64.div_ceil(e.max(1)),
    })
}

/// Every state table of a graph, in id order: sources, node tables, sinks.
pub fn tables(graph: &Graph) -> Vec<String> {
    let mut t: Vec<String> = graph
        .sources
        .iter()
        .map(|s| source_table(&s.name))
        .collect();
    for n in &graph.nodes {
        for table in n.node.state_tables() {
            t.push(format!("node/{}/{table}", n.name));
        }
    }
    for s in &graph.sinks {
        if matches!(s.kind, SinkKind::File { .. } | SinkKind::Kafka { .. }) {
            t.push(sink_table(&s.name));
        }
    }
    t
}

/// How a run spreads over processes and workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Workers over all processes.
    pub workers: u32,
    /// Processes.
    pub processes: u32,
    /// This process.
    pub process: u32,
}

/// The manifest a run of `graph` with `layout` writes.
pub fn manifest(graph: &Graph, layout: Layout) -> Manifest {
    Manifest {
        store_format: STORE_FORMAT,
        output_format: OUTPUT_FORMAT,
        key_groups: DEFAULT_KEY_GROUPS,
        workers: layout.workers,
        processes: layout.processes,
        process: layout.process,
        job: graph.name.clone(),
        shape: graph.shape.clone(),
        tables: tables(graph),
        written_by: format!("lockstep {}", env!("CARGO_PKG_VERSION")),
    }
}

/// A job's store, checked and settled, before its workers start.
#[derive(Debug)]
pub struct Prepared {
    /// The store.
    pub store: Arc<Store>,
    /// The epoch the job resumes after (`None`: from the beginning).
    pub resume: Option<u64>,
    /// Whether the store held a run of this job before this one (a sink
    /// may then find its own records of that run in its output).
    pub existed: bool,
    /// The tables, by id.
    pub tables: Arc<Vec<String>>,
    /// The key group count.
    pub key_groups: u32,
    /// The manifest this run wrote (and writes again when it finishes).
    pub manifest: Manifest,
}

/// A job's store, opened and checked against the graph, not yet settled:
/// in a cluster the processes first agree where to resume.
#[derive(Debug)]
pub struct Opened {
    store: Arc<Store>,
    now: Manifest,
    existed: bool,
    /// The last complete checkpoint of this process's workers.
    pub candidate: Option<u64>,
    /// The layout of the run that last wrote this store: (workers over
    /// all processes, processes).
    pub old_layout: Option<(u32, u32)>,
    old_manifest: Option<Manifest>,
}

fn store_err(e: StoreError) -> String {
    e.0
}

/// Inputs and outputs that cannot take part in checkpoints: standard input
/// cannot be replayed and standard output cannot be rolled back.
pub fn check_checkpointable(graph: &Graph) -> Result<(), String> {
    let mut problems = Vec::new();
    for s in &graph.sources {
        if matches!(s.kind, SourceKind::Stdin { .. }) {
            problems.push(format!(
                "source \"{}\" reads standard input, which cannot be replayed after a crash; read a file instead",
                s.name
            ));
        }
    }
    for s in &graph.sinks {
        if matches!(s.kind, SinkKind::Stdout { .. }) {
            problems.push(format!(
                "sink \"{}\" writes standard output, which cannot be rolled back after a crash; write a file instead",
                s.name
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "--state cannot checkpoint this job:\n  {}",
            problems.join("\n  ")
        ))
    }
}

/// Opens the store in `dir` for a run of `graph` with `layout`: creates it
/// on the first run; on a restart checks that it belongs to this graph and
/// finds this process's last complete checkpoint. With `fresh`, an
/// existing store is deleted first.
///
/// # Errors
/// Every fault with a message that says what to do: a directory that cannot
/// be created or holds something else, a store in use, damaged or from a
/// newer version, or one made by a different graph (naming what changed),
/// by another process of a cluster, or by a cluster of another shape.
pub fn open(graph: &Graph, dir: &Path, layout: Layout, fresh: bool) -> Result<Opened, String> {
    check_checkpointable(graph)?;
    if fresh && dir.exists() {
        if dir.join("CURRENT").exists() {
            // Open first: RocksDB's lock refuses a store a running job uses.
            drop(Store::open(dir, OpenMode::Existing).map_err(store_err)?);
        } else if !is_rocksdb_leftover(dir) {
            return Err(format!(
                "state {}: --fresh deletes a state directory, but this one holds no lockstep state; give a new or empty directory",
                dir.display()
            ));
        }
        // Renamed aside first, so that a crash while deleting leaves either
        // the old state whole or no state at all.
        let aside = dir.with_extension(format!("deleting-{}", std::process::id()));
        std::fs::rename(dir, &aside)
            .and_then(|()| std::fs::remove_dir_all(&aside))
            .map_err(|e| format!("state {}: cannot delete it for --fresh: {e}", dir.display()))?;
    }
    let store = Store::open(dir, OpenMode::Create).map_err(store_err)?;
    let mut now = manifest(graph, layout);
    let mut old_layout = None;
    let mut old_manifest = None;
    let (candidate, existed) = match store.manifest().map_err(store_err)? {
        Some(old) => {
            let mut diffs = old.differences(&now);
            // Table ids are positions in the stored list: keep its order (a
            // graph whose elements were only reordered keeps its state).
            let (mut a, mut b) = (old.tables.clone(), now.tables.clone());
            a.sort();
            b.sort();
            if a == b {
                now.tables = old.tables.clone();
            } else if diffs.is_empty() {
                diffs.push("its state tables differ".to_string());
            }
            if !diffs.is_empty() {
                return Err(format!(
                    "state {}: it was made by a different job graph, so its checkpoint cannot be used:\n  {}\n  \
                     Undo the change to resume, use another --state directory, or add --fresh to delete this state and start over.",
                    dir.display(),
                    diffs.join("\n  ")
                ));
            }
            let cluster = old.processes > 1 || layout.processes > 1;
            if cluster && old.process != layout.process {
                return Err(format!(
                    "state {}: it holds the state of process {} of a cluster, not of process {}; give each process its own --state directory, the same one every run",
                    dir.display(),
                    old.process,
                    layout.process
                ));
            }
            old_layout = Some((old.workers, old.processes));
            old_manifest = Some(old.clone());
            (store.complete(old.own_workers()).map_err(store_err)?, true)
        }
        None => (None, false),
    };
    if let Some(m) = old_manifest.as_mut() {
        // Table ids as stored (a reordered graph keeps them).
        m.tables = now.tables.clone();
    }
    Ok(Opened {
        store: Arc::new(store),
        now,
        existed,
        candidate,
        old_layout,
        old_manifest,
    })
}

/// The table id of `name` in a manifest's table list.
fn table_id(tables: &[String], name: &str) -> Option<u32> {
    tables
        .iter()
        .position(|t| t == name)
        .and_then(|i| u32::try_from(i).ok())
}

/// The start-up decision of `table` (a source or sink table) logged by an
/// earlier run: the key of the decision log is (table, [`STARTUP`], 0).
pub const STARTUP: u32 = u32::MAX;

impl Opened {
    /// The start-up decision an earlier run logged for `table`, if any.
    ///
    /// # Errors
    /// The log cannot be read.
    pub fn logged(&self, table: &str) -> Result<Option<Vec<u8>>, String> {
        let Some(id) = table_id(&self.now.tables, table) else {
            return Ok(None);
        };
        Ok(self
            .store
            .decisions(id, STARTUP)
            .map_err(store_err)?
            .into_iter()
            .next()
            .map(|(_, v)| v))
    }
}

impl Prepared {
    /// Logs (synced) the start-up decision of `table`, replacing any.
    ///
    /// # Errors
    /// The log cannot be written.
    pub fn log_startup(&self, table: &str, bytes: &[u8]) -> Result<(), String> {
        let Some(id) = table_id(&self.tables, table) else {
            return Ok(());
        };
        self.store
            .log_decision(id, STARTUP, 0, bytes)
            .map_err(store_err)
    }
}

/// Settles an opened store at `resume`, the checkpoint every process of
/// the job completed (`None`: start from the beginning).
///
/// # Errors
/// The store cannot be read or written.
pub fn settle(opened: Opened, resume: Option<u64>) -> Result<Prepared, String> {
    let Opened {
        store,
        now,
        existed,
        ..
    } = opened;
    let resume = store.settle(resume, &now).map_err(store_err)?;
    Ok(Prepared {
        store,
        resume,
        existed,
        tables: Arc::new(now.tables.clone()),
        key_groups: now.key_groups,
        manifest: now,
    })
}

/// State on its way between the processes of a rescaled cluster: settled
/// at the agreed checkpoint under the old layout (so that a crash during
/// the move finds the move still to do), with what this process sends.
pub struct Moving {
    opened: Opened,
    resume: Option<u64>,
    /// The entries to send: (new owner worker, decisions?, key, value).
    pub outgoing: Vec<(u64, bool, Vec<u8>, Vec<u8>)>,
}

impl Moving {
    /// The store (receivers write moved entries into it).
    pub fn store(&self) -> &Arc<Store> {
        &self.opened.store
    }

    /// For a new store: the layout and checkpoint it records with the
    /// state it receives.
    pub fn adopt(&self) -> Option<(Manifest, Option<u64>)> {
        self.opened
            .old_manifest
            .is_none()
            .then(|| (self.opened.now.clone(), self.resume))
    }
}

/// Starts a move: settles the store at `resume` under its old layout (a
/// new store is left as it is) and finds every entry whose owner under the
/// new layout is a worker of another process: keyed state by key group,
/// source and sink positions by partition owner, Kafka heartbeats by
/// partition. `workers` is the new worker count per process.
///
/// # Errors
/// The store cannot be read or written.
pub fn start_move(
    graph: &Graph,
    opened: Opened,
    resume: Option<u64>,
    workers: u32,
) -> Result<Moving, String> {
    if let Some(old) = &opened.old_manifest {
        opened.store.settle(resume, old).map_err(store_err)?;
    }
    let peers = opened.now.workers as usize;
    let me = opened.now.process as usize;
    let per = workers.max(1) as usize;
    let groups = lockstep_state::KeyGroups::new(opened.now.key_groups.max(1));
    let tables = &opened.now.tables;
    let owner = |table: u32, group: u32, key: &[u8]| -> Option<usize> {
        let name = tables.get(table as usize)?;
        let part = || {
            key.get(0..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        if name.starts_with("node/") {
            Some(groups.owner(group, peers))
        } else if let Some(src) = name.strip_prefix("source/") {
            let _ = src;
            part().map(|p| p as usize % peers.max(1))
        } else if let Some(sink) = name.strip_prefix("sink/") {
            let idx = graph.sinks.iter().position(|s| s.name == sink)?;
            part().map(|p| crate::runtime::sink_writer(idx, p, peers))
        } else {
            None
        }
    };
    let mut outgoing = Vec::new();
    for (k, v) in opened.store.entries(false).map_err(store_err)? {
        let Some((table, group, key)) = lockstep_state::store::split_base_key(&k) else {
            continue;
        };
        if let Some(w) = owner(table, group, key) {
            if w / per != me {
                outgoing.push((w as u64, false, k.clone(), v));
            }
        }
    }
    // Heartbeats follow their Kafka partition; other decisions (split
    // boundaries, start-up plans) every process holds whole.
    let kafka: std::collections::BTreeSet<u32> = graph
        .sources
        .iter()
        .filter(|s| matches!(s.kind, SourceKind::Kafka(_)))
        .filter_map(|s| table_id(tables, &source_table(&s.name)))
        .collect();
    for (k, v) in opened.store.entries(true).map_err(store_err)? {
        let Some((table, part, _)) = lockstep_state::store::split_base_key(&k) else {
            continue;
        };
        if kafka.contains(&table) && part != STARTUP {
            let w = part as usize % peers.max(1);
            if w / per != me {
                outgoing.push((w as u64, true, k.clone(), v));
            }
        }
    }
    Ok(Moving {
        opened,
        resume,
        outgoing,
    })
}

/// Ends a move once every process wrote what it received: deletes what
/// this process sent, writes the new layout and its markers at the agreed
/// checkpoint, and settles the store for the run.
///
/// # Errors
/// The store cannot be written.
pub fn finish_move(moving: Moving, existed: bool) -> Result<Prepared, String> {
    let Moving {
        opened,
        resume,
        outgoing,
    } = moving;
    let sent: Vec<(bool, Vec<u8>)> = outgoing.into_iter().map(|(_, d, k, _)| (d, k)).collect();
    opened
        .store
        .finish_move(&sent, &opened.now, resume)
        .map_err(store_err)?;
    let Opened { store, now, .. } = opened;
    let resume = store.settle(resume, &now).map_err(store_err)?;
    Ok(Prepared {
        store,
        resume,
        existed,
        tables: Arc::new(now.tables.clone()),
        key_groups: now.key_groups,
        manifest: now,
    })
}

/// Applies the decision log to the byte ranges of `split` file sources: the
/// boundaries depend on the file's length when the job first started, so
/// they are logged (synced) then, before any output depends on them, and a
/// restart reads them back instead of splitting again (an input file that
/// grew meanwhile would otherwise move records between partitions).
///
/// # Errors
/// The log cannot be read or written.
pub fn log_splits(graph: &Graph, p: &Prepared, parts: &mut [Vec<FilePart>]) -> Result<(), String> {
    for (i, s) in graph.sources.iter().enumerate() {
        let SourceKind::File { split: Some(_), .. } = &s.kind else {
            continue;
        };
        let Some(table) = p.tables.iter().position(|t| *t == source_table(&s.name)) else {
            continue;
        };
        let table = u32::try_from(table).unwrap_or(u32::MAX);
        for (k, part) in parts[i].iter_mut().enumerate() {
            let k = u32::try_from(k).unwrap_or(u32::MAX);
            let logged = p.store.decisions(table, k).map_err(store_err)?;
            match logged.first() {
                Some((_, bytes)) => {
                    let (start, end): (u64, Option<u64>) =
                        decode_value(bytes).map_err(store_err)?;
                    part.start = start;
                    part.end = end;
                }
                None => {
                    let bytes = encode_value(&(part.start, part.end)).map_err(store_err)?;
                    p.store
                        .log_decision(table, k, 0, &bytes)
                        .map_err(store_err)?;
                }
            }
        }
    }
    Ok(())
}

/// Whether a directory holds only what an interrupted RocksDB creation or
/// deletion leaves (so `--fresh` may delete it).
fn is_rocksdb_leftover(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(Result::ok).all(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            [
                "LOCK",
                "LOG",
                "IDENTITY",
                "MANIFEST-",
                "OPTIONS-",
                "CURRENT",
            ]
            .iter()
            .any(|p| name.starts_with(p))
                || name.ends_with(".log")
                || name.ends_with(".sst")
                || name.ends_with(".dbtmp")
        })
    })
}

/// The committed position of partition `part` of table `table`, if any.
///
/// # Errors
/// The store cannot be read.
pub fn read_pos<T: serde::de::DeserializeOwned>(
    p: &Prepared,
    table: &str,
    part: u32,
) -> Result<Option<T>, String> {
    if p.resume.is_none() {
        return Ok(None);
    }
    let Some(id) = p.tables.iter().position(|t| t == table) else {
        return Ok(None);
    };
    let id = u32::try_from(id).unwrap_or(u32::MAX);
    let key = lockstep_state::store::base_key(id, 0, &part_key(part));
    p.store.get_value(&key).map_err(store_err)
}

/// The CRC-32 of the first `len` bytes of `path`.
fn crc_prefix(path: &Path, len: u64) -> std::io::Result<u32> {
    let mut f = std::fs::File::open(path)?.take(len);
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize());
        }
        h.update(&buf[..n]);
    }
}

/// Rolls every file sink back to its committed bytes: checks that the
/// file still holds them and truncates what a lost run wrote after them. A
/// partition with nothing committed starts over (header only).
///
/// # Errors
/// A file shorter than its committed length or whose committed bytes
/// changed, or one that cannot be written.
pub fn roll_back_sinks(
    graph: &Graph,
    p: &Prepared,
    mine: &dyn Fn(usize, u32) -> bool,
) -> Result<(), String> {
    for (k, s) in graph.sinks.iter().enumerate() {
        let SinkKind::File { paths, format, .. } = &s.kind else {
            continue;
        };
        let header = Encoder::new(&s.schema, *format).header().to_string();
        for (i, path) in paths.iter().enumerate() {
            let part = u32::try_from(i).unwrap_or(u32::MAX);
            if !mine(k, part) {
                continue;
            }
            let pos: Option<SinkPos> = read_pos(p, &sink_table(&s.name), part)?;
            roll_back(&s.name, path, pos, header.as_bytes())?;
        }
    }
    Ok(())
}

fn roll_back(
    name: &str,
    path: &PathBuf,
    pos: Option<SinkPos>,
    header: &[u8],
) -> Result<(), String> {
    let what =
        |e: std::io::Error| format!("sink \"{name}\": cannot roll back {}: {e}", path.display());
    let Some(pos) = pos else {
        let mut f = std::fs::File::create(path).map_err(|e| {
            format!(
                "sink \"{name}\": cannot create {}: {e}; check that its directory exists and is writable",
                path.display()
            )
        })?;
        f.write_all(header).map_err(what)?;
        f.sync_all().map_err(what)?;
        // The new file's directory entry must be durable too.
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        return std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(what);
    };
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
            "sink \"{name}\": {} is missing, but the checkpoint says {} bytes of it were written; \
                 restore the file, or add --fresh to start the job over",
            path.display(),
            pos.len
        ))
        }
        Err(e) => return Err(what(e)),
    };
    if len < pos.len {
        return Err(format!(
            "sink \"{name}\": {} has {len} bytes, but the checkpoint says {} were written; \
             the file was truncated or replaced after the job wrote it. Restore the file, or add --fresh to start the job over",
            path.display(),
            pos.len
        ));
    }
    if crc_prefix(path, pos.len).map_err(what)? != pos.crc {
        return Err(format!(
            "sink \"{name}\": the first {} bytes of {} are not the bytes the job wrote (their checksum differs); \
             the file was changed after the job wrote it. Restore the file, or add --fresh to start the job over",
            pos.len,
            path.display()
        ));
    }
    if len > pos.len {
        let f = OpenOptions::new().write(true).open(path).map_err(what)?;
        f.set_len(pos.len).map_err(what)?;
        f.sync_all().map_err(what)?;
    }
    Ok(())
}

/// Appends at the end of a file, keeping its length, CRC and record count.
pub struct Tracked {
    file: std::io::BufWriter<std::fs::File>,
    len: u64,
    records: u64,
    hasher: crc32fast::Hasher,
}

impl Tracked {
    /// Opens `path` for appending at its committed position `pos` (the
    /// file was rolled back to it); also returns a handle to sync it.
    ///
    /// # Errors
    /// I/O errors.
    pub fn open(path: &Path, pos: SinkPos) -> std::io::Result<(Tracked, Arc<std::fs::File>)> {
        let mut f = OpenOptions::new().write(true).open(path)?;
        f.seek(SeekFrom::Start(pos.len))?;
        let sync = Arc::new(f.try_clone()?);
        Ok((
            Tracked {
                file: std::io::BufWriter::with_capacity(1 << 16, f),
                len: pos.len,
                records: pos.records,
                hasher: crc32fast::Hasher::new_with_initial_len(pos.crc, pos.len),
            },
            sync,
        ))
    }

    /// Notes `n` more records written.
    pub fn add_records(&mut self, n: u64) {
        self.records += n;
    }

    /// The position after the bytes written so far.
    pub fn pos(&self) -> SinkPos {
        SinkPos {
            len: self.len,
            crc: self.hasher.clone().finalize(),
            records: self.records,
        }
    }
}

impl Write for Tracked {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

//! `lockstep state DIR ...`: read-only views of a job's state directory.
//!
//! The store is opened the way a run opens it, taking RocksDB's lock, so a
//! directory that a running job uses is refused with a clear message
//! instead of showing a state that is changing underneath. Nothing is
//! written.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use lockstep_operators::aggregate::KeyAgg;
use lockstep_operators::value::Rec;
use lockstep_operators::window::{Pane, Sessions};
use lockstep_state::decode_value;
use lockstep_state::store::{Manifest, OpenMode, Store, FINISHED};

use crate::checkpoint::{PartitionPos, SinkPos};

/// The store, its manifest, and the complete checkpoint that views show
/// (what a restart would resume from).
fn open(dir: &Path) -> Result<(Store, Manifest, Option<u64>), String> {
    let store = Store::open(dir, OpenMode::Existing).map_err(|e| e.0)?;
    let manifest = store.manifest().map_err(|e| e.0)?.ok_or_else(|| {
        format!(
            "state {}: holds no manifest; no job has checkpointed into it yet",
            dir.display()
        )
    })?;
    let at = store.complete(manifest.own_workers()).map_err(|e| e.0)?;
    Ok((store, manifest, at))
}

fn epoch_text(e: u64) -> String {
    if e == FINISHED {
        "finished".to_string()
    } else {
        e.to_string()
    }
}

fn table_ids<'a>(m: &'a Manifest, prefix: &'a str) -> impl Iterator<Item = (u32, &'a str)> + 'a {
    m.tables
        .iter()
        .enumerate()
        .filter(move |(_, t)| t.starts_with(prefix))
        .map(|(i, t)| (u32::try_from(i).unwrap_or(u32::MAX), t.as_str()))
}

/// The manifest, the workers' markers, the complete checkpoint, the
/// checkpoints' history and what is pending.
///
/// # Errors
/// A store that cannot be opened or read.
pub fn checkpoints(dir: &Path) -> Result<String, String> {
    let (store, m, complete) = open(dir)?;
    let markers = store.markers().map_err(|e| e.0)?;
    let mut out = String::new();
    let _ = writeln!(out, "job: {}", m.job);
    let _ = writeln!(
        out,
        "state format {}, output format {}, {} key groups, written by {}",
        m.store_format, m.output_format, m.key_groups, m.written_by
    );
    let _ = writeln!(out, "workers: {}", m.workers);
    let _ = writeln!(
        out,
        "complete checkpoint: {}",
        complete.map_or(
            "none (a restart starts from the beginning)".to_string(),
            epoch_text
        )
    );
    let _ = writeln!(out, "markers:");
    for (w, e) in &markers {
        let _ = writeln!(out, "  worker {w}: {}", epoch_text(*e));
    }
    let _ = writeln!(out, "checkpoints (newest {} per worker):", 64);
    let _ = writeln!(
        out,
        "  epoch\tworker\ttime_unix_ms\tbytes\tentries\tsync_build_ms"
    );
    for (e, w, r) in store.history().map_err(|e| e.0)? {
        let _ = writeln!(
            out,
            "  {}\t{w}\t{}\t{}\t{}\t{:.3}",
            epoch_text(e),
            r.unix_ms,
            r.bytes,
            r.entries,
            r.micros as f64 / 1000.0
        );
    }
    let pending = store.pending_counts().map_err(|e| e.0)?;
    if !pending.is_empty() {
        let _ = writeln!(out, "pending (not yet folded) changes:");
        for ((e, w), n) in pending {
            let _ = writeln!(out, "  epoch {} worker {w}: {n} entries", epoch_text(e));
        }
    }
    let _ = writeln!(out, "disk: about {} bytes", store.disk_bytes());
    Ok(out)
}

/// Each source partition's checkpoint and each file sink partition's
/// committed bytes, as of the complete checkpoint.
///
/// # Errors
/// A store that cannot be opened or read.
pub fn offsets(dir: &Path) -> Result<String, String> {
    let (store, m, at) = open(dir)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "source\tpartition\tposition\tmax_event_time\trecords\tdone"
    );
    for (id, name) in table_ids(&m, "source/") {
        store
            .scan_table_at(id, at, &mut |_, key, value| {
                let p: PartitionPos = decode_value(value)?;
                let _ = writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    &name["source/".len()..],
                    part_of(key),
                    p.position,
                    p.max_time.map_or("-".to_string(), |t| t.to_string()),
                    p.count,
                    p.done
                );
                Ok(())
            })
            .map_err(|e| e.0)?;
    }
    let _ = writeln!(out, "sink\tpartition\tbytes\tcrc32\trecords");
    let mut kafka = String::new();
    for (id, name) in table_ids(&m, "sink/") {
        store
            .scan_table_at(id, at, &mut |_, key, value| {
                // A file sink's position is three fixed-size integers
                // (format byte, then 20 bytes); a Kafka sink's is not.
                if value.len() == 21 {
                    let p: SinkPos = decode_value(value)?;
                    let _ = writeln!(
                        out,
                        "{}\t{}\t{}\t{:08x}\t{}",
                        &name["sink/".len()..],
                        part_of(key),
                        p.len,
                        p.crc,
                        p.records
                    );
                } else {
                    let p: crate::sink_kafka::KafkaSinkPos = decode_value(value)?;
                    let (pos, offset) = p.last.map_or(("-".to_string(), "-".to_string()), |l| {
                        (format!("{}.{}", l.0, l.1), l.2.to_string())
                    });
                    let _ = writeln!(
                        kafka,
                        "{}\t{}\t{}\t{pos}\t{offset}",
                        &name["sink/".len()..],
                        part_of(key),
                        p.records
                    );
                }
                Ok(())
            })
            .map_err(|e| e.0)?;
    }
    if !kafka.is_empty() {
        let _ = writeln!(
            out,
            "kafka sink\tpartition\trecords\tlast position\tits offset"
        );
        out.push_str(&kafka);
    }
    Ok(out)
}

fn part_of(key: &[u8]) -> u32 {
    key.try_into().map(u32::from_be_bytes).unwrap_or(u32::MAX)
}

/// Keys per node table, and per key group with `groups`.
///
/// # Errors
/// A store that cannot be opened or read.
pub fn keys(dir: &Path, groups: bool) -> Result<String, String> {
    let (store, m, at) = open(dir)?;
    let mut out = String::new();
    for (id, name) in table_ids(&m, "node/") {
        let mut per_group: BTreeMap<u32, u64> = BTreeMap::new();
        store
            .scan_table_at(id, at, &mut |g, _, _| {
                *per_group.entry(g).or_default() += 1;
                Ok(())
            })
            .map_err(|e| e.0)?;
        let total: u64 = per_group.values().sum();
        let _ = writeln!(
            out,
            "{}\t{total} keys in {} key groups",
            &name["node/".len()..],
            per_group.len()
        );
        if groups {
            for (g, n) in per_group {
                let _ = writeln!(out, "  group {g}\t{n}");
            }
        }
    }
    Ok(out)
}

#[derive(Serialize)]
struct DumpLine<'a, V: Serialize> {
    table: &'a str,
    group: u32,
    key: String,
    value: V,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// One node's state as JSON lines, in table, key group and key order:
/// `{"table", "group", "key" (the key bytes in hex), "value"}`. A join's
/// `records` table has one line per stored record.
///
/// # Errors
/// A store that cannot be opened or read, or a node without state.
pub fn dump(dir: &Path, node: &str) -> Result<String, String> {
    let (store, m, at) = open(dir)?;
    let prefix = format!("node/{node}/");
    let tables: Vec<(u32, &str)> = table_ids(&m, &prefix).collect();
    if tables.is_empty() {
        let nodes: Vec<&str> = m
            .tables
            .iter()
            .filter_map(|t| t.strip_prefix("node/"))
            .filter_map(|t| t.split('/').next())
            .collect();
        return Err(format!(
            "state {}: node \"{node}\" keeps no state; nodes with state: {}",
            dir.display(),
            if nodes.is_empty() {
                "none".to_string()
            } else {
                nodes.join(", ")
            }
        ));
    }
    let mut out = String::new();
    for (id, name) in tables {
        let table = &name[prefix.len()..];
        store
            .scan_table_at(id, at, &mut |group, key, value| {
                let key = hex(key);
                let line = match table {
                    "keys" => line(table, group, key, decode_value::<KeyAgg>(value)?),
                    "panes" => line(table, group, key, decode_value::<Pane>(value)?),
                    "sessions" => line(table, group, key, decode_value::<Sessions>(value)?),
                    "records" => line(table, group, key, decode_value::<Rec>(value)?),
                    _ => line(table, group, key, hex(value)),
                };
                out.push_str(&line);
                out.push('\n');
                Ok(())
            })
            .map_err(|e| e.0)?;
    }
    Ok(out)
}

fn line<V: Serialize>(table: &str, group: u32, key: String, value: V) -> String {
    serde_json::to_string(&DumpLine {
        table,
        group,
        key,
        value,
    })
    .unwrap_or_default()
}

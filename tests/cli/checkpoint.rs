//! Checkpoints (`--state DIR`): output after any number of kill -9s and
//! restarts is byte-identical to a run that never crashed, also when the
//! worker count changes between restarts; `lockstep state` shows what the
//! store holds; and every fault is a clear error that leaves the last
//! complete checkpoint usable.
//!
//! The crash test's size is set by `LOCKSTEP_CRASH_EVENTS` (default
//! 200000) and `LOCKSTEP_CRASH_KILLS` (default 8); `scripts/crash-test.sh`
//! runs the long version (1M events, 24 kills).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::common::{
    assert_outputs, bin, lockstep, outputs, run_ok, tempdir, write, write_crash_graph,
};

/// The crash-test job (tests/data/crash/graph.json: tumbling, sliding and
/// session windows, a windowed and an unbounded join, an aggregate, CSV
/// and partitioned sinks) over `events` nexmark events, in a new directory.
fn crash_job(events: u64) -> tempfile::TempDir {
    let dir = tempdir();
    write_crash_graph(dir.path(), events);
    dir
}

/// The crash-free output of the job in `dir` (run there without state).
fn reference(events: u64) -> BTreeMap<String, Vec<u8>> {
    let dir = crash_job(events);
    run_ok(dir.path(), &["run", "graph.json", "--workers", "2", "-q"]);
    let out = outputs(dir.path());
    assert!(
        out.values().filter(|b| b.len() > 100).count() >= 4,
        "most sinks write something: {:?}",
        out.iter().map(|(n, b)| (n, b.len())).collect::<Vec<_>>()
    );
    out
}

fn run_state(dir: &Path, workers: usize, env: &[(&str, String)]) -> super::common::Run {
    let mut cmd = Command::new(bin());
    cmd.args(["run", "graph.json", "--state", "state", "--workers"])
        .arg(workers.to_string())
        .current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run lockstep");
    super::common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator for kill delays.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[test]
fn kill_9_at_random_instants_and_restarting_gives_the_bytes_of_a_run_that_never_crashed() {
    let events = env_u64("LOCKSTEP_CRASH_EVENTS", 200_000);
    let kills = env_u64("LOCKSTEP_CRASH_KILLS", 8);
    let want = reference(events);
    // How long a crash-free run with checkpoints takes: kills land in it.
    let calib = crash_job(events);
    let t = Instant::now();
    let r = run_state(calib.path(), 1, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let full = t.elapsed();
    assert_outputs(
        &want,
        &outputs(calib.path()),
        "an uninterrupted run with --state",
    );

    let dir = crash_job(events);
    let mut rng = Rng(env_u64("LOCKSTEP_CRASH_SEED", 7));
    let workers = [1usize, 3, 2];
    let (mut killed, mut aborted, mut starts) = (0u64, 0u64, 0usize);
    let started = Instant::now();
    loop {
        let w = workers[starts % workers.len()];
        starts += 1;
        assert!(
            starts < 400,
            "the job made no progress across {starts} restarts"
        );
        let mut cmd = Command::new(bin());
        cmd.args(["run", "graph.json", "--state", "state", "-q", "--workers"])
            .arg(w.to_string())
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let crash_inside = killed + aborted < kills && starts % 4 == 0;
        if crash_inside {
            // Some crashes land inside a checkpoint write, before or after
            // its batch: the hook aborts the process there.
            let at = if (starts / 4) % 2 == 0 {
                "before"
            } else {
                "after"
            };
            cmd.env(
                "LOCKSTEP_CRASH_AT_CHECKPOINT",
                format!("{}:{at}", 1 + rng.next() % 6),
            );
        }
        let mut child = cmd.spawn().expect("spawn");
        if killed + aborted < kills && !crash_inside {
            let ms = full.as_millis() as u64;
            let delay = Duration::from_millis(20 + rng.next() % ms.max(1));
            let deadline = Instant::now() + delay;
            while Instant::now() < deadline {
                if child.try_wait().expect("wait").is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            if child.try_wait().expect("wait").is_none() {
                child.kill().expect("kill -9");
                child.wait().expect("reap");
                killed += 1;
                continue;
            }
        }
        let out = child.wait_with_output().expect("wait");
        if crash_inside && !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("LOCKSTEP_CRASH_AT_CHECKPOINT"), "{err}");
            aborted += 1;
            continue;
        }
        assert!(
            out.status.success(),
            "restart {starts} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if killed + aborted >= kills {
            break;
        }
        // Finished before the planned kills: run it again from scratch
        // (the kill delays are random, so later rounds crash it).
        assert_outputs(&want, &outputs(dir.path()), "a run that finished early");
        fs::remove_dir_all(dir.path().join("state")).expect("rm state");
    }
    assert_outputs(&want, &outputs(dir.path()), "after crashes");
    eprintln!(
        "crash test: {events} events, {killed} kill -9s and {aborted} aborts inside checkpoints over {starts} starts \
         (workers cycling 1, 3, 2), {:.1} s in all; an uninterrupted run takes {:.2} s; output identical",
        started.elapsed().as_secs_f64(),
        full.as_secs_f64()
    );
}

/// Runs with the crash hook at checkpoint `n`; the process must abort
/// there. How many checkpoints a run writes depends on how far worker 0
/// sees the frontier jump between its looks, so a run that finishes before
/// its `n`-th checkpoint is started over with the hook at an earlier one.
fn abort_at(dir: &Path, workers: usize, n: u32, at: &str) {
    for k in (1..=n).rev() {
        let r = run_state(
            dir,
            workers,
            &[("LOCKSTEP_CRASH_AT_CHECKPOINT", format!("{k}:{at}"))],
        );
        if r.code != 0 {
            assert!(r.stderr.contains("aborting in checkpoint"), "{}", r.stderr);
            return;
        }
        fs::remove_dir_all(dir.join("state")).expect("rm state");
    }
    panic!("every run finished before its first checkpoint");
}

#[test]
fn restarting_on_1_then_3_then_2_workers_moves_key_groups_and_keeps_the_bytes() {
    let want = reference(60_000);
    let dir = crash_job(60_000);
    abort_at(dir.path(), 1, 2, "after");
    abort_at(dir.path(), 3, 2, "before");
    abort_at(dir.path(), 3, 1, "after");
    let r = run_state(dir.path(), 2, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("resumed after the checkpoint at epoch"),
        "{}",
        r.stderr
    );
    assert_outputs(&want, &outputs(dir.path()), "workers 1 -> 3 -> 2");
}

#[test]
fn a_finished_job_is_not_run_again_and_fresh_starts_it_over() {
    let want = reference(20_000);
    let dir = crash_job(20_000);
    let r = run_state(dir.path(), 2, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("checkpoints:"), "{}", r.stderr);
    assert_outputs(&want, &outputs(dir.path()), "with --state");
    let again = run_state(dir.path(), 1, &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stderr.contains("had already finished"),
        "{}",
        again.stderr
    );
    assert_outputs(&want, &outputs(dir.path()), "after a rerun");
    let fresh = lockstep(
        dir.path(),
        &[
            "run",
            "graph.json",
            "--state",
            "state",
            "--fresh",
            "--workers",
            "3",
        ],
    );
    assert_eq!(fresh.code, 0, "{}", fresh.stderr);
    assert!(!fresh.stderr.contains("resumed"), "{}", fresh.stderr);
    assert_outputs(&want, &outputs(dir.path()), "after --fresh");
}

/// The keys per node table that `lockstep state DIR keys` prints.
fn state_keys(dir: &Path) -> BTreeMap<String, u64> {
    let r = run_ok(dir, &["state", "state", "keys"]);
    r.stdout
        .lines()
        .filter_map(|l| {
            let (table, rest) = l.split_once('\t')?;
            Some((table.to_string(), rest.split(' ').next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn the_state_directory_holds_the_live_keys_once_however_long_the_run() {
    // A run with twice the events and many more checkpoints leaves the same
    // shape behind: windows and windowed joins hold no keys once the input
    // ended, the aggregate holds one entry per key, nothing is left
    // pending, and the history keeps at most 64 records per worker.
    for events in [40_000u64, 160_000] {
        let dir = crash_job(events);
        let r = run_state(dir.path(), 2, &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let live: u64 = r
            .stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix("state of per_bidder: at most "))
            .and_then(|l| l.split(", ").nth(1))
            .and_then(|l| l.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{}", r.stderr));
        let keys = state_keys(dir.path());
        assert_eq!(keys["per_bidder/keys"], live, "{keys:?}");
        for t in [
            "maxp/panes",
            "q7/records",
            "per_auction/panes",
            "sessions/sessions",
        ] {
            assert_eq!(keys[t], 0, "{t}: {keys:?}");
        }
        let c = run_ok(dir.path(), &["state", "state", "checkpoints"]);
        assert!(!c.stdout.contains("pending"), "{}", c.stdout);
        assert!(
            c.stdout.contains("complete checkpoint: finished"),
            "{}",
            c.stdout
        );
        let history = c
            .stdout
            .lines()
            .filter(|l| l.starts_with("  1") || l.starts_with("  finished"))
            .count();
        assert!(history <= 2 * 64, "{history} history records");
    }
}

#[test]
fn state_subcommands_show_checkpoints_offsets_keys_and_a_nodes_state() {
    let dir = crash_job(60_000);
    let r = run_state(dir.path(), 2, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let c = run_ok(dir.path(), &["state", "state", "checkpoints"]);
    assert!(c.stdout.contains("job: crash-test"), "{}", c.stdout);
    assert!(c.stdout.contains("workers: 2"), "{}", c.stdout);
    assert!(
        c.stdout.contains("complete checkpoint: finished"),
        "{}",
        c.stdout
    );
    assert!(
        c.stdout.contains("worker 0: finished") && c.stdout.contains("worker 1: finished"),
        "{}",
        c.stdout
    );
    // Offsets: every partition done, and each sink partition's committed
    // bytes are the file's bytes.
    let o = run_ok(dir.path(), &["state", "state", "offsets"]);
    let bid: Vec<&str> = o
        .stdout
        .lines()
        .filter(|l| l.starts_with("bid\t"))
        .collect();
    assert_eq!(bid.len(), 3, "one line per bid partition:\n{}", o.stdout);
    assert!(bid.iter().all(|l| l.ends_with("\ttrue")), "{}", o.stdout);
    let mut sinks = 0;
    for l in o.stdout.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        let file = match (f[0], f.get(1)) {
            ("per_auction_out", Some(p)) => format!("per_auction-{p}.csv"),
            ("per_bidder_out", Some(_)) => "per_bidder.jsonl".to_string(),
            ("q7_out", Some(_)) => "q7.jsonl".to_string(),
            _ => continue,
        };
        let len = fs::metadata(dir.path().join(&file)).expect("output").len();
        assert_eq!(f[2], len.to_string(), "{file}: {l}");
        sinks += 1;
    }
    assert_eq!(sinks, 4, "{}", o.stdout);
    let k = run_ok(dir.path(), &["state", "state", "keys", "--groups"]);
    let line = k
        .stdout
        .lines()
        .find(|l| l.starts_with("per_bidder/keys\t"))
        .unwrap_or_else(|| panic!("{}", k.stdout));
    let n: usize = line
        .split('\t')
        .nth(1)
        .and_then(|c| c.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("count");
    assert!(n > 0, "{line}");
    let groups: usize = k
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("per_bidder/keys\t"))
        .skip(1)
        .take_while(|l| l.starts_with("  group "))
        .map(|l| {
            l.rsplit('\t')
                .next()
                .and_then(|c| c.parse::<usize>().ok())
                .expect("group count")
        })
        .sum();
    assert_eq!(groups, n, "per-group counts add up");
    let d = run_ok(dir.path(), &["state", "state", "dump", "per_bidder"]);
    assert_eq!(d.stdout.lines().count(), n, "one line per key");
    for l in d.stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
        assert_eq!(v["table"], "keys");
        assert!(v["value"]["accs"].is_array(), "{l}");
    }
    let none = lockstep(dir.path(), &["state", "state", "dump", "bid"]);
    assert_eq!(none.code, 2);
    assert!(
        none.stderr.contains("keeps no state; nodes with state:"),
        "{}",
        none.stderr
    );
}

#[test]
fn a_changed_graph_is_refused_naming_what_changed_and_fresh_starts_over() {
    let dir = crash_job(20_000);
    abort_at(dir.path(), 1, 2, "after");
    let g = dir.path().join("graph.json");
    let text = fs::read_to_string(&g).expect("graph");
    fs::write(&g, text.replace("\"gap_ms\": 3000", "\"gap_ms\": 4000")).expect("write");
    let r = run_state(dir.path(), 1, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("made by a different job graph"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("node \"sessions\" changed"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--fresh"), "{}", r.stderr);
    let before = outputs(dir.path());
    // Refused before touching anything: outputs are as the crash left them.
    assert_outputs(&before, &outputs(dir.path()), "after the refusal");
    let f = lockstep(
        dir.path(),
        &["run", "graph.json", "--state", "state", "--fresh", "-q"],
    );
    assert_eq!(f.code, 0, "{}", f.stderr);
}

#[test]
fn a_manifest_from_a_newer_lockstep_is_refused() {
    use lockstep::state::store::{OpenMode, Store};
    let dir = crash_job(10_000);
    abort_at(dir.path(), 1, 1, "after");
    {
        let store = Store::open(&dir.path().join("state"), OpenMode::Existing).expect("open");
        let mut m = store.manifest().expect("read").expect("manifest");
        m.store_format += 1;
        m.written_by = "lockstep 9.0.0".into();
        store.write_manifest(&m).expect("write");
    }
    let r = run_state(dir.path(), 1, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "written by a newer lockstep (lockstep 9.0.0; state format 2, this version reads 1)"
        ),
        "{}",
        r.stderr
    );
}

#[test]
fn a_damaged_database_is_a_clear_error_and_a_torn_log_tail_resumes_exactly() {
    let want = reference(30_000);
    // A torn write at the end of the log (a crash in the middle of a write):
    // the store opens at the last complete batch and the output is exact.
    let dir = crash_job(30_000);
    abort_at(dir.path(), 1, 3, "after");
    let log = fs::read_dir(dir.path().join("state"))
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max_by_key(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a write-ahead log");
    let len = fs::metadata(&log).expect("len").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .expect("open")
        .set_len(len - 7)
        .expect("truncate");
    let r = run_state(dir.path(), 2, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_outputs(&want, &outputs(dir.path()), "after a torn log tail");

    // A damaged CURRENT file (it names the database's manifest).
    let dir = crash_job(10_000);
    abort_at(dir.path(), 1, 1, "after");
    fs::write(dir.path().join("state/CURRENT"), "garbage\n").expect("write");
    let r = run_state(dir.path(), 1, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot open the database"),
        "{}",
        r.stderr
    );
    let s = lockstep(dir.path(), &["state", "state", "checkpoints"]);
    assert_eq!(s.code, 2, "{}", s.stderr);
    assert!(
        s.stderr.contains("cannot open the database"),
        "{}",
        s.stderr
    );

    // A truncated database manifest.
    let dir = crash_job(10_000);
    abort_at(dir.path(), 1, 1, "after");
    let manifest = fs::read_dir(dir.path().join("state"))
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("MANIFEST-"))
        })
        .expect("MANIFEST");
    fs::OpenOptions::new()
        .write(true)
        .open(&manifest)
        .expect("open")
        .set_len(10)
        .expect("truncate");
    let r = run_state(dir.path(), 1, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("is damaged") || r.stderr.contains("cannot open the database"),
        "{}",
        r.stderr
    );
}

#[test]
fn missing_and_foreign_directories_are_clear_errors() {
    let dir = crash_job(1_000);
    let r = lockstep(dir.path(), &["state", "nowhere", "checkpoints"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("state nowhere: no such directory"),
        "{}",
        r.stderr
    );
    let r = lockstep(
        dir.path(),
        &["run", "graph.json", "--state", "no/such/parent"],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("cannot create the directory") && r.stderr.contains("parent"),
        "{}",
        r.stderr
    );
    fs::create_dir(dir.path().join("other")).expect("mkdir");
    write(&dir.path().join("other"), "notes.txt", "mine");
    let r = lockstep(dir.path(), &["run", "graph.json", "--state", "other"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("not empty and holds no lockstep state"),
        "{}",
        r.stderr
    );
    assert!(dir.path().join("other/notes.txt").exists());
}

#[test]
fn a_directory_in_use_by_a_running_job_is_refused() {
    let dir = crash_job(3_000_000);
    let mut job = Command::new(bin())
        .args(["run", "graph.json", "--state", "state", "-q"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let t = Instant::now();
    while !dir.path().join("state/LOCK").exists()
        || lockstep(dir.path(), &["state", "state", "checkpoints"]).code == 0
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the job never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = lockstep(dir.path(), &["state", "state", "checkpoints"]);
    let r = run_state(dir.path(), 1, &[]);
    job.kill().expect("kill");
    job.wait().expect("reap");
    assert_eq!(s.code, 2);
    assert!(
        s.stderr.contains("in use by another running lockstep job"),
        "{}",
        s.stderr
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("in use by another running lockstep job"),
        "{}",
        r.stderr
    );
}

#[test]
fn sink_files_changed_behind_the_jobs_back_are_clear_errors() {
    let dir = crash_job(40_000);
    abort_at(dir.path(), 1, 4, "after");
    // The committed bytes of per_bidder.jsonl, from `lockstep state offsets`.
    let o = run_ok(dir.path(), &["state", "state", "offsets"]);
    let committed: u64 = o
        .stdout
        .lines()
        .find(|l| l.starts_with("per_bidder_out\t"))
        .and_then(|l| l.split('\t').nth(2))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", o.stdout));
    assert!(
        committed > 10,
        "a checkpoint committed output: {}",
        o.stdout
    );
    let path: PathBuf = dir.path().join("per_bidder.jsonl");
    let bytes = fs::read(&path).expect("read");
    let mut changed = bytes.clone();
    changed[1] = b'X';
    fs::write(&path, &changed).expect("write");
    let r = run_state(dir.path(), 1, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("are not the bytes the job wrote"),
        "{}",
        r.stderr
    );
    fs::write(&path, &bytes[..5]).expect("write");
    let r = run_state(dir.path(), 1, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("has 5 bytes, but the checkpoint says"),
        "{}",
        r.stderr
    );
}

#[test]
fn standard_input_and_output_cannot_be_checkpointed() {
    let dir = tempdir();
    write(
        dir.path(),
        "g.json",
        r#"{"version": 1, "time": {"epoch_records": 10},
            "sources": {"in": {"type": "stdin", "format": "jsonl", "schema": {"n": "int"}}},
            "sinks": {"out": {"type": "stdout", "input": "in"}}}"#,
    );
    let r = lockstep(dir.path(), &["run", "g.json", "--state", "st"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("source \"in\" reads standard input, which cannot be replayed"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("sink \"out\" writes standard output, which cannot be rolled back"),
        "{}",
        r.stderr
    );
    assert!(!dir.path().join("st").exists(), "nothing is created");
}

/// Unmounts a test file system when dropped (also when the test fails).
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_during_a_checkpoint_is_a_clear_error_and_the_last_checkpoint_stays_usable() {
    let want = reference(100_000);
    let dir = crash_job(100_000);
    let state = dir.path().join("state");
    fs::create_dir(&state).expect("mkdir");
    // A 1 MiB file system for the state: the first large checkpoint fills it.
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "lockstep-full-disk-test"])
        .arg(&state)
        .status()
        .expect("run mount");
    assert!(
        mounted.success(),
        "this test mounts a 1 MiB tmpfs to fill a disk, which needs root (CI and the test command run as root)"
    );
    let guard = Mounted(state.clone());
    let r = run_state(dir.path(), 2, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("failed"), "{}", r.stderr);
    assert!(r.stderr.contains("No space left on device"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("the disk is full; free some space and run the same command again"),
        "{}",
        r.stderr
    );
    // "Free some space": move the state to a disk with room, and resume.
    let moved = dir.path().join("moved");
    fs::create_dir(&moved).expect("mkdir");
    for e in fs::read_dir(&state).expect("ls") {
        let p = e.expect("entry").path();
        fs::copy(&p, moved.join(p.file_name().expect("name"))).expect("copy");
    }
    drop(guard);
    fs::remove_dir(&state).expect("rmdir");
    fs::rename(&moved, &state).expect("mv");
    let again = run_state(dir.path(), 1, &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_outputs(&want, &outputs(dir.path()), "after a full disk");
}

#[test]
fn a_graph_whose_elements_were_only_reordered_resumes() {
    let want = reference(40_000);
    let dir = crash_job(40_000);
    // Before the batch: a crash in the final checkpoint still leaves the
    // job unfinished, to be resumed.
    abort_at(dir.path(), 2, 3, "before");
    // Swap the two sources and two of the nodes: the same job, in another
    // order. Table ids follow the stored manifest, not the file's order.
    let g = dir.path().join("graph.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&g).expect("graph")).expect("json");
    for section in ["sources", "nodes"] {
        let m = v[section].as_object().expect("section").clone();
        let mut entries: Vec<(String, serde_json::Value)> = m.into_iter().collect();
        entries.reverse();
        v[section] = serde_json::Value::Object(entries.into_iter().collect());
    }
    fs::write(&g, serde_json::to_string_pretty(&v).expect("json")).expect("write");
    let r = run_state(dir.path(), 1, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("resumed after the checkpoint"),
        "{}",
        r.stderr
    );
    assert_outputs(&want, &outputs(dir.path()), "after reordering the graph");
}

#[test]
fn split_boundaries_are_logged_so_an_input_that_grew_is_neither_skipped_nor_doubled() {
    let dir = tempdir();
    let line = |i: u64| format!("{{\"id\":{i},\"ts\":{}}}\n", 1_700_000_000_000u64 + i * 7);
    let first: String = (0..60_000).map(line).collect();
    write(dir.path(), "in.jsonl", &first);
    write(
        dir.path(),
        "graph.json",
        r#"{"version": 1, "name": "split", "time": {"epoch_ms": 1000},
            "sources": {"in": {"type": "file", "path": "in.jsonl", "split": 3,
                               "schema": {"id": "int", "ts": "timestamp"}, "event_time": {"field": "ts"}}},
            "nodes": {"n": {"type": "aggregate", "input": "in", "key": ["id"], "aggregate": {"c": "count(*)"}}},
            "sinks": {"out": {"type": "file", "input": "n", "path": "out.jsonl"}}}"#,
    );
    abort_at(dir.path(), 1, 3, "after");
    // The input grows before the restart: appended records are read once
    // (by the last range), the rest exactly as before.
    let more: String = (60_000..70_000).map(line).collect();
    fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("in.jsonl"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, more.as_bytes()))
        .expect("append");
    let r = run_state(dir.path(), 2, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("resumed after the checkpoint"),
        "{}",
        r.stderr
    );
    let out = fs::read_to_string(dir.path().join("out.jsonl")).expect("out");
    // Every id exactly once, each counted once.
    let mut ids: Vec<u64> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            assert_eq!(v["c"], 1, "{l}");
            v["id"].as_u64().expect("id")
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..70_000).collect::<Vec<_>>());
}

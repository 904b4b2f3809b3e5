//! The checkpoint protocol against a model: workers change keyed state epoch
//! by epoch and checkpoint at their own pace (some lag behind, markers
//! arrive late or not at all), the process "crashes" at a random point
//! (between a worker's writes and its checkpoint commit, or between two
//! workers' commits), and a restart on a random number of workers must
//! restore exactly the model's state at the last checkpoint every worker
//! completed, with nothing pending and each key stored once.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use lockstep_state::store::{Manifest, OpenMode, Store, STORE_FORMAT};
use lockstep_state::{Checkpointer, KeyGroups, KeyedState, StateDef};
use proptest::prelude::*;

const T: StateDef<Vec<u8>, u64> = StateDef::new("t");
const GROUPS: u32 = 8;

fn manifest(workers: u32) -> Manifest {
    Manifest {
        store_format: STORE_FORMAT,
        output_format: 1,
        key_groups: GROUPS,
        workers,
        processes: 1,
        process: 0,
        job: "model".into(),
        shape: vec![],
        tables: vec!["node/n/t".into()],
        written_by: "test".into(),
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Worker-independent: set key (group, k) to v.
    Put(u32, u8, u64),
    Delete(u32, u8),
}

#[derive(Clone, Debug)]
struct Epoch {
    ops: Vec<Op>,
    /// Whether worker 0 decides this epoch is a checkpoint.
    decide: bool,
    /// Which workers write their checkpoint after this epoch.
    writes: Vec<bool>,
    /// Which workers' markers reach every other worker after this epoch.
    deliver: Vec<bool>,
}

fn epoch(workers: usize) -> impl Strategy<Value = Epoch> {
    (
        proptest::collection::vec(
            prop_oneof![
                3 => (0..GROUPS, 0u8..6, any::<u64>()).prop_map(|(g, k, v)| Op::Put(g, k, v)),
                1 => (0..GROUPS, 0u8..6).prop_map(|(g, k)| Op::Delete(g, k)),
            ],
            0..12,
        ),
        proptest::collection::vec(proptest::bool::weighted(0.7), workers),
        proptest::collection::vec(proptest::bool::weighted(0.6), workers),
        proptest::bool::weighted(0.7),
    )
        .prop_map(|(ops, writes, deliver, decide)| Epoch {
            ops,
            decide,
            writes,
            deliver,
        })
}

fn case() -> impl Strategy<Value = (usize, Vec<Epoch>, usize, bool, usize)> {
    (1usize..=3).prop_flat_map(|w| {
        (
            Just(w),
            proptest::collection::vec(epoch(w), 1..25),
            1usize..=3,
            any::<bool>(),
            // Fold at every checkpoint, after a few, or never before the end.
            proptest::sample::select(vec![0usize, 200, usize::MAX]),
        )
    })
}

type Model = BTreeMap<(u32, Vec<u8>), u64>;

/// Runs `epochs` on `workers` workers over `dir`; returns the model state
/// after each epoch. Everything is dropped at the end: the crash.
fn run(
    dir: &std::path::Path,
    workers: usize,
    epochs: &[Epoch],
    resume: Option<u64>,
    base: &Model,
    first: u64,
    fold: usize,
) -> Vec<Model> {
    let store = Arc::new(Store::open(dir, OpenMode::Create).expect("open"));
    let groups = KeyGroups::new(GROUPS);
    let tables = Arc::new(vec!["node/n/t".to_string()]);
    let cks: Vec<Rc<Checkpointer>> = (0..workers)
        .map(|w| {
            Rc::new(
                Checkpointer::new(
                    Arc::clone(&store),
                    w as u32,
                    workers as u32,
                    1,
                    GROUPS,
                    Arc::clone(&tables),
                    resume,
                )
                .with_fold_bytes(fold),
            )
        })
        .collect();
    let handles: Vec<_> = cks
        .iter()
        .map(|c| c.table("node/n/t", &T).expect("table"))
        .collect();
    let mut states: Vec<KeyedState<Vec<u8>, u64>> = (0..workers)
        .map(|w| {
            let mut s = KeyedState::new(&T);
            handles[w]
                .restore(&mut s, |g| groups.owner(g, workers) == w)
                .expect("restore");
            s
        })
        .collect();
    let restored: Model = states
        .iter()
        .flat_map(|s| s.iter().map(|(g, k, v)| ((g, k.clone()), *v)))
        .collect();
    assert_eq!(&restored, base, "restored state differs from the model");
    let mut model = base.clone();
    let mut snapshots = Vec::new();
    for (i, ep) in epochs.iter().enumerate() {
        let e = first + i as u64;
        for op in &ep.ops {
            match op {
                Op::Put(g, k, v) => {
                    let w = groups.owner(*g, workers);
                    states[w].put(*g, vec![*k], *v);
                    model.insert((*g, vec![*k]), *v);
                }
                Op::Delete(g, k) => {
                    let w = groups.owner(*g, workers);
                    states[w].delete(*g, &vec![*k]);
                    model.remove(&(*g, vec![*k]));
                }
            }
        }
        for w in 0..workers {
            handles[w].stage(e, &mut states[w]).expect("stage");
        }
        if ep.decide {
            // Worker 0 decides; the decision reaches every worker.
            let c = cks[0].due(e + 1);
            assert_eq!(c, Some(e));
            for ck in &cks {
                ck.decide(e);
            }
        }
        for (w, ck) in cks.iter().enumerate() {
            if ep.writes[w % ep.writes.len()] {
                // A lagging worker catches up: every decided checkpoint in turn.
                while let Some(c) = ck.next_ready(Some(e + 1)) {
                    ck.checkpoint(c).expect("checkpoint");
                }
            }
        }
        for w in 0..workers {
            if ep.deliver[w % ep.deliver.len()] {
                if let Some(m) = cks[w].take_outbox().last() {
                    for other in &cks {
                        other.observe(w as u32, *m);
                    }
                }
            }
        }
        snapshots.push(model.clone());
    }
    snapshots
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn restart_restores_the_last_complete_checkpoint((workers, epochs, new_workers, again, fold) in case()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("state");
        {
            let store = Store::open(&db, OpenMode::Create).expect("open");
            store.settle(store.complete(0..workers as u32).expect("markers"), &manifest(workers as u32)).expect("settle");
        }
        let snaps = run(&db, workers, &epochs, None, &Model::new(), 0, fold);
        // The crash: every worker's staged, unwritten changes are lost.
        let store = Store::open(&db, OpenMode::Create).expect("reopen");
        let complete = store.complete(0..workers as u32).expect("markers");
        let resume = store.settle(complete, &manifest(new_workers as u32)).expect("settle");
        prop_assert_eq!(resume, complete);
        prop_assert!(store.pending_counts().expect("pending").is_empty());
        let expected = resume.map_or_else(Model::new, |r| snaps[r as usize].clone());
        let mut stored = 0usize;
        store.scan_table(0, &mut |_, _, _| { stored += 1; Ok(()) }).expect("scan");
        prop_assert_eq!(stored, expected.len(), "each key is stored once");
        drop(store);
        if again {
            // Run on from the restored state with the new worker count and
            // crash again: the second restart is as exact as the first.
            let first = resume.map_or(0, |r| r + 1);
            let snaps2 = run(&db, new_workers, &epochs, resume, &expected, first, fold);
            let store = Store::open(&db, OpenMode::Create).expect("reopen");
            let complete2 = store.complete(0..new_workers as u32).expect("markers");
            let resume2 = store.settle(complete2, &manifest(1)).expect("settle");
            let expected2 = match resume2 {
                None => Model::new(),
                Some(r) if r < first => expected.clone(),
                Some(r) => snaps2[(r - first) as usize].clone(),
            };
            drop(store);
            run(&db, 1, &[], resume2, &expected2, resume2.map_or(0, |r| r + 1), fold);
        } else {
            run(&db, new_workers, &[], resume, &expected, 0, fold);
        }
    }
}

//! Cluster mode (`--processes N --process-id I --hosts FILE`): the same
//! bytes as one process, stdout free of timely's connection messages,
//! kill -9 of one process and a restart of all resumes exactly once, and
//! clear errors for mismatched processes, an unreachable peer and a port in
//! use.

use std::fs;
use std::time::{Duration, Instant};

use super::common::{
    assert_outputs, free_port, hosts_file, lockstep, outputs, run_cluster, run_ok, spawn_process,
    spawn_process_env, tempdir, wait_all, write, write_crash_graph,
};

#[test]
fn two_processes_write_the_bytes_of_one_process() {
    let one = tempdir();
    write_crash_graph(one.path(), 30_000);
    run_ok(one.path(), &["run", "graph.json", "-q"]);
    let want = outputs(one.path());
    assert!(want.values().filter(|b| b.len() > 100).count() >= 4);
    for (n, w) in [(2, 2), (3, 1)] {
        let dir = tempdir();
        write_crash_graph(dir.path(), 30_000);
        let runs = run_cluster(dir.path(), "graph.json", n, w, &["-q"]);
        for (i, r) in runs.iter().enumerate() {
            assert_eq!(r.code, 0, "process {i}: {}", r.stderr);
        }
        assert_outputs(
            &want,
            &outputs(dir.path()),
            &format!("{n} processes × {w} workers"),
        );
    }
}

#[test]
fn a_stdout_sink_in_a_cluster_gets_records_only() {
    let dir = tempdir();
    write(
        dir.path(),
        "g.json",
        r#"{"version": 1, "name": "s", "time": {"epoch_records": 10},
            "sources": {"g": {"type": "generator", "count": 500, "partitions": 3,
                              "fields": {"i": {"sequence": {}}}}},
            "nodes": {},
            "sinks": {"o": {"type": "stdout", "input": "g"}}}"#,
    );
    let single = run_ok(dir.path(), &["run", "g.json", "-q"]).stdout;
    assert_eq!(single.lines().count(), 500);
    let runs = run_cluster(dir.path(), "g.json", 2, 2, &["-q"]);
    for r in &runs {
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    // The writer lives in one process; the other prints nothing, and
    // neither prints timely's connection messages.
    let outs: Vec<&str> = runs.iter().map(|r| r.stdout.as_str()).collect();
    assert!(
        outs.iter().filter(|o| o.is_empty()).count() == 1,
        "{outs:?}"
    );
    assert_eq!(outs.concat(), single);
}

#[test]
fn kill_9_of_one_process_and_a_restart_of_all_resumes_exactly_once() {
    let events = 150_000;
    let want = {
        let d = tempdir();
        write_crash_graph(d.path(), events);
        run_ok(d.path(), &["run", "graph.json", "-q", "--workers", "2"]);
        outputs(d.path())
    };
    let dir = tempdir();
    write_crash_graph(dir.path(), events);
    let hosts = hosts_file(dir.path(), 2);
    let args = |i: usize| -> Vec<String> {
        vec![
            "--workers".into(),
            "2".into(),
            "--state".into(),
            format!("state{i}"),
            "-q".into(),
            "--connect-timeout".into(),
            "10".into(),
        ]
    };
    let mut kills = 0;
    let mut starts = 0;
    let mut seed = 11u64;
    loop {
        starts += 1;
        assert!(starts < 40, "no progress after {starts} starts");
        let children: Vec<_> = (0..2)
            .map(|i| {
                let a = args(i);
                let a: Vec<&str> = a.iter().map(String::as_str).collect();
                spawn_process(dir.path(), "graph.json", 2, i, &hosts, &a)
            })
            .collect();
        let mut children = children;
        if kills < 5 {
            // Kill one process (alternating) at a pseudo-random instant
            // between 1.2 s (the cluster connects in about 1 s) and 3 s.
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let delay = Duration::from_millis(1200 + (seed >> 33) % 1800);
            let t = Instant::now();
            while t.elapsed() < delay
                && children
                    .iter_mut()
                    .any(|c| c.try_wait().expect("w").is_none())
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            let victim = kills % 2;
            if children[victim].try_wait().expect("w").is_none() {
                children[victim].kill().expect("kill -9");
                kills += 1;
                // The other process goes down with it (timely's model).
                let runs = wait_all(children, Duration::from_secs(60));
                let survivor = &runs[1 - victim];
                // It stops with the cluster's error; or it had just
                // finished; or (killed before the cluster connected) it
                // gave up waiting for its peer.
                assert!(
                    survivor.code == 0
                        || (survivor.code == 1 && survivor.stderr.contains("lost the cluster"))
                        || (survivor.code == 3 && survivor.stderr.contains("did not connect")),
                    "the peer of a killed process stops: {}",
                    survivor.stderr
                );
                continue;
            }
        }
        let runs = wait_all(children, Duration::from_secs(120));
        for (i, r) in runs.iter().enumerate() {
            assert_eq!(r.code, 0, "process {i} (start {starts}): {}", r.stderr);
        }
        if kills >= 5 {
            break;
        }
        // Finished before the kills: start over.
        for i in 0..2 {
            fs::remove_dir_all(dir.path().join(format!("state{i}"))).expect("rm");
        }
    }
    assert_outputs(
        &want,
        &outputs(dir.path()),
        "after 5 kills across processes",
    );
}

#[test]
fn processes_with_different_graphs_or_workers_stop_with_one_clear_error() {
    let dir = tempdir();
    let g = |n: u64| {
        format!(
            r#"{{"version": 1, "name": "s", "time": {{"epoch_records": 10}},
                "sources": {{"g": {{"type": "generator", "count": {n},
                                  "fields": {{"i": {{"sequence": {{}}}}}}}}}},
                "nodes": {{}},
                "sinks": {{"o": {{"type": "null", "input": "g"}}}}}}"#
        )
    };
    write(dir.path(), "a.json", &g(100));
    write(dir.path(), "b.json", &g(200));
    let hosts = hosts_file(dir.path(), 2);
    let t = Instant::now();
    let runs = wait_all(
        vec![
            spawn_process(dir.path(), "a.json", 2, 0, &hosts, &["--workers", "2"]),
            spawn_process(dir.path(), "b.json", 2, 1, &hosts, &["--workers", "2"]),
        ],
        Duration::from_secs(60),
    );
    assert!(t.elapsed() < Duration::from_secs(30));
    for r in &runs {
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(
            r.stderr
                .contains("process 1 runs a different graph than process 0"),
            "{}",
            r.stderr
        );
        assert!(
            r.stderr
                .contains("Start every process with the same graph file"),
            "{}",
            r.stderr
        );
    }
    // Different worker counts break timely's own connection set-up before
    // the processes can compare hellos: every process stops, naming it.
    let hosts = hosts_file(dir.path(), 2);
    let runs = wait_all(
        vec![
            spawn_process(dir.path(), "a.json", 2, 0, &hosts, &["--workers", "2"]),
            spawn_process(dir.path(), "a.json", 2, 1, &hosts, &["--workers", "1"]),
        ],
        Duration::from_secs(60),
    );
    for r in &runs {
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(r.stderr.contains("lost the cluster"), "{}", r.stderr);
        assert!(r.stderr.contains("different --workers"), "{}", r.stderr);
        assert!(!r.stderr.contains("stack backtrace"), "{}", r.stderr);
    }
}

#[test]
fn an_unreachable_peer_is_a_timeout_and_a_port_in_use_an_error() {
    let dir = tempdir();
    write(
        dir.path(),
        "g.json",
        r#"{"version": 1, "name": "s", "time": {"epoch_records": 10},
            "sources": {"g": {"type": "generator", "count": 10, "fields": {"i": {"sequence": {}}}}},
            "nodes": {}, "sinks": {"o": {"type": "null", "input": "g"}}}"#,
    );
    let hosts = hosts_file(dir.path(), 2);
    let t = Instant::now();
    let runs = wait_all(
        vec![spawn_process(
            dir.path(),
            "g.json",
            2,
            1,
            &hosts,
            &["--connect-timeout", "2"],
        )],
        Duration::from_secs(30),
    );
    assert!(t.elapsed() < Duration::from_secs(15));
    assert_eq!(runs[0].code, 3, "{}", runs[0].stderr);
    assert!(
        runs[0]
            .stderr
            .contains("the cluster did not connect within 2 s")
            && runs[0].stderr.contains("process 0 at 127.0.0.1:"),
        "{}",
        runs[0].stderr
    );
    assert!(runs[0].stdout.is_empty(), "{}", runs[0].stdout);

    let port = free_port();
    let _busy = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind");
    write(
        dir.path(),
        "hosts2",
        &format!("127.0.0.1:{port}\n127.0.0.1:{}\n", free_port()),
    );
    let r = lockstep(
        dir.path(),
        &[
            "run",
            "g.json",
            "--processes",
            "2",
            "--process-id",
            "0",
            "--hosts",
            "hosts2",
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{}",
        r.stderr
    );

    let r = lockstep(
        dir.path(),
        &[
            "run",
            "g.json",
            "--processes",
            "2",
            "--process-id",
            "2",
            "--hosts",
            "hosts2",
        ],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("--process-id 2 is out of range"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_cluster_resumes_with_other_workers_per_process_and_more_processes_moving_state() {
    let events = 400_000;
    let want = {
        let d = tempdir();
        write_crash_graph(d.path(), events);
        run_ok(d.path(), &["run", "graph.json", "-q", "--workers", "2"]);
        outputs(d.path())
    };
    let dir = tempdir();
    write_crash_graph(dir.path(), events);
    // (processes, workers per process) of each start. Each but the last
    // crashes: process 0 aborts inside worker 0's 3rd checkpoint, before its batch (the
    // crash-test hook; a kill -9 there), taking the cluster down, so every
    // restart resumes from a checkpoint with state in it.
    let shapes = [(2usize, 2usize), (2, 1), (3, 1), (3, 2)];
    let mut kills = 0;
    for (k, &(n, w)) in shapes.iter().enumerate() {
        let hosts = hosts_file(dir.path(), n);
        let last = k + 1 == shapes.len();
        let children: Vec<_> = (0..n)
            .map(|i| {
                let state = format!("state{i}");
                let ws = w.to_string();
                let args = [
                    "--workers",
                    &ws,
                    "--state",
                    &state,
                    "--connect-timeout",
                    "20",
                ];
                let env: &[(&str, &str)] = if i == 0 && !last {
                    &[("LOCKSTEP_CRASH_AT_CHECKPOINT", "3:before")]
                } else {
                    &[]
                };
                spawn_process_env(dir.path(), "graph.json", n, i, &hosts, &args, env)
            })
            .collect();
        let runs = wait_all(children, Duration::from_secs(120));
        if !last {
            assert!(
                runs[0].stderr.contains("aborting in checkpoint 3"),
                "{n} × {w}: {}",
                runs[0].stderr
            );
            kills += 1;
        } else {
            for (i, r) in runs.iter().enumerate() {
                assert_eq!(r.code, 0, "process {i} of {n} × {w}: {}", r.stderr);
                // It resumed from a checkpoint of the 3 × 1 run, not
                // from the beginning.
                assert!(
                    r.stderr.contains("resumed after the checkpoint at epoch"),
                    "{}",
                    r.stderr
                );
            }
        }
    }
    assert_eq!(kills, 3);
    assert_outputs(
        &want,
        &outputs(dir.path()),
        "after rescaling 2×2 → 2×1 → 3×1 → 3×2",
    );
}

#[test]
fn a_cluster_cannot_shrink_below_the_processes_holding_its_state() {
    let dir = tempdir();
    write_crash_graph(dir.path(), 200_000);
    let hosts = hosts_file(dir.path(), 3);
    let children: Vec<_> = (0..3)
        .map(|i| {
            let state = format!("state{i}");
            let env: &[(&str, &str)] = if i == 0 {
                &[("LOCKSTEP_CRASH_AT_CHECKPOINT", "2:after")]
            } else {
                &[]
            };
            spawn_process_env(
                dir.path(),
                "graph.json",
                3,
                i,
                &hosts,
                &["--state", &state, "-q"],
                env,
            )
        })
        .collect();
    let runs = wait_all(children, Duration::from_secs(60));
    assert!(
        runs[0].stderr.contains("aborting in checkpoint 2"),
        "{}",
        runs[0].stderr
    );
    let hosts = hosts_file(dir.path(), 2);
    let runs = wait_all(
        (0..2)
            .map(|i| {
                let state = format!("state{i}");
                spawn_process(dir.path(), "graph.json", 2, i, &hosts, &["--state", &state])
            })
            .collect(),
        Duration::from_secs(60),
    );
    for r in &runs {
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(
            r.stderr
                .contains("the job's state is spread over 3 processes, and this cluster has 2"),
            "{}",
            r.stderr
        );
    }
}

//! Broken graphs, table-driven: each `tests/golden/errors/<case>/graph.json`
//! fails validation with exactly the messages in its `expected_error.txt`
//! (what, where as path and line:column, how to fix), exit code 2, and no
//! panic. `run` refuses the same graph with the same messages.

use std::fs;

use super::common::*;

#[test]
fn broken_graphs_give_their_expected_errors() {
    let dir = root().join("tests/golden/errors");
    let mut cases: Vec<_> = fs::read_dir(&dir)
        .expect("cases")
        .flatten()
        .map(|e| e.path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 25, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let want = read_text(&case.join("expected_error.txt"));
        for args in [&["validate", "graph.json"][..], &["run", "graph.json"][..]] {
            let r = lockstep(case, args);
            if r.code != 2 || r.stderr != want || r.stderr.contains("panicked") {
                failures.push(format!(
                    "{} ({}): exit {}\n--- want\n{want}--- got\n{}",
                    case.file_name().unwrap_or_default().to_string_lossy(),
                    args[0],
                    r.code,
                    r.stderr
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_missing_graph_file_is_a_clear_error() {
    let tmp = tempdir();
    let r = lockstep(tmp.path(), &["validate", "nope.json"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .starts_with("nope.json: (top level): cannot read the graph file:"),
        "{}",
        r.stderr
    );
}

#[test]
fn usage_errors_exit_2() {
    let tmp = tempdir();
    let r = lockstep(tmp.path(), &["run"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = lockstep(tmp.path(), &["frobnicate"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    write(tmp.path(), "g.json", "{}");
    let r = lockstep(tmp.path(), &["run", "g.json", "--workers", "0"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("--workers must be at least 1"),
        "{}",
        r.stderr
    );
}

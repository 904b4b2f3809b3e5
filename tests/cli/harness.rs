//! `lockstep test`: the repo's examples pass, a wrong expectation fails with
//! a diff naming the first differing record, JUnit output is valid XML,
//! concurrent runs report what serial runs report, and golden files are
//! rewritten only with `--update`.

use std::path::Path;

use super::common::*;

/// A copy of the clicks example (graph, data, test file, expected/).
fn clicks_copy() -> tempfile::TempDir {
    let dir = tempdir();
    copy_dir(&root().join("examples/clicks"), dir.path());
    dir
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = read_text(path);
    assert!(text.contains(from), "{} lacks {from}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn the_examples_pass_under_lockstep_test() {
    let r = lockstep(
        &root(),
        &[
            "test",
            "examples/clicks/graph.json",
            "examples/sensors/graph.json",
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("test result: ok. 6 passed, 0 failed, 0 errors"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(
            "  ok    big https clicks are counted per user and 2 s window (1, 4 workers)"
        ),
        "{}",
        r.stdout
    );
}

#[test]
fn a_wrong_expectation_fails_with_a_diff_naming_the_first_differing_record() {
    let dir = clicks_copy();
    let tests = dir.path().join("graph.test.json");
    // The first window's kb sum is 6, not 7.
    edit(
        &tests,
        "\"clicks\": 2, \"kb\": 6",
        "\"clicks\": 2, \"kb\": 7",
    );
    let r = lockstep(dir.path(), &["test", "graph.json"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let want = "  FAIL  big https clicks are counted per user and 2 s window (1, 4 workers)\n        \"per_user_out\": first difference at record 1 (2 expected, 2 got), in epoch 1700000001:\n          expected  {\"user\":\"ANN\",\"window_start\":1700000000000,\"window_end\":1700000002000,\"clicks\":2,\"kb\":7}\n          got       {\"user\":\"ANN\",\"window_start\":1700000000000,\"window_end\":1700000002000,\"clicks\":2,\"kb\":6}\n";
    assert!(r.stdout.contains(want), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("test result: FAILED. 3 passed, 1 failed, 0 errors"),
        "{}",
        r.stdout
    );

    // A golden file that differs in its second line.
    let dir = clicks_copy();
    let golden = dir.path().join("expected/per_user.out.jsonl");
    edit(&golden, "\"user\":\"DEE\"", "\"user\":\"ZED\"");
    let r = lockstep(dir.path(), &["test", "graph.json"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("first difference at record 2 (6 golden, 6 got), in epoch 1700000001:\n          golden  {\"user\":\"ZED\""),
        "{}",
        r.stdout
    );
    // Missing records are named too.
    let dir = clicks_copy();
    let tests = dir.path().join("graph.test.json");
    edit(
        &tests,
        "\"order\": \"any\",\n          \"records\": [",
        "\"order\": \"any\",\n          \"records\": [ { \"user\": \"X\", \"kb\": 1, \"ts\": 1 },",
    );
    let r = lockstep(dir.path(), &["test", "graph.json"]);
    assert!(
        r.stdout.contains("\"kb\" (any order): 1 record missing, 0 records unexpected (4 expected, 3 got)\n          missing    {\"user\":\"X\",\"kb\":1,\"ts\":1}"),
        "{}",
        r.stdout
    );
}

/// The attributes of the `tag` elements of an XML document.
fn elements<'a>(doc: &'a roxmltree::Document<'a>, tag: &str) -> Vec<roxmltree::Node<'a, 'a>> {
    doc.descendants().filter(|n| n.has_tag_name(tag)).collect()
}

#[test]
fn junit_output_is_valid_xml_with_one_testcase_per_case() {
    let dir = clicks_copy();
    edit(
        &dir.path().join("graph.test.json"),
        "\"kb\": 6",
        "\"kb\": 7",
    );
    // A second file whose tests do not load.
    write(
        dir.path(),
        "bad.json",
        r#"{"version":1,"time":{"epoch_records":10},
            "sources":{"s":{"type":"stdin","schema":{"a":"int"}}},
            "sinks":{"o":{"type":"stdout","input":"s"}},
            "tests":{"needs input <&>":{"expect":{"o":[]}}}}"#,
    );
    let r = lockstep(
        dir.path(),
        &["test", "graph.json", "bad.json", "--junit", "junit.xml"],
    );
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("source \"s\" reads standard input, which a test cannot replay; give its records in inputs.s"),
        "{}",
        r.stdout
    );
    let xml = read_text(&dir.path().join("junit.xml"));
    let doc = roxmltree::Document::parse(&xml).expect("junit.xml is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(root.attribute("tests"), Some("5"));
    assert_eq!(root.attribute("failures"), Some("1"));
    assert_eq!(root.attribute("errors"), Some("1"));
    let suites = elements(&doc, "testsuite");
    assert_eq!(suites.len(), 2);
    assert_eq!(suites[0].attribute("name"), Some("graph.json"));
    let cases = elements(&doc, "testcase");
    let names: Vec<&str> = cases.iter().filter_map(|c| c.attribute("name")).collect();
    assert_eq!(
        names,
        [
            "the example input gives the checked-in output",
            "big https clicks are counted per user and 2 s window",
            "a line that is not JSON goes to clicks.errors",
            "a click behind the watermark is late",
            "(load)"
        ]
    );
    let failure = cases[1]
        .children()
        .find(|n| n.has_tag_name("failure"))
        .expect("the failing case has a failure element");
    assert!(failure
        .text()
        .unwrap_or_default()
        .contains("first difference at record 1"));
    assert!(
        cases[0]
            .children()
            .all(|n| !n.has_tag_name("failure") && !n.has_tag_name("error")),
        "a passing case has no failure"
    );
    let desc = cases[0]
        .children()
        .find(|n| n.has_tag_name("system-out"))
        .expect("the description");
    assert!(desc
        .text()
        .unwrap()
        .starts_with("clicks.jsonl through the whole graph"));
    for c in &cases {
        let t: f64 = c.attribute("time").unwrap().parse().unwrap();
        assert!(t >= 0.0);
    }
}

/// JUnit XML without its time attributes.
fn without_times(xml: &str) -> String {
    let mut out = String::new();
    let mut rest = xml;
    while let Some(i) = rest.find(" time=\"") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 7..];
        let j = after.find('"').unwrap();
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn concurrent_runs_report_exactly_what_serial_runs_report() {
    let dir = clicks_copy();
    edit(
        &dir.path().join("graph.test.json"),
        "\"kb\": 4,",
        "\"kb\": 5,",
    );
    copy_dir(
        &root().join("examples/sensors"),
        &dir.path().join("sensors"),
    );
    let args = |jobs: &'static str, junit: &'static str| {
        vec![
            "test",
            "graph.json",
            "sensors/graph.json",
            "--jobs",
            jobs,
            "--junit",
            junit,
        ]
    };
    let serial = lockstep(dir.path(), &args("1", "serial.xml"));
    let parallel = lockstep(dir.path(), &args("6", "parallel.xml"));
    assert_eq!(serial.code, 1);
    assert_eq!(parallel.code, 1);
    assert!(
        serial.stdout.contains("5 passed, 1 failed"),
        "{}",
        serial.stdout
    );
    assert_eq!(serial.stdout, parallel.stdout);
    assert_eq!(
        without_times(&read_text(&dir.path().join("serial.xml"))),
        without_times(&read_text(&dir.path().join("parallel.xml")))
    );
}

#[test]
fn golden_files_change_only_with_update() {
    let dir = clicks_copy();
    let golden = dir.path().join("expected/large.out.jsonl");
    let want = read_text(&golden);
    std::fs::remove_file(&golden).unwrap();
    let r = lockstep(dir.path(), &["test", "graph.json"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout
            .contains("\"large\": cannot read the golden file ./expected/large.out.jsonl")
            && r.stdout
                .contains("run `lockstep test --update` to write it"),
        "{}",
        r.stdout
    );
    assert!(!golden.exists(), "a failing run wrote the golden file");
    let r = lockstep(dir.path(), &["test", "graph.json", "--update"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("updated ./expected/large.out.jsonl (3 records)"),
        "{}",
        r.stdout
    );
    assert_eq!(read_text(&golden), want);
    // Up to date: nothing rewritten, and it passes without --update.
    let r = lockstep(dir.path(), &["test", "graph.json", "--update"]);
    assert!(!r.stdout.contains("updated"), "{}", r.stdout);
    run_ok(dir.path(), &["test", "graph.json"]);
}

#[test]
fn inline_tests_expected_failures_and_located_errors() {
    let dir = tempdir();
    let graph = r#"{
  "version": 1,
  "name": "div",
  "time": { "epoch_records": 2 },
  "sources": { "n": { "type": "stdin", "schema": { "a": "int", "b": "int" } } },
  "nodes": { "q": { "type": "map", "input": "n", "select": { "q": "a / b" }, "on_error": "fail" } },
  "sinks": { "out": { "type": "stdout", "input": "q" } },
  "tests": {
    "divides": {
      "inputs": { "n": [ { "a": 7, "b": 2 }, { "a": -7, "b": 2 } ] },
      "expect": { "out": [ { "q": -3 }, { "q": 3 } ] }
    },
    "zero stops the job": {
      "inputs": { "n": [ { "a": 1, "b": 0 } ] },
      "fails_with": "division by zero"
    },
    "csv lines": {
      "inputs": { "n": { "lines": ["{\"a\": 9, \"b\": 3}"] } },
      "expect": { "q": [ { "q": 3 } ] }
    }
  }
}"#;
    write(dir.path(), "div.json", graph);
    let r = lockstep(dir.path(), &["test", "div.json", "-w", "3"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("  ok    zero stops the job (1, 3 workers)"),
        "{}",
        r.stdout
    );
    // The graph still runs as a job: `tests` is part of the format.
    let out = lockstep_stdin(
        dir.path(),
        &["run", "div.json", "-q"],
        "{\"a\":8,\"b\":4}\n",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "{\"q\":2}\n");

    // Mistakes in cases are located errors, all of them at once.
    let bad = graph
        .replace(
            "\"inputs\": { \"n\": [ { \"a\": 7",
            "\"inputs\": { \"m\": [ { \"a\": 7",
        )
        .replace("\"expect\": { \"q\": [", "\"expect\": { \"q.late\": [")
        .replace("\"fails_with\"", "\"fails\"");
    write(dir.path(), "bad.json", &bad);
    let r = lockstep(dir.path(), &["test", "bad.json"]);
    assert_eq!(r.code, 1);
    for want in [
        "bad.json:10:24: tests.divides.inputs.m: no source is called \"m\"; the sources are n",
        "tests.zero stops the job.fails: unknown field \"fails\" (did you mean \"fails_with\"?)",
        "tests.csv lines.expect.q.late: \"q\" has no output \"late\"; its outputs: q.errors; expect names a sink",
    ] {
        assert!(r.stdout.contains(want), "missing {want:?} in\n{}", r.stdout);
    }
    assert!(!r.stdout.contains("checks nothing"), "{}", r.stdout);
    // `validate` checks the cases too.
    let v = lockstep(dir.path(), &["validate", "bad.json"]);
    assert_eq!(v.code, 2);
    assert!(
        v.stderr.contains("no source is called \"m\""),
        "{}",
        v.stderr
    );
    assert!(
        v.stderr.contains("errors in the tests of bad.json"),
        "{}",
        v.stderr
    );
    run_ok(dir.path(), &["validate", "div.json"]);
    // A failing case checks no output.
    let both = graph.replace(
        "\"fails_with\": \"division by zero\"",
        "\"fails_with\": \"division by zero\", \"expect\": { \"out\": [] }",
    );
    write(dir.path(), "both.json", &both);
    let r = lockstep(dir.path(), &["test", "both.json"]);
    assert!(
        r.stdout.contains("tests.zero stops the job.fails_with: a case that expects the job to fail checks no output"),
        "{}",
        r.stdout
    );
    // A --case filter that matches nothing is an error, not a pass.
    let r = lockstep(
        dir.path(),
        &["test", "div.json", "--case", "nothing like it"],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("no case name contains \"nothing like it\""),
        "{}",
        r.stderr
    );
    let r = lockstep(dir.path(), &["test", "div.json", "--case", "zero"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("1 passed"), "{}", r.stdout);
}

//! Records that do not fit: they land on `errors` with their line and reason,
//! or stop the job under `"on_error": "fail"`; missing and unwritable files
//! and empty inputs give clear errors or clean empty results.

use std::fs;

use super::common::*;

const SCHEMA: &str = r#"{"user": "string", "ts": "timestamp", "bytes": "int", "score": "float"}"#;

fn graph(source_extra: &str, node: &str) -> String {
    format!(
        r#"{{"version": 1, "time": {{"epoch_ms": 1000}},
  "sources": {{"in": {{"type": "file", "path": "in.jsonl", "schema": {SCHEMA},
                       "event_time": {{"field": "ts"}} {source_extra}}}}},
  "nodes": {{"m": {node}}},
  "sinks": {{"out": {{"type": "file", "input": "m", "path": "out.jsonl"}},
            "bad": {{"type": "file", "input": "in.errors", "path": "bad.jsonl"}}}}}}"#
    )
}

const PASS: &str = r#"{"type": "filter", "input": "in", "where": "true"}"#;

#[test]
fn malformed_and_mistyped_records_land_on_errors_with_their_line() {
    let tmp = tempdir();
    write(tmp.path(), "graph.json", &graph("", PASS));
    let mut input = String::new();
    input.push_str("{\"user\":\"a\",\"ts\":1000,\"bytes\":1,\"score\":1}\n"); // 1 ok (int for float)
    input.push_str("{\"user\":\"b\",\"ts\":1001,\"bytes\":1.5}\n"); // 2 fractional int
    input.push_str("not json\n"); // 3
    input.push_str("{\"user\":\"c\",\"ts\":1002,\"user\":\"d\"}\n"); // 4 duplicate key
    input.push('\n'); // 5 empty line
    input.push_str("{\"user\":\"e\",\"ts\":null}\n"); // 6 null event time
    input.push_str("{\"user\":\"f\",\"ts\":\"1970-01-01T00:00:02.5Z\",\"extra\":[1]}\n"); // 7 ok, RFC 3339
    input.push_str("[1,2]\r\n"); // 8 not an object, CRLF
    let mut bytes = input.into_bytes();
    bytes.extend_from_slice(b"{\"user\":\"\xff\",\"ts\":3000}\n"); // 9 invalid UTF-8
    bytes.extend_from_slice(b"{\"user\":\"g\",\"ts\":3001,\"bytes\":\"12\"}"); // 10 string for int, no final newline
    fs::write(tmp.path().join("in.jsonl"), bytes).expect("write");
    for workers in ["1", "3"] {
        let r = run_ok(tmp.path(), &["run", "graph.json", "-w", workers]);
        assert!(
            r.stderr
                .contains("2 records read, 8 rejected (see in.errors)"),
            "{}",
            r.stderr
        );
        assert_eq!(
            read_text(&tmp.path().join("out.jsonl")),
            "{\"user\":\"a\",\"ts\":1000,\"bytes\":1,\"score\":1.0}\n\
             {\"user\":\"f\",\"ts\":2500,\"bytes\":null,\"score\":null}\n"
        );
        let bad = read_text(&tmp.path().join("bad.jsonl"));
        let lines: Vec<&str> = bad.lines().collect();
        assert_eq!(lines.len(), 8, "{bad}");
        let expect = [
            (
                2,
                "field \\\"bytes\\\" is int, but got the fractional number 1.5",
            ),
            (3, "invalid JSON at column 2: expected ident"),
            (4, "duplicate key \\\"user\\\""),
            (5, "empty line"),
            (6, "event time field \\\"ts\\\" is null"),
            (8, "invalid type: sequence, expected a JSON object"),
            (9, "invalid UTF-8"),
            (
                10,
                "field \\\"bytes\\\" is int, but got the string \\\"12\\\"",
            ),
        ];
        for (line, reason) in expect {
            let hit = lines
                .iter()
                .find(|l| l.ends_with(&format!("\"partition\":0,\"line\":{line}}}")));
            let hit = hit.unwrap_or_else(|| panic!("no error for line {line} in:\n{bad}"));
            assert!(
                hit.contains(reason),
                "line {line}: want {reason:?} in {hit}"
            );
            assert!(hit.starts_with("{\"node\":\"in\",\"reason\":"), "{hit}");
        }
        // A record with a null event time is rejected after parsing, still
        // with its input text and line.
        assert!(
            bad.contains(
                "\"raw\":\"{\\\"user\\\":\\\"e\\\",\\\"ts\\\":null}\",\"partition\":0,\"line\":6}"
            ),
            "{bad}"
        );
    }
}

#[test]
fn on_error_fail_stops_at_the_first_bad_record_deterministically() {
    let tmp = tempdir();
    write(tmp.path(), "graph.json", &graph(", \"on_error\": \"fail\"", PASS).replace(
        ",\n            \"bad\": {\"type\": \"file\", \"input\": \"in.errors\", \"path\": \"bad.jsonl\"}",
        "",
    ));
    let mut input = String::new();
    for i in 0..=3000 {
        input.push_str(&format!("{{\"user\":\"u{i}\",\"ts\":{i},\"bytes\":{i}}}\n"));
    }
    // Lines 3002 and 3003 are bad; they take the partition's epoch, 3.
    input.push_str("{\"user\":\"late\",\"ts\":3000,\"bytes\":\"x\"}\n");
    input.push_str("oops\n");
    for i in 3002..5000 {
        input.push_str(&format!("{{\"user\":\"u{i}\",\"ts\":{i},\"bytes\":{i}}}\n"));
    }
    write(tmp.path(), "in.jsonl", &input);
    let mut outputs = Vec::new();
    for workers in ["1", "2", "4"] {
        let r = lockstep(tmp.path(), &["run", "graph.json", "-w", workers]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(
            r.stderr.contains("source \"in\", in.jsonl, line 3002: field \"bytes\" is int, but got the string \"x\""),
            "{}",
            r.stderr
        );
        assert!(
            r.stderr.contains("1 more bad records in the same epoch"),
            "{}",
            r.stderr
        );
        let out = read_text(&tmp.path().join("out.jsonl"));
        // Epochs 0, 1 and 2 (event times 0..2999) are complete; nothing of epoch 3.
        assert_eq!(out.lines().count(), 3000, "at -w {workers}");
        outputs.push(out);
    }
    assert!(outputs.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn expression_errors_go_to_the_node_errors_output_or_fail_the_job() {
    let tmp = tempdir();
    let node =
        r#"{"type": "map", "input": "in", "select": {"user": "user", "per_byte": "1000 / bytes"}}"#;
    let g = graph("", node).replace(
        "\"bad\": {\"type\": \"file\", \"input\": \"in.errors\", \"path\": \"bad.jsonl\"}",
        "\"bad\": {\"type\": \"file\", \"input\": \"m.errors\", \"path\": \"bad.jsonl\"}",
    );
    write(tmp.path(), "graph.json", &g);
    write(tmp.path(), "in.jsonl", "{\"user\":\"a\",\"ts\":1,\"bytes\":10}\n{\"user\":\"b\",\"ts\":2,\"bytes\":0}\n{\"user\":\"c\",\"ts\":3}\n");
    run_ok(tmp.path(), &["run", "graph.json"]);
    assert_eq!(
        read_text(&tmp.path().join("out.jsonl")),
        "{\"user\":\"a\",\"per_byte\":100}\n{\"user\":\"c\",\"per_byte\":null}\n"
    );
    assert_eq!(
        read_text(&tmp.path().join("bad.jsonl")),
        "{\"node\":\"m\",\"reason\":\"division by zero\",\"raw\":\"{\\\"user\\\":\\\"b\\\",\\\"ts\\\":2,\\\"bytes\\\":0,\\\"score\\\":null}\",\"partition\":null,\"line\":null}\n"
    );
    let g = g.replace("\"select\"", "\"on_error\": \"fail\", \"select\"").replace(
        ",\n            \"bad\": {\"type\": \"file\", \"input\": \"m.errors\", \"path\": \"bad.jsonl\"}",
        "",
    );
    write(tmp.path(), "graph.json", &g);
    let r = lockstep(tmp.path(), &["run", "graph.json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("node \"m\": division by zero"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_missing_input_file_is_a_clear_error() {
    let tmp = tempdir();
    write(tmp.path(), "graph.json", &graph("", PASS));
    let r = lockstep(tmp.path(), &["run", "graph.json"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("source \"in\": cannot open input file in.jsonl: No such file or directory"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("panicked"));
}

#[test]
fn an_unwritable_output_path_is_a_clear_error() {
    let tmp = tempdir();
    write(
        tmp.path(),
        "graph.json",
        &graph("", PASS).replace(
            "\"path\": \"out.jsonl\"",
            "\"path\": \"no/such/dir/out.jsonl\"",
        ),
    );
    write(tmp.path(), "in.jsonl", "");
    let r = lockstep(tmp.path(), &["run", "graph.json"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("sink \"out\": cannot create no/such/dir/out.jsonl"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("check that its directory exists"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_empty_input_gives_empty_outputs() {
    let tmp = tempdir();
    let g = graph("", PASS).replace(
        "\"path\": \"bad.jsonl\"",
        "\"path\": \"bad.csv\"", // no "format": a .csv path is written as CSV
    );
    write(tmp.path(), "graph.json", &g);
    write(tmp.path(), "in.jsonl", "");
    for w in ["1", "2"] {
        run_ok(tmp.path(), &["run", "graph.json", "-w", w]);
        assert_eq!(read_text(&tmp.path().join("out.jsonl")), "");
        assert_eq!(
            read_text(&tmp.path().join("bad.csv")),
            "node,reason,raw,partition,line\r\n"
        );
    }
}

#[test]
fn csv_input_follows_rfc_4180() {
    let tmp = tempdir();
    let g = graph("", PASS).replace(
        "\"path\": \"in.jsonl\"",
        "\"path\": \"in.csv\"", // no "format": a .csv file is read as CSV
    );
    write(tmp.path(), "graph.json", &g);
    write(
        tmp.path(),
        "in.csv",
        "ts,user,ignored,bytes\r\n1,\"a, \"\"quoted\"\"\",x,5\r\n2,,y,\n3,\"\",z,7\n4,\"multi\nline\",w,8\n5,b,v,notanint\n",
    );
    run_ok(tmp.path(), &["run", "graph.json"]);
    assert_eq!(
        read_text(&tmp.path().join("out.jsonl")),
        "{\"user\":null,\"ts\":2,\"bytes\":null,\"score\":null}\n\
         {\"user\":\"\",\"ts\":3,\"bytes\":7,\"score\":null}\n\
         {\"user\":\"a, \\\"quoted\\\"\",\"ts\":1,\"bytes\":5,\"score\":null}\n\
         {\"user\":\"multi\\nline\",\"ts\":4,\"bytes\":8,\"score\":null}\n"
    );
    let bad = read_text(&tmp.path().join("bad.jsonl"));
    assert!(
        bad.contains("field \\\"bytes\\\" is int, but got \\\"notanint\\\""),
        "{bad}"
    );
    assert!(bad.ends_with("\"partition\":0,\"line\":7}\n"), "{bad}");
}

#[test]
fn stdin_to_stdout() {
    let tmp = tempdir();
    let g = r#"{"version": 1, "time": {"epoch_records": 2},
      "sources": {"in": {"type": "stdin", "schema": {"n": "int", "s": "string"}}},
      "nodes": {"m": {"type": "map", "input": "in", "select": {"s": "s || '!'", "n2": "n * 2"}}},
      "sinks": {"out": {"type": "stdout", "input": "m", "format": "csv"}}}"#;
    write(tmp.path(), "graph.json", g);
    let r = lockstep_stdin(
        tmp.path(),
        &["run", "graph.json", "-w", "2"],
        "{\"n\":3,\"s\":\"b\"}\n{\"n\":1,\"s\":\"a\"}\n{\"n\":2,\"s\":\"c\"}\n",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "s,n2\r\na!,2\r\nb!,6\r\nc!,4\r\n");
}

#[test]
fn csv_edge_cases_lose_no_records() {
    let tmp = tempdir();
    let g = r#"{"version": 1, "time": {"epoch_records": 100},
      "sources": {"in": {"type": "file", "path": "in.csv", "schema": {"k": "int", "s": "string"}}},
      "sinks": {"out": {"type": "file", "input": "in", "path": "out.jsonl", "order_by": ["k"]},
                "bad": {"type": "file", "input": "in.errors", "path": "bad.jsonl"}}}"#;
    write(tmp.path(), "graph.json", g);
    // A byte order mark, a stray quote inside an unquoted field (rejected,
    // without swallowing the lines after it), and a CRLF kept inside a quoted
    // field.
    let mut input = b"\xEF\xBB\xBFk,s\r\n1,a\"b\r\n2,ok\r\n3,\"x\r\ny\"\r\n".to_vec();
    input.extend_from_slice(b"4,\"bad \xff byte\n\"\n");
    std::fs::write(tmp.path().join("in.csv"), input).expect("write");
    run_ok(tmp.path(), &["run", "graph.json"]);
    assert_eq!(
        read_text(&tmp.path().join("out.jsonl")),
        "{\"k\":2,\"s\":\"ok\"}\n{\"k\":3,\"s\":\"x\\r\\ny\"}\n"
    );
    let bad = read_text(&tmp.path().join("bad.jsonl"));
    // Invalid UTF-8 ends a record where it stands: the line after it is
    // rejected on its own, so nothing is lost or merged silently.
    assert_eq!(bad.lines().count(), 3, "{bad}");
    assert!(
        bad.contains("a quote inside an unquoted field") && bad.contains("\"line\":2}"),
        "{bad}"
    );
    assert!(
        bad.contains("invalid UTF-8") && bad.contains("\"line\":6}"),
        "{bad}"
    );
    assert!(
        bad.contains("unterminated quoted field") && bad.contains("\"line\":7}"),
        "{bad}"
    );

    // A header that cannot be used: every record is rejected, none is read
    // as a header or as data.
    write(tmp.path(), "in.csv", "k,s,k\n1,a,2\n3,b,4\n");
    run_ok(tmp.path(), &["run", "graph.json"]);
    assert_eq!(read_text(&tmp.path().join("out.jsonl")), "");
    let bad = read_text(&tmp.path().join("bad.jsonl"));
    assert_eq!(bad.lines().count(), 3, "{bad}");
    assert!(bad.contains("no usable CSV header"), "{bad}");
}

#[test]
fn a_sink_cannot_overwrite_an_input_through_a_symlink() {
    let tmp = tempdir();
    write(tmp.path(), "in.jsonl", "{\"user\":\"a\",\"ts\":1}\n");
    std::os::unix::fs::symlink(tmp.path().join("in.jsonl"), tmp.path().join("link.jsonl"))
        .expect("symlink");
    write(
        tmp.path(),
        "graph.json",
        &graph("", PASS).replace("\"path\": \"bad.jsonl\"", "\"path\": \"link.jsonl\""),
    );
    let r = lockstep(tmp.path(), &["run", "graph.json"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("link.jsonl is read by source \"in\""),
        "{}",
        r.stderr
    );
    assert_eq!(
        read_text(&tmp.path().join("in.jsonl")),
        "{\"user\":\"a\",\"ts\":1}\n"
    );
}

//! Runs every example row of docs/expressions.md: each table with the header
//! `| expression | result |` is evaluated against the sample record the page
//! defines, and every mismatching row is reported.

use lockstep_operators::value::Text;

use lockstep_operators::encode::write_json_value;
use lockstep_operators::expr::compile;
use lockstep_operators::value::{Schema, Type, Value};

const DOC: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docs/expressions.md"
));

/// The sample record, exactly as docs/expressions.md states it.
fn sample() -> (Schema, Vec<Value>) {
    let fields = [
        ("i", Type::Int, Value::Int(7)),
        ("f", Type::Float, Value::Float(2.5)),
        ("s", Type::String, Value::str("Hello")),
        ("n", Type::Int, Value::Null),
        ("b", Type::Bool, Value::Bool(true)),
        ("t", Type::Timestamp, Value::Ts(1_700_000_000_000)),
        ("j", Type::Json, Value::Json(Text::from("{\"a\":1}"))),
        ("ns", Type::String, Value::Null),
        ("nb", Type::Bool, Value::Null),
        ("Name", Type::String, Value::str("Ann")),
    ];
    let schema = Schema::new(fields.iter().map(|(n, t, _)| (*n, *t)));
    let row = fields.into_iter().map(|(_, _, v)| v).collect();
    (schema, row)
}

/// Splits a table row on `|` not preceded by a backslash, unescaping `\|`.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut out = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                out.last_mut().unwrap().push('|');
            }
            '|' => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out.into_iter().map(|c| c.trim().to_owned()).collect()
}

fn unquote(cell: &str) -> Option<&str> {
    cell.strip_prefix('`')?.strip_suffix('`')
}

/// The rows of every example table: (line number, expression, result cell).
fn rows() -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut in_table = false;
    for (k, line) in DOC.lines().enumerate() {
        let t = line.trim();
        if !t.starts_with('|') {
            in_table = false;
            continue;
        }
        let c = cells(t);
        if c.len() == 2 && c[0] == "expression" && c[1] == "result" {
            in_table = true;
            continue;
        }
        if !in_table
            || c.iter()
                .all(|x| x.chars().all(|ch| matches!(ch, '-' | ':')))
        {
            continue;
        }
        assert_eq!(c.len(), 2, "line {}: expected 2 cells: {line}", k + 1);
        out.push((k + 1, c[0].clone(), c[1].clone()));
    }
    out
}

fn check(schema: &Schema, row: &[Value], expr: &str, want: &str) -> Result<(), String> {
    let src = unquote(expr).ok_or_else(|| format!("expression cell is not `code`: {expr}"))?;
    let compiled = compile(src, schema);
    if let Some(msg) = want.strip_prefix("compile error: ") {
        return match compiled {
            Err(e) if e.message.contains(msg) => Ok(()),
            Err(e) => Err(format!("compile error was: {}", e.message)),
            Ok(e) => Err(format!(
                "compiled (type {:?}); evaluates to {:?}",
                e.ty(),
                e.eval(row)
            )),
        };
    }
    let e = compiled.map_err(|e| format!("compile error: {}", e.message))?;
    let got = e.eval(row);
    if let Some(msg) = want.strip_prefix("error: ") {
        return match got {
            Err(err) if err.reason.contains(msg) => Ok(()),
            Err(err) => Err(format!("error was: {}", err.reason)),
            Ok(v) => Err(format!("evaluated to {v:?}")),
        };
    }
    let want = unquote(want).ok_or_else(|| format!("result cell is not `code`: {want}"))?;
    match got {
        Ok(v) => {
            let mut text = String::new();
            write_json_value(&v, &mut text);
            if text == want {
                Ok(())
            } else {
                Err(format!("got `{text}` ({v:?})"))
            }
        }
        Err(err) => Err(format!("error: {}", err.reason)),
    }
}

#[test]
fn every_example_in_docs_expressions_md_holds() {
    let (schema, row) = sample();
    let rows = rows();
    let mut failures = Vec::new();
    for (line, expr, want) in &rows {
        if let Err(why) = check(&schema, &row, expr, want) {
            failures.push(format!(
                "docs/expressions.md:{line}: {expr} => want {want}; {why}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows fail:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    assert!(rows.len() >= 100, "only {} example rows", rows.len());
}

#[test]
fn the_doc_states_the_sample_record() {
    for needle in [
        "`i` | int | `7`",
        "`f` | float | `2.5`",
        "`s` | string | `'Hello'`",
        "`n` | int | NULL",
        "`b` | bool | `true`",
        "`t` | timestamp | `1700000000000`",
        "`j` | json | `{\"a\":1}`",
        "`ns` | string | NULL",
        "`nb` | bool | NULL",
        "`Name` | string | `'Ann'`",
    ] {
        assert!(
            DOC.contains(needle),
            "docs/expressions.md lacks the sample field row {needle:?}"
        );
    }
}

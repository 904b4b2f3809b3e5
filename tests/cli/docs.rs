//! The docs' examples are run: every ```` ```json lockstep ```` block in
//! `docs/*.md` and `README.md` validates, and when a ```` ```text output ````
//! block follows it, running the graph at 1 and 3 workers prints exactly that;
//! a graph with `tests` passes them under `lockstep test`.

use std::fs;

use super::common::*;

struct Example {
    file: String,
    line: usize,
    graph: String,
    output: Option<String>,
}

fn examples() -> Vec<Example> {
    let mut files: Vec<_> = fs::read_dir(root().join("docs"))
        .expect("docs/")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.push(root().join("README.md"));
    files.sort();
    let mut out = Vec::new();
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "md"))
    {
        let text = read_text(f);
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            if lines[i].trim() == "```json lockstep" {
                let start = i + 1;
                let end = start
                    + lines[start..]
                        .iter()
                        .position(|l| l.trim() == "```")
                        .expect("closed block");
                let graph = lines[start..end].join("\n");
                // An output block may follow after blank lines.
                let mut j = end + 1;
                while j < lines.len() && lines[j].trim().is_empty() {
                    j += 1;
                }
                let output = (j < lines.len() && lines[j].trim() == "```text output").then(|| {
                    let s = j + 1;
                    let e = s + lines[s..]
                        .iter()
                        .position(|l| l.trim() == "```")
                        .expect("closed block");
                    lines[s..e]
                        .iter()
                        .map(|l| format!("{l}\n"))
                        .collect::<String>()
                });
                out.push(Example {
                    file: f
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                    line: start,
                    graph,
                    output,
                });
                i = end;
            }
            i += 1;
        }
    }
    out
}

#[test]
fn docs_examples_run_and_print_what_the_docs_say() {
    let all = examples();
    assert!(all.len() >= 8, "found only {} examples", all.len());
    let mut failures = Vec::new();
    for ex in &all {
        let tmp = tempdir();
        write(tmp.path(), "graph.json", &ex.graph);
        let v = lockstep(tmp.path(), &["validate", "graph.json"]);
        if v.code != 0 {
            failures.push(format!(
                "{}:{}: does not validate:\n{}",
                ex.file, ex.line, v.stderr
            ));
            continue;
        }
        // A graph with test cases passes them.
        if ex.graph.contains("\"tests\"") {
            let t = lockstep(tmp.path(), &["test", "graph.json"]);
            if t.code != 0 {
                failures.push(format!(
                    "{}:{}: its tests fail:\n{}{}",
                    ex.file, ex.line, t.stdout, t.stderr
                ));
            }
        }
        let Some(want) = &ex.output else { continue };
        for w in ["1", "3"] {
            let r = lockstep(tmp.path(), &["run", "graph.json", "-q", "-w", w]);
            if r.code != 0 || &r.stdout != want {
                failures.push(format!(
                    "{}:{} at -w {w}: exit {}\n--- want\n{want}--- got\n{}{}",
                    ex.file, ex.line, r.code, r.stdout, r.stderr
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

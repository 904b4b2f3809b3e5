//! Judging a case: its runs against each other (every worker count must
//! capture the same bytes), then the first run against what the case
//! expects, with a diff that names the first differing record and its epoch.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as Json;

use super::report::{CaseResult, Outcome};
#[cfg(test)]
use super::Captured;
use super::{Case, Expect, Expected, RunResult};

/// How expected records are compared with the output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// The same records in the same order (the order a sink writes: epochs
    /// in order, within an epoch by the sink's `order_by`).
    #[default]
    Exact,
    /// The same records as a multiset.
    Any,
}

/// How many records a multiset diff lists of each kind.
const LIST: usize = 5;

/// A record in a comparable form: object keys sorted, and a number that is
/// integral the same whether written `2` or `2.0`.
fn canon(v: &Json) -> String {
    fn norm(v: &Json) -> Json {
        match v {
            Json::Object(o) => {
                let sorted: BTreeMap<&String, Json> = o.iter().map(|(k, v)| (k, norm(v))).collect();
                Json::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            Json::Array(a) => Json::Array(a.iter().map(norm).collect()),
            Json::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Json::from(i),
                #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
                (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Json::from(f as i64),
                _ => v.clone(),
            },
            _ => v.clone(),
        }
    }
    norm(v).to_string()
}

fn canon_line(line: &str) -> String {
    serde_json::from_str::<Json>(line).map_or_else(|_| line.to_string(), |v| canon(&v))
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn workers_label(w: usize) -> String {
    plural(w, "worker")
}

/// Judges one case from its runs (worker count, result, time).
pub(super) fn judge(
    case: &Case,
    runs: Vec<(usize, RunResult, Duration)>,
    update: bool,
) -> CaseResult {
    let workers: Vec<usize> = runs.iter().map(|r| r.0).collect();
    let time = runs.iter().map(|r| r.2).sum();
    let mut result = CaseResult {
        name: case.name.clone(),
        description: case.description.clone(),
        workers,
        outcome: Outcome::Pass,
        time,
        updated: Vec::new(),
    };
    if let Some(text) = &case.fails_with {
        let mut problems = Vec::new();
        for (w, r, _) in &runs {
            match r {
                Err(m) if m.contains(text.as_str()) => {}
                Err(m) => problems.push(format!(
                    "at {}: the job failed, but not with \"{text}\":\n  {m}",
                    workers_label(*w)
                )),
                Ok(_) => problems.push(format!(
                    "at {}: the job finished; it should have failed with \"{text}\"",
                    workers_label(*w)
                )),
            }
        }
        if !problems.is_empty() {
            result.outcome = Outcome::Fail(problems.join("\n"));
        }
        return result;
    }
    let mut ok = Vec::new();
    for (w, r, _) in runs {
        match r {
            Ok(c) => ok.push((w, c)),
            Err(m) => {
                result.outcome =
                    Outcome::Error(format!("at {} the job failed: {m}", workers_label(w)));
                return result;
            }
        }
    }
    let Some((w0, first)) = ok.first() else {
        result.outcome = Outcome::Error("the case did not run".into());
        return result;
    };
    let mut problems = Vec::new();
    // Every worker count must capture the same bytes, from every sink and
    // every expected output.
    for (w, c) in ok.iter().skip(1) {
        for (e, (a, b)) in case.expect.iter().zip(first.outputs.iter().zip(&c.outputs)) {
            if a != b {
                problems.push(divergence(&e.target, *w0, a, *w, b));
            }
        }
        for ((name, a), (_, b)) in first.sinks.iter().zip(&c.sinks) {
            if a != b && !case.expect.iter().any(|e| e.target == *name) {
                problems.push(divergence(name, *w0, a, *w, b));
            }
        }
    }
    for (e, got) in case.expect.iter().zip(&first.outputs) {
        match check(e, got, update) {
            Ok(Some(updated)) => result.updated.push(updated),
            Ok(None) => {}
            Err(p) => problems.push(p),
        }
    }
    if !problems.is_empty() {
        result.outcome = Outcome::Fail(problems.join("\n"));
    }
    result
}

/// The first difference between two worker counts' output.
fn divergence(
    target: &str,
    w0: usize,
    a: &[(u64, String)],
    w: usize,
    b: &[(u64, String)],
) -> String {
    let i = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let show = |r: Option<&(u64, String)>| match r {
        Some((e, l)) => format!("(epoch {e}) {l}"),
        None => "(no record)".to_string(),
    };
    format!(
        "\"{target}\": the output differs between {} and {} at record {} (a bug in lockstep or in a custom node: please report it):\n  {:<10} {}\n  {:<10} {}",
        workers_label(w0),
        workers_label(w),
        i + 1,
        format!("{}:", workers_label(w0)),
        show(a.get(i)),
        format!("{}:", workers_label(w)),
        show(b.get(i)),
    )
}

/// Checks one expectation; `Ok(Some(..))` when a golden file was rewritten.
fn check(e: &Expect, got: &[(u64, String)], update: bool) -> Result<Option<String>, String> {
    match &e.what {
        Expected::Nothing => match got.first() {
            None => Ok(None),
            Some((ep, l)) => Err(format!(
                "\"{}\" should produce nothing, but produced {}; the first (epoch {ep}):\n  {l}",
                e.target,
                plural(got.len(), "record")
            )),
        },
        Expected::Records(rs) => {
            let want: Vec<String> = rs.iter().map(canon).collect();
            let shown: Vec<String> = rs.iter().map(ToString::to_string).collect();
            let have: Vec<(u64, String)> = got.iter().map(|(ep, l)| (*ep, canon_line(l))).collect();
            let label = format!("\"{}\"", e.target);
            diff(&label, (&want, &shown), &have, got, e.order, "expected").map(|()| None)
        }
        Expected::File(path) => {
            if update {
                let mut text = String::new();
                for (_, l) in got {
                    text.push_str(l);
                    text.push('\n');
                }
                let same = std::fs::read_to_string(path).is_ok_and(|old| old == text);
                if same {
                    return Ok(None);
                }
                if let Some(dir) = path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                std::fs::write(path, text).map_err(|err| {
                    format!("cannot write the golden file {}: {err}", path.display())
                })?;
                return Ok(Some(format!(
                    "updated {} ({})",
                    path.display(),
                    plural(got.len(), "record")
                )));
            }
            let text = std::fs::read_to_string(path).map_err(|err| {
                format!(
                    "\"{}\": cannot read the golden file {}: {err}; run `lockstep test --update` to write it",
                    e.target,
                    path.display()
                )
            })?;
            let shown: Vec<String> = text.lines().map(str::to_string).collect();
            let want = shown.clone();
            let have: Vec<(u64, String)> = got.iter().map(|(ep, l)| (*ep, l.clone())).collect();
            let (want, have) = match e.order {
                // Golden files are compared byte for byte.
                super::Order::Exact => (want, have),
                super::Order::Any => (
                    want.iter().map(|l| canon_line(l)).collect(),
                    have.into_iter()
                        .map(|(ep, l)| (ep, canon_line(&l)))
                        .collect(),
                ),
            };
            let label = format!("\"{}\" (golden file {})", e.target, path.display());
            diff(&label, (&want, &shown), &have, got, e.order, "golden").map(|()| None)
        }
    }
}

/// Compares comparable forms `want.0` and `have`; messages show the
/// records as written (`want.1`, `raw`).
fn diff(
    label: &str,
    want: (&[String], &[String]),
    have: &[(u64, String)],
    raw: &[(u64, String)],
    order: Order,
    noun: &str,
) -> Result<(), String> {
    let (want, shown) = want;
    match order {
        Order::Exact => {
            let i = want
                .iter()
                .zip(have)
                .take_while(|(w, (_, h))| *w == h)
                .count();
            if i == want.len() && i == have.len() {
                return Ok(());
            }
            let mut m = format!(
                "{label}: first difference at record {} ({} {noun}, {} got)",
                i + 1,
                want.len(),
                have.len()
            );
            let width = noun.len().max(3) + 1;
            match (shown.get(i), raw.get(i)) {
                (Some(w), Some((ep, g))) => {
                    let _ = write!(
                        m,
                        ", in epoch {ep}:\n  {noun:<width$} {w}\n  {:<width$} {g}",
                        "got"
                    );
                }
                (Some(w), None) => {
                    let _ = write!(
                        m,
                        ": the output ends early\n  {noun:<width$} {w}\n  {:<width$} (no record)",
                        "got"
                    );
                }
                (None, Some((ep, g))) => {
                    let _ = write!(m, ": the output has more, in epoch {ep}:\n  {noun:<width$} (no record)\n  {:<width$} {g}", "got");
                }
                (None, None) => {}
            }
            Err(m)
        }
        Order::Any => {
            let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
            for w in want {
                *counts.entry(w.as_str()).or_default() += 1;
            }
            for (_, h) in have {
                *counts.entry(h.as_str()).or_default() -= 1;
            }
            if counts.values().all(|c| *c == 0) {
                return Ok(());
            }
            let missing: Vec<&String> = {
                let mut left = counts.clone();
                want.iter()
                    .zip(shown)
                    .filter(|(w, _)| {
                        let c = left.get_mut(w.as_str());
                        match c {
                            Some(c) if *c > 0 => {
                                *c -= 1;
                                true
                            }
                            _ => false,
                        }
                    })
                    .map(|(_, s)| s)
                    .collect()
            };
            let extra: Vec<(u64, &String)> = {
                let mut left = counts;
                have.iter()
                    .zip(raw)
                    .filter(|((_, h), _)| {
                        let c = left.get_mut(h.as_str());
                        match c {
                            Some(c) if *c < 0 => {
                                *c += 1;
                                true
                            }
                            _ => false,
                        }
                    })
                    .map(|(_, (ep, l))| (*ep, l))
                    .collect()
            };
            let mut m = format!(
                "{label} (any order): {} missing, {} unexpected ({} {noun}, {} got)",
                plural(missing.len(), "record"),
                plural(extra.len(), "record"),
                want.len(),
                have.len()
            );
            for w in missing.iter().take(LIST) {
                let _ = write!(m, "\n  missing    {w}");
            }
            if missing.len() > LIST {
                let _ = write!(m, "\n  ... and {} more missing", missing.len() - LIST);
            }
            for (ep, l) in extra.iter().take(LIST) {
                let _ = write!(m, "\n  unexpected {l} (epoch {ep})");
            }
            if extra.len() > LIST {
                let _ = write!(m, "\n  ... and {} more unexpected", extra.len() - LIST);
            }
            Err(m)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canon_ignores_key_order_and_integral_float_spelling() {
        let a: Json = serde_json::from_str(r#"{"b":2.0,"a":"x"}"#).unwrap();
        let b: Json = serde_json::from_str(r#"{"a":"x","b":2}"#).unwrap();
        assert_eq!(canon(&a), canon(&b));
        let c: Json = serde_json::from_str(r#"{"a":"x","b":2.5}"#).unwrap();
        assert_ne!(canon(&a), canon(&c));
    }

    #[test]
    fn exact_diff_names_the_first_differing_record_and_its_epoch() {
        let want = vec!["1".to_string(), "2".to_string(), "3".to_string()];
        let got = vec![
            (0, "1".to_string()),
            (4, "9".to_string()),
            (5, "3".to_string()),
        ];
        let e = diff(
            "\"out\"",
            (&want, &want),
            &got,
            &got,
            Order::Exact,
            "expected",
        )
        .unwrap_err();
        assert!(e.contains("first difference at record 2"), "{e}");
        assert!(e.contains("in epoch 4"), "{e}");
        assert!(e.contains("\n  expected  2\n  got       9"), "{e}");
    }

    #[test]
    fn worker_counts_that_disagree_fail_the_case_naming_the_record() {
        let case = Case {
            name: "c".into(),
            description: None,
            inputs: Vec::new(),
            expect: Vec::new(),
            fails_with: None,
        };
        let run = |line: &str| Captured {
            outputs: Vec::new(),
            sinks: vec![(
                "out".to_string(),
                vec![(1, "{\"a\":1}".to_string()), (2, line.to_string())],
            )],
        };
        let runs = vec![
            (1, Ok(run("{\"a\":2}")), Duration::ZERO),
            (4, Ok(run("{\"a\":3}")), Duration::ZERO),
        ];
        let r = judge(&case, runs, false);
        let Outcome::Fail(m) = r.outcome else {
            panic!("{:?}", r.outcome)
        };
        assert!(
            m.contains("\"out\": the output differs between 1 worker and 4 workers at record 2"),
            "{m}"
        );
        assert!(m.contains("(epoch 2) {\"a\":3}"), "{m}");
    }

    #[test]
    fn multiset_diff_lists_missing_and_unexpected() {
        let want = vec!["1".to_string(), "2".to_string(), "2".to_string()];
        let got = vec![
            (0, "2".to_string()),
            (1, "1".to_string()),
            (1, "3".to_string()),
        ];
        let e = diff(
            "\"out\"",
            (&want, &want),
            &got,
            &got,
            Order::Any,
            "expected",
        )
        .unwrap_err();
        assert!(e.contains("1 record missing, 1 record unexpected"), "{e}");
        assert!(e.contains("missing    2"), "{e}");
        assert!(e.contains("unexpected 3 (epoch 1)"), "{e}");
        let same = vec![
            (0, "2".to_string()),
            (1, "1".to_string()),
            (1, "2".to_string()),
        ];
        assert!(diff("x", (&want, &want), &same, &same, Order::Any, "expected").is_ok());
        assert!(diff("x", (&want, &want), &same, &same, Order::Exact, "expected").is_err());
    }
}

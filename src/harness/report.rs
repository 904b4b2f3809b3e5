//! The results of `lockstep test`: a text report (no timings, so that it
//! is the same however the runs were scheduled) and JUnit XML.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// How a case came out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every run matched every expectation.
    Pass,
    /// An expectation did not hold: the diff.
    Fail(String),
    /// The case could not run as written (the job failed, say).
    Error(String),
}

/// One case's result.
#[derive(Clone, Debug)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// Its description.
    pub description: Option<String>,
    /// The worker counts it ran at.
    pub workers: Vec<usize>,
    /// Pass, fail or error.
    pub outcome: Outcome,
    /// Time its runs took, summed (JUnit only).
    pub time: Duration,
    /// Golden files `--update` rewrote.
    pub updated: Vec<String>,
}

/// One graph file's results.
#[derive(Clone, Debug)]
pub struct FileResult {
    /// The graph file.
    pub path: PathBuf,
    /// Why its cases could not be loaded.
    pub error: Option<String>,
    /// Its cases, in declaration order.
    pub cases: Vec<CaseResult>,
}

/// Everything `lockstep test` found.
#[derive(Clone, Debug)]
pub struct Report {
    /// Per file, in the order given.
    pub files: Vec<FileResult>,
}

fn indent(text: &str, by: &str) -> String {
    text.lines()
        .map(|l| format!("{by}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Report {
    /// (passed, failed, errors): a file that did not load counts as an error.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for f in &self.files {
            if f.error.is_some() {
                c.2 += 1;
            }
            for r in &f.cases {
                match r.outcome {
                    Outcome::Pass => c.0 += 1,
                    Outcome::Fail(_) => c.1 += 1,
                    Outcome::Error(_) => c.2 += 1,
                }
            }
        }
        c
    }

    /// Whether every case of every file passed.
    pub fn passed(&self) -> bool {
        let (_, f, e) = self.counts();
        f == 0 && e == 0
    }

    /// The report for a terminal.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for f in &self.files {
            let _ = writeln!(s, "{}", f.path.display());
            if let Some(e) = &f.error {
                let _ = writeln!(
                    s,
                    "  ERROR cannot run its tests:\n{}",
                    indent(e, "        ")
                );
                continue;
            }
            if f.cases.is_empty() {
                let _ = writeln!(s, "  (no case matches the filter)");
            }
            for c in &f.cases {
                let w: Vec<String> = c.workers.iter().map(ToString::to_string).collect();
                let at = format!(
                    "({} worker{})",
                    w.join(", "),
                    if c.workers == [1] { "" } else { "s" }
                );
                match &c.outcome {
                    Outcome::Pass => {
                        let _ = writeln!(s, "  ok    {} {at}", c.name);
                    }
                    Outcome::Fail(d) => {
                        let _ = writeln!(s, "  FAIL  {} {at}", c.name);
                        if let Some(desc) = &c.description {
                            let _ = writeln!(s, "        ({desc})");
                        }
                        let _ = writeln!(s, "{}", indent(d, "        "));
                    }
                    Outcome::Error(d) => {
                        let _ = writeln!(s, "  ERROR {} {at}", c.name);
                        if let Some(desc) = &c.description {
                            let _ = writeln!(s, "        ({desc})");
                        }
                        let _ = writeln!(s, "{}", indent(d, "        "));
                    }
                }
                for u in &c.updated {
                    let _ = writeln!(s, "        {u}");
                }
            }
        }
        let (p, f, e) = self.counts();
        let _ = writeln!(
            s,
            "test result: {}. {p} passed, {f} failed, {e} error{}",
            if self.passed() { "ok" } else { "FAILED" },
            if e == 1 { "" } else { "s" }
        );
        s
    }

    /// JUnit XML: one `testsuite` per graph file, one `testcase` per case.
    pub fn junit(&self) -> String {
        let (p, f, e) = self.counts();
        let time: f64 = self
            .files
            .iter()
            .flat_map(|f| &f.cases)
            .map(|c| c.time.as_secs_f64())
            .sum();
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            s,
            "<testsuites name=\"lockstep test\" tests=\"{}\" failures=\"{f}\" errors=\"{e}\" time=\"{time:.3}\">",
            p + f + e
        );
        for file in &self.files {
            let name = xml(&file.path.display().to_string());
            let fails = file
                .cases
                .iter()
                .filter(|c| matches!(c.outcome, Outcome::Fail(_)))
                .count();
            let errs = file
                .cases
                .iter()
                .filter(|c| matches!(c.outcome, Outcome::Error(_)))
                .count()
                + usize::from(file.error.is_some());
            let t: f64 = file.cases.iter().map(|c| c.time.as_secs_f64()).sum();
            let _ = writeln!(
                s,
                "  <testsuite name=\"{name}\" tests=\"{}\" failures=\"{fails}\" errors=\"{errs}\" time=\"{t:.3}\">",
                file.cases.len() + usize::from(file.error.is_some())
            );
            if let Some(err) = &file.error {
                let _ = writeln!(
                    s,
                    "    <testcase classname=\"{name}\" name=\"(load)\" time=\"0.000\">\n      <error message=\"cannot run its tests\">{}</error>\n    </testcase>",
                    xml(err)
                );
            }
            for c in &file.cases {
                let _ = write!(
                    s,
                    "    <testcase classname=\"{name}\" name=\"{}\" time=\"{:.3}\">",
                    xml(&c.name),
                    c.time.as_secs_f64()
                );
                if let Some(desc) = &c.description {
                    let _ = write!(s, "\n      <system-out>{}</system-out>\n    ", xml(desc));
                }
                let first = |d: &str| xml(d.lines().next().unwrap_or_default());
                match &c.outcome {
                    Outcome::Pass => {}
                    Outcome::Fail(d) => {
                        let _ = write!(
                            s,
                            "\n      <failure message=\"{}\">{}</failure>\n    ",
                            first(d),
                            xml(d)
                        );
                    }
                    Outcome::Error(d) => {
                        let _ = write!(
                            s,
                            "\n      <error message=\"{}\">{}</error>\n    ",
                            first(d),
                            xml(d)
                        );
                    }
                }
                s.push_str("</testcase>\n");
            }
            s.push_str("  </testsuite>\n");
        }
        s.push_str("</testsuites>\n");
        s
    }
}

/// Escapes text for XML content and attributes; drops characters XML 1.0
/// cannot carry.
fn xml(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' => s.push_str("&quot;"),
            '\'' => s.push_str("&apos;"),
            '\n' | '\t' | '\r' => s.push(ch),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                let _ = write!(s, "\\u{{{:x}}}", c as u32);
            }
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::xml;

    #[test]
    fn xml_escapes_markup_and_control_characters() {
        assert_eq!(xml("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;\\u{1}");
    }
}

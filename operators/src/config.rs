//! Parsing node, source and sink configs: JSON paths, diagnostics, and serde
//! errors rewritten into messages that say what, where and how to fix.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value as Json;

use crate::suggest;

/// One step of a JSON path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Seg {
    /// An object member.
    Key(String),
    /// An array element.
    Index(usize),
}

/// A JSON path such as `nodes.kb.select.kb` or `nodes.u.inputs[1]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Path(pub Vec<Seg>);

impl Path {
    /// The empty (root) path.
    pub fn root() -> Path {
        Path(Vec::new())
    }

    /// This path with an object member appended.
    #[must_use]
    pub fn key(&self, k: &str) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }

    /// This path with an array index appended.
    #[must_use]
    pub fn index(&self, i: usize) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    /// `prefix` followed by this path.
    #[must_use]
    pub fn under(&self, prefix: &Path) -> Path {
        let mut p = prefix.clone();
        p.0.extend(self.0.iter().cloned());
        p
    }

    /// A path of object keys.
    pub fn of(keys: &[&str]) -> Path {
        Path(keys.iter().map(|k| Seg::Key((*k).to_string())).collect())
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(top level)");
        }
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A problem found in a graph: where (a JSON path) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diag {
    /// Where, relative to the object being checked until the caller prefixes it.
    pub path: Path,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Diag {
    /// A diagnostic at `path`.
    pub fn new(path: Path, message: impl Into<String>) -> Diag {
        Diag {
            path,
            message: message.into(),
        }
    }

    /// The same diagnostic with its path under `prefix`.
    #[must_use]
    pub fn under(mut self, prefix: &Path) -> Diag {
        self.path = self.path.under(prefix);
        self
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The path serde_path_to_error tracked, as a graph path.
pub fn convert_path(p: &serde_path_to_error::Path) -> Path {
    use serde_path_to_error::Segment;
    Path(
        p.iter()
            .filter_map(|s| match s {
                Segment::Seq { index } => Some(Seg::Index(*index)),
                Segment::Map { key } | Segment::Enum { variant: key } => {
                    Some(Seg::Key(key.clone()))
                }
                Segment::Unknown => None,
            })
            .collect(),
    )
}

/// Splits serde's "expected one of `a`, `b`" / "expected `a` or `b`" lists.
fn expected_names(msg: &str) -> Vec<String> {
    let Some(i) = msg.find("expected") else {
        return Vec::new();
    };
    msg[i..]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// A serde_json error's message without its " at line L column C" suffix
/// (callers give the position their own way) and with backticks as double
/// quotes.
pub fn json_error_text(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    msg.split(" at line ")
        .next()
        .unwrap_or(&msg)
        .replace('`', "\"")
}

/// serde's wording, in the words of the graph format.
fn backticks_to_quotes(msg: &str) -> String {
    let mut m = msg.replace('`', "\"");
    for (from, to) in [
        ("expected u32", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected i64", "expected an integer"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected an object"),
        ("integer `", "integer \""),
    ] {
        if let Some(rest) = m.strip_suffix(from) {
            m = format!("{rest}{to}");
        }
    }
    m
}

/// Deserializes a config from JSON, collecting every unknown field (with a
/// did-you-mean) and every field of the wrong type or value, so that one run
/// of `validate` shows them all.
///
/// # Errors
/// The diagnostics, with paths relative to `value`.
pub fn parse_config<T: DeserializeOwned>(value: Json) -> Result<T, Vec<Diag>> {
    match parse_config_lenient(value) {
        (Some(t), diags) if diags.is_empty() => Ok(t),
        (_, diags) => Err(diags),
    }
}

/// Like [`parse_config`], but also returns the config that remains once the
/// faulty fields are left out (optional ones then take their defaults), so
/// that a caller can go on checking the rest of it. The config is `None` when
/// no such remainder parses (a required field is missing or wrong).
pub fn parse_config_lenient<T: DeserializeOwned>(mut value: Json) -> (Option<T>, Vec<Diag>) {
    let mut diags = Vec::new();
    // Fields left out after an error: a later "missing field" for one of them
    // is the same mistake, not a second one.
    let mut removed: Vec<(Path, String)> = Vec::new();
    loop {
        let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(t) => return (Some(t), diags),
            Err(e) => e,
        };
        let path = convert_path(err.path());
        let msg = err.inner().to_string();
        if let Some(rest) = msg.strip_prefix("unknown field `") {
            let field = rest.split('`').next().unwrap_or_default().to_string();
            let expected = expected_names(&msg);
            let hint = suggest::hint(&field, expected.iter().map(String::as_str));
            let list = expected
                .iter()
                .map(|e| format!("\"{e}\""))
                .collect::<Vec<_>>()
                .join(", ");
            // serde_path_to_error may or may not include the field itself.
            let (parent, field_path) = match path.0.last() {
                Some(Seg::Key(k)) if *k == field => {
                    (Path(path.0[..path.0.len() - 1].to_vec()), path.clone())
                }
                _ => (path.clone(), path.key(&field)),
            };
            diags.push(Diag::new(
                field_path,
                format!("unknown field \"{field}\"{hint}; expected one of {list}"),
            ));
            if !remove_member(&mut value, &parent, &field) {
                return (None, diags);
            }
            continue;
        }
        if let Some(rest) = msg.strip_prefix("missing field `") {
            let name = rest.split('`').next().unwrap_or_default();
            if !removed.iter().any(|(p, f)| *p == path && f == name) {
                diags.push(Diag::new(path, format!("missing field \"{name}\"; add it")));
            }
            return (None, diags);
        }
        let message = if let Some(rest) = msg.strip_prefix("unknown variant `") {
            let name = rest.split('`').next().unwrap_or_default();
            let expected = expected_names(&msg);
            let hint = suggest::hint(name, expected.iter().map(String::as_str));
            format!(
                "unknown value \"{name}\"{hint}; expected one of {}",
                expected
                    .iter()
                    .map(|e| format!("\"{e}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            backticks_to_quotes(&msg)
        };
        diags.push(Diag::new(path.clone(), message));
        // Leave the faulty field out and look for more.
        let Some(Seg::Key(field)) = path.0.last().cloned() else {
            return (None, diags);
        };
        let parent = Path(path.0[..path.0.len() - 1].to_vec());
        if !remove_member(&mut value, &parent, &field) {
            return (None, diags);
        }
        removed.push((parent, field));
    }
}

fn remove_member(value: &mut Json, at: &Path, field: &str) -> bool {
    let mut cur = value;
    for s in &at.0 {
        cur = match (s, cur) {
            (Seg::Key(k), Json::Object(m)) => match m.get_mut(k) {
                Some(v) => v,
                None => return false,
            },
            (Seg::Index(i), Json::Array(a)) => match a.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match cur {
        Json::Object(m) => m.shift_remove(field).is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        size_ms: u64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        input: String,
        #[serde(rename = "where")]
        cond: String,
        inner: Option<Inner>,
    }

    #[test]
    fn collects_all_unknown_fields_with_hints() {
        let v: Json = serde_json::from_str(
            r#"{"input":"a","wher":"x","inner":{"size":1,"size_ms":2},"zzz":1}"#,
        )
        .unwrap();
        let errs = parse_config::<Cfg>(v).unwrap_err();
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 4, "{text:#?}");
        assert!(
            text[0].starts_with("wher: unknown field \"wher\" (did you mean \"where\"?)"),
            "{text:#?}"
        );
        assert!(
            text[1].starts_with("inner.size: unknown field \"size\" (did you mean \"size_ms\"?)"),
            "{text:#?}"
        );
        assert!(
            text[2].starts_with("zzz: unknown field \"zzz\"; expected one of"),
            "{text:#?}"
        );
        assert_eq!(text[3], "(top level): missing field \"where\"; add it");
    }

    #[test]
    fn type_errors_name_the_path() {
        let v: Json =
            serde_json::from_str(r#"{"input":"a","where":"x","inner":{"size_ms":"1"}}"#).unwrap();
        let errs = parse_config::<Cfg>(v).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path.to_string(), "inner.size_ms");
        assert!(
            errs[0].message.contains("invalid type"),
            "{}",
            errs[0].message
        );
    }
}

//! Where things are in a graph file: a map from JSON path to line and column,
//! built by a small scanner over text that serde_json has already accepted.
//! It also finds duplicate object keys, which serde_json would silently merge.

use std::collections::BTreeMap;

use lockstep_operators::config::Path;

/// Line and column (both 1-based, column in characters) of a position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LineCol {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

/// Positions of every value (and object key) of a JSON document.
#[derive(Debug, Default)]
pub struct PosIndex {
    values: BTreeMap<Path, LineCol>,
    /// Duplicate keys: the path of the repeated member and where it repeats.
    pub duplicates: Vec<(Path, LineCol)>,
}

impl PosIndex {
    /// Scans `text`, which must be valid JSON (anything after an error is
    /// simply not indexed).
    pub fn build(text: &str) -> PosIndex {
        let mut s = Scanner {
            chars: text.char_indices().peekable(),
            line: 1,
            col: 1,
            idx: PosIndex::default(),
        };
        s.skip_ws();
        s.value(&Path::root());
        s.idx
    }

    /// The position of the value at `path`, or of its nearest ancestor that
    /// exists.
    pub fn find(&self, path: &Path) -> Option<LineCol> {
        let mut p = path.0.clone();
        loop {
            if let Some(lc) = self.values.get(&Path(p.clone())) {
                return Some(*lc);
            }
            p.pop()?;
        }
    }
}

struct Scanner<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    line: usize,
    col: usize,
    idx: PosIndex,
}

impl Scanner<'_> {
    fn here(&self) -> LineCol {
        LineCol {
            line: self.line,
            col: self.col,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let (_, c) = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn peek(&mut self) -> Option<char> {
        self.chars.peek().map(|(_, c)| *c)
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r')) {
            self.bump();
        }
    }

    fn string(&mut self) -> String {
        let mut out = String::new();
        self.bump(); // opening quote
        while let Some(c) = self.bump() {
            match c {
                '"' => break,
                '\\' => match self.bump() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some('b') => out.push('\u{8}'),
                    Some('f') => out.push('\u{c}'),
                    Some('u') => {
                        let hex: String = (0..4).filter_map(|_| self.bump()).collect();
                        let mut code = u32::from_str_radix(&hex, 16).unwrap_or(0xFFFD);
                        if (0xD800..0xDC00).contains(&code) && self.peek() == Some('\\') {
                            self.bump();
                            self.bump();
                            let low: String = (0..4).filter_map(|_| self.bump()).collect();
                            let low = u32::from_str_radix(&low, 16).unwrap_or(0xDC00);
                            code = 0x10000
                                + ((code - 0xD800) << 10)
                                + (low.wrapping_sub(0xDC00) & 0x3FF);
                        }
                        out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
                    }
                    Some(other) => out.push(other),
                    None => break,
                },
                c => out.push(c),
            }
        }
        out
    }

    fn value(&mut self, path: &Path) {
        self.idx.values.insert(path.clone(), self.here());
        match self.peek() {
            Some('{') => {
                self.bump();
                let mut seen: Vec<String> = Vec::new();
                loop {
                    self.skip_ws();
                    match self.peek() {
                        Some('"') => {
                            let at = self.here();
                            let key = self.string();
                            let child = path.key(&key);
                            if seen.contains(&key) {
                                self.idx.duplicates.push((child.clone(), at));
                            } else {
                                seen.push(key);
                            }
                            self.skip_ws();
                            self.bump(); // ':'
                            self.skip_ws();
                            self.value(&child);
                            self.skip_ws();
                            if self.peek() == Some(',') {
                                self.bump();
                            }
                        }
                        Some('}') => {
                            self.bump();
                            return;
                        }
                        _ => return,
                    }
                }
            }
            Some('[') => {
                self.bump();
                let mut i = 0;
                loop {
                    self.skip_ws();
                    match self.peek() {
                        Some(']') => {
                            self.bump();
                            return;
                        }
                        Some(_) => {
                            self.value(&path.index(i));
                            i += 1;
                            self.skip_ws();
                            if self.peek() == Some(',') {
                                self.bump();
                            }
                        }
                        None => return,
                    }
                }
            }
            Some('"') => {
                self.string();
            }
            _ => {
                while matches!(self.peek(), Some(c) if !matches!(c, ',' | '}' | ']' | ' ' | '\t' | '\n' | '\r'))
                {
                    self.bump();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_values_and_duplicates() {
        let text = "{\n  \"a\": {\"b\": [1, {\"c\": \"x\\\"y\"}]},\n  \"a\": 2\n}";
        let idx = PosIndex::build(text);
        let p = Path::of(&["a", "b"]).index(1).key("c");
        assert_eq!(idx.find(&p), Some(LineCol { line: 2, col: 24 }));
        // A repeated key points at its last value, the one serde_json keeps.
        assert_eq!(
            idx.find(&Path::of(&["a", "zz"])),
            Some(LineCol { line: 3, col: 8 })
        );
        assert_eq!(idx.duplicates.len(), 1);
        assert_eq!(idx.duplicates[0].1, LineCol { line: 3, col: 3 });
    }
}

//! `LIKE` / `ILIKE` patterns: `%` matches any sequence of characters, `_`
//! exactly one character (a Unicode scalar value), and the escape character
//! (backslash unless `ESCAPE` says otherwise; `ESCAPE ''` means none) makes
//! the next character literal. A pattern is compiled once into tokens; matching
//! does not allocate.

/// One element of a compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    /// A literal character.
    Lit(char),
    /// `_`
    One,
    /// `%` (consecutive ones are merged).
    Any,
}

/// How a pattern is matched: common shapes avoid the general matcher.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Shape {
    /// No wildcard: plain equality.
    Exact(String),
    /// `abc%`
    Prefix(String),
    /// `%abc`
    Suffix(String),
    /// `%abc%`
    Contains(String),
    /// Anything else.
    General(Vec<Tok>),
}

/// A compiled `LIKE` pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pattern {
    shape: Shape,
    /// `ILIKE`: characters compare by their lowercase mappings.
    ci: bool,
}

impl Pattern {
    /// Compiles `pat` with escape character `escape` (`None`: no escape).
    ///
    /// # Errors
    /// When the pattern ends with the escape character.
    pub(crate) fn new(pat: &str, escape: Option<char>, ci: bool) -> Result<Pattern, String> {
        let mut toks = Vec::new();
        let mut chars = pat.chars();
        while let Some(c) = chars.next() {
            if Some(c) == escape {
                match chars.next() {
                    Some(n) => toks.push(Tok::Lit(n)),
                    None => return Err("LIKE pattern must not end with escape character".into()),
                }
            } else if c == '%' {
                if toks.last() != Some(&Tok::Any) {
                    toks.push(Tok::Any);
                }
            } else if c == '_' {
                toks.push(Tok::One);
            } else {
                toks.push(Tok::Lit(c));
            }
        }
        let shape = if ci {
            Shape::General(toks)
        } else {
            shape_of(toks)
        };
        Ok(Pattern { shape, ci })
    }

    /// Whether `s` matches the whole pattern.
    pub(crate) fn matches(&self, s: &str) -> bool {
        match &self.shape {
            Shape::Exact(p) => s == p,
            Shape::Prefix(p) => s.starts_with(p.as_str()),
            Shape::Suffix(p) => s.ends_with(p.as_str()),
            Shape::Contains(p) => s.contains(p.as_str()),
            Shape::General(toks) => general(toks, s, self.ci),
        }
    }
}

fn literal_text(toks: &[Tok]) -> Option<String> {
    toks.iter()
        .map(|t| match t {
            Tok::Lit(c) => Some(*c),
            _ => None,
        })
        .collect()
}

fn shape_of(toks: Vec<Tok>) -> Shape {
    let n = toks.len();
    let starts = toks.first() == Some(&Tok::Any);
    let ends = n > 0 && toks[n - 1] == Tok::Any;
    let inner = match (starts, ends) {
        (true, true) if n >= 2 => &toks[1..n - 1],
        (true, _) => &toks[1..],
        (false, true) => &toks[..n - 1],
        (false, false) => &toks[..],
    };
    match literal_text(inner) {
        Some(text) => match (starts, ends) {
            (false, false) => Shape::Exact(text),
            (false, true) => Shape::Prefix(text),
            (true, false) => Shape::Suffix(text),
            (true, true) => Shape::Contains(text),
        },
        None => Shape::General(toks),
    }
}

fn char_eq(a: char, b: char, ci: bool) -> bool {
    a == b || (ci && a.to_lowercase().eq(b.to_lowercase()))
}

/// The classic wildcard matcher: greedy, backtracking only to the last `%`
/// (a later `%` subsumes every earlier one), so O(len(s) * len(pattern)).
fn general(toks: &[Tok], s: &str, ci: bool) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    // (token index after the last %, string position it is retried from)
    let mut star: Option<(usize, usize)> = None;
    loop {
        let next = s[si..].chars().next();
        if let Some(t) = toks.get(pi) {
            match (t, next) {
                (Tok::Any, _) => {
                    pi += 1;
                    star = Some((pi, si));
                    continue;
                }
                (Tok::One, Some(c)) => {
                    pi += 1;
                    si += c.len_utf8();
                    continue;
                }
                (Tok::Lit(l), Some(c)) if char_eq(*l, c, ci) => {
                    pi += 1;
                    si += c.len_utf8();
                    continue;
                }
                _ => {}
            }
        } else if next.is_none() {
            return true;
        }
        // Mismatch: let the last % swallow one more character.
        match star {
            Some((sp, ss)) => match s[ss..].chars().next() {
                Some(c) => {
                    let ns = ss + c.len_utf8();
                    star = Some((sp, ns));
                    pi = sp;
                    si = ns;
                }
                None => return false,
            },
            None => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn like(s: &str, p: &str) -> bool {
        Pattern::new(p, Some('\\'), false).unwrap().matches(s)
    }

    fn ilike(s: &str, p: &str) -> bool {
        Pattern::new(p, Some('\\'), true).unwrap().matches(s)
    }

    /// A plain recursive matcher to check the fast one against.
    fn reference(toks: &[Tok], s: &[char]) -> bool {
        match toks.split_first() {
            None => s.is_empty(),
            Some((Tok::Any, rest)) => (0..=s.len()).any(|i| reference(rest, &s[i..])),
            Some((Tok::One, rest)) => !s.is_empty() && reference(rest, &s[1..]),
            Some((Tok::Lit(c), rest)) => s.first() == Some(c) && reference(rest, &s[1..]),
        }
    }

    #[test]
    fn wildcards_and_escapes() {
        assert!(like("hello", "hello"));
        assert!(!like("hello", "hell"));
        assert!(like("hello", "h%"));
        assert!(like("hello", "%llo"));
        assert!(like("hello", "%ll%"));
        assert!(like("hello", "h_llo"));
        assert!(like("héllo", "h_llo"));
        assert!(!like("hllo", "h_llo"));
        assert!(like("", "%"));
        assert!(like("", ""));
        assert!(!like("a", ""));
        assert!(like("a%b", "a\\%b"));
        assert!(!like("axb", "a\\%b"));
        assert!(like("a_b", "a\\_b"));
        assert!(like("a\\b", "a\\\\b"));
        assert!(like("mississippi", "%iss%ppi"));
        assert!(like("mississippi", "m%s%s%i"));
        assert!(!like("mississippi", "m%s%s%x"));
        assert!(like("abc", "%%%"));
        assert!(Pattern::new("ab\\", Some('\\'), false).is_err());
        assert!(Pattern::new("a!%", Some('!'), false).unwrap().matches("a%"));
        assert!(Pattern::new("a\\", None, false).unwrap().matches("a\\"));
        assert!(ilike("HeLLo", "hel%"));
        assert!(ilike("ÉCOLE", "éc_le"));
        assert!(!ilike("abc", "abd"));
    }

    #[test]
    fn general_matcher_agrees_with_reference() {
        let alphabet = ['a', 'b', 'é'];
        let pats = [
            "", "%", "_", "a%", "%a", "%a%", "a_b", "%a%b%", "_%_", "a%a%a", "%ab%ba%", "é_",
        ];
        let mut strs = vec![String::new()];
        for _ in 0..5 {
            let mut next = Vec::new();
            for s in &strs {
                for c in alphabet {
                    next.push(format!("{s}{c}"));
                }
            }
            strs.extend(next);
            strs.sort();
            strs.dedup();
        }
        for p in pats {
            let pat = Pattern::new(p, Some('\\'), false).unwrap();
            let toks = match Pattern::new(p, Some('\\'), true).unwrap().shape {
                Shape::General(t) => t,
                _ => unreachable!(),
            };
            for s in &strs {
                let chars: Vec<char> = s.chars().collect();
                let want = reference(&toks, &chars);
                assert_eq!(pat.matches(s), want, "{s:?} LIKE {p:?}");
                assert_eq!(general(&toks, s, false), want, "{s:?} LIKE {p:?}");
            }
        }
    }
}

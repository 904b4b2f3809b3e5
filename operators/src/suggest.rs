//! "Did you mean" suggestions for misspelt names.

/// The candidate nearest to `name` by edit distance, if it is near enough to
/// be a likely typo (at most a third of the name's length, and at least 1).
pub fn did_you_mean<'a, I>(name: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = (name.chars().count() / 3).max(1);
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        let (n, lc) = (name.to_lowercase(), c.to_lowercase());
        // A name that is the start of a candidate ("size" for "size_ms") is a
        // likely slip too.
        let d = if n.len() >= 3 && lc.starts_with(&n) {
            1
        } else {
            distance(&n, &lc)
        };
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// ` (did you mean "x"?)`, or nothing.
pub fn hint<'a, I>(name: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    match did_you_mean(name, candidates) {
        Some(c) => format!(" (did you mean \"{c}\"?)"),
        None => String::new(),
    }
}

/// Levenshtein distance over chars.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_names_only() {
        assert_eq!(did_you_mean("byte", ["bytes", "url"]), Some("bytes"));
        assert_eq!(did_you_mean("cnt", ["count", "ct"]), Some("ct"));
        assert_eq!(did_you_mean("zzzzzz", ["bytes", "url"]), None);
        assert_eq!(
            did_you_mean("size", ["size_ms", "slide_ms"]),
            Some("size_ms")
        );
        assert_eq!(
            hint("fitler", ["filter", "map"]),
            " (did you mean \"filter\"?)"
        );
    }
}

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

/// Optimal string alignment distance over chars: insertions, deletions,
/// substitutions and swaps of two neighbours ("feild" → "field") cost 1.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
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

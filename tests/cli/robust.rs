//! Robustness: validation never panics, whatever the input, and every
//! diagnostic it gives has a position.

use proptest::prelude::*;

use lockstep::{Graph, Registry};

fn base() -> String {
    std::fs::read_to_string(super::common::root().join("examples/clicks/graph.json"))
        .expect("example")
}

/// Deletes, duplicates or replaces a few characters of a valid graph.
fn mutate(text: &str, edits: &[(usize, u8, char)]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for &(pos, kind, c) in edits {
        if chars.is_empty() {
            break;
        }
        let i = pos % chars.len();
        match kind % 3 {
            0 => {
                chars.remove(i);
            }
            1 => chars.insert(i, c),
            _ => chars[i] = c,
        }
    }
    chars.into_iter().collect()
}

fn check(text: &str) -> Result<(), TestCaseError> {
    let dir = std::env::temp_dir();
    match Graph::from_json_str(text, "g.json", &dir, &Registry::builtin()) {
        Ok(_) => {}
        Err(e) => {
            prop_assert!(!e.diagnostics.is_empty());
            for d in &e.diagnostics {
                prop_assert!(
                    d.at.is_some_and(|lc| lc.line >= 1 && lc.col >= 1),
                    "no position: {d}"
                );
                prop_assert!(!d.message.is_empty());
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn mutated_graphs_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>(), proptest::char::any()), 1..6)) {
        check(&mutate(&base(), &edits))?;
    }

    #[test]
    fn structural_mutations_never_panic(edits in proptest::collection::vec(
        (any::<usize>(), any::<u8>(), proptest::sample::select(vec!['{', '}', '[', ']', '"', ',', ':', '.', '0', '-', 'e', ' '])), 1..4)) {
        check(&mutate(&base(), &edits))?;
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        check(&text)?;
    }
}

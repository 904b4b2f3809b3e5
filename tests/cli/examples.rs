//! Every example in `examples/` validates, and produces its checked-in
//! expected output byte for byte at 1, 2 and 4 workers.

use std::fs;
use std::path::PathBuf;

use super::common::*;

fn example_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(root().join("examples"))
        .expect("examples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("graph.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn there_are_examples() {
    assert!(
        example_dirs().len() >= 2 && root().join("examples/nexmark").is_dir(),
        "{:?}",
        example_dirs()
    );
}

#[test]
fn every_example_validates() {
    for dir in example_dirs() {
        let r = run_ok(&dir, &["validate", "graph.json"]);
        assert!(r.stderr.is_empty(), "{}: {}", dir.display(), r.stderr);
    }
}

#[test]
fn every_example_produces_its_expected_output_at_1_2_and_4_workers() {
    for dir in example_dirs() {
        let expected = dir.join("expected");
        assert!(
            expected.is_dir(),
            "{} has no expected/ directory",
            dir.display()
        );
        for workers in ["1", "2", "4"] {
            let tmp = tempdir();
            copy_dir(&dir, tmp.path());
            // Remove outputs of earlier runs that the copy may have brought along.
            for e in fs::read_dir(tmp.path()).expect("dir").flatten() {
                if e.file_name().to_string_lossy().contains(".out.") {
                    fs::remove_file(e.path()).expect("rm");
                }
            }
            let r = run_ok(
                tmp.path(),
                &["run", "graph.json", "--workers", workers, "--quiet"],
            );
            let mut checked = 0;
            for e in fs::read_dir(&expected).expect("expected/").flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let want = read(&e.path());
                let got = if name == "stdout" {
                    r.stdout.clone().into_bytes()
                } else {
                    read(&tmp.path().join(&name))
                };
                assert_same(
                    &want,
                    &got,
                    &format!("{}/{name} at --workers {workers}", dir.display()),
                );
                checked += 1;
            }
            assert!(checked > 0);
            for e in fs::read_dir(tmp.path()).expect("dir").flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.contains(".out.") {
                    assert!(
                        expected.join(&name).is_file(),
                        "{}: output {name} has no expected/{name}",
                        dir.display()
                    );
                }
            }
        }
    }
}

#[test]
fn graph_rendering_is_checked_in() {
    let dir = root().join("examples/clicks");
    for (fmt, file) in [("dot", "graph.dot"), ("mermaid", "graph.mmd")] {
        let r = run_ok(&dir, &["graph", "graph.json", "--format", fmt]);
        assert_same(&read(&dir.join(file)), r.stdout.as_bytes(), file);
    }
}

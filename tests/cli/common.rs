//! Helpers shared by the CLI tests.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The built `lockstep` binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lockstep"))
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What a run printed and returned.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `lockstep ARGS` in `dir`.
pub fn lockstep(dir: &Path, args: &[&str]) -> Run {
    lockstep_stdin(dir, args, "")
}

/// Runs `lockstep ARGS` in `dir` with `stdin` as standard input.
pub fn lockstep_stdin(dir: &Path, args: &[&str], stdin: &str) -> Run {
    use std::io::Write;
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lockstep");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_string();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(data.as_bytes());
    });
    let out = child.wait_with_output().expect("wait lockstep");
    writer.join().expect("stdin writer");
    Run::from(out)
}

/// Runs and asserts exit 0.
pub fn run_ok(dir: &Path, args: &[&str]) -> Run {
    let r = lockstep(dir, args);
    assert_eq!(
        r.code,
        0,
        "lockstep {args:?} in {}\nstderr:\n{}",
        dir.display(),
        r.stderr
    );
    r
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Copies a directory's files (not subdirectories, except `expected/`).
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let p = e.path();
        if p.is_file() {
            fs::copy(&p, to.join(e.file_name())).expect("copy");
        } else if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        }
    }
}

/// Writes a file.
pub fn write(dir: &Path, name: &str, text: &str) {
    fs::write(dir.join(name), text).expect("write");
}

/// Reads a file as bytes.
pub fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Reads a file as text.
pub fn read_text(path: &Path) -> String {
    String::from_utf8(read(path)).expect("utf-8")
}

/// A readable first difference between two byte strings, for assertion messages.
pub fn first_diff(want: &[u8], got: &[u8]) -> String {
    let w = String::from_utf8_lossy(want);
    let g = String::from_utf8_lossy(got);
    for (i, (a, b)) in w.lines().zip(g.lines()).enumerate() {
        if a != b {
            return format!("line {}:\n  want: {a}\n  got:  {b}", i + 1);
        }
    }
    format!(
        "lengths differ: want {} lines, got {} lines",
        w.lines().count(),
        g.lines().count()
    )
}

/// Asserts two files' bytes are equal, showing the first difference.
pub fn assert_same(want: &[u8], got: &[u8], what: &str) {
    if want != got {
        panic!("{what} differs: {}", first_diff(want, got));
    }
}

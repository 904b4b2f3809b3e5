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

/// A TCP port free on loopback now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Writes a hosts file for `n` processes on free loopback ports.
pub fn hosts_file(dir: &Path, n: usize) -> PathBuf {
    let text: String = (0..n)
        .map(|_| format!("127.0.0.1:{}\n", free_port()))
        .collect();
    let p = dir.join("hosts");
    fs::write(&p, text).expect("hosts");
    p
}

/// Starts process `i` of an `n`-process cluster: `lockstep run GRAPH
/// --processes n --process-id i --hosts HOSTS ARGS...` in `dir`.
pub fn spawn_process(
    dir: &Path,
    graph: &str,
    n: usize,
    i: usize,
    hosts: &Path,
    args: &[&str],
) -> std::process::Child {
    spawn_process_env(dir, graph, n, i, hosts, args, &[])
}

/// [`spawn_process`] with extra environment variables.
pub fn spawn_process_env(
    dir: &Path,
    graph: &str,
    n: usize,
    i: usize,
    hosts: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Child {
    Command::new(bin())
        .envs(env.iter().copied())
        .args(["run", graph, "--processes", &n.to_string()])
        .args(["--process-id", &i.to_string(), "--hosts"])
        .arg(hosts)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lockstep")
}

/// Waits for every process, killing all and failing the test if any is
/// still running after `timeout` (a hang).
pub fn wait_all(children: Vec<std::process::Child>, timeout: std::time::Duration) -> Vec<Run> {
    let deadline = std::time::Instant::now() + timeout;
    let mut children = children;
    loop {
        let done = children
            .iter_mut()
            .all(|c| c.try_wait().expect("try_wait").is_some());
        if done {
            break;
        }
        if std::time::Instant::now() > deadline {
            for c in &mut children {
                let _ = c.kill();
            }
            let runs: Vec<Run> = children
                .into_iter()
                .map(|c| Run::from(c.wait_with_output().expect("wait")))
                .collect();
            panic!(
                "processes still running after {timeout:?} (a hang); stderr:\n{}",
                runs.iter()
                    .map(|r| r.stderr.as_str())
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    children
        .into_iter()
        .map(|c| Run::from(c.wait_with_output().expect("wait")))
        .collect()
}

/// Runs an `n`-process cluster of `workers` workers each to the end.
pub fn run_cluster(dir: &Path, graph: &str, n: usize, workers: usize, args: &[&str]) -> Vec<Run> {
    let hosts = hosts_file(dir, n);
    let w = workers.to_string();
    let mut all = vec!["--workers", w.as_str()];
    all.extend_from_slice(args);
    let children = (0..n)
        .map(|i| spawn_process(dir, graph, n, i, &hosts, &all))
        .collect();
    wait_all(children, std::time::Duration::from_secs(120))
}

/// Writes the crash-test job (tests/data/crash/graph.json: tumbling, sliding
/// and session windows, a windowed and an unbounded join, an aggregate, CSV
/// and partitioned sinks) over `events` nexmark events into `dir`.
pub fn write_crash_graph(dir: &Path, events: u64) {
    let text = fs::read_to_string(root().join("tests/data/crash/graph.json")).expect("graph");
    write(
        dir,
        "graph.json",
        &text.replace("\"count\": 200000", &format!("\"count\": {events}")),
    );
}

/// Every output file (`.jsonl`, `.csv`) of a job directory, by name.
pub fn outputs(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for e in fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if p.is_file() && (name.ends_with(".jsonl") || name.ends_with(".csv")) {
            out.insert(name, fs::read(&p).expect("read"));
        }
    }
    out
}

/// Asserts two sets of output files are the same files with the same bytes.
pub fn assert_outputs(
    want: &std::collections::BTreeMap<String, Vec<u8>>,
    got: &std::collections::BTreeMap<String, Vec<u8>>,
    what: &str,
) {
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "{what}: output files"
    );
    for (name, bytes) in want {
        assert_same(bytes, &got[name], &format!("{what}: {name}"));
    }
}

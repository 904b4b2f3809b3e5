//! Cluster mode: one job as several processes on timely's own cluster
//! configuration (`--processes N --process-id I --hosts FILE`), and the
//! start-up agreement every run makes first, "dataflow 0".
//!
//! Dataflow 0 is graph-independent: each process sends one [`Hello`] to
//! every worker (its graph fingerprint, layout, last complete checkpoint and
//! start-up decisions), and every worker then computes the same
//! [`Agreement`] from the same hellos — or the same error, so that a
//! mismatch stops every process with one clear message instead of hanging
//! or panicking inside the job's own dataflow.

use std::cell::RefCell;
use std::io::Write;
use std::net::{TcpListener, ToSocketAddrs};
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Input, Inspect, Probe};
use timely::dataflow::InputHandle;
use timely::dataflow::ProbeHandle;
use timely::worker::Worker;

use crate::graph::Graph;

/// How long a process waits for its peers by default (`--connect-timeout`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// This process's part in a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterOptions {
    /// Processes in the cluster.
    pub processes: usize,
    /// This process's index, `0..processes`.
    pub process: usize,
    /// Each process's `host:port`, in process order.
    pub addresses: Vec<String>,
    /// How long to wait for every peer to connect before giving up.
    pub connect_timeout: Duration,
}

impl ClusterOptions {
    /// The options of process `process` of `processes`, with the addresses
    /// of a hosts file: one `host:port` per line, in process order (blank
    /// lines and `#` comments are skipped; lines after the first
    /// `processes` are ignored, as timely does).
    ///
    /// # Errors
    /// An unreadable file, too few addresses, or a process id out of range.
    pub fn from_hosts_file(
        processes: usize,
        process: usize,
        hosts: &Path,
    ) -> Result<ClusterOptions, String> {
        let text = std::fs::read_to_string(hosts)
            .map_err(|e| format!("--hosts {}: cannot read it: {e}", hosts.display()))?;
        let addresses: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        ClusterOptions::new(processes, process, addresses, hosts)
    }

    fn new(
        processes: usize,
        process: usize,
        mut addresses: Vec<String>,
        hosts: &Path,
    ) -> Result<ClusterOptions, String> {
        if processes == 0 {
            return Err("--processes must be at least 1".to_string());
        }
        if process >= processes {
            return Err(format!(
                "--process-id {process} is out of range: with --processes {processes} it is 0 to {}",
                processes - 1
            ));
        }
        if addresses.len() < processes {
            return Err(format!(
                "--hosts {}: {} addresses for {processes} processes; list one host:port per process, in process order",
                hosts.display(),
                addresses.len()
            ));
        }
        addresses.truncate(processes);
        for (i, a) in addresses.iter().enumerate() {
            if a.to_socket_addrs().is_err() {
                return Err(format!(
                    "--hosts {}: line for process {i}: \"{a}\" is not a host:port address",
                    hosts.display()
                ));
            }
        }
        Ok(ClusterOptions {
            processes,
            process,
            addresses,
            connect_timeout: CONNECT_TIMEOUT,
        })
    }

    /// Checks that this process can listen on its address: a port in use
    /// is a clear error now rather than a failure inside timely.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub fn check_port(&self) -> Result<(), String> {
        let me = &self.addresses[self.process];
        TcpListener::bind(me.as_str()).map(drop).map_err(|e| {
            format!("process {} cannot listen on {me} (its line in --hosts): {e}; is another lockstep process or program using that port?", self.process)
        })
    }

    /// The timely configuration: `threads` workers per process. Timely's
    /// connection reports stay off (and what it prints regardless is kept
    /// off standard output by [`StdoutToStderr`]).
    pub fn timely_config(&self, threads: usize) -> timely::Config {
        timely::Config {
            communication: timely::CommunicationConfig::Cluster {
                threads,
                process: self.process,
                addresses: self.addresses.clone(),
                report: false,
                zerocopy: false,
            },
            worker: timely::WorkerConfig::default(),
        }
    }
}

/// Standard output sent to standard error while it lives: timely prints
/// its connection messages ("awaiting connections", "error connecting …
/// retrying") on standard output, which belongs to a `stdout` sink.
pub struct StdoutToStderr {
    saved: Option<std::os::fd::OwnedFd>,
}

impl StdoutToStderr {
    /// Starts the redirection (a no-op where it fails; then messages may
    /// reach standard output, as without it).
    pub fn start() -> StdoutToStderr {
        let _ = std::io::stdout().flush();
        let saved = rustix::io::dup(std::io::stdout()).ok();
        if saved.is_some() && rustix::stdio::dup2_stdout(std::io::stderr()).is_err() {
            return StdoutToStderr { saved: None };
        }
        StdoutToStderr { saved }
    }
}

impl Drop for StdoutToStderr {
    fn drop(&mut self) {
        let _ = std::io::stdout().flush();
        if let Some(fd) = self.saved.take() {
            let _ = rustix::stdio::dup2_stdout(&fd);
        }
    }
}

/// Ends the process with a clear message if the cluster is not connected
/// within the timeout (timely itself retries forever). Call
/// [`Watchdog::connected`] once `timely::execute` returns.
pub struct Watchdog {
    done: Arc<AtomicBool>,
}

impl Watchdog {
    /// Starts the timer for `options`.
    pub fn start(options: &ClusterOptions) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        let (timeout, me, peers) = (
            options.connect_timeout,
            options.process,
            options
                .addresses
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != options.process)
                .map(|(i, a)| format!("process {i} at {a}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        std::thread::spawn(move || {
            let step = Duration::from_millis(50);
            let mut waited = Duration::ZERO;
            while waited < timeout {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(step);
                waited += step;
            }
            if !flag.load(Ordering::SeqCst) {
                tracing::error!(
                    "lockstep: process {me}: the cluster did not connect within {:.0} s: not every peer is reachable ({peers}); start every process with the same --processes and --hosts, check the addresses, or raise --connect-timeout",
                    timeout.as_secs_f64()
                );
                std::process::exit(3);
            }
        });
        Watchdog { done }
    }

    /// The cluster connected: the timer stops.
    pub fn connected(&self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

/// The first panic's message in this process (see [`quiet_panics`]).
static PANIC: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Replaces the panic hook for a cluster run: timely panics in every
/// thread when a peer goes away, and unwinding through its threads can
/// abort the process or leave it waiting. The first panic instead prints
/// this run's error ([`broken`]) and ends the process with exit code 1 at
/// once, as a crash would (a restart resumes from the last checkpoint).
pub fn quiet_panics(options: &ClusterOptions, job: &str) {
    let (options, job) = (options.clone(), job.to_string());
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_string());
        let at = info
            .location()
            .map(|l| format!(" (at {}:{})", l.file(), l.line()))
            .unwrap_or_default();
        if PANIC.set(format!("{text}{at}")).is_ok() {
            tracing::error!(
                "lockstep: job \"{job}\" failed: {}",
                broken(&options, &panic_message()).message
            );
            std::process::exit(1);
        }
        // Every later panic (other threads losing the same connections)
        // waits here while the first one ends the process: unwinding them
        // could abort it first, with another exit status.
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }));
}

/// The first panic's message, if [`quiet_panics`] caught one.
pub fn panic_message() -> String {
    PANIC
        .get()
        .cloned()
        .unwrap_or_else(|| "unknown".to_string())
}

/// The error of a cluster run that broke down (`cause`: what this process
/// saw).
pub fn broken(options: &ClusterOptions, cause: &str) -> crate::runtime::RunError {
    crate::runtime::RunError {
        message: format!(
            "process {} lost the cluster: {cause}\n  A peer process stopped or was killed (timely stops every process then), or the processes were started with different --workers (every process must use the same). Restart every process with the same command line; with --state they resume from the last complete checkpoint.",
            options.process
        ),
    }
}

/// What one process tells every worker at start-up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sending process.
    pub process: u32,
    /// Its `--processes`.
    pub processes: u32,
    /// Its workers per process.
    pub workers: u32,
    /// A fingerprint of its graph (every element that shapes output).
    pub fingerprint: String,
    /// Whether it runs with `--state`.
    pub stateful: bool,
    /// Its last complete checkpoint (with `--state`).
    pub candidate: Option<u64>,
    /// The layout its state was last written by (workers over all
    /// processes, processes); `None`: no state yet.
    pub old: Option<(u32, u32)>,
    /// Start-up decisions (name, bytes), e.g. the offsets a Kafka source
    /// starts and ends at: process 0's are every process's.
    pub decisions: Vec<(String, Vec<u8>)>,
}

/// What every process agreed at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agreement {
    /// Where to resume: the least complete checkpoint of all processes
    /// (`None`: from the beginning).
    pub resume: Option<u64>,
    /// Process 0's start-up decisions.
    pub decisions: Vec<(String, Vec<u8>)>,
    /// The cluster changed shape (or gained processes) since its state was
    /// written: state moves to its new owners before the job runs.
    pub moving: bool,
    /// Some process held state of an earlier run of this job.
    pub existed: bool,
}

/// The fingerprint of a graph for the start-up check: its name, and every
/// element's fingerprint (the same ones the checkpoint manifest records).
pub fn fingerprint(graph: &Graph) -> String {
    let mut h = crc32fast::Hasher::new();
    h.update(graph.name.as_bytes());
    for (k, n, f) in &graph.shape {
        for part in [k, n, f] {
            h.update(&(part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
    }
    format!("{:08x}", h.finalize())
}

/// Dataflow 0: sends `hello` (on one worker per process; `None` on the
/// others) to every worker and returns every process's hello, by process.
pub fn exchange(worker: &mut Worker, hello: Option<Hello>) -> Vec<Hello> {
    let got: Rc<RefCell<Vec<Hello>>> = Rc::new(RefCell::new(Vec::new()));
    let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<Hello>>>::new();
    let probe = ProbeHandle::new();
    let sink = Rc::clone(&got);
    worker.dataflow::<u64, _, _>(|scope| {
        scope
            .input_from(&mut input)
            .broadcast()
            .inspect(move |h: &Hello| sink.borrow_mut().push(h.clone()))
            .probe_with(&probe);
    });
    if let Some(h) = hello {
        input.send(h);
    }
    input.close();
    while !probe.done() {
        worker.step_or_park(Some(Duration::from_millis(10)));
    }
    let mut all = got.take();
    all.sort_by_key(|h| h.process);
    all
}

/// One entry of state on its way to its new owner: (new owner worker,
/// decisions column?, key, value).
pub type MovedEntry = (u64, bool, Vec<u8>, Vec<u8>);

/// Moves state between processes ("dataflow 0b"): every worker sends
/// `outgoing` (this process's entries that other processes now own; empty
/// but on one worker per process) to the first worker of the owner's
/// process, which writes what it receives into its `store` (synced) before
/// it releases its capability. When this returns, every process has
/// written what it received, so senders may delete what they sent.
///
/// # Errors
/// Entries arrived at a process without a store, or could not be written.
pub fn move_state(
    worker: &mut Worker,
    workers: usize,
    outgoing: Vec<MovedEntry>,
    store: Option<Arc<lockstep_state::store::Store>>,
    adopt: Option<(lockstep_state::store::Manifest, Option<u64>)>,
) -> Result<(), String> {
    use timely::dataflow::channels::pact::Exchange;
    use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
    let result: Rc<RefCell<Result<(), String>>> = Rc::new(RefCell::new(Ok(())));
    let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<MovedEntry>>>::new();
    let probe = ProbeHandle::new();
    let per = workers.max(1) as u64;
    let res = Rc::clone(&result);
    worker.dataflow::<u64, _, _>(|scope| {
        let stream = scope.input_from(&mut input);
        let mut builder = OperatorBuilder::new("receive moved state".to_string(), scope);
        let mut entries =
            builder.new_input(stream, Exchange::new(move |e: &MovedEntry| e.0 / per * per));
        let (_out, done) = builder.new_output::<Vec<()>>();
        builder.build(move |mut caps| {
            let mut cap = caps.pop();
            let mut got: Vec<(bool, Vec<u8>, Vec<u8>)> = Vec::new();
            move |frontiers| {
                entries.for_each(|_, data| {
                    for (_, d, k, v) in data.drain(..) {
                        got.push((d, k, v));
                    }
                });
                if cap.is_some() && frontiers[0].frontier().is_empty() {
                    if !got.is_empty() {
                        let written = match &store {
                            Some(s) => s
                                .put_entries(&got, adopt.as_ref().map(|(m, r)| (m, *r)))
                                .map_err(|e| e.0),
                            None => Err("state arrived for a process without --state".to_string()),
                        };
                        if let Err(e) = written {
                            *res.borrow_mut() = Err(e);
                        }
                        got.clear();
                    }
                    // Released only now: the probe completes once every
                    // process wrote what it received.
                    cap = None;
                }
            }
        });
        done.probe_with(&probe);
    });
    for e in outgoing {
        input.send(e);
    }
    input.close();
    while !probe.done() {
        worker.step_or_park(Some(Duration::from_millis(10)));
    }
    result.replace(Ok(()))
}

/// The agreement of every process's hello, or the one error every process
/// reports. `me` is this process's own hello.
///
/// # Errors
/// Processes that run different graphs, worker counts or cluster sizes, or
/// only some of them with `--state`.
pub fn agree(all: &[Hello], me: &Hello) -> Result<Agreement, String> {
    let n = me.processes as usize;
    let ids: Vec<u32> = all.iter().map(|h| h.process).collect();
    if all.len() != n || ids != (0..me.processes).collect::<Vec<_>>() {
        return Err(format!(
            "the cluster's processes disagree on its size: expected processes 0 to {} once each, heard from {ids:?}; start every process with the same --processes and --hosts and a distinct --process-id",
            n.saturating_sub(1)
        ));
    }
    let first = &all[0];
    let mut problems = Vec::new();
    for h in &all[1..] {
        if h.fingerprint != first.fingerprint {
            problems.push(format!(
                "process {} runs a different graph than process 0 (fingerprint {} against {})",
                h.process, h.fingerprint, first.fingerprint
            ));
        }
        if h.workers != first.workers {
            problems.push(format!(
                "process {} runs {} workers, process 0 runs {}",
                h.process, h.workers, first.workers
            ));
        }
        if h.processes != first.processes {
            problems.push(format!(
                "process {} was started with --processes {}, process 0 with {}",
                h.process, h.processes, first.processes
            ));
        }
        if h.stateful != first.stateful {
            problems.push(format!(
                "process {} runs {} --state, process 0 {}",
                h.process,
                if h.stateful { "with" } else { "without" },
                if first.stateful { "with" } else { "without" }
            ));
        }
    }
    if !problems.is_empty() {
        return Err(format!(
            "the cluster's processes do not run the same job:\n  {}\n  Start every process with the same graph file, --workers and --processes (and each with its own --state directory, or none).",
            problems.join("\n  ")
        ));
    }
    // With state: the layout it was written by, and whether it moves.
    let now = (first.workers * first.processes, first.processes);
    let with_state: Vec<&Hello> = all.iter().filter(|h| h.old.is_some()).collect();
    if with_state.is_empty() {
        return Ok(Agreement {
            resume: None,
            decisions: first.decisions.clone(),
            moving: false,
            existed: false,
        });
    }
    // Processes that finished an interrupted move already have the new
    // layout; the others agree on one old layout.
    let olds: std::collections::BTreeSet<(u32, u32)> = with_state
        .iter()
        .filter_map(|h| h.old)
        .filter(|o| *o != now)
        .collect();
    if olds.len() > 1 {
        return Err(format!(
            "the processes' --state directories were written by clusters of different shapes ({}); give each process the directory it used last",
            olds.iter()
                .map(|(w, p)| format!("{p} processes × {} workers", w / p.max(&1)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let old = olds.first().copied().unwrap_or(now);
    if old.1 > now.1 {
        return Err(format!(
            "the job's state is spread over {} processes, and this cluster has {}: a cluster can grow or change its workers per process, but not shrink (the state of processes {} to {} would be lost); start {} processes",
            old.1,
            now.1,
            now.1,
            old.1 - 1,
            old.1
        ));
    }
    for p in 0..old.1 {
        if all.get(p as usize).is_some_and(|h| h.old.is_none()) {
            return Err(format!(
                "process {p}'s --state directory holds no state, but the job's state is spread over {} processes and process {p} had a part of it; give process {p} the directory it used last (or start every process with --fresh)",
                old.1
            ));
        }
    }
    let resume = with_state
        .iter()
        .map(|h| h.candidate)
        .collect::<Option<Vec<u64>>>()
        .and_then(|v| v.into_iter().min());
    let cluster = old.1 > 1 || now.1 > 1;
    let moving =
        cluster && (with_state.iter().any(|h| h.old != Some(now)) || with_state.len() < all.len());
    Ok(Agreement {
        resume,
        decisions: first.decisions.clone(),
        moving,
        existed: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(process: u32, candidate: Option<u64>) -> Hello {
        Hello {
            process,
            processes: 2,
            workers: 2,
            fingerprint: "f".into(),
            stateful: true,
            candidate,
            old: Some((4, 2)),
            decisions: vec![("d".into(), vec![process as u8])],
        }
    }

    #[test]
    fn the_resume_point_is_the_least_checkpoint_and_process_0_decides() {
        let all = [hello(0, Some(7)), hello(1, Some(5))];
        let a = agree(&all, &all[1]).expect("agree");
        assert_eq!(a.resume, Some(5));
        assert_eq!(a.decisions, vec![("d".to_string(), vec![0])]);
        let all = [hello(0, Some(7)), hello(1, None)];
        assert_eq!(agree(&all, &all[0]).expect("agree").resume, None);
    }

    #[test]
    fn a_different_graph_or_layout_is_one_error_naming_the_process() {
        let mut b = hello(1, None);
        b.fingerprint = "g".into();
        b.workers = 3;
        let all = [hello(0, None), b];
        let e = agree(&all, &all[0]).expect_err("mismatch");
        assert!(e.contains("process 1 runs a different graph"), "{e}");
        assert!(
            e.contains("process 1 runs 3 workers, process 0 runs 2"),
            "{e}"
        );
        let e = agree(&all[..1], &all[0]).expect_err("missing");
        assert!(e.contains("disagree on its size"), "{e}");
    }

    #[test]
    fn hosts_files_are_checked() {
        let dir = tempfile::tempdir().expect("dir");
        let f = dir.path().join("hosts");
        std::fs::write(&f, "# cluster\n127.0.0.1:2101\n\n127.0.0.1:2102\n").expect("write");
        let c = ClusterOptions::from_hosts_file(2, 1, &f).expect("hosts");
        assert_eq!(c.addresses, vec!["127.0.0.1:2101", "127.0.0.1:2102"]);
        let e = ClusterOptions::from_hosts_file(3, 0, &f).expect_err("short");
        assert!(e.contains("2 addresses for 3 processes"), "{e}");
        let e = ClusterOptions::from_hosts_file(2, 2, &f).expect_err("range");
        assert!(e.contains("--process-id 2 is out of range"), "{e}");
        std::fs::write(&f, "nohost\n127.0.0.1:2102\n").expect("write");
        let e = ClusterOptions::from_hosts_file(2, 0, &f).expect_err("bad");
        assert!(e.contains("not a host:port"), "{e}");
    }
}

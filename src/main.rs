//! The `lockstep` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use lockstep::render::{render, GraphFormat};
use lockstep::{Graph, RunOptions};

/// mimalloc instead of the system allocator: records are many small,
/// short-lived allocations freed on other threads, where glibc's malloc
/// spends a fifth of a stateful job's time consolidating free lists.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// lockstep: deterministic stream jobs on timely dataflow.
#[derive(Parser, Debug)]
#[command(name = "lockstep", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a graph to the end of its input.
    Run {
        /// The graph file.
        graph: PathBuf,
        /// Worker threads (output is identical for any number).
        #[arg(long, short = 'w', default_value_t = 1)]
        workers: usize,
        /// Keep state and checkpoints in this directory (RocksDB): run the
        /// same command again after a crash to resume exactly once.
        #[arg(long)]
        state: Option<PathBuf>,
        /// With --state: delete the directory's state first and start the
        /// job over (needed when the graph changed).
        #[arg(long, requires = "state")]
        fresh: bool,
        /// Run as one of this many processes (a timely cluster); start each
        /// with the same graph, --workers and --hosts.
        #[arg(long, requires_all = ["process_id", "hosts"])]
        processes: Option<usize>,
        /// This process's index in the cluster, 0 to --processes - 1.
        #[arg(long, requires = "processes")]
        process_id: Option<usize>,
        /// The cluster's hosts file: one host:port per process, in order.
        #[arg(long, requires = "processes")]
        hosts: Option<PathBuf>,
        /// Seconds to wait for every process of the cluster to connect.
        #[arg(long, default_value_t = 30.0, requires = "processes")]
        connect_timeout: f64,
        /// Print no summary and no progress bar on stderr.
        #[arg(long, short = 'q')]
        quiet: bool,
        #[command(flatten)]
        observe: ObserveArgs,
    },
    /// Run a graph and print the records out of one node (or `node.port`)
    /// with their epochs; sinks receive exactly what `run` gives them.
    Tap {
        /// The graph file (not with --attach).
        #[arg(required_unless_present = "attach")]
        graph: Option<PathBuf>,
        /// The node, source or output (`node.port`) to print.
        #[arg(long)]
        node: String,
        /// Print at most this many records (the job still runs to its end).
        #[arg(long)]
        limit: Option<u64>,
        /// Worker threads.
        #[arg(long, short = 'w', default_value_t = 1, conflicts_with = "attach")]
        workers: usize,
        /// Tap a running job instead: the HOST:PORT of its --metrics or --ui
        /// endpoint (records print as they flow, unsorted).
        #[arg(long, conflicts_with = "graph")]
        attach: Option<String>,
    },
    /// Print the JSON Schema of the graph format (for editors).
    Schema,
    /// Run graphs' test cases (a graph's "tests", or its sibling
    /// NAME.test.json) at 1 and --workers workers; exit 1 if any fails.
    Test {
        /// The graph files.
        #[arg(required = true)]
        graphs: Vec<PathBuf>,
        /// Each case also runs at this many workers (besides 1); the
        /// outputs must be byte-identical.
        #[arg(long, short = 'w', default_value_t = 4)]
        workers: usize,
        /// Runs at once (default: the machine's cores).
        #[arg(long, short = 'j')]
        jobs: Option<usize>,
        /// Rewrite golden files with the output instead of comparing.
        #[arg(long)]
        update: bool,
        /// Also write the results as JUnit XML to this file.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Run only the cases whose name contains this text.
        #[arg(long)]
        case: Option<String>,
    },
    /// Check a graph; print every problem (exit 2) or nothing (exit 0).
    Validate {
        /// The graph file.
        graph: PathBuf,
    },
    /// Inspect a job's --state directory (read-only; refused while a job
    /// runs on it).
    State {
        /// The --state directory.
        dir: PathBuf,
        /// What to show.
        #[command(subcommand)]
        what: StateCommand,
    },
    /// Print the graph as Graphviz dot or Mermaid.
    Graph {
        /// The graph file.
        graph: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
}

/// Observability options of `run`.
#[derive(clap::Args, Debug)]
struct ObserveArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (and the JSON API).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Serve the live dashboard at http://ADDR/ (and the metrics).
    #[arg(long, value_name = "ADDR")]
    ui: Option<String>,
    /// Write execution events (job, epochs, checkpoints, errors) to FILE
    /// as JSON lines.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
    /// Keep serving --metrics/--ui this many seconds after the job ends
    /// (so its final numbers can be scraped).
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0)]
    linger: f64,
    /// Messages on stderr as text, or as JSON objects (one per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How messages on stderr look.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    /// Plain lines.
    Text,
    /// One JSON object per message (`tracing`'s JSON format).
    Json,
}

#[derive(Subcommand, Debug)]
enum StateCommand {
    /// The manifest and the checkpoints: epoch, time, size, per-worker markers.
    Checkpoints,
    /// Each source partition's checkpoint: position, largest event time,
    /// records read.
    Offsets,
    /// Keys per state table, and per key group with --groups.
    Keys {
        /// Also count keys per key group.
        #[arg(long)]
        groups: bool,
    },
    /// One node's state as JSON lines: table, key group, key, value.
    Dump {
        /// The node's name.
        node: String,
    },
}

fn load(path: &std::path::Path) -> Result<Graph, ExitCode> {
    match Graph::load(path) {
        Ok(g) => {
            for w in &g.warnings {
                tracing::warn!("{w}");
            }
            Ok(g)
        }
        Err(e) => {
            tracing::error!("{e}");
            let n = e.diagnostics.len();
            tracing::error!(
                "lockstep: {n} error{} in {}",
                if n == 1 { "" } else { "s" },
                path.display()
            );
            Err(ExitCode::from(2))
        }
    }
}

/// Sends messages (`tracing` events) to stderr: plain text as before, or
/// JSON objects.
fn init_logs(format: LogFormat) {
    let b = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let _ = match format {
        LogFormat::Text => b
            .without_time()
            .with_level(false)
            .with_target(false)
            .try_init(),
        LogFormat::Json => b.json().try_init(),
    };
}

fn tap(
    graph: Option<PathBuf>,
    node: &str,
    limit: Option<u64>,
    workers: usize,
    attach: Option<String>,
) -> ExitCode {
    use std::io::Write;
    if let Some(addr) = attach {
        let mut out = std::io::stdout().lock();
        return match lockstep::observe::tap_remote(&addr, node, limit, &mut out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("lockstep: {e}");
                ExitCode::from(1)
            }
        };
    }
    let Some(graph) = graph else {
        tracing::error!("lockstep: give the graph file, or --attach HOST:PORT");
        return ExitCode::from(2);
    };
    if workers == 0 {
        tracing::error!("lockstep: --workers must be at least 1");
        return ExitCode::from(2);
    }
    let mut g = match load(&graph) {
        Ok(g) => g,
        Err(c) => return c,
    };
    if let Some(s) = g
        .sinks
        .iter()
        .find(|s| matches!(s.kind, lockstep::graph::SinkKind::Stdout { .. }))
    {
        tracing::error!(
            "lockstep: sink \"{}\" writes standard output, where tap prints; tap a copy of the graph whose sink \"{}\" writes a file",
            s.name, s.name
        );
        return ExitCode::from(2);
    }
    let printed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = Arc::clone(&printed);
    let capture = lockstep::graph::Capture::new(move |epoch, line| {
        let k = count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if limit.is_none_or(|l| k < l) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{{\"epoch\":{epoch},\"record\":{line}}}");
        }
    });
    match lockstep::harness::capture_sink(&g, node, format!("tap {node}"), Arc::new(capture)) {
        Ok(sink) => g.sinks.push(sink),
        Err(e) => {
            tracing::error!("lockstep: --node {node}: {e}");
            return ExitCode::from(2);
        }
    }
    let name = g.name.clone();
    match lockstep::run(Arc::new(g), &RunOptions::workers(workers)) {
        Ok(_) => {
            let _ = std::io::stdout().flush();
            let n = printed.load(std::sync::atomic::Ordering::Relaxed);
            tracing::info!(
                "lockstep: job \"{name}\" finished; {n} records out of {node}{}",
                match limit {
                    Some(l) if n > l => format!(" ({l} printed)"),
                    _ => String::new(),
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("lockstep: job \"{name}\" failed: {e}");
            ExitCode::from(1)
        }
    }
}

/// `validate` also checks a graph's test cases, when it has some.
fn validate_tests(graph: &std::path::Path) -> ExitCode {
    let inline = std::fs::read_to_string(graph)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v.get("tests").is_some());
    if !inline && !lockstep::harness::sibling(graph).exists() {
        return ExitCode::SUCCESS;
    }
    match lockstep::harness::load(graph, &lockstep::Registry::builtin()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            let n = e.diagnostics.len();
            tracing::error!(
                "lockstep: {n} error{} in the tests of {}",
                if n == 1 { "" } else { "s" },
                graph.display()
            );
            ExitCode::from(2)
        }
    }
}

fn test(
    graphs: &[PathBuf],
    workers: usize,
    jobs: Option<usize>,
    update: bool,
    junit: Option<PathBuf>,
    case: Option<String>,
) -> ExitCode {
    if workers == 0 || jobs == Some(0) {
        tracing::error!("lockstep: --workers and --jobs must be at least 1");
        return ExitCode::from(2);
    }
    let started = std::time::Instant::now();
    let opts = lockstep::harness::TestOptions {
        workers: vec![1, workers],
        jobs: jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        update,
        filter: case,
    };
    let report = lockstep::harness::run_tests(graphs, &opts, &lockstep::Registry::builtin());
    print!("{}", report.text());
    let ran: usize = report.files.iter().map(|f| f.cases.len()).sum();
    let loaded = report.files.iter().all(|f| f.error.is_none());
    if let (Some(filter), 0, true) = (&opts.filter, ran, loaded) {
        tracing::error!("lockstep: no case name contains \"{filter}\"");
        return ExitCode::from(1);
    }
    if let Some(path) = junit {
        if let Err(e) = std::fs::write(&path, report.junit()) {
            tracing::error!("lockstep: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    tracing::info!("lockstep test: {:.2} s", started.elapsed().as_secs_f64());
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(match &cli.command {
        Command::Run { observe, .. } => observe.log_format,
        _ => LogFormat::Text,
    });
    match cli.command {
        Command::Validate { graph } => match load(&graph) {
            Ok(_) => validate_tests(&graph),
            Err(c) => c,
        },
        Command::Test {
            graphs,
            workers,
            jobs,
            update,
            junit,
            case,
        } => test(&graphs, workers, jobs, update, junit, case),
        Command::Graph { graph, format } => match load(&graph) {
            Ok(g) => {
                print!("{}", render(&g, format));
                ExitCode::SUCCESS
            }
            Err(c) => c,
        },
        Command::State { dir, what } => {
            let result = match what {
                StateCommand::Checkpoints => lockstep::inspect::checkpoints(&dir),
                StateCommand::Offsets => lockstep::inspect::offsets(&dir),
                StateCommand::Keys { groups } => lockstep::inspect::keys(&dir, groups),
                StateCommand::Dump { node } => lockstep::inspect::dump(&dir, &node),
            };
            match result {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    tracing::error!("lockstep: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run {
            graph,
            workers,
            state,
            fresh,
            processes,
            process_id,
            hosts,
            connect_timeout,
            quiet,
            observe,
        } => {
            let cluster = match (processes, process_id, hosts) {
                (Some(n), Some(i), Some(h)) => {
                    match lockstep::cluster::ClusterOptions::from_hosts_file(n, i, &h) {
                        Ok(mut c) => {
                            c.connect_timeout = match std::time::Duration::try_from_secs_f64(
                                connect_timeout.max(0.1),
                            ) {
                                Ok(d) => d,
                                Err(_) => {
                                    tracing::error!("lockstep: --connect-timeout {connect_timeout}: give a number of seconds");
                                    return ExitCode::from(2);
                                }
                            };
                            Some(c)
                        }
                        Err(e) => {
                            tracing::error!("lockstep: {e}");
                            return ExitCode::from(2);
                        }
                    }
                }
                _ => None,
            };
            if workers == 0 {
                tracing::error!("lockstep: --workers must be at least 1");
                return ExitCode::from(2);
            }
            let linger = match std::time::Duration::try_from_secs_f64(observe.linger.max(0.0)) {
                Ok(d) => d,
                Err(_) => {
                    tracing::error!(
                        "lockstep: --linger {}: give a number of seconds",
                        observe.linger
                    );
                    return ExitCode::from(2);
                }
            };
            let g = match load(&graph) {
                Ok(g) => g,
                Err(c) => return c,
            };
            let name = g.name.clone();
            let g = Arc::new(g);
            let observed =
                observe.metrics.is_some() || observe.ui.is_some() || observe.events.is_some();
            let observer = match lockstep::observe::Observer::new(
                Arc::clone(&g),
                observe.events.as_deref(),
                observed,
            ) {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!("lockstep: {e}");
                    return ExitCode::from(2);
                }
            };
            for (addr, ui) in [(&observe.ui, true), (&observe.metrics, false)] {
                if let Some(addr) = addr {
                    match lockstep::observe::serve(addr, Arc::clone(&observer), ui) {
                        Ok(bound) => tracing::info!(
                            "lockstep: {} at http://{bound}/{}",
                            if ui { "dashboard" } else { "metrics" },
                            if ui { "" } else { "metrics" }
                        ),
                        Err(e) => {
                            tracing::error!("lockstep: {e}");
                            return ExitCode::from(2);
                        }
                    }
                }
            }
            // The bar is for people at a terminal, not for JSON logs.
            let progress = (!quiet && observe.log_format == LogFormat::Text)
                .then(|| lockstep::observe::Progress::start(Arc::clone(&observer)));
            let opts = RunOptions {
                workers,
                state,
                fresh,
                cluster,
                observer: Some(Arc::clone(&observer)),
            };
            let result = lockstep::run(g, &opts);
            if let Some(p) = progress {
                p.stop();
            }
            observer.finish(result.as_ref().map_err(|e| e.message.as_str()));
            let code = match &result {
                Ok(summary) => {
                    if !quiet {
                        let mut text = format!("lockstep: job \"{name}\" {summary}");
                        if observed {
                            text.push_str(&lockstep::observe::node_table(&observer.snapshot()));
                        }
                        tracing::info!("{text}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    tracing::error!("lockstep: job \"{name}\" failed: {e}");
                    ExitCode::from(1)
                }
            };
            observer.close_events();
            if !linger.is_zero() && (observe.metrics.is_some() || observe.ui.is_some()) {
                std::thread::sleep(linger);
            }
            code
        }
        Command::Tap {
            graph,
            node,
            limit,
            workers,
            attach,
        } => tap(graph, &node, limit, workers, attach),
        Command::Schema => match serde_json::to_string_pretty(&lockstep::schema::graph_schema()) {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("lockstep: {e}");
                ExitCode::from(1)
            }
        },
    }
}

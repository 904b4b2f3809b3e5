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
        /// Print no summary on stderr.
        #[arg(long, short = 'q')]
        quiet: bool,
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
                eprintln!("{w}");
            }
            Ok(g)
        }
        Err(e) => {
            eprintln!("{e}");
            let n = e.diagnostics.len();
            eprintln!(
                "lockstep: {n} error{} in {}",
                if n == 1 { "" } else { "s" },
                path.display()
            );
            Err(ExitCode::from(2))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { graph } => match load(&graph) {
            Ok(_) => ExitCode::SUCCESS,
            Err(c) => c,
        },
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
                    eprintln!("lockstep: {e}");
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
        } => {
            let cluster = match (processes, process_id, hosts) {
                (Some(n), Some(i), Some(h)) => {
                    match lockstep::cluster::ClusterOptions::from_hosts_file(n, i, &h) {
                        Ok(mut c) => {
                            c.connect_timeout =
                                std::time::Duration::from_secs_f64(connect_timeout.max(0.1));
                            Some(c)
                        }
                        Err(e) => {
                            eprintln!("lockstep: {e}");
                            return ExitCode::from(2);
                        }
                    }
                }
                _ => None,
            };
            if workers == 0 {
                eprintln!("lockstep: --workers must be at least 1");
                return ExitCode::from(2);
            }
            let g = match load(&graph) {
                Ok(g) => g,
                Err(c) => return c,
            };
            let name = g.name.clone();
            let opts = RunOptions {
                workers,
                state,
                fresh,
                cluster,
            };
            match lockstep::run(Arc::new(g), &opts) {
                Ok(summary) => {
                    if !quiet {
                        eprintln!("lockstep: job \"{name}\" {summary}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("lockstep: job \"{name}\" failed: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

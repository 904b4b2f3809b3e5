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
        /// Keep state and checkpoints in this directory (not available yet).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Processes in a cluster (not available yet).
        #[arg(long)]
        processes: Option<usize>,
        /// This process's index in the cluster (not available yet).
        #[arg(long)]
        process_id: Option<usize>,
        /// The cluster's hosts file (not available yet).
        #[arg(long)]
        hosts: Option<PathBuf>,
        /// Print no summary on stderr.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Check a graph; print every problem (exit 2) or nothing (exit 0).
    Validate {
        /// The graph file.
        graph: PathBuf,
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
        Command::Run {
            graph,
            workers,
            state,
            processes,
            process_id,
            hosts,
            quiet,
        } => {
            if state.is_some() {
                eprintln!("lockstep: --state (checkpoints in RocksDB) is not available in this version yet; run without it");
                return ExitCode::from(2);
            }
            if processes.is_some() || process_id.is_some() || hosts.is_some() {
                eprintln!("lockstep: cluster mode (--processes, --process-id, --hosts) is not available in this version yet; use --workers");
                return ExitCode::from(2);
            }
            if workers == 0 {
                eprintln!("lockstep: --workers must be at least 1");
                return ExitCode::from(2);
            }
            let g = match load(&graph) {
                Ok(g) => g,
                Err(c) => return c,
            };
            let name = g.name.clone();
            match lockstep::run(Arc::new(g), &RunOptions { workers }) {
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

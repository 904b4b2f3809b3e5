//! `lockstep graph`: the compiled graph as Graphviz dot or Mermaid.

use crate::graph::{Graph, PortRef, SinkKind, SourceKind};

/// Output format of `lockstep graph`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    /// Graphviz dot.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

struct Edge {
    from: String,
    to: String,
    label: String,
}

fn source_label(kind: &SourceKind) -> &'static str {
    match kind {
        SourceKind::File { .. } => "file",
        SourceKind::Stdin { .. } => "stdin",
        SourceKind::Generator(_) => "generator",
        SourceKind::Nexmark(_) => "nexmark",
    }
}

fn sink_label(kind: &SinkKind) -> &'static str {
    match kind {
        SinkKind::File { .. } => "file",
        SinkKind::Stdout { .. } => "stdout",
        SinkKind::Null => "null",
    }
}

fn edge(g: &Graph, r: &PortRef, to: &str) -> Edge {
    let port = &g.ports(r.producer)[r.port].name;
    Edge {
        from: g.producer_name(r.producer).to_string(),
        to: to.to_string(),
        label: port.clone(),
    }
}

/// Renders the graph: nodes in declaration order (sources, nodes, sinks),
/// edges labelled with their port when it is not the main output.
pub fn render(g: &Graph, format: GraphFormat) -> String {
    let mut vertices: Vec<(String, String, &'static str)> = Vec::new();
    for s in &g.sources {
        vertices.push((
            s.name.clone(),
            format!("{}\\n{}", s.name, source_label(&s.kind)),
            "source",
        ));
    }
    for n in &g.nodes {
        vertices.push((
            n.name.clone(),
            format!("{}\\n{}", n.name, n.type_name),
            "node",
        ));
    }
    for s in &g.sinks {
        vertices.push((
            s.name.clone(),
            format!("{}\\n{}", s.name, sink_label(&s.kind)),
            "sink",
        ));
    }
    let mut edges = Vec::new();
    for n in &g.nodes {
        for r in &n.inputs {
            edges.push(edge(g, r, &n.name));
        }
    }
    for s in &g.sinks {
        edges.push(edge(g, &s.input, &s.name));
    }
    let mut out = String::new();
    match format {
        GraphFormat::Dot => {
            out.push_str(&format!("digraph \"{}\" {{\n  rankdir=LR;\n", g.name));
            for (id, label, kind) in &vertices {
                let shape = match *kind {
                    "source" => "invhouse",
                    "sink" => "house",
                    _ => "box",
                };
                out.push_str(&format!("  \"{id}\" [label=\"{label}\", shape={shape}];\n"));
            }
            for e in &edges {
                if e.label.is_empty() {
                    out.push_str(&format!("  \"{}\" -> \"{}\";\n", e.from, e.to));
                } else {
                    out.push_str(&format!(
                        "  \"{}\" -> \"{}\" [label=\"{}\"];\n",
                        e.from, e.to, e.label
                    ));
                }
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for (id, label, kind) in &vertices {
                let label = label.replace("\\n", "<br/>");
                let (l, r) = match *kind {
                    "source" => ("[/", "/]"),
                    "sink" => ("[\\", "\\]"),
                    _ => ("[", "]"),
                };
                out.push_str(&format!("  {id}{l}\"{label}\"{r}\n"));
            }
            for e in &edges {
                if e.label.is_empty() {
                    out.push_str(&format!("  {} --> {}\n", e.from, e.to));
                } else {
                    out.push_str(&format!("  {} -->|{}| {}\n", e.from, e.label, e.to));
                }
            }
        }
    }
    out
}

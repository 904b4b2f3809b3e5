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

/// The type name of a source kind, as graph files write it.
pub fn source_label(kind: &SourceKind) -> &'static str {
    match kind {
        SourceKind::File { .. } => "file",
        SourceKind::Stdin { .. } => "stdin",
        SourceKind::Generator(_) => "generator",
        SourceKind::Nexmark(_) => "nexmark",
        SourceKind::Kafka(_) => "kafka",
    }
}

/// The type name of a sink kind, as graph files write it.
pub fn sink_label(kind: &SinkKind) -> &'static str {
    match kind {
        SinkKind::File { .. } => "file",
        SinkKind::Stdout { .. } => "stdout",
        SinkKind::Null => "null",
        SinkKind::Kafka { .. } => "kafka",
        SinkKind::Capture { .. } => "capture",
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

/// A name inside a double-quoted dot or Mermaid string.
fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A Mermaid node id: the name when it is plain (letters, digits, `_`, `-`),
/// else `n` and its position, since ids may not hold other characters.
fn mermaid_id(name: &str, i: usize) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        name.to_string()
    } else {
        format!("n{i}")
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
            out.push_str(&format!(
                "digraph \"{}\" {{\n  rankdir=LR;\n",
                quote(&g.name)
            ));
            for (id, label, kind) in &vertices {
                let (id, label) = (quote(id), quote(label).replace("\\\\n", "\\n"));
                let shape = match *kind {
                    "source" => "invhouse",
                    "sink" => "house",
                    _ => "box",
                };
                out.push_str(&format!("  \"{id}\" [label=\"{label}\", shape={shape}];\n"));
            }
            for e in &edges {
                let (from, to) = (quote(&e.from), quote(&e.to));
                if e.label.is_empty() {
                    out.push_str(&format!("  \"{from}\" -> \"{to}\";\n"));
                } else {
                    out.push_str(&format!(
                        "  \"{from}\" -> \"{to}\" [label=\"{}\"];\n",
                        quote(&e.label)
                    ));
                }
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            let ids: std::collections::BTreeMap<&str, String> = vertices
                .iter()
                .enumerate()
                .map(|(i, (name, _, _))| (name.as_str(), mermaid_id(name, i)))
                .collect();
            let id_of = |name: &str| ids.get(name).cloned().unwrap_or_default();
            for (name, label, kind) in &vertices {
                let id = id_of(name);
                let label = label.replace('"', "#quot;").replace("\\n", "<br/>");
                let (l, r) = match *kind {
                    "source" => ("[/", "/]"),
                    "sink" => ("[\\", "\\]"),
                    _ => ("[", "]"),
                };
                out.push_str(&format!("  {id}{l}\"{label}\"{r}\n"));
            }
            for e in &edges {
                let (from, to) = (id_of(&e.from), id_of(&e.to));
                if e.label.is_empty() {
                    out.push_str(&format!("  {from} --> {to}\n"));
                } else {
                    out.push_str(&format!(
                        "  {from} -->|{}| {to}\n",
                        e.label.replace('"', "#quot;")
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_with_quotes_are_escaped() {
        let g = crate::GraphBuilder::new("q\"job")
            .source(
                "s\"x",
                json!({"type": "generator", "count": 1, "fields": {"n": {"sequence": {}}}}),
            )
            .sink("o", json!({"type": "null", "input": "s\"x"}))
            .build(&crate::Registry::builtin())
            .expect("valid");
        let dot = render(&g, GraphFormat::Dot);
        assert!(dot.contains(r#"digraph "q\"job""#), "{dot}");
        assert!(
            dot.contains(r#""s\"x" [label="s\"x\ngenerator", shape=invhouse];"#),
            "{dot}"
        );
        assert!(dot.contains(r#""s\"x" -> "o";"#), "{dot}");
        let mm = render(&g, GraphFormat::Mermaid);
        assert!(mm.contains(r#"n0[/"s#quot;x<br/>generator"/]"#), "{mm}");
        assert!(mm.contains("n0 --> o"), "{mm}");
    }
}

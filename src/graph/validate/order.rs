//! The order nodes are planned and run in, and the cycles that prevent one.

use lockstep_operators::config::Path;

use super::super::model::Producer;
use super::nodes::{InputRef, ParsedNode};
use super::Ctx;

/// Orders the nodes so that each comes after the nodes it reads, following
/// declaration order where possible. Nodes on or behind a cycle are left
/// out, and each cycle is reported.
pub(super) fn topological_order(
    parsed: &[ParsedNode],
    node_inputs: &[Vec<InputRef>],
    cx: &mut Ctx<'_>,
) -> Vec<usize> {
    let deps = node_deps(node_inputs);
    let n = parsed.len();
    let mut order = Vec::with_capacity(n);
    let mut placed = vec![false; n];
    while let Some(next) = (0..n).find(|&i| !placed[i] && deps[i].iter().all(|&j| placed[j])) {
        placed[next] = true;
        order.push(next);
    }
    if order.len() < n {
        report_cycles(parsed, &deps, &placed, cx);
    }
    order
}

/// For each node, the nodes (not sources) it reads.
fn node_deps(node_inputs: &[Vec<InputRef>]) -> Vec<Vec<usize>> {
    node_inputs
        .iter()
        .map(|ins| {
            ins.iter()
                .filter_map(|input| match input.target.as_ref()?.producer {
                    Producer::Node(j) => Some(j),
                    Producer::Source(_) => None,
                })
                .collect()
        })
        .collect()
}

fn report_cycles(parsed: &[ParsedNode], deps: &[Vec<usize>], placed: &[bool], cx: &mut Ctx<'_>) {
    // Nodes that cannot be placed either sit on a cycle or depend on one;
    // report each cycle once, starting from its first-declared node.
    let n = parsed.len();
    let mut reported = vec![false; n];
    for start in 0..n {
        if placed[start] || reported[start] {
            continue;
        }
        // Walk unplaced dependencies until a node repeats.
        let mut path = vec![start];
        let mut cur = start;
        while let Some(&next) = deps[cur].iter().find(|&&j| !placed[j]) {
            if let Some(k) = path.iter().position(|&x| x == next) {
                let cycle = &path[k..];
                if !cycle.iter().any(|&c| reported[c]) {
                    for &c in cycle {
                        reported[c] = true;
                    }
                    report_cycle(parsed, cycle, cx);
                }
                break;
            }
            path.push(next);
            cur = next;
        }
    }
}

/// Reports `cycle` (node indices, each reading the next) at its
/// first-declared node.
fn report_cycle(parsed: &[ParsedNode], cycle: &[usize], cx: &mut Ctx<'_>) {
    let Some(&first) = cycle.iter().min() else {
        return;
    };
    let rot = cycle.iter().position(|&c| c == first).unwrap_or(0);
    let mut names: Vec<&str> = cycle[rot..]
        .iter()
        .chain(&cycle[..rot])
        .map(|&c| parsed[c].name.as_str())
        .collect();
    names.reverse();
    names.rotate_right(1);
    names.push(names[0]);
    cx.err(
        Path::of(&["nodes", &parsed[first].name]),
        format!(
            "cycle: {}; a graph must not feed a node's output back into itself",
            names.join(" → ")
        ),
    );
}

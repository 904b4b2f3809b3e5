//! A user crate's own node type, registered beside the built-ins, and a graph
//! built and run from Rust:
//!
//! ```text
//! cargo run --release --example custom_node
//! ```
//!
//! `clamp` limits an int field to [min, max]. It shows the three stages every
//! node type goes through: parse (serde config), plan (check against the input
//! schema), build (timely operators, identical on every worker).

include!("clamp.rs");

fn main() {
    let dir = std::env::temp_dir().join("lockstep-custom-node");
    std::fs::create_dir_all(&dir).expect("dir");
    print!("{}", run_example(&dir));
}

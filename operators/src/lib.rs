//! lockstep's operator library: types and values, expressions, output
//! encodings, and the node types of the graph format with their registry.
//!
//! Depends on `lockstep-state` (keyed state) and timely; the root `lockstep`
//! crate depends on this one. Nothing here knows about sources, sinks or the
//! CLI.

pub mod agg;
pub mod aggregate;
pub mod config;
pub mod encode;
pub mod exact;
pub mod expr;
pub mod filter;
pub mod join;
pub mod json;
pub mod keyed;
pub mod map;
pub mod node;
pub mod registry;
pub mod route;
pub mod suggest;
pub mod timefmt;
pub mod union;
pub mod value;
pub mod window;

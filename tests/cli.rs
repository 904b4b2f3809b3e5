//! Integration tests that run the `lockstep` binary like a user: examples and
//! their checked-in output, determinism across worker counts and partitionings,
//! broken graphs and records, and a property test against a reference.

mod cli {
    mod api;
    mod checkpoint;
    mod cluster;
    pub mod common;
    mod determinism;
    mod docs;
    mod errors;
    mod examples;
    mod harness;
    mod kafka;
    mod nexmark;
    mod observe;
    mod props;
    mod records;
    mod robust;
    mod stateful;
    mod windows;
}

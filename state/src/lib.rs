//! lockstep's keyed state.
//!
//! This crate knows nothing about operators, graphs or timely: the operator
//! library (`lockstep-operators`) and the root crate depend on it, never the
//! other way round. It fixes the things that must not change between runs or
//! releases because they decide where a key lives:
//!
//! - [`key_hash`]: the documented, fixed hash of a key's encoded bytes;
//! - [`KeyGroups`]: key group = hash mod G, owner worker = key group mod peers;
//! - [`StateDef`]: typed, named state handles that operators declare up front;
//! - [`KeyedState`]: working state in memory, organised by key group, with every
//!   change tracked per epoch so that a checkpoint writes only what changed;
//! - [`store`]: the RocksDB checkpoint store (one database per process), and
//!   [`Checkpointer`], a worker's side of the checkpoint protocol.

mod checkpoint;
mod keyed;
mod keygroup;
pub mod store;

pub use checkpoint::{
    decode_value, encode_value, encode_value_into, Checkpointer, Table, VALUE_FORMAT,
};
pub use keyed::{Change, KeyedState, StateDef, StateGauge};
pub use keygroup::{key_hash, KeyGroups, DEFAULT_KEY_GROUPS};

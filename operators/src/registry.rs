//! The registry: one table of every node type. Docs, `validate` and a test
//! that builds every example all read from it. Users of the Rust API add their
//! own node types with [`Registry::register`].

use std::sync::Arc;

use crate::node::NodeKind;

/// Every built-in node type, in the order docs list them.
pub const NODES: &[&dyn NodeKind] = &[
    &crate::filter::Filter,
    &crate::map::Map,
    &crate::union::Union,
    &crate::route::Route,
    &crate::aggregate::Aggregate,
    &crate::window::Window,
    &crate::join::Join,
];

/// The node types a graph may use: the built-ins plus any registered.
#[derive(Clone)]
pub struct Registry {
    kinds: Vec<Arc<dyn NodeKind>>,
}

/// A node type was registered under a name that is taken.
#[derive(Debug, thiserror::Error)]
#[error("node type \"{0}\" is already registered; choose another name")]
pub struct DuplicateKind(pub String);

struct Builtin(&'static dyn NodeKind);

impl NodeKind for Builtin {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn summary(&self) -> &'static str {
        self.0.summary()
    }
    fn example(&self) -> &'static str {
        self.0.example()
    }
    fn parse(
        &self,
        config: serde_json::Value,
    ) -> Result<Box<dyn crate::node::NodeConfig>, Vec<crate::config::Diag>> {
        self.0.parse(config)
    }
}

impl Registry {
    /// The built-in node types.
    pub fn builtin() -> Registry {
        Registry {
            kinds: NODES
                .iter()
                .map(|k| Arc::new(Builtin(*k)) as Arc<dyn NodeKind>)
                .collect(),
        }
    }

    /// Adds a node type.
    ///
    /// # Errors
    /// If a node type of that name exists.
    pub fn register(&mut self, kind: Arc<dyn NodeKind>) -> Result<(), DuplicateKind> {
        if self.get(kind.name()).is_some() {
            return Err(DuplicateKind(kind.name().to_string()));
        }
        self.kinds.push(kind);
        Ok(())
    }

    /// The node type called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn NodeKind>> {
        self.kinds.iter().find(|k| k.name() == name)
    }

    /// Every node type, built-ins first.
    pub fn kinds(&self) -> impl Iterator<Item = &Arc<dyn NodeKind>> {
        self.kinds.iter()
    }

    /// Every node type's name.
    pub fn names(&self) -> Vec<&'static str> {
        self.kinds.iter().map(|k| k.name()).collect()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::builtin()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

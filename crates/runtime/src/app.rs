//! An app at its active revision, with its functions ready to invoke.

use crate::Function;
use nimbus_core::AppSpec;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One app at its active revision, with its functions ready to invoke.
pub struct ActiveApp {
    /// The revision's spec.
    pub spec: AppSpec,
    /// Revision number.
    pub revision: i64,
    /// Functions by name.
    pub functions: BTreeMap<String, Arc<Function>>,
}

impl ActiveApp {
    /// Prepares the functions of a revision.
    pub fn new(spec: AppSpec, revision: i64) -> ActiveApp {
        let functions = spec
            .functions
            .iter()
            .map(|(name, f)| {
                (
                    name.clone(),
                    Arc::new(Function::new(&spec.name, name, revision, f)),
                )
            })
            .collect();
        ActiveApp {
            spec,
            revision,
            functions,
        }
    }
}

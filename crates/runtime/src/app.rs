//! An app at its active revision, with its functions ready to invoke.

use crate::{ConfigSnapshot, DataGrants, Function};
use nimbus_core::AppSpec;
use nimbus_core::FunctionSpec;
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
                let grants = DataGrants {
                    kv_declared: spec
                        .kv
                        .iter()
                        .map(|(n, k)| (n.clone(), k.max_value_bytes))
                        .collect(),
                    kv: f.kv.clone(),
                    collections_declared: spec.collections.keys().cloned().collect(),
                    collections: f.collections.clone(),
                    buckets: f.buckets.clone(),
                };
                let function = Function::new(&spec.name, name, revision, f).with_grants(grants);
                function.set_config(manifest_config(&spec, f));
                (name.clone(), Arc::new(function))
            })
            .collect();
        ActiveApp {
            spec,
            revision,
            functions,
        }
    }
}

/// A function's configuration from the manifest alone: the app's
/// `[variables]`, overridden by the function's `config`.
pub fn manifest_config(spec: &AppSpec, f: &FunctionSpec) -> ConfigSnapshot {
    let mut vars = spec.variables.clone();
    vars.extend(f.config.iter().map(|(k, v)| (k.clone(), v.clone())));
    ConfigSnapshot {
        vars: vars.into_iter().collect(),
        secrets: Vec::new(),
    }
}

//! An app at its active revision, with its functions ready to invoke.

use crate::{ConfigSnapshot, Function};
use nimbus_core::AppSpec;
use nimbus_core::FunctionSpec;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One app at its active revision, with its functions ready to invoke.
pub struct ActiveApp {
    /// The revision's spec (its functions share it: [`Function::app_spec`]).
    pub spec: Arc<AppSpec>,
    /// Revision number.
    pub revision: i64,
    /// Functions by name.
    pub functions: BTreeMap<String, Arc<Function>>,
}

impl ActiveApp {
    /// Prepares the functions of a revision.
    pub fn new(spec: AppSpec, revision: i64) -> ActiveApp {
        let spec = Arc::new(spec);
        let functions = spec
            .functions
            .iter()
            .map(|(name, f)| {
                let function = Function::new(&spec.name, name, revision, f).in_app(spec.clone());
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

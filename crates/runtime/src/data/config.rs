//! `wasi:config/store`: the app's variables and the function's own, with
//! secrets opened (and redacted from captured logs).

use super::config_wit;
use crate::host::Host;

/// Configuration as a guest sees it: variables (secrets included, in
/// clear) and the secret values, which are redacted from captured logs.
#[derive(Debug, Default, Clone)]
pub struct ConfigSnapshot {
    /// Name → value, sorted by name.
    pub vars: Vec<(String, String)>,
    /// Values of secrets (to redact).
    pub secrets: Vec<String>,
}

impl ConfigSnapshot {
    /// Replaces every secret value in `text` with `[redacted]`.
    pub fn redact(&self, text: &mut String) {
        for s in &self.secrets {
            if s.len() >= 4 && text.contains(s.as_str()) {
                *text = text.replace(s.as_str(), "[redacted]");
            }
        }
    }
}

impl config_wit::Host for Host {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, config_wit::Error>> {
        let vars = &self.data.config.vars;
        Ok(Ok(vars
            .binary_search_by(|(k, _)| k.as_str().cmp(&key))
            .ok()
            .map(|i| vars[i].1.clone())))
    }

    async fn get_all(
        &mut self,
    ) -> wasmtime::Result<Result<Vec<(String, String)>, config_wit::Error>> {
        Ok(Ok(self.data.config.vars.clone()))
    }
}

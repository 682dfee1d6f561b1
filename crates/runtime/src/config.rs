//! A function's configuration as its instances see it: a
//! [`ConfigSnapshot`] in an `ArcSwap` of the [`crate::Function`], which the
//! control plane replaces when configuration changes. An invocation sees
//! one snapshot from start to end (the `wasi:config/store` binding reads
//! it, see `nimbus-data`), and its captured output is redacted of the
//! snapshot's secret values.

/// Configuration as a guest sees it: variables (secrets included, in
/// clear) and the secret values, which are redacted from captured logs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
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

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.vars[i].1.as_str())
    }
}

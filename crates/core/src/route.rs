//! Route path patterns.
//!
//! A pattern is an absolute path whose segments are literals, `{name}`
//! parameters (one segment) or, as the last segment only, a wildcard written
//! `{*name}` or `*` (one or more remaining characters). Paths under `/v1/`
//! (the control and service APIs) and `/console` (the web console) are
//! reserved for Nimbus itself ([`is_reserved`]: the listeners send them to
//! the control router).
//!
//! Only the syntax check is hand-written; matching is `matchit`'s (in the
//! gateway's route table).

/// The prefix reserved for Nimbus's control and service APIs.
pub const RESERVED_PREFIX: &str = "/v1";

/// The prefix of the web console.
pub const CONSOLE_PREFIX: &str = "/console";

/// Whether a request path belongs to Nimbus itself (the control API or
/// the console) rather than to an app's routes.
pub fn is_reserved(path: &str) -> bool {
    [RESERVED_PREFIX, CONSOLE_PREFIX].iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// The parameter name a bare trailing `*` gets.
pub const DEFAULT_WILDCARD: &str = "path";

/// A validated route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The pattern in the router's syntax (`{name}`, `{*name}`).
    pub normalized: String,
    /// Parameter names in order of appearance (the wildcard last, if any).
    pub params: Vec<String>,
    /// Name of the trailing wildcard parameter, if the pattern has one.
    pub wildcard: Option<String>,
}

/// Parses and validates a route pattern; the error says what to change.
pub fn parse_pattern(pattern: &str) -> Result<Pattern, String> {
    if !pattern.starts_with('/') {
        return Err(format!("route {pattern:?} must start with '/'"));
    }
    if is_reserved(pattern) {
        return Err(format!(
            "route {pattern:?} is under {RESERVED_PREFIX}/ or {CONSOLE_PREFIX}/, which Nimbus reserves for its own APIs and console: choose another path"
        ));
    }
    if pattern.contains(['?', '#']) {
        return Err(format!(
            "route {pattern:?} must not contain '?' or '#': routes match paths only"
        ));
    }
    let segments: Vec<&str> = pattern[1..].split('/').collect();
    let mut out = String::new();
    let mut params = Vec::new();
    let mut wildcard = None;
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        out.push('/');
        if seg.is_empty() {
            if last {
                continue; // trailing slash is part of the literal path
            }
            return Err(format!("route {pattern:?} has an empty segment ('//')"));
        }
        let (name, is_wild) = if *seg == "*" {
            (DEFAULT_WILDCARD, true)
        } else if let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            match inner.strip_prefix('*') {
                Some(n) => (n, true),
                None => (inner, false),
            }
        } else {
            if seg.contains(['{', '}', '*']) {
                return Err(format!(
                    "route {pattern:?}: segment {seg:?} mixes text and a parameter; a parameter is a whole segment like {{id}}"
                ));
            }
            out.push_str(seg);
            continue;
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "route {pattern:?}: parameter name {name:?} must be letters, digits or '_'"
            ));
        }
        if params.iter().any(|p| p == name) {
            return Err(format!(
                "route {pattern:?} uses the parameter {name:?} twice"
            ));
        }
        if is_wild {
            if !last {
                return Err(format!(
                    "route {pattern:?}: a wildcard must be the last segment"
                ));
            }
            out.push_str(&format!("{{*{name}}}"));
            wildcard = Some(name.to_string());
        } else {
            out.push_str(&format!("{{{name}}}"));
        }
        params.push(name.to_string());
    }
    Ok(Pattern {
        normalized: out,
        params,
        wildcard,
    })
}

/// Checks an HTTP method name and returns it uppercased.
pub fn normalize_method(method: &str) -> Result<String, String> {
    let m = method.to_ascii_uppercase();
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
    ];
    if KNOWN.contains(&m.as_str()) {
        Ok(m)
    } else {
        Err(format!(
            "method {method:?} is not an HTTP method: use one of {}",
            KNOWN.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_and_params() {
        let p = parse_pattern("/games/{id}/moves").unwrap();
        assert_eq!(p.normalized, "/games/{id}/moves");
        assert_eq!(p.params, vec!["id"]);
        assert_eq!(p.wildcard, None);
        assert_eq!(parse_pattern("/").unwrap().normalized, "/");
        assert_eq!(parse_pattern("/a/").unwrap().normalized, "/a/");
    }

    #[test]
    fn wildcards() {
        let p = parse_pattern("/static/*").unwrap();
        assert_eq!(p.normalized, "/static/{*path}");
        assert_eq!(p.wildcard.as_deref(), Some("path"));
        let p = parse_pattern("/files/{*rest}").unwrap();
        assert_eq!(p.normalized, "/files/{*rest}");
        assert!(
            parse_pattern("/a/*/b")
                .unwrap_err()
                .contains("last segment")
        );
    }

    #[test]
    fn rejects_bad_patterns() {
        assert!(
            parse_pattern("hello")
                .unwrap_err()
                .contains("start with '/'")
        );
        assert!(parse_pattern("/v1/apps").unwrap_err().contains("reserves"));
        assert!(parse_pattern("/console").unwrap_err().contains("reserves"));
        assert!(
            parse_pattern("/console/{*rest}")
                .unwrap_err()
                .contains("reserves")
        );
        assert!(parse_pattern("/consoles").is_ok());
        assert!(is_reserved("/v1") && is_reserved("/v1/apps") && !is_reserved("/v1x"));
        assert!(parse_pattern("/v1").is_err());
        assert!(parse_pattern("/v10").is_ok());
        assert!(
            parse_pattern("/a//b")
                .unwrap_err()
                .contains("empty segment")
        );
        assert!(
            parse_pattern("/a/x{id}")
                .unwrap_err()
                .contains("whole segment")
        );
        assert!(parse_pattern("/a/{id}/{id}").unwrap_err().contains("twice"));
        assert!(
            parse_pattern("/a/{i-d}")
                .unwrap_err()
                .contains("parameter name")
        );
        assert!(parse_pattern("/a?b").is_err());
    }

    #[test]
    fn methods() {
        assert_eq!(normalize_method("get").unwrap(), "GET");
        assert!(
            normalize_method("FETCH")
                .unwrap_err()
                .contains("not an HTTP method")
        );
    }
}

//! `[[triggers.websocket]]`: WebSocket routes.

use super::{Manifest, ManifestError, line_of};
use crate::realtime::{
    DEFAULT_IDLE_TIMEOUT_S, DEFAULT_MAX_MESSAGE_KB, MAX_IDLE_TIMEOUT_S, MAX_MESSAGE_KB, SocketSpec,
};
use crate::route::parse_pattern;
use serde::Deserialize;
use std::ops::Range;

/// One `[[triggers.websocket]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketTrigger {
    /// Path pattern the upgrade request asks for.
    pub route: String,
    /// Function invoked at the upgrade; a non-2xx answer refuses it.
    #[serde(default)]
    pub connect: Option<String>,
    /// Function invoked with each message.
    pub message: String,
    /// Function invoked when the connection has ended.
    #[serde(default)]
    pub disconnect: Option<String>,
    /// A `[policies.NAME]` for this route (default: `[gateway]` alone).
    #[serde(default)]
    pub policy: Option<String>,
    /// Largest message a client may send, in KiB (default 64).
    #[serde(default)]
    pub max_message_kb: Option<u32>,
    /// Seconds without a message before the connection is closed (default 600).
    #[serde(default)]
    pub idle_timeout_s: Option<u64>,
}

impl Manifest {
    /// Checks and resolves the WebSocket routes. A WebSocket route is a
    /// `GET` route to the gateway, so it may not share its path with an
    /// HTTP route serving `GET`.
    pub(super) fn socket_parts(&self, src: &str) -> Result<Vec<SocketSpec>, ManifestError> {
        let at = |span: Range<usize>, message: String| ManifestError {
            line: Some(line_of(src, span)),
            message,
        };
        let mut out: Vec<(SocketSpec, String)> = Vec::new();
        for t in &self.triggers.websocket {
            let span = t.span();
            let t = t.get_ref();
            let err = |m: String| at(span.clone(), format!("websocket route {:?}: {m}", t.route));
            let pattern = parse_pattern(&t.route).map_err(|e| at(span.clone(), e))?;
            for f in [Some(&t.message), t.connect.as_ref(), t.disconnect.as_ref()]
                .into_iter()
                .flatten()
            {
                self.function_known(f).map_err(&err)?;
            }
            let kb = t.max_message_kb.unwrap_or(DEFAULT_MAX_MESSAGE_KB);
            if kb == 0 || kb > MAX_MESSAGE_KB {
                return Err(err(format!(
                    "max_message_kb = {kb} is out of range: use 1..={MAX_MESSAGE_KB}"
                )));
            }
            let idle = t.idle_timeout_s.unwrap_or(DEFAULT_IDLE_TIMEOUT_S);
            if idle == 0 || idle > MAX_IDLE_TIMEOUT_S {
                return Err(err(format!(
                    "idle_timeout_s = {idle} is out of range: use 1..={MAX_IDLE_TIMEOUT_S}"
                )));
            }
            if let Some(name) = &t.policy
                && !self.policies.contains_key(name)
            {
                return Err(err(format!(
                    "it names policy {name:?}, which is not declared: add a [policies.{name}] table"
                )));
            }
            if out.iter().any(|(_, p)| *p == shape(&pattern.normalized)) {
                return Err(err(
                    "another websocket route has the same path: make the paths distinct".into(),
                ));
            }
            if let Some(h) = self.triggers.http.iter().find(|h| {
                let h = h.get_ref();
                parse_pattern(&h.route)
                    .is_ok_and(|p| shape(&p.normalized) == shape(&pattern.normalized))
                    && (h.methods.is_empty()
                        || h.methods.iter().any(|m| m.eq_ignore_ascii_case("GET")))
            }) {
                return Err(err(format!(
                    "the HTTP route on line {} serves GET on the same path, which the upgrade request uses: make the paths distinct",
                    line_of(src, h.span())
                )));
            }
            let shape = shape(&pattern.normalized);
            out.push((
                SocketSpec {
                    path: t.route.clone(),
                    connect: t.connect.clone(),
                    message: t.message.clone(),
                    disconnect: t.disconnect.clone(),
                    policy: t.policy.clone(),
                    max_message_bytes: kb << 10,
                    idle_timeout_ms: idle * 1000,
                },
                shape,
            ));
        }
        Ok(out.into_iter().map(|(s, _)| s).collect())
    }
}

/// A pattern with its parameters' names left out: two patterns of one
/// shape match the same paths.
fn shape(normalized: &str) -> String {
    normalized
        .split('/')
        .map(|seg| match seg.strip_prefix('{') {
            Some(rest) if rest.starts_with('*') => "{*}",
            Some(_) => "{}",
            None => seg,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[app]\nname = \"chat\"\n[functions.f]\ncomponent = \"f.wasm\"\n[functions.g]\ncomponent = \"g.wasm\"\n";

    fn err(extra: &str) -> String {
        Manifest::parse(&format!("{BASE}{extra}"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_websocket_route_resolves_with_its_defaults() {
        let m = Manifest::parse(&format!(
            "{BASE}[[triggers.websocket]]\nroute = \"/ws/{{room}}\"\nconnect = \"g\"\nmessage = \"f\"\n"
        ))
        .unwrap();
        let spec = m
            .to_spec(&[("f".into(), "h1".into()), ("g".into(), "h2".into())].into())
            .unwrap();
        assert_eq!(
            spec.sockets,
            vec![SocketSpec {
                path: "/ws/{room}".into(),
                connect: Some("g".into()),
                message: "f".into(),
                disconnect: None,
                policy: None,
                max_message_bytes: 64 << 10,
                idle_timeout_ms: 600_000,
            }]
        );
    }

    #[test]
    fn a_bad_websocket_route_says_what_to_fix_on_its_line() {
        let e = err("[[triggers.websocket]]\nroute = \"/ws\"\nmessage = \"nope\"\n");
        assert!(e.starts_with("nimbus.toml line 7:"), "{e}");
        assert!(e.contains("\"nope\" is not defined"), "{e}");
        let e =
            err("[[triggers.websocket]]\nroute = \"/ws\"\nmessage = \"f\"\nmax_message_kb = 0\n");
        assert!(e.contains("max_message_kb = 0 is out of range"), "{e}");
        let e = err(
            "[[triggers.websocket]]\nroute = \"/ws\"\nmessage = \"f\"\nidle_timeout_s = 99999\n",
        );
        assert!(e.contains("idle_timeout_s = 99999 is out of range"), "{e}");
        let e = err("[[triggers.websocket]]\nroute = \"/ws\"\nmessage = \"f\"\npolicy = \"p\"\n");
        assert!(e.contains("add a [policies.p] table"), "{e}");
        let e = err(
            "[[triggers.websocket]]\nroute = \"/ws/{a}\"\nmessage = \"f\"\n[[triggers.websocket]]\nroute = \"/ws/{b}\"\nmessage = \"g\"\n",
        );
        assert!(e.contains("same path"), "{e}");
        let e = err(
            "[[triggers.http]]\nroute = \"/ws\"\nfunction = \"f\"\n[[triggers.websocket]]\nroute = \"/ws\"\nmessage = \"g\"\n",
        );
        assert!(e.contains("HTTP route on line 7 serves GET"), "{e}");
        let e = err("[[triggers.websocket]]\nroute = \"/v1/ws\"\nmessage = \"f\"\n");
        assert!(e.contains("reserves"), "{e}");
        // A POST-only HTTP route may share the path.
        Manifest::parse(&format!(
            "{BASE}[[triggers.http]]\nroute = \"/ws\"\nmethods = [\"POST\"]\nfunction = \"f\"\n[[triggers.websocket]]\nroute = \"/ws\"\nmessage = \"g\"\n"
        ))
        .unwrap();
    }
}

//! `[auth]` (the user pool), `[gateway]` (every route's policy) and
//! `[policies.NAME]` (policies a route may name).

use super::{Manifest, ManifestError, line_of};
use crate::names::check_name;
use crate::policy::{AuthMode, AuthSpec, PolicySpec};
use std::collections::BTreeMap;
use std::ops::Range;

pub(super) struct PolicyParts {
    pub(super) auth: Option<AuthSpec>,
    pub(super) gateway: PolicySpec,
    pub(super) policies: BTreeMap<String, PolicySpec>,
}

impl Manifest {
    /// Checks and resolves the user pool and the gateway policies, and
    /// checks every route's resolved policy.
    pub(super) fn policy_parts(&self, src: &str) -> Result<PolicyParts, ManifestError> {
        let at = |span: Range<usize>, message: String| ManifestError {
            line: Some(line_of(src, span)),
            message,
        };
        let auth = match &self.auth {
            None => None,
            Some(a) => {
                let spec = a
                    .get_ref()
                    .to_spec()
                    .map_err(|e| at(a.span(), format!("[auth]: {e}")))?;
                if let Some(hook) = &spec.reset_hook {
                    self.function_known(hook)
                        .map_err(|e| at(a.span(), format!("[auth] reset_hook: {e}")))?;
                }
                Some(spec)
            }
        };
        let gateway = match &self.gateway {
            None => PolicySpec::default(),
            Some(g) => g
                .get_ref()
                .to_spec()
                .map_err(|e| at(g.span(), format!("[gateway]: {e}")))?,
        };
        let mut policies = BTreeMap::new();
        for (name, p) in &self.policies {
            check_name("policy", name).map_err(|e| at(p.span(), e))?;
            let spec = p
                .get_ref()
                .to_spec()
                .map_err(|e| at(p.span(), format!("[policies.{name}]: {e}")))?;
            policies.insert(name.clone(), spec);
        }
        let check = |p: &PolicySpec, span: Range<usize>, what: &str| {
            let r = p
                .resolve(&gateway)
                .map_err(|e| at(span.clone(), format!("{what}: {e}")))?;
            if r.auth == AuthMode::Jwt && r.issuer.is_none() && auth.is_none() {
                return Err(at(
                    span,
                    format!(
                        "{what}: auth = \"jwt\" verifies tokens of the app's user pool, which needs an [auth] table (or give the external issuer's jwks_url)"
                    ),
                ));
            }
            Ok(())
        };
        if let Some(g) = &self.gateway {
            check(&PolicySpec::default(), g.span(), "[gateway]")?;
        }
        for (name, p) in &self.policies {
            check(&policies[name], p.span(), &format!("[policies.{name}]"))?;
        }
        for t in &self.triggers.http {
            if let Some(name) = &t.get_ref().policy
                && !policies.contains_key(name)
            {
                return Err(at(
                    t.span(),
                    format!(
                        "route {:?} names policy {name:?}, which is not declared: add a [policies.{name}] table",
                        t.get_ref().route
                    ),
                ));
            }
        }
        Ok(PolicyParts {
            auth,
            gateway,
            policies,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Access, AuthMode};

    const BASE: &str = "[app]\nname = \"demo\"\n[functions.f]\ncomponent = \"f.wasm\"\n";

    #[test]
    fn policies_resolve_per_route() {
        let src = format!(
            "{BASE}[auth]\nreset_hook = \"f\"\n[gateway]\nmax_body_kb = 8\n[policies.players]\nauth = \"jwt\"\nroles = [\"player\"]\nrate_limit = {{ requests = 2, by = \"user\" }}\n[kv.pub]\naccess = \"public-read\"\n[collections.games]\naccess = \"owner\"\nowner_field = \"player\"\n[[triggers.http]]\nroute = \"/a\"\nfunction = \"f\"\npolicy = \"players\"\n[[triggers.http]]\nroute = \"/b\"\nfunction = \"f\"\n"
        );
        let m = Manifest::parse(&src).unwrap();
        let spec = m.to_spec(&[("f".into(), "h".into())].into()).unwrap();
        let a = spec.route_policy(&spec.routes[0]).unwrap();
        assert_eq!(a.auth, AuthMode::Jwt);
        assert_eq!(a.max_body_bytes, Some(8192));
        let b = spec.route_policy(&spec.routes[1]).unwrap();
        assert_eq!(b.auth, AuthMode::Public);
        assert_eq!(spec.kv["pub"].access, Access::PublicRead);
        assert_eq!(Access::parse("owner-read"), Ok(Access::OwnerRead));
        assert!(
            Access::parse("owner-write")
                .unwrap_err()
                .contains("owner-read")
        );
        assert_eq!(
            spec.collections["games"].owner_field.as_deref(),
            Some("player")
        );
        assert_eq!(spec.auth.unwrap().reset_hook.as_deref(), Some("f"));
    }

    #[test]
    fn policy_errors_are_clear() {
        let err = |s: String| Manifest::parse(&s).unwrap_err();
        let e = err(format!(
            "{BASE}[[triggers.http]]\nroute = \"/a\"\nfunction = \"f\"\npolicy = \"nope\"\n"
        ));
        assert!(e.message.contains("[policies.nope]"), "{e}");
        let e = err(format!("{BASE}[policies.p]\nauth = \"jwt\"\n"));
        assert!(e.message.contains("[auth] table"), "{e}");
        assert_eq!(e.line, Some(5));
        let e = err(format!("{BASE}[gateway]\ndeny = [\"nonsense\"]\n"));
        assert!(e.message.contains("CIDR"), "{e}");
        let e = err(format!("{BASE}[auth]\nreset_hook = \"mailer\"\n"));
        assert!(e.message.contains("mailer"), "{e}");
        let e = err(format!("{BASE}[collections.c]\naccess = \"friends\"\n"));
        assert!(e.message.contains("public-read"), "{e}");
    }
}

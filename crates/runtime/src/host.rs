//! The per-invocation store state: WASI contexts, the memory limiter
//! (a `ResourceLimiter`), each guest capability's state, and the outbound
//! HTTP policy: the function's `allowed_outbound_hosts` ([`AllowedHost`],
//! hand-rolled because the manifest's host patterns have no library),
//! checked in `WasiHttpHooks::send_request` before the egress guard
//! (`egress.rs`) checks the address. A host off the list is
//! `HTTP-request-denied` to the guest, an address the guard refuses
//! `destination-IP-prohibited`; both leave a note in the guest's log. The
//! hook also adds the invocation's `traceparent` to an outgoing request
//! that has none.

use crate::capture::Capture;
use crate::egress::Egress;
use crate::ops::OpSink;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

/// Store data of one instance: built fresh for every request and dropped
/// with the instance, or, for a function that reuses instances, for the
/// requests one instance serves.
pub struct Host {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) outbound: OutboundPolicy,
    pub(crate) limiter: Limiter,
    /// Each guest capability's state in this instance.
    pub(crate) caps: Vec<Box<dyn std::any::Any + Send>>,
    /// Calls to Nimbus's services, for metering and the trace.
    pub(crate) ops: Arc<crate::ops::OpLog>,
    /// The shared instance this store belongs to (instance reuse): its
    /// service calls count for the oldest request it serves.
    pub(crate) shared: Option<Arc<crate::invoke::Shared>>,
    /// Room for the instance's async host calls in flight.
    pub(crate) calls: crate::ops::HostCalls,
}

impl Host {
    /// What a host call of the capability whose instance state is a `T`
    /// reaches (see [`crate::capability`]).
    ///
    /// # Panics
    ///
    /// If no capability built a `T` for this instance: a capability's
    /// `link` asking for a state type its `instance` does not build.
    pub fn capability<T: std::any::Any + Send>(&mut self) -> crate::GuestCx<'_, T> {
        let state = self
            .caps
            .iter_mut()
            .find_map(|c| c.downcast_mut::<T>())
            .unwrap_or_else(|| {
                panic!(
                    "no guest capability built a {} for this instance",
                    std::any::type_name::<T>()
                )
            });
        let ops = match &self.shared {
            Some(shared) => OpSink::Shared(shared.clone(), self.ops.clone()),
            None => OpSink::Own(self.ops.clone()),
        };
        crate::GuestCx {
            state,
            table: &mut self.table,
            ops,
            calls: &self.calls,
        }
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

/// Enforces the function's memory limit; remembers whether it was hit so the
/// resulting trap can be reported as what it is.
pub(crate) struct Limiter {
    pub(crate) max_bytes: usize,
    pub(crate) hit: bool,
    /// The largest size any memory of the instance reached, in bytes.
    pub(crate) peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Most table elements an instance may grow a table to.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            return Err(wasmtime::format_err!(
                "memory limit exceeded: the guest tried to grow its memory from {} to {} bytes, over its limit of {} MiB (raise memory_mb in nimbus.toml if it really needs more)",
                current,
                desired,
                self.max_bytes >> 20
            ));
        }
        self.peak
            .fetch_max(desired as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// One `allowed_outbound_hosts` entry, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    scheme: Option<String>,
    /// Lowercase host; `*` for any, or `*.suffix`.
    host: String,
    /// `None` means any port.
    port: Option<u16>,
}

impl AllowedHost {
    /// Parses an entry already checked by the manifest validation.
    pub fn parse(entry: &str) -> AllowedHost {
        let (scheme, rest) = match entry.split_once("://") {
            Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
            None => (None, entry),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() => (h, p.parse().ok()),
            _ => (rest, None),
        };
        AllowedHost {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        }
    }

    fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        if self.scheme.as_deref().is_some_and(|s| s != scheme) {
            return false;
        }
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        if self.host == "*" {
            return true;
        }
        match self.host.strip_prefix("*.") {
            Some(suffix) => {
                host.len() > suffix.len()
                    && host.ends_with(suffix)
                    && host[..host.len() - suffix.len()].ends_with('.')
            }
            None => self.host == host,
        }
    }
}

/// Decides whether a guest may send an outbound request: its host must be
/// in the function's allow-list, and the address it resolves to must pass
/// the node's egress guard.
pub(crate) struct OutboundPolicy {
    pub(crate) allowed: Arc<[AllowedHost]>,
    pub(crate) egress: Arc<Egress>,
    pub(crate) stderr: Capture,
    /// The invocation's trace position, sent on outbound requests that do
    /// not carry one, so the callee joins the trace.
    pub(crate) traceparent: Option<http::HeaderValue>,
}

impl OutboundPolicy {
    fn allows(&self, uri: &http::Uri) -> bool {
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let Some(host) = uri.host() else { return false };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "http" { 80 } else { 443 });
        self.allowed.iter().any(|a| a.matches(&scheme, &host, port))
    }
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        drop(fut);
        if !self.allows(request.uri()) {
            self.stderr.write(
                format!(
                    "[nimbus: outbound request to {} denied: add its host to allowed_outbound_hosts in nimbus.toml]\n",
                    request.uri()
                )
                .as_bytes(),
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        if let Some(tp) = &self.traceparent
            && !request.headers().contains_key("traceparent")
        {
            request.headers_mut().insert("traceparent", tp.clone());
        }
        let (egress, stderr) = (self.egress.clone(), self.stderr.clone());
        Box::new(
            async move { crate::egress::send_request(&egress, &stderr, request, options).await },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> OutboundPolicy {
        OutboundPolicy {
            allowed: entries.iter().map(|e| AllowedHost::parse(e)).collect(),
            egress: Arc::new(Egress::new(vec![])),
            stderr: Capture::new(10),
            traceparent: None,
        }
    }

    fn allows(p: &OutboundPolicy, uri: &str) -> bool {
        p.allows(&uri.parse().unwrap())
    }

    #[test]
    fn outbound_matching() {
        let p = policy(&[]);
        assert!(!allows(&p, "https://example.com/"));
        let p = policy(&[
            "example.com",
            "*.example.org",
            "127.0.0.1:8080",
            "http://plain.test",
        ]);
        assert!(allows(&p, "https://example.com/x"));
        assert!(allows(&p, "http://EXAMPLE.com:81/x"));
        assert!(!allows(&p, "https://evil-example.com/"));
        assert!(allows(&p, "https://a.example.org/"));
        assert!(!allows(&p, "https://example.org/"));
        assert!(!allows(&p, "https://aexample.org/"));
        assert!(allows(&p, "http://127.0.0.1:8080/hello"));
        assert!(!allows(&p, "http://127.0.0.1:8081/hello"));
        assert!(allows(&p, "http://plain.test/"));
        assert!(!allows(&p, "https://plain.test/"));
        assert!(allows(&policy(&["*"]), "https://anything.test:9/"));
    }
}

//! The data plane.
//!
//! One request: accept (hyper) → look up the route in the current
//! [`RouteTable`] snapshot → admission, a fresh instance and the guest call
//! in [`nimbus_runtime::Runtime::invoke`] → the guest's body streamed back.
//! Paths under `/v1/` go to the control router instead. A request with
//! `Prefer: respond-async` is stored as an event instead and answered 202
//! ([`asynchronous`]).
//!
//! Invariant: a request holds one table snapshot (an `Arc`) from lookup to
//! the end, so it is served entirely by one revision even if a deploy swaps
//! the table meanwhile.

pub mod asynchronous;
pub mod policy;
mod routes;

pub use nimbus_runtime::ActiveApp;
pub use policy::Verifiers;
pub use routes::{Lookup, RouteConflict, RouteTable, Target};

use arc_swap::ArcSwap;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use nimbus_events::Events;
use nimbus_runtime::{InvokeRequest, ResponseBody, Runtime};
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};

/// Routes requests to functions.
pub struct Gateway {
    table: ArcSwap<RouteTable>,
    runtime: Arc<Runtime>,
    events: Arc<Events>,
    verifiers: Verifiers,
}

/// The client's address, as a request extension for the control router.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl Gateway {
    /// A gateway with no routes.
    pub fn new(runtime: Arc<Runtime>, events: Arc<Events>, verifiers: Verifiers) -> Arc<Gateway> {
        let gateway = Arc::new(Gateway {
            table: ArcSwap::from_pointee(RouteTable::default()),
            runtime,
            events,
            verifiers,
        });
        // Rate-limit buckets that are full again carry no information.
        let weak = Arc::downgrade(&gateway);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                let Some(g) = weak.upgrade() else { return };
                for p in g.table().policies() {
                    p.shrink();
                }
            }
        });
        gateway
    }

    /// What verifies API keys and tokens.
    pub fn verifiers(&self) -> &Verifiers {
        &self.verifiers
    }

    /// The events engine (async invocations).
    pub fn events(&self) -> &Arc<Events> {
        &self.events
    }

    /// The current route table.
    pub fn table(&self) -> Arc<RouteTable> {
        self.table.load_full()
    }

    /// Atomically replaces the route table.
    pub fn swap(&self, table: RouteTable) {
        self.table.store(Arc::new(table));
    }

    /// The runtime requests are dispatched to.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Applies the route's policy, then stores the request as an async
    /// invocation or invokes the function.
    async fn serve_route(
        &self,
        target: &Target,
        params: Vec<(String, String)>,
        mut req: Request<Incoming>,
        ip: Option<IpAddr>,
    ) -> Response<ResponseBody> {
        let mut caller = None;
        if let Some(p) = &target.policy {
            if let Err(r) = p.check_ip(ip) {
                return r.into_response();
            }
            match p.admit(&self.verifiers, req.headers_mut(), ip).await {
                Ok(c) => caller = c,
                Err(r) => return r.into_response(),
            }
        }
        let max_body = target.policy.as_ref().and_then(|p| p.spec.max_body_bytes);
        if asynchronous::wants_async(req.headers()) {
            return asynchronous::accept(
                &self.events,
                &target.function,
                req,
                Some(&target.pattern),
                &params,
                caller.as_ref(),
                max_body,
            )
            .await;
        }
        let meta = InvokeRequest {
            trigger: "http",
            route: Some(target.pattern.to_string()),
            params,
            caller,
            trace: req
                .headers()
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .and_then(nimbus_core::trace::TraceContext::parse),
            ..Default::default()
        };
        match max_body {
            // Content-Length was checked; this catches chunked bodies.
            Some(max) => {
                let req = req.map(|b| {
                    http_body_util::BodyExt::map_err(
                        http_body_util::Limited::new(b, max as usize),
                        move |_| {
                            wasmtime_wasi_http::p2::bindings::http::types::ErrorCode::HttpRequestBodySize(
                                Some(max),
                            )
                        },
                    )
                });
                self.runtime.invoke(&target.function, req, meta).await
            }
            None => self.runtime.invoke(&target.function, req, meta).await,
        }
    }

    /// Serves one request through the route table; `ip` is the client's.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        ip: Option<IpAddr>,
    ) -> Response<ResponseBody> {
        let table = self.table.load_full();
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host())
            .map(|h| {
                h.rsplit_once(':')
                    .map_or(h, |(name, port)| {
                        if port.bytes().all(|b| b.is_ascii_digit()) {
                            name
                        } else {
                            h
                        }
                    })
                    .to_ascii_lowercase()
            });
        // A CORS preflight is answered by the route it asks about, if that
        // route's policy has CORS; otherwise OPTIONS is routed as any method.
        if let Some(asked) = policy::preflight_method(req.method(), req.headers())
            && let Lookup::Found { target, .. } =
                table.lookup(host.as_deref(), &asked, req.uri().path())
            && let Some(cors) = &target.cors
        {
            if let Some(p) = &target.policy
                && let Err(r) = p.check_ip(ip)
            {
                return r.into_response();
            }
            let never = tower::service_fn(|_: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(ResponseBody::default()))
            });
            return cors
                .layer(never)
                .oneshot(req)
                .await
                .unwrap_or_else(|never| match never {});
        }
        match table.lookup(host.as_deref(), req.method(), req.uri().path()) {
            Lookup::Found { target, params } => match &target.cors {
                // Every answer of a CORS route carries its CORS headers,
                // refusals included, so a browser app can read them.
                Some(cors) => {
                    let route = tower::service_fn(|req: Request<Incoming>| {
                        let params = params.clone();
                        async move {
                            Ok::<_, Infallible>(self.serve_route(target, params, req, ip).await)
                        }
                    });
                    cors.layer(route)
                        .oneshot(req)
                        .await
                        .unwrap_or_else(|never| match never {})
                }
                None => self.serve_route(target, params, req, ip).await,
            },
            Lookup::MethodNotAllowed(allowed) => {
                let list: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
                let mut resp = nimbus_runtime::text_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!(
                        "{} is not allowed on {}: use {}",
                        req.method(),
                        req.uri().path(),
                        list.join(", ")
                    ),
                );
                if let Ok(v) = HeaderValue::from_str(&list.join(", ")) {
                    resp.headers_mut().insert(header::ALLOW, v);
                }
                resp
            }
            Lookup::NotFound => nimbus_runtime::text_response(
                StatusCode::NOT_FOUND,
                format!(
                    "no route for {} {}: see `nimbus functions APP` for the routes deployed",
                    req.method(),
                    req.uri().path()
                ),
            ),
        }
    }
}

/// How long a client may take to send a request head.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Body of every response the server sends.
pub type ServerBody = Either<ResponseBody, axum::body::Body>;

/// Accepts connections until `shutdown` resolves, sending `/v1/...` and
/// `/console` to `control` and everything else through the gateway.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    control: axum::Router,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and similar: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let gateway = gateway.clone();
        let control = control.clone();
        tokio::spawn(async move {
            let ip = nimbus_core::policy::canonical_ip(peer.ip());
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let gateway = gateway.clone();
                let control = control.clone();
                async move {
                    let resp: Response<ServerBody> =
                        if nimbus_core::route::is_reserved(req.uri().path()) {
                            req.extensions_mut().insert(ClientIp(ip));
                            let resp = control
                                .oneshot(req)
                                .await
                                .unwrap_or_else(|never: Infallible| match never {});
                            resp.map(Either::Right)
                        } else {
                            gateway.handle(req, Some(ip)).await.map(Either::Left)
                        };
                    Ok::<_, Infallible>(resp)
                }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // A client that never finishes its request head is dropped.
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

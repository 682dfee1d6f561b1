//! The data plane.
//!
//! One request: accept (hyper) → look up the route in the current
//! [`RouteTable`] snapshot → admission, a fresh instance and the guest call
//! in [`nimbus_runtime::Runtime::invoke`] → the guest's body streamed back.
//! Paths under `/v1/` and `/console` (`nimbus_core::route::is_reserved`)
//! go to the control router instead. A request with
//! `Prefer: respond-async` is stored as an event instead and answered 202
//! ([`asynchronous`]).
//!
//! [`serve`] runs one of two doors ([`Door`]): on the apps' door the
//! control router it is given is the client-facing part of the control
//! API, and everything else goes through the route table; on the control
//! door it is the whole control API, and anything else is answered 404, so
//! no app code runs on the console's origin. The client address that
//! policies and user pools see is the TCP peer's; only for a peer inside
//! `--trusted-proxy` ranges is it taken from `X-Forwarded-For`
//! ([`forwarded_client`]). On a shared origin (a host no app owns),
//! [`Gateway::handle`] refuses service-worker script fetches and drops
//! `Service-Worker-Allowed` from responses.
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
    /// The WebSocket connections it holds.
    realtime: Arc<nimbus_realtime::Realtime>,
    /// Peers whose `X-Forwarded-For` is believed (`--trusted-proxy`).
    trusted_proxies: std::sync::OnceLock<Vec<ipnet::IpNet>>,
}

/// The client's address, as a request extension for the control router.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl Gateway {
    /// A gateway with no routes, holding WebSocket connections within
    /// `realtime`'s limits.
    pub fn new(
        runtime: Arc<Runtime>,
        events: Arc<Events>,
        verifiers: Verifiers,
        realtime: nimbus_realtime::RealtimeConfig,
    ) -> Arc<Gateway> {
        let gateway = Arc::new(Gateway {
            table: ArcSwap::from_pointee(RouteTable::default()),
            realtime: nimbus_realtime::Realtime::new(runtime.clone(), realtime),
            runtime,
            events,
            verifiers,
            trusted_proxies: Default::default(),
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

    /// Believes `X-Forwarded-For` from peers in these networks (reverse
    /// proxies in front of the node, `--trusted-proxy`). Set once, at
    /// start-up; by default no peer is trusted.
    pub fn trust_proxies(&self, nets: Vec<ipnet::IpNet>) {
        let _ = self.trusted_proxies.set(nets);
    }

    /// The address of the client of a request from `peer`: the peer's, or,
    /// when the peer is a trusted proxy, the right-most `X-Forwarded-For`
    /// address that is not itself a trusted proxy.
    pub fn client_ip(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        match self.trusted_proxies.get() {
            Some(trusted) if !trusted.is_empty() => forwarded_client(peer, headers, trusted),
            _ => peer,
        }
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

    /// The WebSocket connections this node holds.
    pub fn realtime(&self) -> &Arc<nimbus_realtime::Realtime> {
        &self.realtime
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
        if target.socket.is_some() {
            socket_credential(&mut req);
        }
        if let Some(p) = &target.policy {
            if let Err(r) = p.check_ip(ip) {
                return r.into_response();
            }
            if target.socket.is_some()
                && let Some(refused) = socket_origin_refused(p, req.headers())
            {
                return refused;
            }
            match p.admit(&self.verifiers, req.headers_mut(), ip).await {
                Ok(c) => caller = c,
                Err(r) => return r.into_response(),
            }
        }
        if let Some(socket) = &target.socket {
            let (resp, id) = self.realtime.upgrade(socket, req, params, caller).await;
            // The app may have been redeployed or deleted while the
            // connect function ran; the connection is then closed.
            if let Some(id) = id {
                let table = self.table.load();
                self.realtime
                    .close_if_stale(socket, &id, table.app(socket.app()));
            }
            return resp;
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
    ///
    /// On a shared origin (a host no app owns), no app may install a
    /// service worker: it would see every other app's requests on that
    /// origin. A service-worker script fetch is refused there, and no
    /// response may widen a worker's scope (`Service-Worker-Allowed`).
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        ip: Option<IpAddr>,
    ) -> Response<ResponseBody> {
        let table = self.table.load_full();
        let host = request_host(&req);
        let shared = host.as_deref().and_then(|h| table.host_owner(h)).is_none();
        if !shared {
            return self.route(&table, host.as_deref(), req, ip).await;
        }
        if req
            .headers()
            .get(SERVICE_WORKER)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"script"))
        {
            return nimbus_runtime::text_response(
                StatusCode::FORBIDDEN,
                format!(
                    "{} is requested as a service worker script, which is refused on an origin that several apps share (it would see the other apps' requests): bind the app to a host of its own ([app] host = \"...\") to use service workers",
                    req.uri().path()
                ),
            );
        }
        let mut resp = self.route(&table, host.as_deref(), req, ip).await;
        resp.headers_mut().remove(SERVICE_WORKER_ALLOWED);
        resp
    }

    async fn route(
        &self,
        table: &RouteTable,
        host: Option<&str>,
        req: Request<Incoming>,
        ip: Option<IpAddr>,
    ) -> Response<ResponseBody> {
        // A CORS preflight is answered by the route it asks about, if that
        // route's policy has CORS; otherwise OPTIONS is routed as any method.
        if let Some(asked) = policy::preflight_method(req.method(), req.headers())
            && let Lookup::Found { target, .. } = table.lookup(host, &asked, req.uri().path())
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
        match table.lookup(host, req.method(), req.uri().path()) {
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

/// A browser cannot set headers on a WebSocket upgrade, so a route's token
/// may come as the `access_token` query parameter. It is taken out of the
/// URI (no function, log or record sees it) and, unless the request has
/// an `Authorization` header of its own, put into that header, which the
/// policy reads and the guest never gets.
fn socket_credential<B>(req: &mut Request<B>) {
    let Some(query) = req.uri().query() else {
        return;
    };
    let is_token = |kv: &&str| kv.split_once('=').map_or(*kv, |(k, _)| k) == "access_token";
    if !query.split('&').any(|kv| is_token(&kv)) {
        return;
    }
    let token = query
        .split('&')
        .filter(is_token)
        .find_map(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_string());
    let kept: Vec<&str> = query.split('&').filter(|kv| !is_token(kv)).collect();
    let path = req.uri().path();
    let rebuilt = if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    let mut parts = req.uri().clone().into_parts();
    match rebuilt.parse() {
        Ok(pq) => parts.path_and_query = Some(pq),
        Err(_) => return,
    }
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    if !req.headers().contains_key(header::AUTHORIZATION)
        && let Some(v) = token
            .filter(|t| !t.is_empty())
            .and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
    {
        req.headers_mut().insert(header::AUTHORIZATION, v);
    }
}

/// A WebSocket upgrade from a page of an origin the route's CORS origins
/// do not list is refused (browsers send `Origin` and apply no CORS to
/// WebSockets, so the server must). A client that is no browser sends no
/// `Origin` and is not refused for it. Without CORS in the policy, pages
/// of any origin may connect, as they may call any other route.
fn socket_origin_refused(
    p: &policy::Policy,
    headers: &http::HeaderMap,
) -> Option<Response<ResponseBody>> {
    let cors = p.spec.cors.as_ref()?;
    if cors.origins.iter().any(|o| o == "*") {
        return None;
    }
    let origin = headers.get(header::ORIGIN)?;
    let origin = origin.to_str().ok();
    if origin.is_some_and(|o| cors.origins.iter().any(|a| a.eq_ignore_ascii_case(o))) {
        return None;
    }
    Some(nimbus_runtime::text_response(
        StatusCode::FORBIDDEN,
        format!(
            "a WebSocket connection from origin {} is refused: this route's policy allows only {}",
            origin.unwrap_or("(not text)"),
            cors.origins.join(", ")
        ),
    ))
}

const SERVICE_WORKER: header::HeaderName = header::HeaderName::from_static("service-worker");
const SERVICE_WORKER_ALLOWED: header::HeaderName =
    header::HeaderName::from_static("service-worker-allowed");

/// The host name a request is for (its `Host`, or the URI's authority),
/// lower-case, without a port.
pub fn request_host<B>(req: &Request<B>) -> Option<String> {
    req.headers()
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
        })
}

/// The client behind a chain of proxies: walking `X-Forwarded-For` from
/// the right (each proxy appends the address it got the request from),
/// every hop that is a trusted proxy hands over to the address it reports;
/// the first that is not is the client. An entry that is not an address
/// stops the walk at the proxy that wrote it.
pub fn forwarded_client(
    peer: IpAddr,
    headers: &http::HeaderMap,
    trusted: &[ipnet::IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let mut client = nimbus_core::policy::canonical_ip(peer);
    let lines: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let entries = lines.iter().rev().flat_map(|l| l.rsplit(','));
    for entry in entries {
        if !is_trusted(&client) {
            break;
        }
        let entry = entry.trim();
        let Some(ip) = entry
            .parse::<IpAddr>()
            .ok()
            .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        else {
            break;
        };
        client = nimbus_core::policy::canonical_ip(ip);
    }
    client
}

/// Which door a listener is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// App routes, and (through the control router it is given) the part
    /// of the control API that app pages call.
    Apps,
    /// The console and the control API: no app code runs on this origin.
    Control,
}

/// How long a client may take to send a request head.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Body of every response the server sends.
pub type ServerBody = Either<ResponseBody, axum::body::Body>;

/// Accepts connections until `shutdown` resolves, sending `/v1/...` and
/// `/console` to `control`; everything else goes through the gateway on
/// the apps' door and is refused on the control door.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    control: axum::Router,
    door: Door,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    let connections = hyper_util::server::graceful::GracefulShutdown::new();
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
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let gateway = gateway.clone();
        let control = control.clone();
        let watcher = connections.watcher();
        tokio::spawn(async move {
            let peer = nimbus_core::policy::canonical_ip(peer.ip());
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let gateway = gateway.clone();
                let control = control.clone();
                async move {
                    let ip = gateway.client_ip(peer, req.headers());
                    let resp: Response<ServerBody> = if nimbus_core::route::is_reserved(
                        req.uri().path(),
                    ) {
                        req.extensions_mut().insert(ClientIp(ip));
                        let resp = control
                            .oneshot(req)
                            .await
                            .unwrap_or_else(|never: Infallible| match never {});
                        resp.map(Either::Right)
                    } else if door == Door::Control {
                        nimbus_runtime::text_response(
                                StatusCode::NOT_FOUND,
                                format!(
                                    "no control API endpoint {} {}: this is the control listener (the console and /v1); app routes are served on the app listener (--listen)",
                                    req.method(),
                                    req.uri().path()
                                ),
                            )
                            .map(Either::Left)
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
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    // Idle connections close now; requests being served finish first, for
    // up to DRAIN.
    drop(listener);
    if tokio::time::timeout(DRAIN, connections.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN:?} of shutting down: left");
    }
    Ok(())
}

/// How long [`serve`] waits, once told to shut down, for the requests
/// being served.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

#[cfg(test)]
mod forwarded_tests {
    use super::forwarded_client;
    use std::net::IpAddr;

    fn client(peer: &str, lines: &[&str], trusted: &[&str]) -> IpAddr {
        let mut headers = http::HeaderMap::new();
        for l in lines {
            headers.append("x-forwarded-for", l.parse().unwrap());
        }
        let trusted: Vec<ipnet::IpNet> = trusted.iter().map(|n| n.parse().unwrap()).collect();
        forwarded_client(peer.parse().unwrap(), &headers, &trusted)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_address() {
        let proxies = ["10.0.0.0/8"];
        // An untrusted peer's header is ignored.
        assert_eq!(
            client("198.51.100.1", &["203.0.113.7"], &proxies),
            ip("198.51.100.1")
        );
        assert_eq!(
            client("10.0.0.2", &["203.0.113.7"], &proxies),
            ip("203.0.113.7")
        );
        assert_eq!(client("10.0.0.2", &[], &proxies), ip("10.0.0.2"));
        // A client's own entries, to the left of the one the proxy wrote,
        // count for nothing.
        assert_eq!(
            client("10.0.0.2", &["1.2.3.4, 203.0.113.7"], &proxies),
            ip("203.0.113.7")
        );
        // Chains of trusted proxies, in one line or several.
        assert_eq!(
            client("10.0.0.2", &["203.0.113.7, 10.0.0.9"], &proxies),
            ip("203.0.113.7")
        );
        assert_eq!(
            client("10.0.0.2", &["1.2.3.4", "203.0.113.7 , 10.0.0.9"], &proxies),
            ip("203.0.113.7")
        );
        assert_eq!(
            client("10.0.0.2", &["203.0.113.7", "10.0.0.9"], &proxies),
            ip("203.0.113.7")
        );
        // Ports, IPv6 and mapped forms.
        assert_eq!(
            client("10.0.0.2", &["203.0.113.7:5555"], &proxies),
            ip("203.0.113.7")
        );
        assert_eq!(
            client("10.0.0.2", &["[2001:db8::1]:443"], &proxies),
            ip("2001:db8::1")
        );
        assert_eq!(
            client("::ffff:10.0.0.2", &["::ffff:203.0.113.7"], &proxies),
            ip("203.0.113.7")
        );
        // Garbage stops at the proxy that wrote it.
        assert_eq!(
            client("10.0.0.2", &["203.0.113.7, unknown"], &proxies),
            ip("10.0.0.2")
        );
    }
}

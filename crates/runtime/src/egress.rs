//! The egress guard: which addresses guests' outbound HTTP may connect to.
//!
//! A function's `allowed_outbound_hosts` names the hosts its deployer lets
//! it call; that is the tenant's choice and says nothing about where a name
//! leads. Whatever it says, outbound requests never reach loopback,
//! private (RFC 1918, IPv6 unique-local), link-local (cloud metadata),
//! CGNAT, unspecified, multicast, broadcast or reserved addresses, the same
//! addresses embedded in IPv6 (IPv4-mapped, -compatible, NAT64, 6to4), nor
//! the node's own addresses (its listeners and its interfaces) — the
//! control API, metrics, other apps' IP allow-lists and internal services
//! live there. Only the operator opens ranges: `nimbus up --allow-egress
//! CIDR` ([`crate::RuntimeConfig::allow_egress`]).
//!
//! [`send_request`] resolves the name once, checks every address, and
//! connects to an address it checked (TLS still verifies the name the guest
//! asked for), so a DNS answer that changes between check and connect
//! (rebinding) changes nothing. The HTTP/1 and TLS handling is
//! wasmtime-wasi-http's `default_send_request` (48.0.8), which only takes a
//! URI to connect to, adapted to connect to a given socket address (the
//! reason this is hand-written). The refused ranges are a table of `ipnet`
//! CIDRs.

use crate::capture::Capture;
use bytes::Bytes;
use core::future::poll_fn;
use core::pin::{Pin, pin};
use core::task::{Context, Poll, ready};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// Ranges no guest reaches unless the operator allows them; the first
/// match names the reason.
const RESERVED: &[(&str, &str)] = &[
    ("0.0.0.0/8", "unspecified (\"this network\")"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "shared carrier-grade NAT space (RFC 6598)"),
    ("127.0.0.0/8", "loopback"),
    (
        "169.254.0.0/16",
        "link-local, where cloud metadata services live",
    ),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "reserved for IETF protocol assignments"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("198.18.0.0/15", "reserved for benchmarking"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("100::/64", "discard-only"),
    ("fc00::/7", "unique local (private)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (private)"),
    ("ff00::/8", "multicast"),
];

static RESERVED_NETS: LazyLock<Vec<(IpNet, &'static str)>> = LazyLock::new(|| {
    RESERVED
        .iter()
        .map(|(net, why)| (net.parse().expect("a valid CIDR"), *why))
        .collect()
});

/// How long the node's interface addresses are reused before they are
/// read again.
const INTERFACES_TTL: Duration = Duration::from_secs(10);

/// Where guests' outbound connections may go. One per runtime.
pub struct Egress {
    allow: Vec<IpNet>,
    /// The node's listener addresses (specific ones; a listener on
    /// `0.0.0.0` or `::` is on every interface, which `interfaces` covers).
    listeners: parking_lot::RwLock<Vec<IpAddr>>,
    interfaces: parking_lot::Mutex<Option<(Instant, Arc<[IpAddr]>)>>,
}

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub &'static str);

impl Egress {
    /// A guard refusing the reserved ranges and the node's own addresses,
    /// except inside `allow`.
    pub fn new(allow: Vec<IpNet>) -> Egress {
        Egress {
            allow,
            listeners: Default::default(),
            interfaces: Default::default(),
        }
    }

    /// Records an address the node listens on (the app, control, S3 and
    /// metrics listeners), so guests cannot call the node through it.
    pub fn add_node_address(&self, addr: SocketAddr) {
        let ip = canonical(addr.ip());
        if !ip.is_unspecified() {
            let mut l = self.listeners.write();
            if !l.contains(&ip) {
                l.push(ip);
            }
        }
    }

    /// The operator's allowed ranges.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allow
    }

    /// Whether a guest may connect to `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        let embedded = embedded_v4(ip).map(IpAddr::V4);
        if self
            .allow
            .iter()
            .any(|n| n.contains(&ip) || embedded.is_some_and(|e| n.contains(&e)))
        {
            return Ok(());
        }
        for candidate in std::iter::once(ip).chain(embedded) {
            if let Some((_, why)) = RESERVED_NETS.iter().find(|(n, _)| n.contains(&candidate)) {
                return Err(Refused(why));
            }
        }
        let ip = canonical(ip);
        if self.listeners.read().contains(&ip) || self.interface_addresses().contains(&ip) {
            return Err(Refused("an address of this Nimbus node"));
        }
        Ok(())
    }

    fn interface_addresses(&self) -> Arc<[IpAddr]> {
        let mut cached = self.interfaces.lock();
        if let Some((at, addrs)) = &*cached
            && at.elapsed() < INTERFACES_TTL
        {
            return addrs.clone();
        }
        let addrs: Arc<[IpAddr]> = match if_addrs::get_if_addrs() {
            Ok(list) => list.iter().map(|i| canonical(i.ip())).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the node's interface addresses; guests are kept from its listeners and the reserved ranges only");
                Arc::from([])
            }
        };
        *cached = Some((Instant::now(), addrs.clone()));
        addrs
    }
}

/// IPv4-mapped addresses as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The IPv4 address an IPv6 address carries, if it is of a form that
/// reaches it: IPv4-mapped and -compatible (`::ffff:a.b.c.d`, `::a.b.c.d`),
/// NAT64 (`64:ff9b::a.b.c.d`) and 6to4 (`2002:AABB:CCDD::/48`).
fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let s = v6.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, a, b, ..] => Some(Ipv4Addr::new(
            (a >> 8) as u8,
            a as u8,
            (b >> 8) as u8,
            b as u8,
        )),
        _ => None,
    }
}

trait TokioStream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T> TokioStream for T where T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}

/// The client TLS configuration: webpki's roots, ring, safe defaults.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// The response body: hyper's, failing when `between_bytes_timeout` passes
/// without a frame.
struct IncomingResponseBody {
    incoming: hyper::body::Incoming,
    timeout: tokio::time::Interval,
}

impl http_body::Body for IncomingResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.as_mut().incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(if err.is_timeout() {
                Error::HttpResponseTimeout
            } else {
                Error::from(err)
            }))),
            Poll::Ready(Some(Ok(frame))) => {
                self.timeout.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.timeout.poll_tick(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}

/// The rest of a connection's I/O after the response head.
pub(crate) type ConnectionIo = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// Sends a guest's request (already checked against its allow-list)
/// through the egress guard: resolves the host once, refuses if no address
/// may be reached (saying so in the invocation's log, `stderr`), and
/// connects to a checked address. Returns the response and the future of
/// the connection's remaining I/O.
pub(crate) async fn send_request(
    egress: &Egress,
    stderr: &Capture,
    mut req: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<(http::Response<WasiBody>, ConnectionIo), Error> {
    let uri = req.uri().clone();
    let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
    let use_tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = authority
        .port_u16()
        .unwrap_or(if use_tls { 443 } else { 80 });
    let option = |f: fn(&RequestOptions) -> Option<Duration>| {
        options
            .as_ref()
            .and_then(f)
            .unwrap_or(Duration::from_secs(600))
    };
    let connect_timeout = option(|o| o.connect_timeout);
    let first_byte_timeout = option(|o| o.first_byte_timeout);
    let between_bytes_timeout = option(|o| o.between_bytes_timeout);
    let deadline = tokio::time::Instant::now() + connect_timeout;

    // Resolve once; connect only to what was checked.
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            match tokio::time::timeout_at(deadline, tokio::net::lookup_host((host.as_str(), port)))
                .await
            {
                Ok(Ok(addrs)) => addrs.collect(),
                Ok(Err(e)) => return Err(Error::Connect(e)),
                Err(_) => return Err(Error::DnsTimeout),
            }
        }
    };
    let mut refused = Vec::new();
    let allowed: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| match egress.check(a.ip()) {
            Ok(()) => true,
            Err(Refused(why)) => {
                refused.push(format!("{} ({why})", a.ip()));
                false
            }
        })
        .collect();
    if allowed.is_empty() {
        if refused.is_empty() {
            return Err(Error::DestinationNotFound);
        }
        let target = if host.parse::<IpAddr>().is_ok() {
            String::new()
        } else {
            format!("{host} resolves to ")
        };
        stderr.write(
            format!(
                "[nimbus: outbound request to {uri} refused: {target}{}, which functions may not reach whatever allowed_outbound_hosts says; the server's operator can open address ranges with `nimbus up --allow-egress CIDR`]\n",
                refused.join(", ")
            )
            .as_bytes(),
        );
        tracing::debug!(%uri, refused = %refused.join(", "), "outbound request refused by the egress guard");
        return Err(Error::DestinationIpProhibited);
    }
    let mut failure = Error::ConnectionTimeout;
    let mut connected = None;
    for addr in &allowed {
        match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                connected = Some(stream);
                break;
            }
            Ok(Err(e)) => failure = Error::Connect(e),
            Err(_) => {
                failure = Error::ConnectionTimeout;
                break;
            }
        }
    }
    let Some(stream) = connected else {
        return Err(failure);
    };
    let stream: Box<dyn TokioStream> = if use_tls {
        // The certificate must be the name's the guest asked for, not the
        // address's.
        let name = rustls::pki_types::ServerName::try_from(host)?;
        let connector = tokio_rustls::TlsConnector::from(tls_config());
        let tls = match tokio::time::timeout_at(deadline, connector.connect(name, stream)).await {
            Ok(r) => r.map_err(Error::Tls)?,
            Err(_) => return Err(Error::ConnectionTimeout),
        };
        Box::new(tls)
    } else {
        Box::new(stream)
    };
    let (mut sender, conn) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::Builder::new()
            .handshake(wasmtime_wasi_http::io::TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;

    // The request line carries the path only (not addressing a proxy).
    *req.uri_mut() = http::Uri::builder()
        .path_and_query(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;

    let send = async move {
        let res = tokio::time::timeout(first_byte_timeout, sender.send_request(req))
            .await
            .map_err(|_| Error::ConnectionReadTimeout)?
            .map_err(Error::from)?;
        // Tokio panics on an interval of zero.
        let between = between_bytes_timeout.max(Duration::from_nanos(1));
        let mut timeout = tokio::time::interval(between);
        timeout.reset();
        Ok::<_, Error>(res.map(|incoming| IncomingResponseBody { incoming, timeout }))
    };
    let mut send = pin!(send);
    let mut conn = Some(conn);
    // Wait for the response while driving the connection's I/O.
    let res = poll_fn(|cx| match send.as_mut().poll(cx) {
        Poll::Ready(r) => Poll::Ready(r),
        Poll::Pending => {
            let Some(fut) = conn.as_mut() else {
                return Poll::Pending;
            };
            let res = ready!(Pin::new(fut).poll(cx));
            conn = None;
            match res {
                Ok(()) => send.as_mut().poll(cx),
                Err(err) => Poll::Ready(Err(Error::from(err))),
            }
        }
    })
    .await?;
    let io = async move {
        let Some(conn) = conn else { return Ok(()) };
        match conn.await {
            Err(err) if err.is_timeout() => Err(Error::HttpResponseTimeout),
            Err(err) => Err(err.into()),
            Ok(()) => Ok(()),
        }
    };
    Ok((
        res.map(http_body_util::BodyExt::boxed_unsync),
        Box::new(io) as ConnectionIo,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn reserved_ranges_are_refused_whatever_their_spelling() {
        let g = Egress::new(vec![]);
        for bad in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.0.170",
            "198.18.0.1",
            "::",
            "::1",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::",
        ] {
            assert!(g.check(ip(bad)).is_err(), "{bad} was allowed");
        }
        assert_eq!(
            g.check(ip("169.254.169.254")),
            Err(Refused("link-local, where cloud metadata services live"))
        );
        for good in [
            "93.184.215.14",
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(g.check(ip(good)), Ok(()), "{good} was refused");
        }
    }

    #[test]
    fn the_operator_opens_ranges() {
        let g = Egress::new(nets(&["127.0.0.0/8", "fd00::/8"]));
        assert_eq!(g.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(g.check(ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(g.check(ip("fd12::1")), Ok(()));
        assert!(g.check(ip("::1")).is_err());
        assert!(g.check(ip("10.0.0.1")).is_err());
        assert!(g.check(ip("169.254.169.254")).is_err());
    }

    #[test]
    fn the_nodes_own_addresses_are_refused() {
        let g = Egress::new(vec![]);
        assert_eq!(g.check(ip("203.0.113.9")), Ok(()));
        g.add_node_address("203.0.113.9:8080".parse().unwrap());
        g.add_node_address("0.0.0.0:8081".parse().unwrap());
        assert_eq!(
            g.check(ip("203.0.113.9")),
            Err(Refused("an address of this Nimbus node"))
        );
        assert_eq!(
            g.check(ip("::ffff:203.0.113.9")),
            Err(Refused("an address of this Nimbus node"))
        );
        assert_eq!(g.check(ip("203.0.113.10")), Ok(()));
        // Every interface address is the node's, listened on or not.
        let interfaces = g.interface_addresses();
        assert!(interfaces.contains(&ip("127.0.0.1")), "{interfaces:?}");
        for a in interfaces.iter() {
            assert!(g.check(*a).is_err(), "{a} was allowed");
        }
        // Unless the operator allows it.
        let open = Egress::new(nets(&["203.0.113.0/24"]));
        open.add_node_address("203.0.113.9:8080".parse().unwrap());
        assert_eq!(open.check(ip("203.0.113.9")), Ok(()));
    }

    /// A one-request HTTP server on loopback; what it was sent.
    async fn server() -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0; 4096];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await
                .unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        (addr, task)
    }

    fn request(uri: &str, host: &str) -> http::Request<WasiBody> {
        http::Request::get(uri)
            .header(http::header::HOST, host)
            .body(
                http_body_util::Empty::<Bytes>::new()
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .unwrap()
    }

    #[tokio::test]
    async fn connects_to_the_address_it_checked() {
        let (addr, seen) = server().await;
        let log = Capture::new(4096);
        let refused = send_request(
            &Egress::new(vec![]),
            &log,
            request(
                &format!("http://localhost:{}/x?y", addr.port()),
                "localhost",
            ),
            None,
        )
        .await;
        assert!(matches!(refused, Err(Error::DestinationIpProhibited)));
        let text = log.text();
        assert!(text.contains("localhost resolves to "), "{text}");
        assert!(text.contains("127.0.0.1 (loopback)"), "{text}");
        assert!(text.contains("--allow-egress"), "{text}");

        let open = Egress::new(nets(&["127.0.0.0/8"]));
        let (res, io) = send_request(
            &open,
            &log,
            request(
                &format!("http://localhost:{}/x?y", addr.port()),
                "localhost",
            ),
            None,
        )
        .await
        .unwrap();
        assert_eq!(res.status(), 200);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
        Pin::from(io).await.unwrap();
        let sent = seen.await.unwrap();
        assert!(sent.starts_with("GET /x?y HTTP/1.1\r\n"), "{sent}");
        assert!(
            sent.to_ascii_lowercase().contains("host: localhost"),
            "{sent}"
        );
    }
}

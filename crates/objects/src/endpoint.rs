//! The S3 HTTP service: Nimbus's signature checks and form-upload bounds
//! in front of `s3s`, and the listener loop with its graceful drain.

use crate::auth::{Access, Keys, check_signature, now_secs};
use crate::cors::Cors;
use crate::form::{
    self, FormGate, FormHead, MAX_FORM_FIELD_BYTES, MAX_FORM_FIELDS_BYTES, MAX_FORM_FILE_BYTES,
    Sniffed,
};
use crate::{Objects, Unseal};
use std::time::Duration;

/// The S3 HTTP service: storage, per-app keys (SigV4) and access checks.
/// Path-style addressing (`http://host:port/bucket/key`), and with a
/// `domain`, virtual-hosted-style too (`http://bucket.domain/key`).
pub fn service(
    objects: Objects,
    unseal: Unseal,
    domain: Option<&str>,
) -> Result<Endpoint, BadDomain> {
    let store = objects.store.clone();
    let store_for_cors = store.clone();
    let meter = objects.meter.clone();
    let max_form_file = objects.max_object_bytes.min(MAX_FORM_FILE_BYTES);
    let mut b = s3s::service::S3ServiceBuilder::new(objects);
    let mut config = s3s::config::S3Config::default();
    config.post_object_max_file_size = max_form_file;
    config.form_max_fields_size = MAX_FORM_FIELDS_BYTES;
    config.form_max_field_size = MAX_FORM_FIELD_BYTES;
    b.set_config(std::sync::Arc::new(s3s::config::StaticConfigProvider::new(
        std::sync::Arc::new(config),
    )));
    b.set_auth(Keys::new(store.clone(), unseal));
    b.set_access(Access::new(store, meter));
    let hosts = domain.map(VirtualHosts::new).transpose()?;
    if let Some(h) = &hosts {
        b.set_host(h.clone());
    }
    Ok(Endpoint {
        cors: Cors::new(store_for_cors),
        hosts,
        s3: b.build(),
        forms: FormGate::new(),
        peer: None,
        max_form_file,
    })
}

/// A `--s3-domain` that is not a host name.
#[derive(Debug, thiserror::Error)]
#[error(
    "--s3-domain {0:?} is not a domain name: give the host name buckets are subdomains of, like s3.example.com (no scheme, port or path)"
)]
pub struct BadDomain(String);

/// Virtual-hosted-style addressing under one domain: `BUCKET.DOMAIN`
/// (any port) names the bucket; every other host (the domain itself, an
/// IP address, localhost) is path-style. Unlike `s3s`'s `SingleDomain`, a
/// host outside the domain is never taken for a bucket name, so requests
/// to `127.0.0.1:9000/bucket/key` keep working.
#[derive(Clone)]
struct VirtualHosts {
    domain: String,
}

impl VirtualHosts {
    fn new(domain: &str) -> Result<VirtualHosts, BadDomain> {
        let d = domain.trim_end_matches('.').to_ascii_lowercase();
        let valid = !d.is_empty()
            && d.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            return Err(BadDomain(domain.to_string()));
        }
        Ok(VirtualHosts { domain: d })
    }

    /// The bucket a Host header names, if it is `BUCKET.DOMAIN[:PORT]`.
    fn bucket<'a>(&self, host: &'a str) -> Option<&'a str> {
        let name = host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        let cut = name.len().checked_sub(self.domain.len() + 1)?;
        let (bucket, rest) = name.split_at(cut);
        (rest[1..].eq_ignore_ascii_case(&self.domain)
            && rest.starts_with('.')
            && !bucket.is_empty())
        .then_some(bucket)
    }
}

impl s3s::host::S3Host for VirtualHosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> s3s::S3Result<s3s::host::VirtualHost<'a>> {
        let vh = s3s::host::VirtualHost::new(host);
        Ok(match self.bucket(host) {
            Some(bucket) => vh.with_bucket(bucket),
            None => vh,
        })
    }
}

/// The S3 endpoint: [`check_signature`] in front of `s3s`, so a refused
/// request costs no key lookup, no signature check and no body read; the
/// bounds on form uploads (`form`), checked from their headers; and bucket
/// CORS (`cors`): preflights answered here, and CORS headers added to the
/// answers to requests with an `Origin`.
#[derive(Clone)]
pub struct Endpoint {
    s3: s3s::service::S3Service,
    cors: Cors,
    hosts: Option<VirtualHosts>,
    forms: FormGate,
    /// The client's address, on a connection's copy ([`serve`]).
    peer: Option<std::net::IpAddr>,
    max_form_file: u64,
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for Endpoint {
    type Response = s3s::HttpResponse;
    type Error = s3s::HttpError;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn call(&self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        let bucket = self.bucket_of(&req);
        if req.method() == http::Method::OPTIONS {
            let cors = self.cors.clone();
            let headers = req.headers().clone();
            return Box::pin(async move { Ok(cors.preflight(bucket.as_deref(), &headers).await) });
        }
        let origin = req
            .headers()
            .get(http::header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .map(str::to_string);
        let method = req.method().clone();
        let answer = self.answer(req);
        let (Some(origin), Some(bucket)) = (origin, bucket) else {
            return answer;
        };
        let cors = self.cors.clone();
        Box::pin(async move {
            let mut answer = answer.await?;
            cors.decorate(&bucket, &origin, &method, &mut answer).await;
            Ok(answer)
        })
    }
}

impl Endpoint {
    /// The bucket a request names: by its host (`--s3-domain`), else by
    /// its path's first segment.
    fn bucket_of(&self, req: &http::Request<hyper::body::Incoming>) -> Option<String> {
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host());
        if let (Some(hosts), Some(host)) = (&self.hosts, host)
            && let Some(b) = hosts.bucket(host)
        {
            return Some(b.to_ascii_lowercase());
        }
        let first = req.uri().path().trim_start_matches('/').split('/').next()?;
        (!first.is_empty()).then(|| first.to_string())
    }

    /// The answer `s3s` makes, behind Nimbus's checks.
    fn answer(
        &self,
        req: http::Request<hyper::body::Incoming>,
    ) -> futures::future::BoxFuture<'static, Result<s3s::HttpResponse, s3s::HttpError>> {
        if let Err(e) = check_signature(req.headers(), req.uri().query(), now_secs()) {
            return Box::pin(std::future::ready(Ok(error_response(&e))));
        }
        if form::is_form(&req) {
            return self.form_upload(req);
        }
        hyper::service::Service::call(&self.s3, req)
    }

    /// A form upload: its length checked from its headers, a place among
    /// the forms read at once held until it is answered, and its first
    /// bytes kept for `${filename}` (`form`).
    fn form_upload(
        &self,
        req: http::Request<hyper::body::Incoming>,
    ) -> futures::future::BoxFuture<'static, Result<s3s::HttpResponse, s3s::HttpError>> {
        let entered = form::check_length(req.headers(), self.max_form_file)
            .and_then(|()| self.forms.enter(self.peer));
        let permit = match entered {
            Ok(p) => p,
            Err(e) => return Box::pin(std::future::ready(Ok(error_response(&e)))),
        };
        let (mut parts, body) = req.into_parts();
        let head = FormHead::new(&parts.headers);
        let body = match &head {
            Some(head) => {
                parts.extensions.insert(head.clone());
                s3s::Body::http_body(Sniffed::new(body, head.clone()))
            }
            None => s3s::Body::from(body),
        };
        let s3 = self.s3.clone();
        Box::pin(async move {
            let answer = s3.call(http::Request::from_parts(parts, body)).await;
            drop(permit);
            match (answer, head) {
                (Ok(a), Some(head)) => Ok(head.rewrite(a).await),
                (answer, _) => answer,
            }
        })
    }
}

/// An S3 error answered before `s3s` saw the request, as S3 writes it.
pub(crate) fn error_response(e: &s3s::S3Error) -> s3s::HttpResponse {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{}</Code><Message>{}</Message></Error>",
        e.code().as_str(),
        escape(e.message().unwrap_or(""))
    );
    http::Response::builder()
        .status(e.status_code().unwrap_or(http::StatusCode::FORBIDDEN))
        .header(http::header::CONTENT_TYPE, "application/xml")
        .body(s3s::Body::from(body))
        .expect("a valid response")
}

/// Serves the S3 API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Endpoint,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    tokio::pin!(shutdown);
    let connections = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "S3 accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let mut service = service.clone();
        service.peer = Some(peer.ip());
        let watcher = connections.watcher();
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, "S3 connection ended with an error");
            }
        });
    }
    // Idle connections close now; transfers under way get up to DRAIN.
    drop(listener);
    const DRAIN: Duration = Duration::from_secs(10);
    if tokio::time::timeout(DRAIN, connections.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("S3 connections still open after {DRAIN:?} of shutting down: left");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_hosts_name_buckets_under_the_domain_only() {
        let v = VirtualHosts::new("s3.Example.com").unwrap();
        assert_eq!(v.bucket("photos.s3.example.com"), Some("photos"));
        assert_eq!(v.bucket("photos.S3.example.com:9000"), Some("photos"));
        assert_eq!(v.bucket("a.b.s3.example.com"), Some("a.b"));
        for path_style in [
            "s3.example.com",
            "s3.example.com:9000",
            "127.0.0.1:9000",
            "localhost",
            "photos.s3.example.com.evil.net",
            "photoss3.example.com",
            ".s3.example.com",
        ] {
            assert_eq!(v.bucket(path_style), None, "{path_style}");
        }
        for bad in [
            "",
            "http://s3.example.com",
            "s3.example.com:9000",
            "s3..com",
            "s3/x",
        ] {
            assert!(VirtualHosts::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refusals_before_s3s_are_s3_errors() {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, "AWS NK:c2ln".parse().unwrap());
        let e = check_signature(&h, None, now_secs()).unwrap_err();
        let r = error_response(&e);
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()[http::header::CONTENT_TYPE], "application/xml");
        let e = s3s::s3_error!(AccessDenied, "a <b> & c");
        let r = error_response(&e);
        let body = format!("{:?}", r.body());
        assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
        assert!(body.contains("a &lt;b&gt; &amp; c"), "{body}");
    }
}

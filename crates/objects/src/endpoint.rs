//! The S3 HTTP service: Nimbus's signature checks in front of `s3s`, and
//! the listener loop with its graceful drain.

use crate::auth::{Access, Keys, check_signature, now_secs};
use crate::{Objects, Unseal};
use std::time::Duration;

/// The S3 HTTP service: storage, per-app keys (SigV4) and access checks.
/// Path-style addressing (`http://host:port/bucket/key`).
pub fn service(objects: Objects, unseal: Unseal) -> Endpoint {
    let store = objects.store.clone();
    let meter = objects.meter.clone();
    let mut b = s3s::service::S3ServiceBuilder::new(objects);
    b.set_auth(Keys::new(store.clone(), unseal));
    b.set_access(Access::new(store, meter));
    Endpoint { s3: b.build() }
}

/// The S3 endpoint: [`check_signature`] in front of `s3s`, so a refused
/// request costs no key lookup, no signature check and no body read.
#[derive(Clone)]
pub struct Endpoint {
    s3: s3s::service::S3Service,
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for Endpoint {
    type Response = s3s::HttpResponse;
    type Error = s3s::HttpError;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn call(&self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        if let Err(e) = check_signature(req.headers(), req.uri().query(), now_secs()) {
            return Box::pin(std::future::ready(Ok(error_response(&e))));
        }
        hyper::service::Service::call(&self.s3, req)
    }
}

/// An S3 error answered before `s3s` saw the request, as S3 writes it.
fn error_response(e: &s3s::S3Error) -> s3s::HttpResponse {
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
        let (stream, _) = tokio::select! {
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
        let service = service.clone();
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

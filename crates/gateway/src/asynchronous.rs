//! Async invocation: a request marked `Prefer: respond-async` (RFC 7240) is
//! stored as an event and answered `202 Accepted` at once, with the event
//! id; the function runs later, with retries, as an `async` trigger.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use nimbus_events::{AsyncRequest, EventError, Events};
use nimbus_runtime::{Caller, Function, INVOCATION_ID_HEADER, ResponseBody, text_response};

/// Whether the client asked for an async invocation.
pub fn wants_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
}

/// Stores the request as an async invocation of `f` and answers 202 (or
/// 413/400/503 saying why it was refused; nothing is stored then). The body
/// is bounded by the message limit and by `max_body` (the route's policy).
pub async fn accept<B>(
    events: &Events,
    f: &Function,
    req: http::Request<B>,
    route: Option<&str>,
    params: &[(String, String)],
    caller: Option<&Caller>,
    max_body: Option<u64>,
) -> Response<ResponseBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    let limit = max_body.map_or(events.max_message_bytes(), |m| {
        m.min(events.max_message_bytes())
    });
    let body = match Limited::new(body, limit as usize).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return text_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the request body is over the limit of {limit} bytes for an async invocation: send a smaller payload, or invoke synchronously"
                    ),
                );
            }
            return text_response(
                StatusCode::BAD_REQUEST,
                format!("reading the request body failed: {e}"),
            );
        }
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let stored = AsyncRequest {
        method: parts.method.as_str(),
        path: &path,
        headers: &parts.headers,
        route,
        params,
        caller,
    };
    match events.invoke_async(f, stored, body.to_vec()).await {
        Ok(receipt) => {
            let json = serde_json::json!({
                "id": receipt.id,
                "state": "queued",
                "duplicate": receipt.duplicate,
                "app": f.app,
                "function": f.name,
            });
            let mut resp = text_response(StatusCode::ACCEPTED, json.to_string());
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert(
                "preference-applied",
                HeaderValue::from_static("respond-async"),
            );
            if let Ok(v) = HeaderValue::from_str(&receipt.id) {
                h.insert(INVOCATION_ID_HEADER, v);
            }
            if let Ok(v) =
                HeaderValue::from_str(&format!("/v1/apps/{}/invocations/{}", f.app, receipt.id))
            {
                h.insert(header::LOCATION, v);
            }
            resp
        }
        Err(e) => {
            let status = match &e {
                EventError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                EventError::Invalid(_) => StatusCode::BAD_REQUEST,
                EventError::NotFound(_) => StatusCode::NOT_FOUND,
                EventError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            text_response(status, e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefer_header() {
        let mut h = HeaderMap::new();
        assert!(!wants_async(&h));
        h.insert(
            "prefer",
            HeaderValue::from_static("return=minimal, Respond-Async"),
        );
        assert!(wants_async(&h));
        h.insert("prefer", HeaderValue::from_static("wait=10"));
        assert!(!wants_async(&h));
    }
}

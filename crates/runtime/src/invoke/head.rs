//! The pure parts of an invocation's head: the answer to a throttled
//! request, the headers a guest can trust, and the answer when a guest
//! ended without a response. No instance, no I/O: unit-tested here.

use super::*;

/// The message of a 429 for `why` (which limit, and how long the request
/// waited).
pub(super) fn throttled_message(
    why: Throttled,
    f: &Function,
    wait: Duration,
    app_limit: usize,
    max_in_flight: u32,
) -> String {
    let qualified = f;
    match why {
        Throttled::QueueFull => format!(
            "function {qualified} cannot be admitted: too many requests are already waiting on this node: retry later"
        ),
        Throttled::AppQueueFull => format!(
            "app {:?} is at its in-flight limit ({app_limit} per app, --max-app-in-flight) and as many of its requests are already waiting: retry later",
            f.app
        ),
        Throttled::WaitTimedOut(Limit::Function) => {
            let limit = match f.limits.concurrency_scope {
                nimbus_core::ConcurrencyScope::Node => {
                    format!("{} per function", f.limits.max_concurrency)
                }
                nimbus_core::ConcurrencyScope::Cluster => format!(
                    "{} per function across the cluster, {} of them on this node",
                    f.limits.max_concurrency,
                    f.concurrency_share()
                ),
            };
            format!(
                "function {qualified} is at its concurrency limit ({limit}) and no capacity freed up within {} ms: retry later",
                wait.as_millis()
            )
        }
        Throttled::WaitTimedOut(Limit::App) => format!(
            "app {:?} is at its in-flight limit ({app_limit} per app, --max-app-in-flight) and none of its invocations ended within {} ms: retry later",
            f.app,
            wait.as_millis()
        ),
        Throttled::WaitTimedOut(Limit::Platform) => format!(
            "this node is at its in-flight limit ({max_in_flight} platform-wide) and no capacity freed up within {} ms: retry later",
            wait.as_millis()
        ),
    }
}

/// The 429 itself: the message, and `Retry-After` in whole seconds (at
/// least one).
pub(super) fn throttled_response(message: String, wait: Duration) -> Response<ResponseBody> {
    let mut resp = text_response(StatusCode::TOO_MANY_REQUESTS, message);
    let retry = wait.as_secs().max(1).to_string();
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_str(&retry).expect("digits"),
    );
    resp
}

/// What the host tells the guest about its request.
pub(super) struct Trusted<'a> {
    pub(super) id: &'a str,
    pub(super) app: &'a str,
    pub(super) function: &'a str,
    pub(super) meta: &'a InvokeRequest,
    /// The invocation's own span, when tracing is on.
    pub(super) traceparent: Option<&'a HeaderValue>,
}

/// Makes the request head the guest sees: every `nimbus-*` header a client
/// sent is removed, the host's are added (invocation id, app, function,
/// trigger, attempt, route and its parameters, the verified caller), a
/// client's `traceparent` is replaced by the invocation's span (none is
/// added to a request without one), and a request with no host gets
/// `localhost`.
pub(super) fn trusted_head(parts: &mut http::request::Parts, t: &Trusted<'_>) {
    let forged: Vec<HeaderName> = parts
        .headers
        .keys()
        .filter(|k| k.as_str().starts_with("nimbus-"))
        .cloned()
        .collect();
    for k in forged {
        parts.headers.remove(k);
    }
    if let Some(v) = t.traceparent
        && let Some(existing) = parts.headers.get_mut("traceparent")
    {
        *existing = v.clone();
    }
    let mut add = |name: String, value: &str| {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::from_str(value)) {
            parts.headers.append(n, v);
        }
    };
    let meta = t.meta;
    add(INVOCATION_ID_HEADER.into(), t.id);
    add("nimbus-app".into(), t.app);
    add("nimbus-function".into(), t.function);
    add("nimbus-trigger".into(), meta.trigger);
    if let Some(e) = &meta.event {
        add("nimbus-attempt".into(), &e.attempt.to_string());
    }
    if let Some(route) = &meta.route {
        add("nimbus-route".into(), route);
    }
    for (k, v) in &meta.params {
        add(format!("nimbus-param-{}", k.to_ascii_lowercase()), v);
    }
    for (k, v) in &meta.trusted {
        add((*k).into(), v);
    }
    if let Some(c) = &meta.caller {
        add("nimbus-auth-kind".into(), c.kind);
        add("nimbus-auth-subject".into(), &c.subject);
        if let Some(claims) = &c.claims {
            add("nimbus-auth-claims".into(), claims);
        }
    }
    if !parts.headers.contains_key(header::HOST) && parts.uri.authority().is_none() {
        parts
            .headers
            .insert(header::HOST, HeaderValue::from_static("localhost"));
    }
}

/// How the guest ended (inside its total timeout), as the record keeps it.
pub(super) fn task_end(
    result: Result<Result<(), wasmtime::Error>, tokio::time::error::Elapsed>,
    memory_limit_hit: bool,
    timeout_ms: u64,
) -> TaskEnd {
    match result {
        Ok(Ok(())) => TaskEnd {
            outcome: Outcome::Ok,
            error: None,
        },
        Err(_) => TaskEnd {
            outcome: Outcome::Timeout,
            error: Some(format!(
                "timed out: still running after its timeout_ms of {timeout_ms} ms, so it was stopped"
            )),
        },
        Ok(Err(e)) if memory_limit_hit => TaskEnd {
            outcome: Outcome::MemoryLimit,
            error: Some(format!("was stopped: {}", describe_error(&e))),
        },
        Ok(Err(e)) => TaskEnd {
            outcome: Outcome::Trap,
            error: Some(format!(
                "trapped ({}); a Rust panic ends this way, its message is in the logs",
                describe_error(&e)
            )),
        },
    }
}

/// The answer when the guest ended without a response head: its status,
/// the message, and whether the record's outcome must change to an error
/// (a guest that returned normally but sent nothing).
pub(super) fn no_response(end: TaskEnd) -> (StatusCode, String, bool) {
    match end.outcome {
        Outcome::Timeout => (
            StatusCode::GATEWAY_TIMEOUT,
            end.error.unwrap_or_default(),
            false,
        ),
        Outcome::Ok => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "returned without sending a response".to_string(),
            true,
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            end.error.unwrap_or_default(),
            false,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function() -> Function {
        let spec = nimbus_core::FunctionSpec {
            component: "0".repeat(64),
            limits: Limits {
                max_concurrency: 3,
                ..Limits::default()
            },
            ..Default::default()
        };
        Function::new("shop", "cart", 1, &spec)
    }

    fn meta() -> InvokeRequest {
        InvokeRequest {
            trigger: "http",
            route: Some("/cart/{id}".into()),
            params: vec![("ID".into(), "42".into())],
            caller: Some(Caller {
                kind: "jwt",
                subject: "u1".into(),
                claims: None,
            }),
            ..InvokeRequest::default()
        }
    }

    /// The head invocation `inv1` of shop/cart gives the guest, with its
    /// own span `00-mine-mine-01`.
    fn trust(parts: &mut http::request::Parts, meta: &InvokeRequest) {
        let span = HeaderValue::from_static("00-mine-mine-01");
        let t = Trusted {
            id: "inv1",
            app: "shop",
            function: "cart",
            meta,
            traceparent: Some(&span),
        };
        trusted_head(parts, &t);
    }

    #[test]
    fn a_guest_sees_only_the_hosts_nimbus_headers() {
        let (mut parts, ()) = Request::builder()
            .uri("/cart/42")
            .header("nimbus-auth-subject", "admin")
            .header("Nimbus-App", "other")
            .header("traceparent", "00-client-client-01")
            .header("x-kept", "1")
            .body(())
            .unwrap()
            .into_parts();
        trust(&mut parts, &meta());
        let h = &parts.headers;
        assert_eq!(h.get_all("nimbus-auth-subject").iter().count(), 1);
        assert_eq!(h["nimbus-auth-subject"], "u1");
        assert_eq!(h["nimbus-app"], "shop");
        assert_eq!(h.get_all("nimbus-app").iter().count(), 1);
        assert_eq!(h[INVOCATION_ID_HEADER], "inv1");
        assert_eq!(h["nimbus-param-id"], "42");
        assert_eq!(h["nimbus-route"], "/cart/{id}");
        assert_eq!(h["traceparent"], "00-mine-mine-01");
        assert_eq!(h["x-kept"], "1");
        assert_eq!(h[header::HOST], "localhost");
    }

    #[test]
    fn no_traceparent_is_added_to_a_request_without_one() {
        let (mut parts, ()) = Request::builder().body(()).unwrap().into_parts();
        trust(&mut parts, &InvokeRequest::default());
        assert!(!parts.headers.contains_key("traceparent"));
    }

    #[test]
    fn how_a_guest_ended_maps_to_outcome_and_answer() {
        let timeout = task_end(elapsed(), false, 50);
        assert_eq!(timeout.outcome, Outcome::Timeout);
        let (status, msg, changed) = no_response(timeout);
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert!(msg.contains("timeout_ms of 50 ms"), "{msg}");
        assert!(!changed);

        let trap = task_end(Ok(Err(wasmtime::Error::msg("unreachable"))), false, 50);
        assert_eq!(trap.outcome, Outcome::Trap);
        let memory = task_end(Ok(Err(wasmtime::Error::msg("grow"))), true, 50);
        assert_eq!(memory.outcome, Outcome::MemoryLimit);
        assert_eq!(no_response(trap).0, StatusCode::INTERNAL_SERVER_ERROR);

        let ok = task_end(Ok(Ok(())), false, 50);
        assert_eq!(ok.outcome, Outcome::Ok);
        let (status, msg, changed) = no_response(ok);
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(msg, "returned without sending a response");
        assert!(changed, "a guest that sent nothing is recorded as an error");
    }

    /// An elapsed timeout, as `tokio::time::timeout` reports one.
    fn elapsed() -> Result<Result<(), wasmtime::Error>, tokio::time::error::Elapsed> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let never = std::future::pending::<Result<(), wasmtime::Error>>();
            tokio::time::timeout(Duration::from_millis(1), never).await
        })
    }

    #[test]
    fn a_throttled_request_says_which_limit_and_when_to_retry() {
        let f = function();
        let wait = Duration::from_millis(5000);
        let m = throttled_message(
            Throttled::WaitTimedOut(Limit::Function),
            &f,
            wait,
            250,
            1000,
        );
        assert!(m.contains("concurrency limit (3 per function)"), "{m}");
        assert!(m.contains("5000 ms"), "{m}");
        let m = throttled_message(Throttled::AppQueueFull, &f, wait, 250, 1000);
        assert!(
            m.contains("250 per app") && m.contains("--max-app-in-flight"),
            "{m}"
        );
        let m = throttled_message(
            Throttled::WaitTimedOut(Limit::Platform),
            &f,
            wait,
            250,
            1000,
        );
        assert!(m.contains("1000 platform-wide"), "{m}");
        let r = throttled_response(m, Duration::from_millis(200));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1", "at least a second");
    }
}

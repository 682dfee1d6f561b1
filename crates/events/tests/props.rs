//! Property tests of what a tenant's request headers turn into: the
//! CloudEvents attributes and Nimbus options that `Outgoing::from_headers`
//! reads (`ce-*`, `content-type`, `traceparent`, `idempotency-key`,
//! `nimbus-message-group`), with arbitrary names, values and bodies.
//!
//! The RNG seed is fixed; `NIMBUS_PROPTEST_CASES` sets the number of cases
//! (bench/proptest.sh runs many more than the default).

use http::{HeaderMap, HeaderName, HeaderValue};
use nimbus_core::trace::TraceContext;
use nimbus_events::{EventError, Outgoing};
use proptest::prelude::*;

#[path = "../../core/tests/common/proptest_config.rs"]
mod proptest_config;
use proptest_config::config;

/// Header names: the ones `from_headers` reads, the `ce-*` ones it skips,
/// mixed case (header names are case-insensitive), random `ce-*`
/// extensions and random other tokens.
fn header_name() -> impl Strategy<Value = HeaderName> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "content-type",
            "Content-Type",
            "idempotency-key",
            "nimbus-message-group",
            "traceparent",
            "ce-type",
            "CE-Type",
            "ce-source",
            "ce-id",
            "ce-specversion",
            "ce-time",
            "ce-",
            "ce-subject",
            "ce-Ext1",
            "ce-",
            "cex",
            "c-e-type",
            "x-ce-type",
        ])
        .prop_map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap()),
        2 => "ce-[a-zA-Z0-9!#$%&'*+.^_`|~-]{0,24}"
            .prop_map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap()),
        1 => "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,24}"
            .prop_map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap()),
    ]
}

/// A valid `traceparent` (any flags byte, any version but `ff`).
fn traceparent() -> impl Strategy<Value = String> {
    (
        "[0-9a-f]{2}".prop_filter("ff is invalid", |v| v != "ff"),
        "[0-9a-f]{32}".prop_filter("not all zero", |s| s.bytes().any(|b| b != b'0')),
        "[0-9a-f]{16}".prop_filter("not all zero", |s| s.bytes().any(|b| b != b'0')),
        any::<u8>(),
    )
        .prop_map(|(v, t, s, f)| format!("{v}-{t}-{s}-{f:02x}"))
}

/// Header values: text (visible ASCII and tabs), valid and broken
/// traceparents, and arbitrary bytes a header may carry (including
/// obs-text, 0x80-0xff, which is not text).
fn header_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        3 => "[ -~\t]{0,64}".prop_map(|s| HeaderValue::from_str(&s).unwrap()),
        1 => traceparent().prop_map(|s| HeaderValue::from_str(&s).unwrap()),
        1 => (traceparent(), "[ -~]{0,6}", 0usize..60).prop_map(|(s, junk, at)| {
            let mut s = s;
            s.insert_str(at.min(s.len()), &junk);
            HeaderValue::from_str(&s).unwrap()
        }),
        2 => prop::collection::vec(any::<u8>(), 0..48).prop_map(|mut b| {
            // Bytes a header value may not carry are replaced.
            for x in &mut b {
                if (*x < 32 && *x != b'\t') || *x == 127 {
                    *x = b'?';
                }
            }
            HeaderValue::from_bytes(&b).unwrap()
        }),
    ]
}

fn headers() -> impl Strategy<Value = HeaderMap> {
    prop::collection::vec((header_name(), header_value()), 0..12).prop_map(|pairs| {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(n, v);
        }
        map
    })
}

/// Headers whose value `from_headers` reads (and so must be text).
fn is_read(name: &str) -> bool {
    matches!(
        name,
        "content-type" | "idempotency-key" | "nimbus-message-group" | "traceparent"
    ) || (name.starts_with("ce-") && !matches!(name, "ce-id" | "ce-specversion" | "ce-time"))
}

/// The last value of a header, as text.
fn last_text(h: &HeaderMap, name: &str) -> Option<String> {
    h.get_all(name)
        .iter()
        .next_back()
        .map(|v| v.to_str().unwrap().to_string())
}

proptest! {
    #![proptest_config(config(8192))]

    /// Any headers and body: never a panic, and the outcome is exactly the
    /// documented one. It fails (always `Invalid`) iff a header it reads has
    /// a value that is not text; otherwise the body is kept byte for byte,
    /// `content-type`, `ce-type`, `ce-source`, `idempotency-key` and
    /// `nimbus-message-group` are their header's last value, `ce-id`,
    /// `ce-specversion` and `ce-time` (set by Nimbus) are ignored, every
    /// other `ce-NAME` header becomes the extension `NAME` in header order,
    /// and `traceparent` is the last header's canonical form if it parses
    /// (none otherwise).
    #[test]
    fn from_headers_reads_what_it_documents(h in headers(), body in prop::collection::vec(any::<u8>(), 0..256)) {
        let non_text = h
            .iter()
            .any(|(n, v)| is_read(n.as_str()) && v.to_str().is_err());
        let got = Outgoing::from_headers(&h, body.clone());
        if non_text {
            prop_assert!(matches!(got, Err(EventError::Invalid(_))), "{got:?}");
            return Ok(());
        }
        let out = got.map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
        prop_assert_eq!(&out.body, &body);
        prop_assert_eq!(out.content_type, last_text(&h, "content-type"));
        prop_assert_eq!(out.ce_type, last_text(&h, "ce-type"));
        prop_assert_eq!(out.ce_source, last_text(&h, "ce-source"));
        prop_assert_eq!(out.idempotency_key, last_text(&h, "idempotency-key"));
        prop_assert_eq!(out.group, last_text(&h, "nimbus-message-group"));
        prop_assert!(out.ce_time.is_none());
        let expected_trace = last_text(&h, "traceparent")
            .and_then(|t| TraceContext::parse(&t))
            .map(|t| t.header());
        prop_assert_eq!(&out.traceparent, &expected_trace);
        if let Some(t) = &out.traceparent {
            // Canonical: version 00, parses back to itself.
            prop_assert!(t.starts_with("00-") && t.len() == 55, "{t}");
            prop_assert_eq!(TraceContext::parse(t).map(|c| c.header()), Some(t.clone()));
        }
        let expected_ext: Vec<(String, String)> = h
            .iter()
            .filter(|(n, _)| {
                n.as_str().starts_with("ce-")
                    && !matches!(
                        n.as_str(),
                        "ce-type" | "ce-source" | "ce-id" | "ce-specversion" | "ce-time"
                    )
            })
            .map(|(n, v)| (n.as_str()["ce-".len()..].to_string(), v.to_str().unwrap().to_string()))
            .collect();
        prop_assert_eq!(&out.extensions, &expected_ext);
    }

    /// A lone valid `traceparent` header is kept, normalized to version
    /// `00` with the same trace id, span id and sampled flag.
    #[test]
    fn traceparent_header_round_trips(tp in traceparent()) {
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_str(&tp).unwrap());
        let out = Outgoing::from_headers(&h, Vec::new()).unwrap();
        let flags = u8::from_str_radix(&tp[53..55], 16).unwrap();
        let expected = format!("00-{}-{}", &tp[3..52], if flags & 1 == 1 { "01" } else { "00" });
        prop_assert_eq!(out.traceparent, Some(expected));
    }
}

//! Property tests of the parsers a tenant controls: `nimbus.toml`, route
//! patterns, document field paths and index fields, KV and config keys,
//! `traceparent`, cron expressions, durations, time zones, networks and
//! access rules.
//!
//! Every property runs on hostile input (arbitrary strings, near-valid
//! TOML, huge numbers, unicode, empty values) and asserts that the parser
//! does not panic and that what it accepts satisfies the documented rule
//! (or round-trips). The RNG seed is fixed; `NIMBUS_PROPTEST_CASES` sets the
//! number of cases (bench/proptest.sh runs many more than the default).

use nimbus_core::data::{MAX_FIELD_PATH, MAX_KEY_BYTES, check_field_path, check_kv_key, parse_index_field};
use nimbus_core::events::{ScheduleSpec, When, parse_cron, parse_duration, parse_timezone};
use nimbus_core::manifest::{MAX_MEMORY_MB, MAX_SCHEDULE_PERIOD_MS, MIN_SCHEDULE_PERIOD_MS, check_config_key};
use nimbus_core::names::check_name;
use nimbus_core::policy::{Access, parse_net};
use nimbus_core::route::{is_reserved, normalize_method, parse_pattern};
use nimbus_core::trace::TraceContext;
use nimbus_core::{Manifest, ManifestError};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;
use toml::Value;

/// The suite's proptest settings: a fixed seed, no persisted failures, and
/// `NIMBUS_PROPTEST_CASES` cases (default `default_cases`).
fn config(default_cases: u32) -> Config {
    let cases = std::env::var("NIMBUS_PROPTEST_CASES")
        .ok()
        .map(|v| v.parse().expect("NIMBUS_PROPTEST_CASES must be a number"))
        .unwrap_or(default_cases);
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x6e_696d_6275_73),
        failure_persistence: None,
        ..Config::default()
    }
}

/// A fixed instant the schedule properties start from: 2026-01-01T00:00:00Z.
const T0_MS: i64 = 1_767_225_600_000;

// ---------------------------------------------------------------------------
// Generators of manifest pieces.

/// Names as a tenant writes them: mostly valid (so references between
/// sections often resolve), sometimes invalid, sometimes anything.
fn name() -> BoxedStrategy<String> {
    prop_oneof![
        8 => prop::sample::select(vec!["api", "worker", "web", "a", "x_1", "b-2"]).prop_map(String::from),
        1 => prop::sample::select(vec!["", "Api", "1x", "é", "a b", "a.b", "a/b", "-a"]).prop_map(String::from),
        1 => Just("a".repeat(64)),
        1 => "\\PC{0,8}",
    ]
    .boxed()
}

/// Integers, biased to the edges of every range a manifest checks.
fn int() -> BoxedStrategy<i64> {
    prop_oneof![
        4 => prop::sample::select(vec![
            0, 1, 2, 3, 8, 9, 10, 100, 101, 1000, 1001, 4096, 4097, 30_000, 86_400,
            u32::MAX as i64, u32::MAX as i64 + 1, i64::MAX, i64::MIN, -1,
        ]),
        2 => 1i64..5000,
        1 => any::<i64>(),
    ]
    .boxed()
}

/// Durations: valid, zero, huge (overflowing u64 ms or i64 ms), malformed.
fn duration_str() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "1s", "0s", "999ms", "1000ms", "200ms", "5m", "1h 30m", "30d", "24h", "2d", "1y",
            "366d", "367d", "300000000years", "584942418years", "18446744073709551615s",
            "1ns", "", "abc", "5 m", "-1s", "1.5h", "0", "1µs",
        ])
        .prop_map(String::from),
        2 => (any::<u64>(), prop::sample::select(vec!["ns", "ms", "s", "m", "h", "d", "w", "M", "y", "x", ""]))
            .prop_map(|(n, u)| format!("{n}{u}")),
        1 => "\\PC{0,10}",
    ]
    .boxed()
}

/// Cron expressions: valid, out of range, impossible (Feb 30), malformed.
fn cron_str() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "0 3 * * *", "*/5 * * * *", "*/2 * * * * *", "@hourly", "@daily", "0 0 30 2 *",
            "61 * * * *", "* * * * * * * *", "", "every day", "0 0 L * *", "0 0 * * 5#3",
            "0 0 15W * *", "*/0 * * * *", "99999999999999999999 * * * *", "0 0 29 2 1",
        ])
        .prop_map(String::from),
        1 => cron_soup(),
    ]
    .boxed()
}

/// Cron-like token soup: 1 to 8 fields of cron tokens and numbers.
fn cron_soup() -> BoxedStrategy<String> {
    let token = prop_oneof![
        3 => prop::sample::select(vec![
            "*", "?", "L", "W", "#", "0", "1", "7", "12", "23", "29", "31", "59", "60", "61",
            "4294967296", "*/0", "*/5", "1-5", "5-1", "1,2,3", "MON", "JAN", "mon-fri",
            "L-3", "15W", "5#3", "5#6", "LW", "@hourly", "@yearly", "@reboot", "-", "/", ",",
            "0-59/15", "1-31/2", "SUN-SAT", "DEC", "7L",
        ])
        .prop_map(String::from),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => "[0-9*/,#LW?-]{1,6}",
    ];
    prop::collection::vec(token, 1..=8)
        .prop_map(|t| t.join(" "))
        .boxed()
}

fn timezone_str() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "UTC", "Europe/Paris", "America/New_York", "Asia/Kathmandu", "Etc/GMT+14",
            "Mars/Olympus", "", "utc", "Europe/", "../etc/passwd",
        ])
        .prop_map(String::from),
        1 => "\\PC{0,12}",
    ]
    .boxed()
}

/// Route patterns: valid ones, reserved ones, malformed ones.
fn route_str() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "/", "/hello", "/games/{id}", "/games/{id}/moves", "/static/*", "/files/{*rest}",
            "/a/", "/v1/apps", "/v1", "/console", "/consoles", "/a//b", "/a/x{id}",
            "/a/{id}/{id}", "/a/*/b", "hello", "", "/a?b", "/é/{ü}", "/{}", "/{*}",
        ])
        .prop_map(String::from),
        2 => valid_pattern().prop_map(|p| p.text),
        1 => "/?[\\PC]{0,16}",
    ]
    .boxed()
}

fn access_str() -> BoxedStrategy<String> {
    prop::sample::select(vec![
        "none", "public-read", "authenticated", "owner", "owner-read", "Owner", "", "everyone",
    ])
    .prop_map(String::from)
    .boxed()
}

fn field_str() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "score", "-score", "player.name", "-player.name", "a..b", "", "-", "x'); DROP",
            "é", "a.", ".a", "--a",
        ])
        .prop_map(String::from),
        1 => Just("a".repeat(MAX_FIELD_PATH + 1)),
        1 => "-?[a-z0-9_.-]{0,12}",
    ]
    .boxed()
}

fn net_str() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "10.0.0.0/8", "203.0.113.0/24", "192.0.2.7", "::1", "2001:db8::/32",
            "10.0.0.0/33", "::/129", "", "localhost", "1.2.3.4/-1", "300.1.1.1",
        ])
        .prop_map(String::from),
        1 => "[0-9a-f.:/]{0,20}",
    ]
    .boxed()
}

fn s(x: impl Into<String>) -> Value {
    Value::String(x.into())
}

fn arr(v: Vec<Value>) -> Value {
    Value::Array(v)
}

fn table(kv: Vec<(String, Value)>) -> Value {
    Value::Table(kv.into_iter().collect())
}

/// A value of the right type, or now and then of any type (a string where
/// a number belongs, an array where a string belongs...).
fn typed(right: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    let wrong = prop_oneof![
        any::<bool>().prop_map(Value::Boolean),
        int().prop_map(Value::Integer),
        "\\PC{0,6}".prop_map(Value::String),
        any::<f64>().prop_map(Value::Float),
        Just(Value::Array(vec![])),
        Just(Value::Table(Default::default())),
    ];
    prop_oneof![12 => right, 1 => wrong].boxed()
}

fn v_int() -> BoxedStrategy<Value> {
    typed(int().prop_map(Value::Integer).boxed())
}
fn v_str(st: BoxedStrategy<String>) -> BoxedStrategy<Value> {
    typed(st.prop_map(Value::String).boxed())
}
fn v_list(st: BoxedStrategy<String>) -> BoxedStrategy<Value> {
    typed(
        prop::collection::vec(st.prop_map(Value::String), 0..4)
            .prop_map(Value::Array)
            .boxed(),
    )
}
fn v_map(key: BoxedStrategy<String>, val: BoxedStrategy<String>) -> BoxedStrategy<Value> {
    typed(
        prop::collection::vec((key, val.prop_map(Value::String)), 0..4)
            .prop_map(table)
            .boxed(),
    )
}
fn v_bool() -> BoxedStrategy<Value> {
    typed(any::<bool>().prop_map(Value::Boolean).boxed())
}

/// A table's entries: each listed key is present with probability `p`;
/// now and then an unknown key is added.
fn entries(keys: Vec<(&'static str, f64, BoxedStrategy<Value>)>) -> BoxedStrategy<Vec<(String, Value)>> {
    let mut parts: Vec<BoxedStrategy<Option<(String, Value)>>> = keys
        .into_iter()
        .map(|(k, p, v)| prop::option::weighted(p, v.prop_map(move |v| (k.to_string(), v))).boxed())
        .collect();
    parts.push(prop::option::weighted(0.03, Just(("bogus".to_string(), s("x")))).boxed());
    parts
        .prop_map(|v| v.into_iter().flatten().collect())
        .boxed()
}

fn retry_keys() -> Vec<(&'static str, f64, BoxedStrategy<Value>)> {
    vec![
        ("max_attempts", 0.3, v_int()),
        ("backoff", 0.3, v_str(duration_str())),
        ("max_backoff", 0.3, v_str(duration_str())),
    ]
}

fn host_str() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "example.com", "*.example.org", "127.0.0.1:8080", "*", "https://api.example.com",
            "host:99999", "a b", "", "*.", "h:*",
        ])
        .prop_map(String::from),
        1 => "\\PC{0,12}",
    ]
    .boxed()
}

fn function_entries() -> BoxedStrategy<Vec<(String, Value)>> {
    entries(vec![
        ("component", 0.95, v_str(prop_oneof![9 => Just("f.wasm".to_string()), 1 => Just(" ".to_string()), 1 => Just(String::new())].boxed())),
        ("build", 0.1, v_str("\\PC{0,8}".boxed())),
        ("memory_mb", 0.4, v_int()),
        ("timeout_ms", 0.4, v_int()),
        ("first_byte_timeout_ms", 0.2, v_int()),
        ("max_concurrency", 0.4, v_int()),
        ("concurrency_scope", 0.1, v_str(prop::sample::select(vec!["node", "cluster", "x"]).prop_map(String::from).boxed())),
        ("env", 0.2, v_map(prop_oneof![3 => Just("A".to_string()), 1 => "\\PC{0,4}"].boxed(), "\\PC{0,6}".boxed())),
        ("allowed_outbound_hosts", 0.2, v_list(host_str())),
        ("retry", 0.2, typed(entries(retry_keys()).prop_map(table).boxed())),
        ("kv", 0.2, v_list(name())),
        ("collections", 0.2, v_list(name())),
        ("buckets", 0.1, v_list(name())),
        ("config", 0.2, v_map(prop_oneof![3 => Just("greeting".to_string()), 1 => "\\PC{0,6}"].boxed(), "\\PC{0,6}".boxed())),
    ])
}

fn policy_entries() -> BoxedStrategy<Vec<(String, Value)>> {
    let rate = entries(vec![
        ("requests", 0.95, v_int()),
        ("per", 0.5, v_str(duration_str())),
        ("burst", 0.4, v_int()),
        ("by", 0.5, v_str(prop::sample::select(vec!["ip", "key", "user", "x"]).prop_map(String::from).boxed())),
    ]);
    let cors = entries(vec![
        ("origins", 0.95, v_list(prop::sample::select(vec!["*", "https://game.example", "http://a:8080", "ftp://x", "https://", "https://a b"]).prop_map(String::from).boxed())),
        ("methods", 0.3, v_list(prop::sample::select(vec!["GET", "post", "FETCH", ""]).prop_map(String::from).boxed())),
        ("headers", 0.3, v_list(prop::sample::select(vec!["*", "x-token", "bad header", ""]).prop_map(String::from).boxed())),
        ("expose", 0.2, v_list(prop::sample::select(vec!["*", "x-id", "é"]).prop_map(String::from).boxed())),
        ("credentials", 0.3, v_bool()),
        ("max_age", 0.3, v_str(duration_str())),
    ]);
    entries(vec![
        ("auth", 0.6, v_str(prop::sample::select(vec!["public", "api_key", "jwt", "magic"]).prop_map(String::from).boxed())),
        ("jwks_url", 0.15, v_str(prop::sample::select(vec!["https://issuer.example/jwks", "http://127.0.0.1:8080/jwks", "http://localhost.evil/jwks", "http://issuer.example/jwks", ""]).prop_map(String::from).boxed())),
        ("issuer", 0.15, v_str("\\PC{0,6}".boxed())),
        ("audience", 0.15, v_str("\\PC{0,6}".boxed())),
        ("roles", 0.2, v_list(prop::sample::select(vec!["player", "admin", ""]).prop_map(String::from).boxed())),
        ("claims", 0.1, v_map("\\PC{0,4}".boxed(), "\\PC{0,4}".boxed())),
        ("rate_limit", 0.3, typed(rate.prop_map(table).boxed())),
        ("cors", 0.3, typed(cors.prop_map(table).boxed())),
        ("max_body_kb", 0.3, v_int()),
        ("allow", 0.2, v_list(net_str())),
        ("deny", 0.2, v_list(net_str())),
    ])
}

/// One section of a manifest: a header (`[functions.api]`,
/// `[[triggers.http]]`) and its entries.
#[derive(Debug, Clone)]
struct Section {
    header: String,
    entries: Vec<(String, Value)>,
}

fn key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        k.to_string()
    } else {
        s(k).to_string()
    }
}

fn render(sections: &[Section]) -> String {
    let mut out = String::new();
    for sec in sections {
        out.push_str(&sec.header);
        out.push('\n');
        for (k, v) in &sec.entries {
            out.push_str(&format!("{} = {v}\n", key(k)));
        }
        out.push('\n');
    }
    out
}

/// `n` named tables `[KIND.NAME]` with the given entries.
fn named(kind: &'static str, n: std::ops::Range<usize>, e: BoxedStrategy<Vec<(String, Value)>>) -> BoxedStrategy<Vec<Section>> {
    prop::collection::vec((name(), e), n)
        .prop_map(move |v| {
            v.into_iter()
                .map(|(n, entries)| Section {
                    header: format!("[{kind}.{}]", key(&n)),
                    entries,
                })
                .collect()
        })
        .boxed()
}

/// `n` entries `[[triggers.KIND]]`.
fn triggers(kind: &'static str, n: std::ops::Range<usize>, e: BoxedStrategy<Vec<(String, Value)>>) -> BoxedStrategy<Vec<Section>> {
    prop::collection::vec(e, n)
        .prop_map(move |v| {
            v.into_iter()
                .map(|entries| Section {
                    header: format!("[[triggers.{kind}]]"),
                    entries,
                })
                .collect()
        })
        .boxed()
}

fn with_retry(mut keys: Vec<(&'static str, f64, BoxedStrategy<Value>)>) -> Vec<(&'static str, f64, BoxedStrategy<Value>)> {
    keys.extend(retry_keys());
    keys
}

/// A whole manifest made of plausible sections and keys with random
/// values, in a random order.
fn manifest_text() -> BoxedStrategy<String> {
    let app = entries(vec![
        ("name", 0.97, v_str(name())),
        ("host", 0.2, v_str(prop::sample::select(vec!["demo.example.com", "a:8080", "", "bad host", "x.y"]).prop_map(String::from).boxed())),
    ])
    .prop_map(|entries| vec![Section { header: "[app]".into(), entries }]);
    let queues = named("queues", 0..3, entries(vec![
        ("max_message_kb", 0.3, v_int()),
        ("dedup_window", 0.3, v_str(duration_str())),
    ]));
    let topics = named("topics", 0..3, entries(vec![]));
    let kv = named("kv", 0..3, entries(vec![
        ("max_value_kb", 0.3, v_int()),
        ("access", 0.3, v_str(access_str())),
    ]));
    let collections = named("collections", 0..3, entries(vec![
        ("indexes", 0.5, typed(prop::collection::vec(prop::collection::vec(field_str().prop_map(Value::String), 0..10).prop_map(Value::Array), 0..3).prop_map(Value::Array).boxed())),
        ("access", 0.4, v_str(access_str())),
        ("owner_field", 0.2, v_str(field_str())),
    ]));
    let variables = prop::collection::vec(
        (prop_oneof![3 => Just("greeting".to_string()), 1 => "\\PC{0,8}"], v_str("\\PC{0,8}".boxed())),
        0..3,
    )
    .prop_map(|entries| {
        if entries.is_empty() {
            vec![]
        } else {
            vec![Section { header: "[variables]".into(), entries }]
        }
    });
    let auth = prop::option::weighted(
        0.3,
        entries(vec![
            ("signup", 0.3, v_bool()),
            ("access_ttl", 0.3, v_str(duration_str())),
            ("refresh_ttl", 0.2, v_str(duration_str())),
            ("reset_ttl", 0.2, v_str(duration_str())),
            ("reset_hook", 0.2, v_str(name())),
            ("min_password_length", 0.2, v_int()),
            ("login_attempts_per_account", 0.2, v_int()),
            ("login_attempts_per_ip", 0.2, v_int()),
        ]),
    )
    .prop_map(|e| e.map(|entries| Section { header: "[auth]".into(), entries }).into_iter().collect::<Vec<_>>());
    let gateway = prop::option::weighted(0.3, policy_entries())
        .prop_map(|e| e.map(|entries| Section { header: "[gateway]".into(), entries }).into_iter().collect::<Vec<_>>());
    let policies = named("policies", 0..3, policy_entries());
    let functions = named("functions", 0..4, function_entries());
    let http = triggers("http", 0..5, entries(vec![
        ("route", 0.95, v_str(route_str())),
        ("methods", 0.4, v_list(prop::sample::select(vec!["GET", "get", "POST", "FETCH", ""]).prop_map(String::from).boxed())),
        ("function", 0.95, v_str(name())),
        ("policy", 0.2, v_str(name())),
    ]));
    let queue = triggers("queue", 0..3, entries(with_retry(vec![
        ("queue", 0.95, v_str(name())),
        ("function", 0.95, v_str(name())),
        ("batch_size", 0.4, v_int()),
        ("max_concurrency", 0.3, v_int()),
        ("visibility_timeout", 0.3, v_str(duration_str())),
    ])));
    let topic = triggers("topic", 0..3, entries(with_retry(vec![
        ("topic", 0.95, v_str(name())),
        ("function", 0.6, v_str(name())),
        ("queue", 0.4, v_str(name())),
        ("max_concurrency", 0.3, v_int()),
    ])));
    let schedule = triggers("schedule", 0..3, entries(with_retry(vec![
        ("name", 0.4, v_str(name())),
        ("cron", 0.5, v_str(cron_str())),
        ("every", 0.5, v_str(duration_str())),
        ("timezone", 0.3, v_str(timezone_str())),
        ("function", 0.95, v_str(name())),
    ])));
    let storage = triggers("storage", 0..3, entries(with_retry(vec![
        ("bucket", 0.95, v_str(prop::sample::select(vec!["uploads", "ab", "UP", "a.b-c", "a".repeat(64).leak()]).prop_map(String::from).boxed())),
        ("events", 0.4, v_list(prop::sample::select(vec!["created", "deleted", "moved"]).prop_map(String::from).boxed())),
        ("prefix", 0.2, v_str("\\PC{0,4}".boxed())),
        ("suffix", 0.2, v_str("\\PC{0,4}".boxed())),
        ("function", 0.95, v_str(name())),
    ])));
    (
        (app, queues, topics, kv, collections, variables, auth),
        (gateway, policies, functions, http, queue, topic, schedule),
        storage,
    )
        .prop_flat_map(|((a, q, t, k, c, v, au), (g, p, f, h, qu, to, sc), st)| {
            let all: Vec<Section> = [a, q, t, k, c, v, au, g, p, f, h, qu, to, sc, st]
                .into_iter()
                .flatten()
                .collect();
            Just(all).prop_shuffle()
        })
        .prop_map(|sections| render(&sections))
        .boxed()
}

/// A manifest in which every value is within its documented range, with
/// what it should resolve to.
#[derive(Debug, Clone)]
struct GoodManifest {
    text: String,
    app: String,
    /// Function name -> (memory_mb, timeout_ms, first_byte_timeout_ms, max_concurrency).
    functions: BTreeMap<String, (u32, u64, u64, u32)>,
    /// (normalized route, function).
    routes: Vec<(String, String)>,
    /// (schedule name, period ms).
    schedules: Vec<(String, u64)>,
}

fn good_manifest() -> BoxedStrategy<GoodManifest> {
    let function = (1u32..=MAX_MEMORY_MB, 1u64..=1 << 40, any::<prop::sample::Index>(), 1u32..=u32::MAX);
    (
        "[a-z][a-z0-9_-]{0,62}",
        prop::collection::btree_map("[a-z][a-z0-9_-]{0,20}", function, 1..4),
        prop::collection::vec((valid_pattern(), any::<prop::sample::Index>()), 0..5),
        prop::collection::vec((MIN_SCHEDULE_PERIOD_MS..=MAX_SCHEDULE_PERIOD_MS, any::<prop::sample::Index>()), 0..3),
    )
        .prop_map(|(app, fns, routes, schedules)| {
            let mut text = format!("[app]\nname = {}\n\n", s(&app));
            let mut functions = BTreeMap::new();
            for (f, (mem, timeout, fbt, conc)) in &fns {
                let fbt = 1 + fbt.index(*timeout as usize) as u64;
                text.push_str(&format!(
                    "[functions.{f}]\ncomponent = \"{f}.wasm\"\nmemory_mb = {mem}\ntimeout_ms = {timeout}\nfirst_byte_timeout_ms = {fbt}\nmax_concurrency = {conc}\n\n"
                ));
                functions.insert(f.clone(), (*mem, *timeout, fbt, *conc));
            }
            let names: Vec<&String> = functions.keys().collect();
            let mut out_routes = Vec::new();
            for (i, (p, which)) in routes.iter().enumerate() {
                // A distinct, unreserved first segment per route.
                let text_route = format!("/r{i}{}", p.text);
                let normalized = format!("/r{i}{}", p.normalized);
                let f = which.get(&names).to_string();
                text.push_str(&format!("[[triggers.http]]\nroute = {}\nfunction = \"{f}\"\n\n", s(&text_route)));
                out_routes.push((normalized, f));
            }
            let mut out_schedules = Vec::new();
            for (i, (ms, which)) in schedules.iter().enumerate() {
                let f = which.get(&names).to_string();
                let name = format!("s{i}");
                text.push_str(&format!("[[triggers.schedule]]\nname = \"{name}\"\nevery = \"{ms}ms\"\nfunction = \"{f}\"\n\n"));
                out_schedules.push((name, *ms));
            }
            GoodManifest { text, app, functions, routes: out_routes, schedules: out_schedules }
        })
        .boxed()
}

/// A pattern built from valid parts, with what `parse_pattern` should make
/// of it.
#[derive(Debug, Clone)]
struct GenPattern {
    text: String,
    normalized: String,
    params: Vec<String>,
    wildcard: Option<String>,
}

fn valid_pattern() -> BoxedStrategy<GenPattern> {
    #[derive(Debug, Clone)]
    enum Seg {
        Lit(String),
        Param,
    }
    let seg = prop_oneof![
        2 => "[a-zA-Z0-9._~!$&'()+,;=:@%é-]{1,8}".prop_map(Seg::Lit),
        1 => Just(Seg::Param),
    ];
    (
        prop::collection::vec(seg, 0..6),
        prop::option::of(prop::bool::ANY),
        prop::bool::weighted(0.2),
        "[A-Za-z_][A-Za-z0-9_]{0,6}",
    )
        .prop_map(|(segs, wild, trailing_slash, pname)| {
            let (mut text, mut normalized, mut params, mut wildcard) = (String::new(), String::new(), Vec::new(), None);
            for seg in segs {
                match seg {
                    Seg::Lit(l) => {
                        text.push_str(&format!("/{l}"));
                        normalized.push_str(&format!("/{l}"));
                    }
                    Seg::Param => {
                        let n = format!("{pname}{}", params.len());
                        text.push_str(&format!("/{{{n}}}"));
                        normalized.push_str(&format!("/{{{n}}}"));
                        params.push(n);
                    }
                }
            }
            match wild {
                Some(true) => {
                    text.push_str("/*");
                    normalized.push_str("/{*path}");
                    params.push("path".into());
                    wildcard = Some("path".into());
                }
                Some(false) => {
                    text.push_str("/{*rest}");
                    normalized.push_str("/{*rest}");
                    params.push("rest".into());
                    wildcard = Some("rest".into());
                }
                None if trailing_slash || text.is_empty() => {
                    text.push('/');
                    normalized.push('/');
                }
                None => {}
            }
            GenPattern { text, normalized, params, wildcard }
        })
        .prop_filter("parameter names must be distinct", |p| {
            let mut seen = std::collections::BTreeSet::new();
            p.params.iter().all(|n| seen.insert(n.clone()))
        })
        .boxed()
}

/// The documented rule of a field path segment list, written independently.
fn field_path_rule(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= MAX_FIELD_PATH
        && p.split('.')
            .all(|seg| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
}

/// Asserts what every accepted manifest must satisfy: its names, limits,
/// routes, triggers and schedules obey the documented rules, and it builds
/// a revision spec (validation happened at parse time).
fn check_accepted(src: &str, m: &Manifest) -> Result<(), TestCaseError> {
    prop_assert!(check_name("app", m.name()).is_ok(), "app name {:?}", m.name());
    prop_assert!(!m.functions.is_empty());
    for (name, f) in &m.functions {
        let f = f.get_ref();
        prop_assert!(check_name("function", name).is_ok(), "function name {name:?}");
        prop_assert!(!f.component.trim().is_empty());
        let l = f.limits();
        prop_assert!((1..=MAX_MEMORY_MB).contains(&l.memory_mb), "{l:?}");
        prop_assert!(l.timeout_ms >= 1 && l.max_concurrency >= 1, "{l:?}");
        prop_assert!((1..=l.timeout_ms).contains(&l.first_byte_timeout_ms), "{l:?}");
    }
    let components = m
        .functions
        .keys()
        .map(|k| (k.clone(), "a".repeat(64)))
        .collect();
    let spec = m
        .to_spec(&components)
        .map_err(|e| TestCaseError::fail(format!("accepted manifest has no spec: {e}\n{src}")))?;
    prop_assert_eq!(&spec.name, m.name());
    prop_assert!(spec.functions.keys().eq(m.functions.keys()));
    prop_assert_eq!(spec.routes.len(), m.triggers.http.len());
    for r in &spec.routes {
        let p = parse_pattern(&r.path);
        prop_assert!(p.is_ok(), "route {:?}: {p:?}", r.path);
        prop_assert!(!is_reserved(&r.path));
        prop_assert!(spec.functions.contains_key(&r.function));
        for method in &r.methods {
            prop_assert_eq!(normalize_method(method).as_ref(), Ok(method));
        }
        prop_assert!(spec.route_policy(r).is_ok(), "route {:?}: {:?}", r.path, spec.route_policy(r));
    }
    for (name, f) in &spec.functions {
        prop_assert!((1..=100).contains(&f.retry.max_attempts), "{name}: {:?}", f.retry);
        prop_assert!(f.retry.max_backoff_ms >= f.retry.backoff_ms, "{name}: {:?}", f.retry);
        for k in f.config.keys() {
            prop_assert!(check_config_key(k).is_ok());
        }
    }
    for k in spec.variables.keys() {
        prop_assert!(check_config_key(k).is_ok());
    }
    for t in &spec.queue_triggers {
        prop_assert!((1..=1000).contains(&t.batch_size) && t.max_concurrency >= 1, "{t:?}");
        prop_assert!(spec.queues.contains_key(&t.queue) && spec.functions.contains_key(&t.function));
        if let Some(v) = t.visibility_timeout_ms {
            prop_assert!(v > spec.functions[&t.function].limits.timeout_ms, "{t:?}");
        }
    }
    for c in spec.collections.values() {
        for ix in &c.indexes {
            prop_assert!((1..=8).contains(&ix.len()));
            for f in ix {
                prop_assert!(field_path_rule(&f.path), "{f:?}");
            }
        }
    }
    for st in &spec.storage_triggers {
        prop_assert!((3..=63).contains(&st.bucket.len()), "{st:?}");
    }
    for sched in &spec.schedules {
        if let When::Every(ms) = sched.when {
            prop_assert!(
                (MIN_SCHEDULE_PERIOD_MS..=MAX_SCHEDULE_PERIOD_MS).contains(&ms),
                "schedule {:?}: every = {ms} ms is outside {MIN_SCHEDULE_PERIOD_MS}..={MAX_SCHEDULE_PERIOD_MS}",
                sched.name
            );
        }
        // The scheduler asks for the next tick: it must be in the future.
        if let Some(next) = sched.next_tick_after(T0_MS) {
            prop_assert!(next > T0_MS, "schedule {:?}: next tick {next} is not after {T0_MS}", sched.name);
        }
    }
    Ok(())
}

/// What every refused manifest must satisfy: a message, and a line (when
/// given) inside the text.
fn check_refused(src: &str, e: &ManifestError) -> Result<(), TestCaseError> {
    prop_assert!(!e.message.is_empty());
    if let Some(line) = e.line {
        prop_assert!(line >= 1 && line <= src.lines().count().max(1) + 1, "line {line} of {} lines: {e}", src.lines().count());
    }
    Ok(())
}

fn check_manifest(src: &str) -> Result<bool, TestCaseError> {
    match Manifest::parse(src) {
        Ok(m) => check_accepted(src, &m).map(|()| true),
        Err(e) => check_refused(src, &e).map(|()| false),
    }
}

/// Edits a text at byte offset `at` (moved to a char boundary): deletes up
/// to `del` chars and inserts `ins`.
fn mutate(src: &str, at: usize, del: usize, ins: &str) -> String {
    let mut at = at % (src.len() + 1);
    while !src.is_char_boundary(at) {
        at -= 1;
    }
    let rest: String = src[at..].chars().skip(del).collect();
    format!("{}{ins}{rest}", &src[..at])
}

proptest! {
    #![proptest_config(config(2048))]

    /// Any string: `Manifest::parse` does not panic; a refusal names a line
    /// inside the text.
    #[test]
    fn manifest_arbitrary_text(src in "\\PC{0,200}") {
        check_manifest(&src)?;
    }

    /// TOML-ish character soup (brackets, quotes, keys, dots, newlines,
    /// unicode): no panic, and anything accepted obeys the rules.
    #[test]
    fn manifest_toml_soup(src in "([\\[\\]=\"'{},.#\n a-z_0-9*/-]|é|\u{0}|\u{feff}|\r\n|\\[app\\]\nname = \"a\"\n|\\[functions.a\\]\ncomponent = \"x\"\n){0,80}") {
        check_manifest(&src)?;
    }

    /// Structured manifests of plausible sections and keys with random
    /// values (huge numbers, wrong types, unicode, empty strings, dangling
    /// references): no panic; an accepted one satisfies every documented
    /// rule and builds a spec; a refused one names a line inside the text.
    #[test]
    fn manifest_structured(src in manifest_text()) {
        check_manifest(&src)?;
    }

    /// Structured manifests with a random edit (bytes cut or inserted at a
    /// random place): still no panic and the same guarantees.
    #[test]
    fn manifest_structured_mutated(src in manifest_text(), at in any::<usize>(), del in 0usize..8, ins in "[\\[\\]=\"{}\n.\\\\é]{0,3}") {
        check_manifest(&mutate(&src, at, del, &ins))?;
    }

    /// A manifest whose values are all in range is accepted, and its spec
    /// carries exactly the limits, routes and schedule periods written.
    #[test]
    fn manifest_in_range_round_trips(g in good_manifest()) {
        let m = Manifest::parse(&g.text).map_err(|e| TestCaseError::fail(format!("{e}\n{}", g.text)))?;
        check_accepted(&g.text, &m)?;
        let components = g.functions.keys().map(|k| (k.clone(), "b".repeat(64))).collect();
        let spec = m.to_spec(&components).unwrap();
        prop_assert_eq!(&spec.name, &g.app);
        for (f, (mem, timeout, fbt, conc)) in &g.functions {
            let l = spec.functions[f].limits;
            prop_assert_eq!((l.memory_mb, l.timeout_ms, l.first_byte_timeout_ms, l.max_concurrency), (*mem, *timeout, *fbt, *conc));
        }
        let routes: Vec<(String, String)> = spec
            .routes
            .iter()
            .map(|r| (parse_pattern(&r.path).unwrap().normalized, r.function.clone()))
            .collect();
        prop_assert_eq!(routes, g.routes);
        let schedules: Vec<(String, u64)> = spec
            .schedules
            .iter()
            .map(|s| match s.when {
                When::Every(ms) => (s.name.clone(), ms),
                When::Cron(_) => unreachable!(),
            })
            .collect();
        prop_assert_eq!(schedules, g.schedules);
    }
}

proptest! {
    #![proptest_config(config(8192))]

    /// Any string: `parse_pattern` does not panic; an accepted pattern is
    /// absolute, not reserved, has distinct parameter names of letters,
    /// digits and `_`, a wildcard only as its last parameter, and its
    /// normalized form parses back to itself.
    #[test]
    fn route_pattern_arbitrary(p in prop_oneof!["\\PC{0,40}", "/[a-z{}*/?#v1console]{0,30}"]) {
        if let Ok(pat) = parse_pattern(&p) {
            prop_assert!(p.starts_with('/') && !is_reserved(&p) && !p.contains(['?', '#']));
            let mut seen = std::collections::BTreeSet::new();
            for n in &pat.params {
                prop_assert!(!n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{n:?}");
                prop_assert!(seen.insert(n.clone()), "{n:?} twice");
            }
            if let Some(w) = &pat.wildcard {
                prop_assert_eq!(pat.params.last(), Some(w));
                prop_assert!(pat.normalized.ends_with(&format!("/{{*{w}}}")));
            }
            prop_assert_eq!(parse_pattern(&pat.normalized), Ok(pat.clone()));
        }
    }

    /// A pattern built from valid literals, parameters and a trailing
    /// wildcard is accepted (unless reserved) with exactly those
    /// parameters and the expected normalized form.
    #[test]
    fn route_pattern_valid(g in valid_pattern()) {
        match parse_pattern(&g.text) {
            Ok(p) => {
                prop_assert_eq!(p.normalized, g.normalized);
                prop_assert_eq!(p.params, g.params);
                prop_assert_eq!(p.wildcard, g.wildcard);
            }
            Err(e) => prop_assert!(is_reserved(&g.text), "{:?} refused: {e}", g.text),
        }
    }

    /// `check_field_path` accepts exactly the documented paths: 1 to
    /// MAX_FIELD_PATH bytes of dot-separated, non-empty names of ASCII
    /// letters, digits, `_` and `-`.
    #[test]
    fn field_path_matches_rule(p in prop_oneof!["\\PC{0,20}", "[a-zA-Z0-9_.-]{0,140}", "[a-z]{1,4}(\\.[a-z0-9_-]{0,4}){0,4}"]) {
        prop_assert_eq!(check_field_path(&p).is_ok(), field_path_rule(&p), "{:?}", p);
    }

    /// `parse_index_field` accepts `[-]PATH` for a valid PATH exactly, and
    /// what it returns writes back to the input.
    #[test]
    fn index_field_round_trips(f in prop_oneof!["\\PC{0,20}", "-{0,2}[a-z0-9_.-]{0,20}"]) {
        let (path, desc) = match f.strip_prefix('-') {
            Some(p) => (p, true),
            None => (f.as_str(), false),
        };
        match parse_index_field(&f) {
            Ok(ix) => {
                prop_assert!(field_path_rule(&ix.path), "{ix:?}");
                prop_assert_eq!(ix.desc, desc);
                prop_assert_eq!(format!("{}{}", if ix.desc { "-" } else { "" }, ix.path), f);
            }
            Err(_) => prop_assert!(!field_path_rule(path)),
        }
    }

    /// `check_kv_key` accepts exactly the keys of 1 to MAX_KEY_BYTES bytes
    /// (bytes, not chars: multi-byte keys are measured in bytes).
    #[test]
    fn kv_key_length_rule(k in prop_oneof!["\\PC{0,300}", "[aé€😀]{60,130}", "a{250,260}"]) {
        prop_assert_eq!(check_kv_key(&k).is_ok(), (1..=MAX_KEY_BYTES).contains(&k.len()), "{} bytes", k.len());
    }

    /// `check_config_key` accepts exactly 1-128 bytes of ASCII letters,
    /// digits, `_`, `-` and `.`.
    #[test]
    fn config_key_rule(k in prop_oneof!["\\PC{0,20}", "[a-zA-Z0-9_.-]{0,140}"]) {
        let rule = !k.is_empty()
            && k.len() <= 128
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        prop_assert_eq!(check_config_key(&k).is_ok(), rule, "{:?}", k);
    }

    /// Any string: `TraceContext::parse` does not panic; what it accepts
    /// has a 32-digit and a 16-digit lowercase hex id, neither all zero,
    /// and its header parses back to the same context.
    #[test]
    fn traceparent_arbitrary(h in prop_oneof![
        "\\PC{0,64}",
        "[0-9a-fA-F+-]{2}-[0-9a-f]{30,33}-[0-9a-f]{15,17}-[0-9a-fA-F+ -]{1,3}(-.{0,4})?",
        "\\s{0,2}0{2}-0{32}-[0-9a-f]{16}-01\\s{0,2}",
    ]) {
        if let Some(t) = TraceContext::parse(&h) {
            for (id, len) in [(&t.trace_id, 32), (&t.span_id, 16)] {
                prop_assert!(id.len() == len && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{id:?}");
                prop_assert!(id.bytes().any(|b| b != b'0'), "{id:?}");
            }
            prop_assert!(h.contains(&t.trace_id) && h.contains(&t.span_id));
            prop_assert_eq!(TraceContext::parse(&t.header()), Some(t));
        }
    }

    /// A valid context written as a header parses back to itself, around
    /// whitespace too.
    #[test]
    fn traceparent_round_trip(
        trace_id in "[0-9a-f]{32}".prop_filter("not all zero", |s| s.bytes().any(|b| b != b'0')),
        span_id in "[0-9a-f]{16}".prop_filter("not all zero", |s| s.bytes().any(|b| b != b'0')),
        sampled in any::<bool>(),
        pad in "[ \t]{0,2}",
    ) {
        let t = TraceContext { trace_id, span_id, sampled };
        prop_assert_eq!(TraceContext::parse(&format!("{pad}{}{pad}", t.header())), Some(t));
    }

    /// Any cron-like text: `parse_cron` does not panic, and a schedule on
    /// an accepted expression (in UTC or a random zone) finds its next tick
    /// without panicking, strictly after the given time.
    #[test]
    fn cron_never_panics(expr in prop_oneof![cron_str(), "\\PC{0,30}"], tz in timezone_str(), after in prop_oneof![Just(T0_MS), 0i64..4_102_444_800_000]) {
        if parse_cron(&expr).is_ok() {
            let spec = ScheduleSpec {
                name: "s".into(),
                function: "f".into(),
                when: When::Cron(expr.clone()),
                timezone: parse_timezone(&tz).is_ok().then_some(tz),
                retry: Default::default(),
            };
            if let Some(next) = spec.next_tick_after(after) {
                prop_assert!(next > after, "{expr:?}: {next} <= {after}");
            }
        }
    }

    /// Any text: `parse_duration` does not panic.
    #[test]
    fn duration_arbitrary(d in prop_oneof![duration_str(), "[0-9 .a-zµ]{0,24}"]) {
        let _ = parse_duration("x", &d);
    }

    /// A sum of `N unit` terms parses to exactly its value; when the value
    /// does not fit a `Duration` (u64 seconds) it is refused, never a panic.
    /// Numbers near u64::MAX and nanosecond parts adding up to a whole
    /// second are favoured: they are where an overflow would hide.
    #[test]
    fn duration_sum_is_exact(terms in prop::collection::vec((
        prop_oneof![
            2 => prop::sample::select(vec![u64::MAX, u64::MAX - 1, 1_000_000_000, 999_999_999, 500_000_000, 500, 1, 0]),
            1 => any::<u64>(),
            2 => 0u64..100_000,
        ],
        prop::sample::select(vec![("ns", 1u128), ("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000), ("d", 86_400_000_000_000), ("w", 604_800_000_000_000)]),
    ), 1..4), sep in prop::sample::select(vec![" ", "", "  "])) {
        let text = terms.iter().map(|(n, (u, _))| format!("{n}{u}")).collect::<Vec<_>>().join(sep);
        let nanos: u128 = terms.iter().map(|(n, (_, f))| u128::from(*n) * f).sum();
        let fits = nanos / 1_000_000_000 <= u128::from(u64::MAX);
        // humantime computes each term in u64 (nanoseconds below a second,
        // seconds from it up) and refuses a term that overflows there even
        // if the total would fit.
        let terms_fit = terms.iter().all(|(n, (_, f))| {
            let factor = if *f < 1_000_000_000 { *f } else { f / 1_000_000_000 };
            u128::from(*n) * factor <= u128::from(u64::MAX)
        });
        match parse_duration("x", &text) {
            Ok(d) => {
                prop_assert!(fits);
                prop_assert_eq!(d.as_nanos(), nanos, "{:?}", text);
            }
            Err(e) => prop_assert!(!fits || !terms_fit, "{text:?} refused: {e}"),
        }
    }

    /// `parse_timezone` accepts every IANA name chrono-tz knows, as
    /// itself, and anything it accepts is such a name.
    #[test]
    fn timezone_round_trips(tz in prop::sample::select(chrono_tz::TZ_VARIANTS.to_vec()), junk in timezone_str()) {
        prop_assert_eq!(parse_timezone(tz.name()), Ok(tz));
        if let Ok(t) = parse_timezone(&junk) {
            prop_assert!(t.name().eq_ignore_ascii_case(&junk), "{junk:?} -> {}", t.name());
        }
    }

    /// Any text: `parse_net` does not panic; an accepted network has no
    /// host bits set and its text form parses back to itself.
    #[test]
    fn net_arbitrary(n in prop_oneof![net_str(), "\\PC{0,24}", "[0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,3}"]) {
        if let Ok(net) = parse_net(&n) {
            prop_assert_eq!(net.trunc(), net);
            prop_assert_eq!(parse_net(&net.to_string()), Ok(net));
        }
    }

    /// An address with a prefix length is accepted iff the length fits the
    /// family; the network contains the address. A bare address is its own
    /// single-address network.
    #[test]
    fn net_from_address(addr in any::<IpAddr>(), len in 0u8..140) {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        match parse_net(&format!("{addr}/{len}")) {
            Ok(net) => {
                prop_assert!(len <= max);
                prop_assert_eq!(net.prefix_len(), len);
                prop_assert!(net.contains(&addr));
            }
            Err(_) => prop_assert!(len > max),
        }
        let single = parse_net(&addr.to_string()).unwrap();
        prop_assert_eq!((single.addr(), single.prefix_len()), (addr, max));
    }

    /// `Access::parse` accepts exactly the five documented names, and each
    /// serializes back to the name it was parsed from.
    #[test]
    fn access_round_trips(a in prop_oneof![access_str(), "\\PC{0,12}"]) {
        match Access::parse(&a) {
            Ok(access) => prop_assert_eq!(serde_json::to_string(&access).unwrap(), format!("{a:?}")),
            Err(_) => prop_assert!(!["none", "public-read", "authenticated", "owner", "owner-read"].contains(&a.as_str())),
        }
    }
}

/// A sum of durations reaching exactly u64::MAX seconds with nanoseconds
/// adding up to a whole second (found by `duration_sum_is_exact`).
#[test]
fn duration_overflowing_by_a_second_is_refused() {
    for d in [
        "18446744073709551615s 1000000000ns",
        "18446744073709551615s 500ms 500ms",
    ] {
        assert!(parse_duration("every", d).is_err(), "{d}");
    }
    assert_eq!(parse_duration("x", "1h 30m"), Ok(Duration::from_secs(5400)));
}

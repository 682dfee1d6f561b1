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

use nimbus_core::data::{
    MAX_FIELD_PATH, MAX_KEY_BYTES, check_field_path, check_kv_key, parse_index_field,
};
use nimbus_core::events::{ScheduleSpec, When, parse_cron, parse_duration, parse_timezone};
use nimbus_core::manifest::{
    MAX_MEMORY_MB, MAX_SCHEDULE_PERIOD_MS, MIN_SCHEDULE_PERIOD_MS, check_config_key,
};
use nimbus_core::names::check_name;
use nimbus_core::policy::{Access, parse_net};
use nimbus_core::route::{is_reserved, normalize_method, parse_pattern};
use nimbus_core::trace::TraceContext;
use nimbus_core::{Manifest, ManifestError};
use proptest::prelude::*;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;
use toml::Value;

#[path = "common/proptest_config.rs"]
mod proptest_config;
use proptest_config::config;

/// A fixed instant the schedule properties start from: 2026-01-01T00:00:00Z.
const T0_MS: i64 = 1_767_225_600_000;

// ---------------------------------------------------------------------------
// Generators of manifest pieces.
//
// A generator has a hostility `h`: each value is benign (valid, in range,
// referring to what exists) against `h` chances in `BENIGN + h` of being
// hostile (out of range, of another type, huge, unicode, empty,
// malformed, dangling). Manifests are drawn at several levels, the benign
// ones (`h = 0`) to be accepted often, so that the properties check what
// an accepted manifest resolves to, not only that nothing panicked.

/// Odds of a benign value, against the hostility.
const BENIGN: u32 = 30;

fn pool(v: &[&'static str]) -> BoxedStrategy<String> {
    prop::sample::select(v.to_vec())
        .prop_map(String::from)
        .boxed()
}

fn duration_hostile() -> BoxedStrategy<String> {
    prop_oneof![
        pool(&[
            "0s",
            "999ms",
            "200ms",
            "30d",
            "24h",
            "2d",
            "1y",
            "366d",
            "367d",
            "300000000years",
            "584942418years",
            "18446744073709551615s",
            "1ns",
            "",
            "abc",
            "5 m",
            "-1s",
            "1.5h",
            "0",
            "1µs",
            "18446744073709551615s 1000000000ns",
        ]),
        (
            any::<u64>(),
            pool(&["ns", "ms", "s", "m", "h", "d", "w", "M", "y", "x", ""])
        )
            .prop_map(|(n, u)| format!("{n}{u}")),
        "\\PC{0,10}",
    ]
    .boxed()
}

fn cron_valid() -> BoxedStrategy<String> {
    pool(&[
        "0 3 * * *",
        "*/5 * * * *",
        "*/2 * * * * *",
        "@hourly",
        "@daily",
        "0 0 * * MON",
    ])
}

/// Cron expressions out of range, impossible (Feb 30), malformed, or
/// token soup.
fn cron_hostile() -> BoxedStrategy<String> {
    prop_oneof![
        pool(&[
            "0 0 30 2 *",
            "61 * * * *",
            "* * * * * * * *",
            "",
            "every day",
            "0 0 L * *",
            "0 0 * * 5#3",
            "0 0 15W * *",
            "*/0 * * * *",
            "99999999999999999999 * * * *",
            "0 0 29 2 1",
        ]),
        cron_soup(),
    ]
    .boxed()
}

/// Cron-like token soup: 1 to 8 fields of cron tokens and numbers.
fn cron_soup() -> BoxedStrategy<String> {
    let token = prop_oneof![
        3 => pool(&[
            "*", "?", "L", "W", "#", "0", "1", "7", "12", "23", "29", "31", "59", "60", "61",
            "4294967296", "*/0", "*/5", "1-5", "5-1", "1,2,3", "MON", "JAN", "mon-fri",
            "L-3", "15W", "5#3", "5#6", "LW", "@hourly", "@yearly", "@reboot", "-", "/", ",",
            "0-59/15", "1-31/2", "SUN-SAT", "DEC", "7L",
        ]),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => "[0-9*/,#LW?-]{1,6}",
    ];
    prop::collection::vec(token, 1..=8)
        .prop_map(|t| t.join(" "))
        .boxed()
}

fn timezone_valid() -> BoxedStrategy<String> {
    pool(&["UTC", "Europe/Paris", "America/New_York", "Asia/Kathmandu"])
}

fn timezone_hostile() -> BoxedStrategy<String> {
    prop_oneof![
        pool(&[
            "Etc/GMT+14",
            "Mars/Olympus",
            "",
            "utc",
            "Europe/",
            "../etc/passwd"
        ]),
        "\\PC{0,12}",
    ]
    .boxed()
}

fn net_valid() -> BoxedStrategy<String> {
    pool(&[
        "10.0.0.0/8",
        "203.0.113.0/24",
        "192.0.2.7",
        "::1",
        "2001:db8::/32",
    ])
}

fn net_hostile() -> BoxedStrategy<String> {
    prop_oneof![
        pool(&[
            "10.0.0.0/33",
            "::/129",
            "",
            "localhost",
            "1.2.3.4/-1",
            "300.1.1.1"
        ]),
        "[0-9a-f.:/]{0,20}",
    ]
    .boxed()
}

fn access_valid() -> BoxedStrategy<String> {
    pool(&[
        "none",
        "public-read",
        "authenticated",
        "owner",
        "owner-read",
    ])
}

fn access_hostile() -> BoxedStrategy<String> {
    prop_oneof![
        pool(&["Owner", "", "everyone", "owner ", "public_read"]),
        "\\PC{0,12}"
    ]
    .boxed()
}

fn s(x: impl Into<String>) -> Value {
    Value::String(x.into())
}

fn table(kv: Vec<(String, Value)>) -> Value {
    Value::Table(kv.into_iter().collect())
}

type Entries = Vec<(String, Value)>;

/// A key, how likely it is present, and its value.
type Keys = Vec<(&'static str, f64, BoxedStrategy<Value>)>;

/// Generators at one hostility.
#[derive(Debug, Clone, Copy)]
struct G {
    h: u32,
}

impl G {
    /// Mostly `benign`, with hostility `h` `hostile`.
    fn mix<T: std::fmt::Debug + 'static>(
        self,
        benign: impl Strategy<Value = T> + 'static,
        hostile: impl Strategy<Value = T> + 'static,
    ) -> BoxedStrategy<T> {
        if self.h == 0 {
            benign.boxed()
        } else {
            prop_oneof![BENIGN => benign, self.h => hostile].boxed()
        }
    }

    /// A name from `names` (the ones sections refer to each other by),
    /// or an invalid, unknown or arbitrary one.
    fn name(self, names: &[&'static str]) -> BoxedStrategy<String> {
        self.mix(
            pool(names),
            prop_oneof![
                pool(&[
                    "", "Api", "1x", "é", "a b", "a.b", "a/b", "-a", "x_1", "b-2"
                ]),
                Just("a".repeat(64)),
                "\\PC{0,8}",
            ],
        )
    }

    /// Integers: small, or at the edges of every range a manifest checks.
    fn int(self) -> BoxedStrategy<i64> {
        self.mix(
            1i64..=100,
            prop_oneof![
                prop::sample::select(vec![
                    0,
                    1,
                    101,
                    1000,
                    1001,
                    4096,
                    4097,
                    30_000,
                    86_400,
                    u32::MAX as i64,
                    u32::MAX as i64 + 1,
                    i64::MAX,
                    i64::MIN,
                    -1,
                ]),
                any::<i64>(),
            ],
        )
    }

    /// Durations: ordinary, or zero, huge (past u64 or i64 milliseconds),
    /// malformed.
    fn duration(self) -> BoxedStrategy<String> {
        self.mix(
            pool(&["1s", "2s", "10s", "5m", "1h 30m"]),
            duration_hostile(),
        )
    }

    fn cron(self) -> BoxedStrategy<String> {
        self.mix(cron_valid(), cron_hostile())
    }

    fn timezone(self) -> BoxedStrategy<String> {
        self.mix(timezone_valid(), timezone_hostile())
    }

    /// Route patterns: valid, or reserved, malformed, arbitrary.
    fn route(self) -> BoxedStrategy<String> {
        self.mix(
            valid_pattern().prop_map(|p| p.text),
            prop_oneof![
                pool(&[
                    "/v1/apps",
                    "/v1",
                    "/console",
                    "/console/{*x}",
                    "/a//b",
                    "/a/x{id}",
                    "/a/{id}/{id}",
                    "/a/*/b",
                    "hello",
                    "",
                    "/a?b",
                    "/é/{ü}",
                    "/{}",
                    "/{*}",
                ]),
                "/?[\\PC]{0,16}",
            ],
        )
    }

    fn access(self) -> BoxedStrategy<String> {
        self.mix(access_valid(), access_hostile())
    }

    /// Index fields and owner fields.
    fn field(self) -> BoxedStrategy<String> {
        self.mix(
            prop_oneof![
                pool(&["score", "-score", "player.name", "-player.name"]),
                "-?[a-z]{1,5}"
            ],
            prop_oneof![
                pool(&["a..b", "", "-", "x'); DROP", "é", "a.", ".a", "--a"]),
                Just("a".repeat(MAX_FIELD_PATH + 1)),
                "-?[a-z0-9_.-]{0,12}",
            ],
        )
    }

    fn net(self) -> BoxedStrategy<String> {
        self.mix(net_valid(), net_hostile())
    }

    fn host(self) -> BoxedStrategy<String> {
        self.mix(
            pool(&[
                "example.com",
                "*.example.org",
                "127.0.0.1:8080",
                "*",
                "https://api.example.com",
                "h:*",
            ]),
            prop_oneof![
                pool(&["host:99999", "a b", "", "*.", "é.com"]),
                "\\PC{0,12}"
            ],
        )
    }

    /// Free text (env values, prefixes...): anything.
    fn text(self) -> BoxedStrategy<String> {
        "\\PC{0,8}".boxed()
    }

    /// A value of the right type, or now and then of another type (a
    /// string where a number belongs, a float, a table...).
    fn typed(self, right: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
        let wrong = prop_oneof![
            any::<bool>().prop_map(Value::Boolean),
            any::<i64>().prop_map(Value::Integer),
            "\\PC{0,6}".prop_map(Value::String),
            any::<f64>().prop_map(Value::Float),
            Just(Value::Array(vec![])),
            Just(Value::Table(Default::default())),
        ];
        self.mix(right, wrong)
    }

    fn v_int(self) -> BoxedStrategy<Value> {
        self.typed(self.int().prop_map(Value::Integer).boxed())
    }

    fn v_str(self, st: BoxedStrategy<String>) -> BoxedStrategy<Value> {
        self.typed(st.prop_map(Value::String).boxed())
    }

    fn v_list(self, st: BoxedStrategy<String>) -> BoxedStrategy<Value> {
        self.typed(
            prop::collection::vec(st.prop_map(Value::String), 0..4)
                .prop_map(Value::Array)
                .boxed(),
        )
    }

    /// A list of at least one (when benign).
    fn v_list1(self, st: BoxedStrategy<String>) -> BoxedStrategy<Value> {
        let sizes = if self.h == 0 { 1..4 } else { 0..4 };
        self.typed(
            prop::collection::vec(st.prop_map(Value::String), sizes)
                .prop_map(Value::Array)
                .boxed(),
        )
    }

    fn v_map(self, key: BoxedStrategy<String>, val: BoxedStrategy<String>) -> BoxedStrategy<Value> {
        self.typed(
            prop::collection::btree_map(key, val.prop_map(Value::String), 0..4)
                .prop_map(|m| Value::Table(m.into_iter().collect()))
                .boxed(),
        )
    }

    fn v_bool(self) -> BoxedStrategy<Value> {
        self.typed(any::<bool>().prop_map(Value::Boolean).boxed())
    }

    /// A table's entries: each listed key is present with its probability
    /// (a required key, 1.0, may still be missing when hostile); when
    /// hostile, now and then an unknown key is added.
    fn entries(self, keys: Keys) -> BoxedStrategy<Entries> {
        let hostile = self.h > 0;
        let mut parts: Vec<BoxedStrategy<Option<(String, Value)>>> = keys
            .into_iter()
            .map(|(k, p, v)| {
                let p = if hostile { p.min(0.97) } else { p };
                maybe(p, v.prop_map(move |v| (k.to_string(), v)))
            })
            .collect();
        if hostile {
            parts.push(prop::option::weighted(0.02, Just(("bogus".to_string(), s("x")))).boxed());
        }
        parts
            .prop_map(|v| v.into_iter().flatten().collect())
            .boxed()
    }

    /// Exactly one of two alternative groups of keys (or, when hostile,
    /// any of none, one or both).
    fn either(
        self,
        a: BoxedStrategy<Entries>,
        b: BoxedStrategy<Entries>,
    ) -> BoxedStrategy<Entries> {
        let one = prop_oneof![a.clone(), b.clone()];
        let any = (prop::option::of(a), prop::option::of(b))
            .prop_map(|(a, b)| a.into_iter().chain(b).flatten().collect());
        self.mix(one, any)
    }

    fn retry_keys(self) -> Keys {
        vec![
            ("max_attempts", 0.3, self.v_int()),
            (
                "backoff",
                0.2,
                self.v_str(self.mix(Just("1s".to_string()), duration_hostile())),
            ),
            (
                "max_backoff",
                0.2,
                self.v_str(self.mix(Just("5m".to_string()), duration_hostile())),
            ),
        ]
    }

    fn with_retry(self, mut keys: Keys) -> Keys {
        keys.extend(self.retry_keys());
        keys
    }

    fn function(self) -> BoxedStrategy<Entries> {
        let component = self.mix(Just("f.wasm".to_string()), pool(&[" ", "", "\u{0}"]));
        let env_key = self.mix(
            pool(&["A", "B"]),
            prop_oneof![pool(&["", "A=B", "\u{0}"]), "\\PC{0,4}"],
        );
        let config_key = self.mix(
            pool(&["greeting", "db.url"]),
            prop_oneof![pool(&["", "a b", "é"]), "\\PC{0,6}"],
        );
        let timeout = self
            .mix(100i64..=100_000, self.int())
            .prop_map(Value::Integer)
            .boxed();
        self.entries(vec![
            ("component", 1.0, self.v_str(component)),
            ("build", 0.1, self.v_str(self.text())),
            ("memory_mb", 0.4, self.v_int()),
            ("timeout_ms", 0.4, self.typed(timeout)),
            ("first_byte_timeout_ms", 0.2, self.v_int()),
            ("max_concurrency", 0.4, self.v_int()),
            (
                "concurrency_scope",
                0.1,
                self.v_str(self.mix(pool(&["node", "cluster"]), pool(&["x", "Node"]))),
            ),
            ("env", 0.2, self.v_map(env_key, self.text())),
            ("allowed_outbound_hosts", 0.2, self.v_list(self.host())),
            (
                "retry",
                0.2,
                self.typed(self.entries(self.retry_keys()).prop_map(table).boxed()),
            ),
            ("kv", 0.2, self.v_list(self.name(KV))),
            ("collections", 0.2, self.v_list(self.name(COLLECTIONS))),
            ("buckets", 0.1, self.v_list(self.name(&["uploads"]))),
            ("config", 0.2, self.v_map(config_key, self.text())),
        ])
    }

    fn policy(self) -> BoxedStrategy<Entries> {
        let rate = self.entries(vec![
            ("requests", 1.0, self.v_int()),
            ("per", 0.5, self.v_str(self.duration())),
            ("burst", 0.4, self.v_int()),
            (
                "by",
                0.3,
                self.v_str(self.mix(pool(&["ip"]), pool(&["key", "user", "x", "IP"]))),
            ),
        ]);
        let cors = self.entries(vec![
            (
                "origins",
                1.0,
                self.v_list1(self.mix(
                    pool(&["https://game.example", "http://a:8080"]),
                    pool(&["*", "ftp://x", "https://", "https://a b"]),
                )),
            ),
            (
                "methods",
                0.3,
                self.v_list(self.mix(pool(&["GET", "post"]), pool(&["FETCH", ""]))),
            ),
            (
                "headers",
                0.3,
                self.v_list(self.mix(pool(&["x-token"]), pool(&["*", "bad header", ""]))),
            ),
            (
                "expose",
                0.2,
                self.v_list(self.mix(pool(&["x-id"]), pool(&["*", "é"]))),
            ),
            ("credentials", 0.3, self.v_bool()),
            ("max_age", 0.3, self.v_str(self.duration())),
        ]);
        let jwks_url = self.v_str(self.mix(
            pool(&["https://issuer.example/jwks", "http://127.0.0.1:8080/jwks"]),
            pool(&[
                "http://localhost.evil/jwks",
                "http://issuer.example/jwks",
                "",
            ]),
        ));
        // Who may call: public or an API key, or a JWT of an external
        // issuer (named by its keys and its issuer); when hostile, the
        // fields in any combination.
        let plain = self.entries(vec![(
            "auth",
            0.6,
            self.v_str(self.mix(pool(&["public", "api_key"]), pool(&["jwt", "magic", ""]))),
        )]);
        let external = self.entries(vec![
            (
                "auth",
                1.0,
                self.v_str(self.mix(Just("jwt".to_string()), pool(&["public", ""]))),
            ),
            ("jwks_url", 1.0, jwks_url.clone()),
            ("issuer", 1.0, self.v_str(self.text())),
            ("audience", 0.3, self.v_str(self.text())),
            (
                "roles",
                0.3,
                self.v_list(self.mix(pool(&["player", "admin"]), pool(&[""]))),
            ),
            ("claims", 0.2, self.v_map(self.text(), self.text())),
        ]);
        let scattered = self.entries(vec![
            ("jwks_url", 0.1, jwks_url),
            ("issuer", 0.1, self.v_str(self.text())),
            ("audience", 0.1, self.v_str(self.text())),
            ("roles", 0.1, self.v_list(pool(&["player", ""]))),
        ]);
        let who = self.mix(
            prop_oneof![3 => plain.clone(), 1 => external.clone()],
            (plain, scattered).prop_map(|(a, b)| a.into_iter().chain(b).collect()),
        );
        let rest = self.entries(vec![
            ("rate_limit", 0.3, self.typed(rate.prop_map(table).boxed())),
            ("cors", 0.3, self.typed(cors.prop_map(table).boxed())),
            ("max_body_kb", 0.3, self.v_int()),
            ("allow", 0.2, self.v_list(self.net())),
            ("deny", 0.2, self.v_list(self.net())),
        ]);
        (who, rest)
            .prop_map(|(a, b)| a.into_iter().chain(b).collect())
            .boxed()
    }

    /// Tables `[KIND.NAME]` with the given entries: when benign, one for
    /// each of `names` (so that every reference resolves); when hostile,
    /// up to `n` of random names, each once (a repeated table is a TOML
    /// error, which the arbitrary-text properties cover).
    fn named(
        self,
        kind: &'static str,
        names: &[&'static str],
        n: std::ops::Range<usize>,
        e: BoxedStrategy<Entries>,
    ) -> BoxedStrategy<Vec<Section>> {
        let section = move |n: &str, entries| Section {
            header: format!("[{kind}.{}]", key(n)),
            entries,
        };
        if self.h == 0 {
            return names
                .iter()
                .map(|&n| e.clone().prop_map(move |entries| section(n, entries)))
                .collect::<Vec<_>>()
                .boxed();
        }
        prop::collection::vec((self.name(names), e), n)
            .prop_map(move |v| {
                let mut seen = std::collections::BTreeSet::new();
                v.into_iter()
                    .filter(|(n, _)| seen.insert(n.clone()))
                    .map(|(n, entries)| section(&n, entries))
                    .collect()
            })
            .boxed()
    }

    /// A whole manifest made of plausible sections and keys, in a random
    /// order.
    fn manifest(self) -> BoxedStrategy<String> {
        let g = self;
        let app = optional(
            "[app]",
            if g.h == 0 { 1.0 } else { 0.99 },
            g.entries(vec![
                ("name", 1.0, g.v_str(g.name(&["demo", "my-app_2"]))),
                (
                    "host",
                    0.2,
                    g.v_str(g.mix(
                        pool(&["demo.example.com", "a:8080", "x.y"]),
                        pool(&["", "bad host", "é"]),
                    )),
                ),
            ]),
        );
        let queues = g.named(
            "queues",
            QUEUES,
            0..3,
            g.entries(vec![
                ("max_message_kb", 0.3, g.v_int()),
                ("dedup_window", 0.3, g.v_str(g.duration())),
            ]),
        );
        let topics = g.named("topics", TOPICS, 0..3, g.entries(vec![]));
        let kv = g.named(
            "kv",
            KV,
            0..3,
            g.entries(vec![
                ("max_value_kb", 0.3, g.v_int()),
                ("access", 0.3, g.v_str(g.access())),
            ]),
        );
        let sizes = if g.h == 0 { 1..9 } else { 0..10 };
        let index =
            prop::collection::vec(g.field().prop_map(Value::String), sizes).prop_map(Value::Array);
        let owner = g.either(
            g.entries(vec![
                (
                    "access",
                    1.0,
                    g.v_str(g.mix(pool(&["owner", "owner-read"]), access_hostile())),
                ),
                ("owner_field", 0.5, g.v_str(g.field())),
            ]),
            g.entries(vec![("access", 0.5, g.v_str(g.access()))]),
        );
        let collections = g.named(
            "collections",
            COLLECTIONS,
            0..3,
            (
                g.entries(vec![(
                    "indexes",
                    0.5,
                    g.typed(
                        prop::collection::vec(index, 0..3)
                            .prop_map(Value::Array)
                            .boxed(),
                    ),
                )]),
                owner,
            )
                .prop_map(|(a, b)| a.into_iter().chain(b).collect())
                .boxed(),
        );
        let variable = g.mix(
            pool(&["greeting", "db.url", "x-1"]),
            prop_oneof![pool(&["", "a b"]), "\\PC{0,8}"],
        );
        let variables = prop::collection::btree_map(variable, g.v_str(g.text()), 0..3)
            .prop_map(|m| {
                if m.is_empty() {
                    vec![]
                } else {
                    vec![Section {
                        header: "[variables]".into(),
                        entries: m.into_iter().collect(),
                    }]
                }
            })
            .boxed();
        let auth = optional(
            "[auth]",
            0.3,
            g.entries(vec![
                ("signup", 0.3, g.v_bool()),
                ("access_ttl", 0.3, g.v_str(g.duration())),
                ("refresh_ttl", 0.2, g.v_str(g.duration())),
                ("reset_ttl", 0.2, g.v_str(g.duration())),
                ("reset_hook", 0.2, g.v_str(g.name(FUNCTIONS))),
                ("min_password_length", 0.2, g.v_int()),
                ("login_attempts_per_account", 0.2, g.v_int()),
                ("login_attempts_per_ip", 0.2, g.v_int()),
            ]),
        );
        let gateway = optional("[gateway]", 0.3, g.policy());
        let policies = g.named("policies", POLICIES, 0..3, g.policy());
        let functions = g.named("functions", FUNCTIONS, 1..4, g.function());
        let http = triggers(
            "http",
            0..5,
            g.entries(vec![
                ("route", 1.0, g.v_str(g.route())),
                (
                    "methods",
                    0.4,
                    g.v_list(g.mix(pool(&["GET", "get", "POST"]), pool(&["FETCH", ""]))),
                ),
                ("function", 1.0, g.v_str(g.name(FUNCTIONS))),
                ("policy", 0.2, g.v_str(g.name(POLICIES))),
            ]),
        );
        let queue = triggers(
            "queue",
            0..2,
            g.entries(g.with_retry(vec![
                ("queue", 1.0, g.v_str(g.name(QUEUES))),
                ("function", 1.0, g.v_str(g.name(FUNCTIONS))),
                ("batch_size", 0.4, g.v_int()),
                ("max_concurrency", 0.3, g.v_int()),
                (
                    "visibility_timeout",
                    0.3,
                    g.v_str(g.mix(pool(&["2m", "1h"]), duration_hostile())),
                ),
            ])),
        );
        let target = g.either(
            g.entries(vec![("function", 1.0, g.v_str(g.name(FUNCTIONS)))]),
            g.entries(vec![("queue", 1.0, g.v_str(g.name(QUEUES)))]),
        );
        let topic = triggers(
            "topic",
            0..3,
            (
                g.entries(g.with_retry(vec![
                    ("topic", 1.0, g.v_str(g.name(TOPICS))),
                    ("max_concurrency", 0.3, g.v_int()),
                ])),
                target,
            )
                .prop_map(|(a, b)| a.into_iter().chain(b).collect())
                .boxed(),
        );
        let when = g.either(
            g.entries(vec![
                ("cron", 1.0, g.v_str(g.cron())),
                ("timezone", 0.4, g.v_str(g.timezone())),
            ]),
            g.entries(vec![(
                "every",
                1.0,
                g.v_str(g.mix(pool(&["1s", "5m", "1h 30m", "366d"]), duration_hostile())),
            )]),
        );
        let schedule = triggers(
            "schedule",
            0..3,
            (
                g.entries(g.with_retry(vec![
                    (
                        "name",
                        if g.h == 0 { 1.0 } else { 0.5 },
                        g.v_str(g.name(&["nightly", "tick", "report"])),
                    ),
                    ("function", 1.0, g.v_str(g.name(FUNCTIONS))),
                ])),
                when,
            )
                .prop_map(|(a, b)| a.into_iter().chain(b).collect())
                .boxed(),
        );
        let bucket = g.mix(
            pool(&["uploads", "a.b-c"]),
            prop_oneof![pool(&["ab", "UP", ""]), Just("a".repeat(64))],
        );
        let storage = triggers(
            "storage",
            0..3,
            g.entries(g.with_retry(vec![
                ("bucket", 1.0, g.v_str(bucket)),
                (
                    "events",
                    0.4,
                    g.v_list(g.mix(pool(&["created", "deleted"]), pool(&["moved"]))),
                ),
                ("prefix", 0.2, g.v_str(g.text())),
                ("suffix", 0.2, g.v_str(g.text())),
                ("function", 1.0, g.v_str(g.name(FUNCTIONS))),
            ])),
        );
        (
            (app, queues, topics, kv, collections, variables, auth),
            (gateway, policies, functions, http, queue, topic, schedule),
            storage,
        )
            .prop_flat_map(|((a, q, t, k, c, v, au), (gw, p, f, h, qu, to, sc), st)| {
                let all: Vec<Section> = [a, q, t, k, c, v, au, gw, p, f, h, qu, to, sc, st]
                    .into_iter()
                    .flatten()
                    .collect();
                Just(all).prop_shuffle()
            })
            .prop_map(|sections| render(&sections))
            .boxed()
    }
}

const FUNCTIONS: &[&str] = &["api", "worker", "web"];
const QUEUES: &[&str] = &["jobs", "mail"];
const TOPICS: &[&str] = &["scores", "news"];
const KV: &[&str] = &["sessions", "cache"];
const COLLECTIONS: &[&str] = &["games", "users"];
const POLICIES: &[&str] = &["players", "admins"];

/// Manifests at several hostilities: benign (often accepted), a few
/// hostile values, mostly hostile.
fn manifest_text() -> BoxedStrategy<String> {
    prop_oneof![
        2 => G { h: 0 }.manifest(),
        2 => G { h: 1 }.manifest(),
        1 => G { h: 30 }.manifest(),
    ]
    .boxed()
}

/// One section of a manifest: a header (`[functions.api]`,
/// `[[triggers.http]]`) and its entries.
#[derive(Debug, Clone)]
struct Section {
    header: String,
    entries: Entries,
}

/// A TOML key: bare if it can be, quoted otherwise.
fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
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

/// `n` entries `[[triggers.KIND]]`.
fn triggers(
    kind: &'static str,
    n: std::ops::Range<usize>,
    e: BoxedStrategy<Entries>,
) -> BoxedStrategy<Vec<Section>> {
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

/// `Some` of `st` with probability `p` (always if `p` is 1).
fn maybe<T: std::fmt::Debug + 'static>(
    p: f64,
    st: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    if p >= 1.0 {
        st.prop_map(Some).boxed()
    } else {
        prop::option::weighted(p, st).boxed()
    }
}

/// A table that is there with probability `p`.
fn optional(
    header: &'static str,
    p: f64,
    e: BoxedStrategy<Entries>,
) -> BoxedStrategy<Vec<Section>> {
    maybe(p, e)
        .prop_map(move |e| {
            e.map(|entries| Section {
                header: header.into(),
                entries,
            })
            .into_iter()
            .collect()
        })
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

/// Manifests of 1 to 3 functions with in-range limits, routes on distinct
/// valid patterns and `every` schedules within the documented periods.
fn good_manifest() -> BoxedStrategy<GoodManifest> {
    let function = (
        1u32..=MAX_MEMORY_MB,
        1u64..=1 << 40,
        any::<prop::sample::Index>(),
        1u32..=u32::MAX,
    );
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

/// Patterns of literal segments, `{name}` parameters (distinct names) and
/// an optional trailing wildcard (`*` or `{*rest}`) or slash.
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
            let (mut text, mut normalized, mut params, mut wildcard) =
                (String::new(), String::new(), Vec::new(), None);
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
            GenPattern {
                text,
                normalized,
                params,
                wildcard,
            }
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
        && p.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

/// Units of `parse_duration`, in nanoseconds.
const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
    ("w", 604_800_000_000_000),
];

/// The terms `N unit` of a duration: numbers at the edges (near u64::MAX,
/// a second's worth of nanoseconds), any, or small; and sums whose seconds
/// reach u64::MAX while their nanoseconds reach a whole second, where an
/// overflow hides.
fn duration_terms() -> BoxedStrategy<Vec<(u64, (&'static str, u128))>> {
    let n = prop_oneof![
        2 => prop::sample::select(vec![
            u64::MAX, u64::MAX - 1, 1_000_000_000, 999_999_999, 500_000_000, 500, 1, 0,
        ]),
        1 => any::<u64>(),
        2 => 0u64..100_000,
    ];
    let near_overflow = (0u64..3, 0u64..=1_000_000_000, prop::bool::ANY).prop_map(|(k, x, ms)| {
        let mut t = vec![(u64::MAX - k, UNITS[3])];
        if ms {
            t.push((x / 1_000_000, UNITS[2]));
            t.push((1_000 - x / 1_000_000, UNITS[2]));
        } else {
            t.push((x, UNITS[0]));
            t.push((1_000_000_000 - x, UNITS[0]));
        }
        t
    });
    prop_oneof![
        4 => prop::collection::vec((n, prop::sample::select(UNITS.to_vec())), 1..4),
        1 => near_overflow,
    ]
    .boxed()
}

/// Asserts what every accepted manifest must satisfy: its names, limits,
/// routes, triggers and schedules obey the documented rules, and it builds
/// a revision spec (validation happened at parse time).
fn check_accepted(src: &str, m: &Manifest) -> Result<(), TestCaseError> {
    prop_assert!(
        check_name("app", m.name()).is_ok(),
        "app name {:?}",
        m.name()
    );
    prop_assert!(!m.functions.is_empty());
    for (name, f) in &m.functions {
        let f = f.get_ref();
        prop_assert!(
            check_name("function", name).is_ok(),
            "function name {name:?}"
        );
        prop_assert!(!f.component.trim().is_empty());
        let l = f.limits();
        prop_assert!((1..=MAX_MEMORY_MB).contains(&l.memory_mb), "{l:?}");
        prop_assert!(l.timeout_ms >= 1 && l.max_concurrency >= 1, "{l:?}");
        prop_assert!(
            (1..=l.timeout_ms).contains(&l.first_byte_timeout_ms),
            "{l:?}"
        );
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
            prop_assert_eq!(normalize_method(method), Ok(method.clone()));
        }
        prop_assert!(
            spec.route_policy(r).is_ok(),
            "route {:?}: {:?}",
            r.path,
            spec.route_policy(r)
        );
    }
    for (name, f) in &spec.functions {
        prop_assert!(
            (1..=100).contains(&f.retry.max_attempts),
            "{name}: {:?}",
            f.retry
        );
        prop_assert!(
            f.retry.max_backoff_ms >= f.retry.backoff_ms,
            "{name}: {:?}",
            f.retry
        );
        for k in f.config.keys() {
            prop_assert!(check_config_key(k).is_ok());
        }
    }
    for k in spec.variables.keys() {
        prop_assert!(check_config_key(k).is_ok());
    }
    for t in &spec.queue_triggers {
        prop_assert!(
            (1..=1000).contains(&t.batch_size) && t.max_concurrency >= 1,
            "{t:?}"
        );
        prop_assert!(
            spec.queues.contains_key(&t.queue) && spec.functions.contains_key(&t.function)
        );
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
            prop_assert!(
                next > T0_MS,
                "schedule {:?}: next tick {next} is not after {T0_MS}",
                sched.name
            );
        }
    }
    Ok(())
}

/// What every refused manifest must satisfy: a message, and a line (when
/// given) inside the text.
fn check_refused(src: &str, e: &ManifestError) -> Result<(), TestCaseError> {
    prop_assert!(!e.message.is_empty());
    if let Some(line) = e.line {
        prop_assert!(
            line >= 1 && line <= src.lines().count().max(1) + 1,
            "line {line} of {} lines: {e}",
            src.lines().count()
        );
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

    /// A schedule's `every`, any duration text (huge ones favoured): it is
    /// accepted only within MIN..=MAX_SCHEDULE_PERIOD_MS, as exactly the
    /// duration written, and its next tick is strictly after the time asked.
    #[test]
    fn schedule_every_bounds(
        every in prop_oneof![
            duration_hostile(),
            (any::<u64>(), pool(&["ms", "s", "m", "h", "d", "w", "y"])).prop_map(|(n, u)| format!("{n}{u}")),
            (1u64..800).prop_map(|d| format!("{d}d")),
            (1u64..=1_000_000_000).prop_map(|y| format!("{y}years")),
        ],
        after in prop_oneof![Just(T0_MS), 0i64..4_102_444_800_000],
    ) {
        let src = format!("[app]\nname = \"a\"\n[functions.f]\ncomponent = \"f.wasm\"\n[[triggers.schedule]]\nevery = {}\nfunction = \"f\"\n", s(every.as_str()));
        match Manifest::parse(&src) {
            Ok(m) => {
                let spec = m.to_spec(&[("f".to_string(), "a".repeat(64))].into()).unwrap();
                let sched = &spec.schedules[0];
                let When::Every(ms) = sched.when else { unreachable!() };
                prop_assert!((MIN_SCHEDULE_PERIOD_MS..=MAX_SCHEDULE_PERIOD_MS).contains(&ms), "every = {every:?} accepted as {ms} ms");
                prop_assert_eq!(u128::from(ms), parse_duration("every", &every).unwrap().as_millis());
                let next = sched.next_tick_after(after);
                prop_assert!(next.is_some_and(|n| n > after), "every = {every:?}: next tick {next:?} is not after {after}");
            }
            Err(e) => check_refused(&src, &e)?,
        }
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
                let suffix = format!("/{{*{w}}}");
                prop_assert!(pat.normalized.ends_with(&suffix), "{:?}", pat);
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

    /// Any text: `parse_duration` does not panic.
    #[test]
    fn duration_arbitrary(d in prop_oneof![G { h: 0 }.duration(), duration_hostile(), "[0-9 .a-zµ]{0,24}"]) {
        let _ = parse_duration("x", &d);
    }

    /// A sum of `N unit` terms parses to exactly its value; when the value
    /// does not fit a `Duration` (u64 seconds) it is refused, never a panic.
    /// Numbers near u64::MAX and nanosecond parts adding up to a whole
    /// second are favoured: they are where an overflow would hide.
    #[test]
    fn duration_sum_is_exact(terms in duration_terms(), sep in prop::sample::select(vec![" ", "", "  "])) {
        let text = terms.iter().map(|(n, (u, _))| format!("{n}{u}")).collect::<Vec<_>>().join(sep);
        let nanos: u128 = terms.iter().map(|(n, (_, f))| u128::from(*n) * f).sum();
        let fits = nanos / 1_000_000_000 <= u128::from(u64::MAX);
        // humantime computes each term in u64 (nanoseconds below a second,
        // seconds from it up, plus the nanoseconds so far) and refuses a
        // term that overflows there even if the total would fit.
        let terms_fit = terms.iter().all(|(n, (_, f))| {
            let factor = if *f < 1_000_000_000 { *f } else { f / 1_000_000_000 };
            u128::from(*n) * factor + 1_000_000_000 <= u128::from(u64::MAX)
        });
        // Documented: numbers that could add up to u64::MAX seconds, each
        // counted as that many years plus one, are refused as too long, and
        // so is a total past u64::MAX milliseconds.
        let too_long = terms.iter().map(|(n, _)| (u128::from(*n) + 1) * 31_557_600).sum::<u128>()
            >= u128::from(u64::MAX)
            || nanos / 1_000_000 > u128::from(u64::MAX);
        match parse_duration("x", &text) {
            Ok(d) => {
                prop_assert!(fits && !too_long);
                prop_assert_eq!(d.as_nanos(), nanos, "{:?}", text);
                // So every accepted duration's milliseconds fit in a u64.
                prop_assert!(u64::try_from(d.as_millis()).is_ok(), "{:?}", text);
            }
            Err(e) => prop_assert!(!fits || !terms_fit || too_long, "{text:?} refused: {e}"),
        }
    }

    /// `parse_timezone` accepts every IANA name chrono-tz knows, as
    /// itself, and anything it accepts is such a name.
    #[test]
    fn timezone_round_trips(tz in prop::sample::select(chrono_tz::TZ_VARIANTS.to_vec()), junk in timezone_hostile()) {
        prop_assert_eq!(parse_timezone(tz.name()), Ok(tz));
        if let Ok(t) = parse_timezone(&junk) {
            prop_assert!(t.name().eq_ignore_ascii_case(&junk), "{junk:?} -> {}", t.name());
        }
    }

    /// Any text: `parse_net` does not panic; an accepted network has no
    /// host bits set and its text form parses back to itself.
    #[test]
    fn net_arbitrary(n in prop_oneof![net_valid(), net_hostile(), "\\PC{0,24}", "[0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,3}"]) {
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
    fn access_round_trips(a in prop_oneof![access_valid(), access_hostile()]) {
        match Access::parse(&a) {
            Ok(access) => prop_assert_eq!(serde_json::to_string(&access).unwrap(), format!("{a:?}")),
            Err(_) => prop_assert!(!["none", "public-read", "authenticated", "owner", "owner-read"].contains(&a.as_str())),
        }
    }
}

proptest! {
    // A cron search can walk years ahead (to croner's limit, year 5000, for
    // an expression that never matches): fewer cases.
    #![proptest_config(config(1024))]

    /// Any cron-like text: `parse_cron` does not panic, and a schedule on
    /// an accepted expression (in UTC or a random zone) finds its next tick
    /// without panicking, strictly after the given time.
    #[test]
    fn cron_never_panics(expr in prop_oneof![cron_valid(), cron_hostile(), "\\PC{0,30}"], tz in prop_oneof![timezone_valid(), timezone_hostile()], after in prop_oneof![Just(T0_MS), 0i64..4_102_444_800_000]) {
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
}

/// Sums of durations reaching exactly u64::MAX seconds with nanoseconds
/// adding up to a whole second: humantime panics on them (`Duration::new`
/// overflows), so `parse_duration` refuses them first.
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

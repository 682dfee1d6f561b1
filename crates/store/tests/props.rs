//! Property tests of the document query language a tenant sends
//! (`DocQuery::parse`): arbitrary text, arbitrary JSON, and generated
//! query objects with random operators, field paths, values, orders,
//! limits and cursors, checked against the documented rules.
//!
//! The RNG seed is fixed; `NIMBUS_PROPTEST_CASES` sets the number of cases
//! (bench/proptest.sh runs many more than the default).

use nimbus_core::data::{IndexField, MAX_FIELD_PATH};
use nimbus_store::{DocError, DocQuery, MAX_OFFSET, MAX_PAGE, Op};
use proptest::prelude::*;

use serde_json::{Map, Value, json};

#[path = "../../core/tests/common/proptest_config.rs"]
mod proptest_config;
use proptest_config::config;

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,6}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

// Each part of a generated query is benign (valid) against `h` chances in
// `BENIGN + h` of being hostile (invalid path, unknown operator, a value the
// operator refuses, a limit or cursor out of range, junk). Queries are drawn
// at several hostilities, the benign ones to be accepted, so that the
// property checks what an accepted query parses to.

/// Odds of a benign part, against the hostility.
const BENIGN: u32 = 30;

/// `benign`, or with hostility `h` `hostile`.
fn mix<T: std::fmt::Debug + 'static>(
    h: u32,
    benign: impl Strategy<Value = T> + 'static,
    hostile: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    if h == 0 {
        benign.boxed()
    } else {
        prop_oneof![BENIGN => benign, h => hostile].boxed()
    }
}

fn pool(v: &[&'static str]) -> BoxedStrategy<String> {
    prop::sample::select(v.to_vec())
        .prop_map(String::from)
        .boxed()
}

/// Numbers (integers, floats), strings and booleans.
fn scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::num::f64::NORMAL.prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::from),
    ]
    .boxed()
}

/// Any value a filter may be given: scalars, null, short and long lists
/// (of anything), nested JSON.
fn any_filter_value() -> BoxedStrategy<Value> {
    let item = prop_oneof![4 => scalar(), 1 => Just(Value::Null)];
    prop_oneof![
        4 => item.clone(),
        2 => prop::collection::vec(item.clone(), 0..5).prop_map(Value::Array),
        1 => prop::collection::vec(item, 95..105).prop_map(Value::Array),
        1 => json_value(),
    ]
    .boxed()
}

fn valid_path() -> BoxedStrategy<String> {
    prop_oneof![
        pool(&["score", "player.name", "a-b_c.D9"]),
        "[a-zA-Z0-9_-]{1,6}(\\.[a-zA-Z0-9_-]{1,6}){0,3}",
    ]
    .boxed()
}

fn any_path() -> BoxedStrategy<String> {
    prop_oneof![
        2 => pool(&["a..b", "", ".", "x'); DROP TABLE docs; --", "a.", "é", "a b", "$.a", "a\"b"]),
        1 => valid_path(),
        1 => Just("a".repeat(MAX_FIELD_PATH + 1)),
        1 => "\\PC{0,12}",
    ]
    .boxed()
}

/// A filter `[path, op, value]`: when benign, one the rules accept (`in`
/// with 1 to 100 scalars, null only with `==` and `!=`).
fn filter(h: u32) -> BoxedStrategy<(String, String, Value)> {
    let benign = prop_oneof![
        (
            valid_path(),
            pool(&["==", "=", "!="]),
            prop_oneof![4 => scalar(), 1 => Just(Value::Null)]
        ),
        (valid_path(), pool(&["<", "<=", ">", ">="]), scalar()),
        (
            valid_path(),
            pool(&["in"]),
            prop_oneof![
                prop::collection::vec(scalar(), 1..6),
                prop::collection::vec(scalar(), 99..=100),
            ]
            .prop_map(Value::Array),
        ),
    ];
    let op = prop_oneof![
        2 => pool(&["==", "=", "!=", "<", "<=", ">", ">=", "in"]),
        1 => pool(&["IN", "===", "<>", "", "like", "≤", "==\u{0}"]),
        1 => "\\PC{0,3}",
    ];
    mix(h, benign, (any_path(), op, any_filter_value()))
}

/// An order `[path, direction]`.
fn order(h: u32) -> BoxedStrategy<(String, String)> {
    mix(
        h,
        (valid_path(), pool(&["asc", "desc", "ASC", "Desc", "dEsC"])),
        (
            any_path(),
            pool(&["", "up", "descending", "désc", "ＡＳＣ", "asc "]),
        ),
    )
}

/// `limit`: any u32 (clamped), or what a u32 field refuses.
fn limit(h: u32) -> BoxedStrategy<Value> {
    mix(
        h,
        prop_oneof![
            prop::sample::select(vec![0u32, 1, 99, 100, 1000, 1001, u32::MAX]),
            any::<u32>(),
        ]
        .prop_map(Value::from),
        prop::sample::select(vec![
            json!(-1),
            json!(u64::from(u32::MAX) + 1),
            json!(1.5),
            json!(10.0),
            json!("10"),
            json!([]),
        ]),
    )
}

/// `cursor`: ones the server gives (`o` and an offset), or out-of-range
/// ones and junk.
fn cursor(h: u32) -> BoxedStrategy<Value> {
    mix(
        h,
        prop_oneof![
            (0..=MAX_OFFSET).prop_map(|n| Value::from(format!("o{n}"))),
            prop::sample::select(vec![0, MAX_OFFSET]).prop_map(|n| Value::from(format!("o{n}"))),
        ],
        prop_oneof![
            prop::sample::select(vec![MAX_OFFSET + 1, u64::MAX])
                .prop_map(|n| Value::from(format!("o{n}"))),
            pool(&[
                "",
                "o",
                "o-1",
                "o+5",
                "o+",
                "0",
                "O5",
                "o 5",
                "o18446744073709551616",
                "o٣"
            ])
            .prop_map(Value::from),
            "\\PC{0,8}".prop_map(Value::from),
            Just(json!(5)),
        ],
    )
}

/// A generated query: each part present or not.
#[derive(Debug, Clone)]
struct Query {
    filters: Option<Vec<(String, String, Value)>>,
    order_by: Option<Vec<(String, String)>>,
    limit: Option<Value>,
    cursor: Option<Value>,
    /// A key the language does not have.
    extra: bool,
}

fn query_at(h: u32) -> BoxedStrategy<Query> {
    (
        prop::option::weighted(0.8, prop::collection::vec(filter(h), 0..4)),
        prop::option::weighted(0.5, prop::collection::vec(order(h), 0..3)),
        prop::option::weighted(0.5, limit(h)),
        prop::option::weighted(0.4, cursor(h)),
        mix(h, Just(false), prop::bool::weighted(0.1)),
    )
        .prop_map(|(filters, order_by, limit, cursor, extra)| Query {
            filters,
            order_by,
            limit,
            cursor,
            extra,
        })
        .boxed()
}

/// Queries at several hostilities: benign (accepted), a few hostile parts,
/// mostly hostile.
fn query() -> BoxedStrategy<Query> {
    prop_oneof![2 => query_at(0), 2 => query_at(1), 1 => query_at(30)].boxed()
}

impl Query {
    fn to_json(&self) -> String {
        let mut m = Map::new();
        if let Some(f) = &self.filters {
            m.insert(
                "where".into(),
                f.iter().map(|(p, o, v)| json!([p, o, v])).collect(),
            );
        }
        if let Some(o) = &self.order_by {
            m.insert(
                "order_by".into(),
                o.iter().map(|(p, d)| json!([p, d])).collect(),
            );
        }
        if let Some(l) = &self.limit {
            m.insert("limit".into(), l.clone());
        }
        if let Some(c) = &self.cursor {
            m.insert("cursor".into(), c.clone());
        }
        if self.extra {
            m.insert("offset".into(), json!(3));
        }
        Value::Object(m).to_string()
    }

    /// What the documented rules make of this query: the parsed query, or
    /// `None` for a refusal.
    #[allow(clippy::type_complexity)]
    fn expected(&self) -> Option<(Vec<(String, Op, Value)>, Vec<IndexField>, u32, u64)> {
        if self.extra {
            return None;
        }
        let limit = match &self.limit {
            None | Some(Value::Null) => 100,
            Some(v) => u32::try_from(v.as_u64()?).ok()?.clamp(1, MAX_PAGE),
        };
        let mut filters = Vec::new();
        for (path, op, value) in self.filters.iter().flatten() {
            if !path_rule(path) {
                return None;
            }
            let op = match op.as_str() {
                "==" | "=" => Op::Eq,
                "!=" => Op::Ne,
                "<" => Op::Lt,
                "<=" => Op::Le,
                ">" => Op::Gt,
                ">=" => Op::Ge,
                "in" => Op::In,
                _ => return None,
            };
            let ok = match (op, value) {
                // `in`: a list of 1 to 100 numbers, strings or booleans.
                (Op::In, Value::Array(items)) => {
                    (1..=100).contains(&items.len())
                        && items
                            .iter()
                            .all(|v| v.is_number() || v.is_string() || v.is_boolean())
                }
                (Op::In, _) => false,
                // Others: a scalar; null only with == and !=.
                (_, Value::Array(_) | Value::Object(_)) => false,
                (Op::Eq | Op::Ne, _) => true,
                (_, v) => !v.is_null(),
            };
            if !ok {
                return None;
            }
            filters.push((path.clone(), op, value.clone()));
        }
        let mut order = Vec::new();
        for (path, dir) in self.order_by.iter().flatten() {
            if !path_rule(path) {
                return None;
            }
            let desc = match dir.to_ascii_lowercase().as_str() {
                "asc" => false,
                "desc" => true,
                _ => return None,
            };
            order.push(IndexField {
                path: path.clone(),
                desc,
            });
        }
        let offset = match &self.cursor {
            None | Some(Value::Null) => 0,
            Some(Value::String(c)) => {
                // A cursor is `o` and a decimal offset of at most MAX_OFFSET
                // (a leading `+` is tolerated, as by `u64::from_str`).
                let digits = c.strip_prefix('o')?;
                let digits = digits.strip_prefix('+').unwrap_or(digits);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let n: u64 = digits.parse().ok()?;
                (n <= MAX_OFFSET).then_some(n)?
            }
            Some(_) => return None,
        };
        Some((filters, order, limit, offset))
    }
}

/// The documented field path rule, written independently of the store.
fn path_rule(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= MAX_FIELD_PATH
        && p.split('.').all(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

/// Asserts what any accepted query satisfies, whatever its text.
fn check_accepted(q: &DocQuery) -> Result<(), TestCaseError> {
    prop_assert!((1..=MAX_PAGE).contains(&q.limit), "limit {}", q.limit);
    prop_assert!(q.offset <= MAX_OFFSET);
    for (path, op, value) in &q.filters {
        prop_assert!(path_rule(path), "{path:?}");
        match op {
            Op::In => prop_assert!(
                value
                    .as_array()
                    .is_some_and(|a| (1..=100).contains(&a.len()))
            ),
            _ => prop_assert!(!value.is_array() && !value.is_object()),
        }
    }
    for f in &q.order_by {
        prop_assert!(path_rule(&f.path), "{f:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(8192))]

    /// Any text: no panic; a refusal is `Invalid` (never a store error),
    /// and anything accepted satisfies the rules.
    #[test]
    fn parse_arbitrary_text(text in prop_oneof![
        "\\PC{0,120}",
        "[\\[\\]{}\":,0-9a-z=<>!. -]{0,80}",
        "\\{\"where\": \\[\\[\"[a-z.]{0,5}\", \"[=<>!in]{1,2}\", [0-9\\[\\]\",]{0,8}\\]\\]\\}",
    ]) {
        match DocQuery::parse(&text) {
            Ok(q) => check_accepted(&q)?,
            Err(e) => prop_assert!(matches!(e, DocError::Invalid(_)), "{e:?}"),
        }
    }

    /// Any JSON value (nested arrays and objects, huge numbers, unicode
    /// keys), alone or as the value of each query key: no panic, refusals
    /// are `Invalid`, acceptances satisfy the rules.
    #[test]
    fn parse_arbitrary_json(v in json_value(), key in prop::sample::select(vec!["where", "order_by", "limit", "cursor"])) {
        for text in [v.to_string(), json!({ key: v }).to_string()] {
            match DocQuery::parse(&text) {
                Ok(q) => check_accepted(&q)?,
                Err(e) => prop_assert!(matches!(e, DocError::Invalid(_)), "{e:?}"),
            }
        }
    }

    /// A generated query object is accepted iff the documented rules
    /// accept it, and then parses to exactly the filters (operators
    /// mapped), order, clamped limit and cursor offset it was written with.
    #[test]
    fn parse_generated_query(q in query()) {
        let text = q.to_json();
        let got = DocQuery::parse(&text);
        match (q.expected(), got) {
            (Some((filters, order, limit, offset)), Ok(p)) => {
                // serde_json reads some floats back one ulp off (it is built
                // without `float_roundtrip`): compare with the values as it
                // reads them from this text.
                let reread: Value = serde_json::from_str(&text).unwrap();
                let filters: Vec<_> = filters
                    .into_iter()
                    .enumerate()
                    .map(|(i, (path, op, _))| (path, op, reread["where"][i][2].clone()))
                    .collect();
                prop_assert_eq!(p.filters, filters);
                prop_assert_eq!(p.order_by, order);
                prop_assert_eq!(p.limit, limit);
                prop_assert_eq!(p.offset, offset);
            }
            (None, Err(e)) => prop_assert!(matches!(e, DocError::Invalid(_)), "{e:?}"),
            (Some(_), Err(e)) => return Err(TestCaseError::fail(format!("{text} refused: {e}"))),
            (None, Ok(p)) => return Err(TestCaseError::fail(format!("{text} accepted: {p:?}"))),
        }
    }

    /// A cursor the server would hand out (`o` and an offset) reads back
    /// as that offset; one past the largest offset is refused.
    #[test]
    fn cursor_round_trips(n in 0..=MAX_OFFSET, past in (MAX_OFFSET + 1)..=u64::MAX) {
        let q = DocQuery::parse(&json!({ "cursor": format!("o{n}") }).to_string()).unwrap();
        prop_assert_eq!(q.offset, n);
        let refused = DocQuery::parse(&json!({ "cursor": format!("o{past}") }).to_string()).is_err();
        prop_assert!(refused, "cursor o{} accepted", past);
    }
}

//! Events in a manifest and in a revision: queues, topics, and the triggers
//! that deliver their messages (and schedules' ticks, and async invocations)
//! to functions.
//!
//! ```toml
//! [queues.orders]
//! max_message_kb = 64       # optional, default: the platform's limit
//! dedup_window = "10m"      # optional: how long an idempotency key is remembered
//!
//! [topics.scores]           # a topic; subscribers are triggers below
//!
//! [functions.worker]
//! component = "worker.wasm"
//! retry = { max_attempts = 5, backoff = "1s", max_backoff = "5m" }  # async invocations
//!
//! [[triggers.queue]]
//! queue = "orders"
//! function = "worker"
//! batch_size = 10           # messages leased per fetch
//! max_concurrency = 4       # deliveries running at once
//! max_attempts = 5
//! backoff = "200ms"         # first retry delay; doubles each attempt, with jitter
//! max_backoff = "1m"
//!
//! [[triggers.topic]]
//! topic = "scores"
//! function = "notify"       # or: queue = "orders"
//!
//! [[triggers.schedule]]
//! name = "nightly"          # optional, default: the function's name
//! cron = "0 3 * * *"        # or: every = "5m"
//! timezone = "Europe/Paris" # optional, default UTC
//! function = "report"
//!
//! [[triggers.storage]]      # objects of a bucket of this app (S3 writes)
//! bucket = "uploads"
//! events = ["created"]      # optional, default: created and deleted
//! prefix = "images/"        # optional key filters: prefix, suffix
//! function = "thumbnail"
//! ```
//!
//! Every message waits in a *channel* of its app until a consumer takes it;
//! [`Channel`] names them. A revision's [`AppSpec::consumers`] says which
//! function consumes each channel and with which retry policy.

use crate::spec::AppSpec;
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use std::time::Duration;

/// Retry policy of a delivery: `max_attempts` in all, waiting
/// `backoff_ms * 2^(attempt-1)` (capped at `max_backoff_ms`, with jitter)
/// between attempts. After the last failure the message is dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the first retry, in ms.
    pub backoff_ms: u64,
    /// Longest delay between two attempts, in ms.
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            backoff_ms: 1_000,
            max_backoff_ms: 300_000,
        }
    }
}

impl RetryPolicy {
    /// Largest `max_attempts` accepted.
    pub const MAX_ATTEMPTS: u32 = 100;

    /// The delay before attempt `next` (2-based: the first retry), before
    /// jitter: exponential, capped.
    pub fn backoff(&self, next: u32) -> Duration {
        let exp = next.saturating_sub(2).min(40);
        let ms = self
            .backoff_ms
            .saturating_mul(1u64 << exp)
            .min(self.max_backoff_ms);
        Duration::from_millis(ms)
    }
}

/// A queue of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSpec {
    /// Largest message body accepted, in bytes (`None`: the platform's limit).
    #[serde(default)]
    pub max_message_bytes: Option<u64>,
    /// How long an idempotency key is remembered, in ms.
    pub dedup_window_ms: u64,
}

impl QueueSpec {
    /// Default idempotency window: 5 minutes.
    pub const DEFAULT_DEDUP_WINDOW_MS: u64 = 300_000;
}

/// Binds a queue to the function that consumes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueTriggerSpec {
    /// Queue name.
    pub queue: String,
    /// Consuming function.
    pub function: String,
    /// Messages leased per fetch.
    pub batch_size: u32,
    /// Deliveries running at once (also bounded by the function's own limit).
    pub max_concurrency: u32,
    /// Retries and dead letters.
    pub retry: RetryPolicy,
    /// How long a delivered message stays invisible (leased) before it is
    /// delivered again if not settled, in ms (`None`: the function's
    /// `timeout_ms` plus 30 s).
    #[serde(default)]
    pub visibility_timeout_ms: Option<u64>,
}

/// Where a topic subscription delivers its copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionTarget {
    /// Straight to a function, with the subscription's retries.
    Function(String),
    /// Into a queue (whose trigger then delivers it).
    Queue(String),
}

/// A subscription of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionSpec {
    /// Topic name.
    pub topic: String,
    /// Where each published message goes.
    pub target: SubscriptionTarget,
    /// Deliveries running at once (function targets).
    pub max_concurrency: u32,
    /// Retries and dead letters (function targets).
    pub retry: RetryPolicy,
}

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// A cron expression: 5 fields (minute precision) or 6 (with seconds first).
    Cron(String),
    /// A fixed period, in ms, aligned on the Unix epoch.
    Every(u64),
}

/// Runs a function when objects of a bucket are created or deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageTriggerSpec {
    /// Bucket (of this app).
    pub bucket: String,
    /// On `created` objects.
    pub created: bool,
    /// On `deleted` objects.
    pub deleted: bool,
    /// Only keys starting with this.
    #[serde(default)]
    pub prefix: String,
    /// Only keys ending with this.
    #[serde(default)]
    pub suffix: String,
    /// Function run.
    pub function: String,
    /// Retries and dead letters.
    pub retry: RetryPolicy,
}

impl StorageTriggerSpec {
    /// Whether an event on `key` of `kind` (`created`/`deleted`) is wanted.
    pub fn wants(&self, kind: &str, key: &str) -> bool {
        (match kind {
            "created" => self.created,
            "deleted" => self.deleted,
            _ => false,
        }) && key.starts_with(&self.prefix)
            && key.ends_with(&self.suffix)
    }
}

/// A schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// Unique name within the app (the state of its ticks is kept under it).
    pub name: String,
    /// Function run at each tick.
    pub function: String,
    /// When.
    pub when: When,
    /// IANA time zone the cron expression is read in (`None`: UTC).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Retries and dead letters.
    pub retry: RetryPolicy,
}

/// Parses a cron expression (5 or 6 fields, or `@hourly`-style macros).
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::new()
        .parse(expr)
        .map_err(|e| {
            format!(
                "cron expression {expr:?} is invalid ({e}): use 5 fields `minute hour day month weekday` (e.g. \"*/5 * * * *\"), or 6 with seconds first"
            )
        })
}

/// Parses an IANA time zone name.
pub fn parse_timezone(tz: &str) -> Result<chrono_tz::Tz, String> {
    chrono_tz::Tz::from_str(tz).map_err(|_| {
        format!("time zone {tz:?} is unknown: use an IANA name such as \"Europe/Paris\" or \"UTC\"")
    })
}

/// Parses a duration such as `250ms`, `30s`, `5m`, `1h 30m`.
///
/// A text whose numbers could add up to `u64::MAX` seconds (each counted as
/// that many years, plus one) is refused as too long: humantime panics on
/// some such sums (`Duration::new` overflows) instead of failing. So is a
/// duration past `u64::MAX` milliseconds, the unit callers keep.
pub fn parse_duration(what: &str, s: &str) -> Result<Duration, String> {
    const YEAR_SECS: u128 = 31_557_600;
    let refused = |why: &dyn std::fmt::Display| {
        format!("{what} = {s:?} is not a duration ({why}): write e.g. \"250ms\", \"30s\", \"5m\"")
    };
    let bound = s
        .split(|c: char| !c.is_ascii_digit())
        .filter(|n| !n.is_empty())
        .map(|n| {
            n.parse::<u128>()
                .map_or(u128::MAX, |n| n.saturating_add(1).saturating_mul(YEAR_SECS))
        })
        .fold(0u128, u128::saturating_add);
    if bound >= u128::from(u64::MAX) {
        return Err(refused(&"too long"));
    }
    let d = humantime::parse_duration(s).map_err(|e| refused(&e))?;
    if u64::try_from(d.as_millis()).is_err() {
        return Err(refused(&"too long"));
    }
    Ok(d)
}

/// A schedule's tick rule, parsed once.
pub enum Ticker {
    /// A fixed period (ms), aligned on the epoch.
    Every(i64),
    /// A cron expression in a time zone.
    Cron(Box<croner::Cron>, chrono_tz::Tz),
}

impl Ticker {
    /// The first tick strictly after `after_ms` (Unix ms), or `None` if
    /// there is none.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        match self {
            Ticker::Every(p) => Some((after_ms.div_euclid(*p) + 1) * p),
            Ticker::Cron(cron, tz) => {
                // Cron ticks fall on whole seconds: search from the second
                // containing `after_ms` (exclusive), so ticks stay aligned.
                let after =
                    chrono::DateTime::from_timestamp_millis(after_ms.div_euclid(1000) * 1000)?
                        .with_timezone(tz);
                let next = cron.find_next_occurrence(&after, false).ok()?;
                Some(next.timestamp_millis())
            }
        }
    }
}

impl ScheduleSpec {
    /// The parsed tick rule (`None` only for a spec that failed validation).
    pub fn ticker(&self) -> Option<Ticker> {
        Some(match &self.when {
            When::Every(period) => Ticker::Every((*period).max(1) as i64),
            When::Cron(expr) => {
                let tz = match &self.timezone {
                    Some(t) => parse_timezone(t).ok()?,
                    None => chrono_tz::UTC,
                };
                Ticker::Cron(Box::new(parse_cron(expr).ok()?), tz)
            }
        })
    }

    /// The first tick strictly after `after_ms` (Unix ms), or `None` if the
    /// expression never matches again.
    pub fn next_tick_after(&self, after_ms: i64) -> Option<i64> {
        self.ticker()?.next_after(after_ms)
    }
}

/// The channel a message waits in until its consumer takes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// A named queue.
    Queue(String),
    /// Async invocations of a function.
    Async(String),
    /// A topic's copies for one subscribed function.
    Topic {
        /// Topic.
        topic: String,
        /// Subscribed function.
        function: String,
    },
    /// A schedule's ticks.
    Schedule(String),
    /// Object events of a bucket for one function.
    Storage {
        /// Bucket.
        bucket: String,
        /// Function.
        function: String,
    },
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Channel::Queue(q) => write!(f, "queue:{q}"),
            Channel::Async(func) => write!(f, "async:{func}"),
            Channel::Topic { topic, function } => write!(f, "topic:{topic}:{function}"),
            Channel::Schedule(s) => write!(f, "schedule:{s}"),
            Channel::Storage { bucket, function } => write!(f, "storage:{bucket}:{function}"),
        }
    }
}

impl FromStr for Channel {
    type Err = String;
    fn from_str(s: &str) -> Result<Channel, String> {
        let bad = || format!("{s:?} is not a channel");
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        Ok(match kind {
            "queue" => Channel::Queue(rest.into()),
            "async" => Channel::Async(rest.into()),
            "schedule" => Channel::Schedule(rest.into()),
            "topic" => {
                let (topic, function) = rest.split_once(':').ok_or_else(bad)?;
                Channel::Topic {
                    topic: topic.into(),
                    function: function.into(),
                }
            }
            "storage" => {
                let (bucket, function) = rest.split_once(':').ok_or_else(bad)?;
                Channel::Storage {
                    bucket: bucket.into(),
                    function: function.into(),
                }
            }
            _ => return Err(bad()),
        })
    }
}

impl Channel {
    /// The trigger kind a delivery from this channel reports.
    pub fn trigger(&self) -> &'static str {
        match self {
            Channel::Queue(_) => "queue",
            Channel::Async(_) => "async",
            Channel::Topic { .. } => "topic",
            Channel::Schedule(_) => "schedule",
            Channel::Storage { .. } => "storage",
        }
    }
}

/// Who consumes a channel, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// The channel.
    pub channel: Channel,
    /// Function it is delivered to.
    pub function: String,
    /// Messages leased per fetch.
    pub batch_size: u32,
    /// Deliveries running at once.
    pub max_concurrency: u32,
    /// Retries and dead letters.
    pub retry: RetryPolicy,
    /// Lease length, in ms (`None`: the function's `timeout_ms` plus 30 s).
    pub visibility_timeout_ms: Option<u64>,
}

impl AppSpec {
    /// Every channel of this revision that has a consumer.
    pub fn consumers(&self) -> Vec<Consumer> {
        let mut out = Vec::new();
        for (name, f) in &self.functions {
            out.push(Consumer {
                channel: Channel::Async(name.clone()),
                function: name.clone(),
                batch_size: 32,
                max_concurrency: f.limits.max_concurrency,
                retry: f.retry,
                visibility_timeout_ms: None,
            });
        }
        for t in &self.queue_triggers {
            out.push(Consumer {
                channel: Channel::Queue(t.queue.clone()),
                function: t.function.clone(),
                batch_size: t.batch_size,
                max_concurrency: t.max_concurrency,
                retry: t.retry,
                visibility_timeout_ms: t.visibility_timeout_ms,
            });
        }
        for s in &self.subscriptions {
            if let SubscriptionTarget::Function(function) = &s.target {
                out.push(Consumer {
                    channel: Channel::Topic {
                        topic: s.topic.clone(),
                        function: function.clone(),
                    },
                    function: function.clone(),
                    batch_size: 32,
                    max_concurrency: s.max_concurrency,
                    retry: s.retry,
                    visibility_timeout_ms: None,
                });
            }
        }
        for t in &self.storage_triggers {
            out.push(Consumer {
                channel: Channel::Storage {
                    bucket: t.bucket.clone(),
                    function: t.function.clone(),
                },
                function: t.function.clone(),
                batch_size: 32,
                max_concurrency: self
                    .functions
                    .get(&t.function)
                    .map_or(1, |f| f.limits.max_concurrency),
                retry: t.retry,
                visibility_timeout_ms: None,
            });
        }
        for s in &self.schedules {
            out.push(Consumer {
                channel: Channel::Schedule(s.name.clone()),
                function: s.function.clone(),
                batch_size: 1,
                max_concurrency: 1,
                retry: s.retry,
                visibility_timeout_ms: None,
            });
        }
        out
    }

    /// The channels a message published to `topic` is copied into.
    pub fn topic_channels(&self, topic: &str) -> Vec<Channel> {
        self.subscriptions
            .iter()
            .filter(|s| s.topic == topic)
            .map(|s| match &s.target {
                SubscriptionTarget::Function(f) => Channel::Topic {
                    topic: topic.to_string(),
                    function: f.clone(),
                },
                SubscriptionTarget::Queue(q) => Channel::Queue(q.clone()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_too_long_for_u64_milliseconds_are_refused() {
        // 5e11 years: under u64::MAX seconds, but not milliseconds, where
        // callers read it (`as_millis() as u64` would have wrapped).
        let e = parse_duration("dedup_window", "500000000000y").unwrap_err();
        assert!(e.contains("too long"), "{e}");
        assert_eq!(
            parse_duration("x", "1000y").unwrap().as_millis(),
            1000 * 31_557_600_000
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            max_attempts: 10,
            backoff_ms: 100,
            max_backoff_ms: 1_000,
        };
        assert_eq!(p.backoff(2), Duration::from_millis(100));
        assert_eq!(p.backoff(3), Duration::from_millis(200));
        assert_eq!(p.backoff(5), Duration::from_millis(800));
        assert_eq!(p.backoff(6), Duration::from_millis(1_000));
        assert_eq!(p.backoff(99), Duration::from_millis(1_000));
    }

    #[test]
    fn channels_round_trip() {
        for c in [
            Channel::Queue("q".into()),
            Channel::Async("f".into()),
            Channel::Schedule("s".into()),
            Channel::Topic {
                topic: "t".into(),
                function: "f".into(),
            },
        ] {
            assert_eq!(c.to_string().parse::<Channel>().unwrap(), c);
        }
        assert!("nope".parse::<Channel>().is_err());
    }

    fn schedule(when: When, tz: Option<&str>) -> ScheduleSpec {
        ScheduleSpec {
            name: "s".into(),
            function: "f".into(),
            when,
            timezone: tz.map(String::from),
            retry: RetryPolicy::default(),
        }
    }

    #[test]
    fn ticks() {
        let every = schedule(When::Every(5_000), None);
        assert_eq!(every.next_tick_after(12_000), Some(15_000));
        assert_eq!(every.next_tick_after(15_000), Some(20_000));
        // 2026-01-01T00:00:00Z = 1767225600000
        let daily = schedule(When::Cron("0 3 * * *".into()), None);
        assert_eq!(
            daily.next_tick_after(1_767_225_600_000),
            Some(1_767_225_600_000 + 3 * 3_600_000)
        );
        let paris = schedule(When::Cron("0 3 * * *".into()), Some("Europe/Paris"));
        assert_eq!(
            paris.next_tick_after(1_767_225_600_000),
            Some(1_767_225_600_000 + 2 * 3_600_000)
        );
        let secs = schedule(When::Cron("*/2 * * * * *".into()), None);
        assert_eq!(secs.next_tick_after(1_000), Some(2_000));
        assert_eq!(
            secs.next_tick_after(1_500),
            Some(2_000),
            "aligned on seconds"
        );
        assert_eq!(secs.next_tick_after(2_000), Some(4_000));
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_cron("every day").is_err());
        assert!(parse_timezone("Mars/Olympus").is_err());
    }
}

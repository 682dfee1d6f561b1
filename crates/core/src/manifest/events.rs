//! Queues, topics, retries and the event triggers (`[[triggers.queue]]`,
//! `[[triggers.topic]]`, `[[triggers.schedule]]`, `[[triggers.storage]]`).

use super::{Manifest, ManifestError, line_of};
use crate::events::{
    QueueSpec, QueueTriggerSpec, RetryPolicy, ScheduleSpec, StorageTriggerSpec, SubscriptionSpec,
    SubscriptionTarget, When, parse_cron, parse_duration, parse_timezone,
};
use crate::names::check_name;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

/// A `[queues.NAME]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueManifest {
    /// Largest message body, in KiB.
    #[serde(default)]
    pub max_message_kb: Option<u64>,
    /// How long idempotency keys are remembered (`"5m"`).
    #[serde(default)]
    pub dedup_window: Option<String>,
}

/// A `[topics.NAME]` table (no settings yet).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicManifest {}

/// Retry settings, as written in a function's `retry` table or a trigger.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryManifest {
    /// Attempts in all.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// First retry delay (`"1s"`).
    #[serde(default)]
    pub backoff: Option<String>,
    /// Longest delay (`"5m"`).
    #[serde(default)]
    pub max_backoff: Option<String>,
}

impl RetryManifest {
    pub(super) fn policy(&self) -> Result<RetryPolicy, String> {
        let d = RetryPolicy::default();
        let max_attempts = self.max_attempts.unwrap_or(d.max_attempts);
        if max_attempts == 0 || max_attempts > RetryPolicy::MAX_ATTEMPTS {
            return Err(format!(
                "max_attempts = {max_attempts} is out of range: use 1..={}",
                RetryPolicy::MAX_ATTEMPTS
            ));
        }
        let ms = |what: &str, v: &Option<String>, default: u64| match v {
            Some(s) => parse_duration(what, s).map(|d| d.as_millis() as u64),
            None => Ok(default),
        };
        let backoff_ms = ms("backoff", &self.backoff, d.backoff_ms)?;
        let max_backoff_ms = ms(
            "max_backoff",
            &self.max_backoff,
            d.max_backoff_ms.max(backoff_ms),
        )?;
        if max_backoff_ms < backoff_ms {
            return Err("max_backoff must not be shorter than backoff".into());
        }
        Ok(RetryPolicy {
            max_attempts,
            backoff_ms,
            max_backoff_ms,
        })
    }
}

/// One `[[triggers.storage]]` entry: objects created/deleted in a bucket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageTrigger {
    /// Bucket of this app.
    pub bucket: String,
    /// `created`, `deleted` (default both).
    #[serde(default)]
    pub events: Vec<String>,
    /// Only keys starting with this.
    #[serde(default)]
    pub prefix: String,
    /// Only keys ending with this.
    #[serde(default)]
    pub suffix: String,
    /// Function run.
    pub function: String,
    /// Attempts in all.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// First retry delay.
    #[serde(default)]
    pub backoff: Option<String>,
    /// Longest retry delay.
    #[serde(default)]
    pub max_backoff: Option<String>,
}

/// One `[[triggers.queue]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueTrigger {
    /// Queue consumed.
    pub queue: String,
    /// Consuming function.
    pub function: String,
    /// Messages leased per fetch (default 10).
    #[serde(default)]
    pub batch_size: Option<u32>,
    /// Deliveries at once (default: the function's `max_concurrency`).
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Attempts in all.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// First retry delay.
    #[serde(default)]
    pub backoff: Option<String>,
    /// Longest retry delay.
    #[serde(default)]
    pub max_backoff: Option<String>,
    /// Lease length of a delivery (`"2m"`; default: the function's timeout + 30s).
    #[serde(default)]
    pub visibility_timeout: Option<String>,
}

/// One `[[triggers.topic]]` entry: a subscription.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicTrigger {
    /// Topic subscribed to.
    pub topic: String,
    /// Function receiving copies (or `queue`).
    #[serde(default)]
    pub function: Option<String>,
    /// Queue receiving copies (or `function`).
    #[serde(default)]
    pub queue: Option<String>,
    /// Deliveries at once (function targets; default: the function's).
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Attempts in all.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// First retry delay.
    #[serde(default)]
    pub backoff: Option<String>,
    /// Longest retry delay.
    #[serde(default)]
    pub max_backoff: Option<String>,
}

/// One `[[triggers.schedule]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleTrigger {
    /// Name (default: the function's).
    #[serde(default)]
    pub name: Option<String>,
    /// Cron expression (or `every`).
    #[serde(default)]
    pub cron: Option<String>,
    /// Fixed period such as `"5m"` (or `cron`).
    #[serde(default)]
    pub every: Option<String>,
    /// IANA time zone for `cron`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Function run at each tick.
    pub function: String,
    /// Attempts in all.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// First retry delay.
    #[serde(default)]
    pub backoff: Option<String>,
    /// Longest retry delay.
    #[serde(default)]
    pub max_backoff: Option<String>,
}

fn retry_of(
    max_attempts: Option<u32>,
    backoff: &Option<String>,
    max_backoff: &Option<String>,
) -> Result<RetryPolicy, String> {
    RetryManifest {
        max_attempts,
        backoff: backoff.clone(),
        max_backoff: max_backoff.clone(),
    }
    .policy()
}

/// The parts of a manifest that describe events, resolved.
pub(super) struct EventParts {
    pub(super) storage: Vec<StorageTriggerSpec>,
    pub(super) queues: BTreeMap<String, QueueSpec>,
    pub(super) topics: BTreeSet<String>,
    pub(super) queue_triggers: Vec<QueueTriggerSpec>,
    pub(super) subscriptions: Vec<SubscriptionSpec>,
    pub(super) schedules: Vec<ScheduleSpec>,
}

/// Smallest `every` period of a schedule.
pub const MIN_SCHEDULE_PERIOD_MS: u64 = 1_000;
/// Largest `every` period of a schedule.
pub const MAX_SCHEDULE_PERIOD_MS: u64 = 366 * 86_400_000;

impl Manifest {
    fn queue_known(&self, q: &str) -> Result<(), String> {
        if self.queues.contains_key(q) {
            return Ok(());
        }
        Err(format!(
            "queue {q:?} is not declared: add a [queues.{q}] table"
        ))
    }

    /// Checks and resolves queues, topics and their triggers.
    pub(super) fn event_parts(&self, src: &str) -> Result<EventParts, ManifestError> {
        let at = |span: Range<usize>, message: String| ManifestError {
            line: Some(line_of(src, span)),
            message,
        };
        let mut queues = BTreeMap::new();
        for (name, q) in &self.queues {
            let err = |m: String| at(q.span(), m);
            check_name("queue", name).map_err(err)?;
            let qm = q.get_ref();
            let max_message_bytes = match qm.max_message_kb {
                Some(0) => {
                    return Err(err(format!(
                        "queue {name:?}: max_message_kb must be at least 1"
                    )));
                }
                Some(kb) => Some(kb.saturating_mul(1024)),
                None => None,
            };
            let dedup_window_ms = match &qm.dedup_window {
                Some(s) => parse_duration("dedup_window", s)
                    .map_err(|e| err(format!("queue {name:?}: {e}")))?
                    .as_millis() as u64,
                None => QueueSpec::DEFAULT_DEDUP_WINDOW_MS,
            };
            queues.insert(
                name.clone(),
                QueueSpec {
                    max_message_bytes,
                    dedup_window_ms,
                },
            );
        }
        let mut topics = BTreeSet::new();
        for (name, t) in &self.topics {
            check_name("topic", name).map_err(|e| at(t.span(), e))?;
            topics.insert(name.clone());
        }
        let mut queue_triggers: Vec<QueueTriggerSpec> = Vec::new();
        for t in &self.triggers.queue {
            let span = t.span();
            let t = t.get_ref();
            let err = |m: String| at(span.clone(), format!("queue trigger: {m}"));
            self.queue_known(&t.queue).map_err(err)?;
            self.function_known(&t.function).map_err(err)?;
            if queue_triggers.iter().any(|o| o.queue == t.queue) {
                return Err(err(format!(
                    "queue {:?} already has a consumer: a queue is consumed by one trigger (use a topic to fan out)",
                    t.queue
                )));
            }
            let fn_limit = self.functions[&t.function]
                .get_ref()
                .limits()
                .max_concurrency;
            let batch_size = t.batch_size.unwrap_or(10);
            if !(1..=1000).contains(&batch_size) {
                return Err(err(format!(
                    "batch_size = {batch_size} is out of range: use 1..=1000"
                )));
            }
            let max_concurrency = t.max_concurrency.unwrap_or(fn_limit);
            if max_concurrency == 0 {
                return Err(err("max_concurrency must be at least 1".into()));
            }
            let visibility_timeout_ms = match &t.visibility_timeout {
                Some(v) => {
                    let ms = parse_duration("visibility_timeout", v)
                        .map_err(err)?
                        .as_millis() as u64;
                    let timeout = self.functions[&t.function].get_ref().limits().timeout_ms;
                    if ms <= timeout {
                        return Err(err(format!(
                            "visibility_timeout = {v:?} must be longer than the function's timeout_ms ({timeout} ms), or a slow delivery would be handed out twice"
                        )));
                    }
                    Some(ms)
                }
                None => None,
            };
            queue_triggers.push(QueueTriggerSpec {
                queue: t.queue.clone(),
                function: t.function.clone(),
                batch_size,
                max_concurrency,
                retry: retry_of(t.max_attempts, &t.backoff, &t.max_backoff).map_err(err)?,
                visibility_timeout_ms,
            });
        }
        let mut subscriptions: Vec<SubscriptionSpec> = Vec::new();
        for t in &self.triggers.topic {
            let span = t.span();
            let t = t.get_ref();
            let err = |m: String| at(span.clone(), format!("topic trigger: {m}"));
            if !self.topics.contains_key(&t.topic) {
                return Err(err(format!(
                    "topic {:?} is not declared: add a [topics.{}] table",
                    t.topic, t.topic
                )));
            }
            let target = match (&t.function, &t.queue) {
                (Some(f), None) => {
                    self.function_known(f).map_err(err)?;
                    SubscriptionTarget::Function(f.clone())
                }
                (None, Some(q)) => {
                    self.queue_known(q).map_err(err)?;
                    SubscriptionTarget::Queue(q.clone())
                }
                _ => return Err(err("give exactly one of `function` or `queue`".into())),
            };
            if subscriptions
                .iter()
                .any(|s| s.topic == t.topic && s.target == target)
            {
                return Err(err(format!(
                    "duplicate subscription to topic {:?}",
                    t.topic
                )));
            }
            let max_concurrency = match (&target, t.max_concurrency) {
                (_, Some(0)) => return Err(err("max_concurrency must be at least 1".into())),
                (_, Some(n)) => n,
                (SubscriptionTarget::Function(f), None) => {
                    self.functions[f].get_ref().limits().max_concurrency
                }
                (SubscriptionTarget::Queue(_), None) => 1,
            };
            subscriptions.push(SubscriptionSpec {
                topic: t.topic.clone(),
                target,
                max_concurrency,
                retry: retry_of(t.max_attempts, &t.backoff, &t.max_backoff).map_err(err)?,
            });
        }
        let mut schedules: Vec<ScheduleSpec> = Vec::new();
        for t in &self.triggers.schedule {
            let span = t.span();
            let t = t.get_ref();
            let err = |m: String| at(span.clone(), format!("schedule trigger: {m}"));
            self.function_known(&t.function).map_err(err)?;
            let name = t.name.clone().unwrap_or_else(|| t.function.clone());
            check_name("schedule", &name).map_err(err)?;
            if schedules.iter().any(|s| s.name == name) {
                return Err(err(format!(
                    "a schedule named {name:?} already exists: give each schedule of a function a distinct `name`"
                )));
            }
            let when = match (&t.cron, &t.every) {
                (Some(c), None) => {
                    parse_cron(c).map_err(err)?;
                    When::Cron(c.clone())
                }
                (None, Some(e)) => {
                    let ms = parse_duration("every", e).map_err(err)?.as_millis();
                    if ms < u128::from(MIN_SCHEDULE_PERIOD_MS) {
                        return Err(err(format!(
                            "every = {e:?} is shorter than the minimum of 1s"
                        )));
                    }
                    if ms > u128::from(MAX_SCHEDULE_PERIOD_MS) {
                        return Err(err(format!(
                            "every = {e:?} is longer than the maximum of 366 days"
                        )));
                    }
                    When::Every(ms as u64)
                }
                _ => return Err(err("give exactly one of `cron` or `every`".into())),
            };
            if let Some(tz) = &t.timezone {
                parse_timezone(tz).map_err(err)?;
                if matches!(when, When::Every(_)) {
                    return Err(err("`timezone` applies to `cron` only".into()));
                }
            }
            schedules.push(ScheduleSpec {
                name,
                function: t.function.clone(),
                when,
                timezone: t.timezone.clone(),
                retry: retry_of(t.max_attempts, &t.backoff, &t.max_backoff).map_err(err)?,
            });
        }
        let mut storage: Vec<StorageTriggerSpec> = Vec::new();
        for t in &self.triggers.storage {
            let span = t.span();
            let t = t.get_ref();
            let err = |m: String| at(span.clone(), format!("storage trigger: {m}"));
            self.function_known(&t.function).map_err(err)?;
            let valid_bucket = (3..=63).contains(&t.bucket.len())
                && t.bucket
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            if !valid_bucket {
                return Err(err(format!(
                    "bucket {:?} is not an S3 bucket name (3-63 of a-z, 0-9, '-', '.')",
                    t.bucket
                )));
            }
            let (mut created, mut deleted) = (t.events.is_empty(), t.events.is_empty());
            for e in &t.events {
                match e.as_str() {
                    "created" => created = true,
                    "deleted" => deleted = true,
                    other => {
                        return Err(err(format!(
                            "unknown event {other:?}: use \"created\" and/or \"deleted\""
                        )));
                    }
                }
            }
            if storage
                .iter()
                .any(|s| s.bucket == t.bucket && s.function == t.function)
            {
                return Err(err(format!(
                    "function {:?} already has a trigger on bucket {:?}",
                    t.function, t.bucket
                )));
            }
            storage.push(StorageTriggerSpec {
                bucket: t.bucket.clone(),
                created,
                deleted,
                prefix: t.prefix.clone(),
                suffix: t.suffix.clone(),
                function: t.function.clone(),
                retry: retry_of(t.max_attempts, &t.backoff, &t.max_backoff).map_err(err)?,
            });
        }
        Ok(EventParts {
            storage,
            queues,
            topics,
            queue_triggers,
            subscriptions,
            schedules,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::err;
    use super::*;

    const EVENTS: &str = r#"
[app]
name = "demo"

[functions.worker]
component = "w.wasm"
max_concurrency = 8
retry = { max_attempts = 4, backoff = "50ms" }

[functions.tick]
component = "t.wasm"

[queues.orders]
max_message_kb = 4
dedup_window = "1m"

[topics.scores]

[[triggers.queue]]
queue = "orders"
function = "worker"
batch_size = 5
max_attempts = 2
backoff = "10ms"
max_backoff = "1s"
visibility_timeout = "2m"

[[triggers.topic]]
topic = "scores"
function = "tick"

[[triggers.topic]]
topic = "scores"
queue = "orders"

[[triggers.schedule]]
cron = "*/5 * * * *"
timezone = "Europe/Paris"
function = "tick"

[[triggers.schedule]]
name = "fast"
every = "2s"
function = "worker"
"#;

    #[test]
    fn parses_events() {
        let m = Manifest::parse(EVENTS).unwrap();
        let comps = [("worker", "a"), ("tick", "b")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.repeat(64)))
            .collect();
        let spec = m.to_spec(&comps).unwrap();
        assert_eq!(spec.queues["orders"].max_message_bytes, Some(4096));
        assert_eq!(spec.queues["orders"].dedup_window_ms, 60_000);
        assert_eq!(spec.functions["worker"].retry.max_attempts, 4);
        assert_eq!(spec.functions["worker"].retry.backoff_ms, 50);
        let q = &spec.queue_triggers[0];
        assert_eq!((q.batch_size, q.max_concurrency), (5, 8));
        assert_eq!(q.retry.max_attempts, 2);
        assert_eq!(q.retry.max_backoff_ms, 1_000);
        assert_eq!(q.visibility_timeout_ms, Some(120_000));
        assert_eq!(spec.subscriptions.len(), 2);
        assert_eq!(spec.schedules[0].name, "tick");
        assert_eq!(spec.schedules[1].when, When::Every(2_000));
        assert_eq!(spec.topic_channels("scores").len(), 2);
        // async:worker, async:tick, queue:orders, topic:scores:tick, 2 schedules
        assert_eq!(spec.consumers().len(), 6);
    }

    #[test]
    fn event_errors_are_clear() {
        let base = "[app]\nname = \"demo\"\n[functions.f]\ncomponent = \"f.wasm\"\n";
        let e = err(&format!(
            "{base}[[triggers.queue]]\nqueue = \"nope\"\nfunction = \"f\"\n"
        ));
        assert!(e.message.contains("queue \"nope\" is not declared"), "{e}");
        assert_eq!(e.line, Some(5));
        let e = err(&format!(
            "{base}[[triggers.schedule]]\ncron = \"99 * * * *\"\nfunction = \"f\"\n"
        ));
        assert!(e.message.contains("cron expression"), "{e}");
        let e = err(&format!(
            "{base}[[triggers.schedule]]\nevery = \"soon\"\nfunction = \"f\"\n"
        ));
        assert!(e.message.contains("not a duration"), "{e}");
        let e = err(&format!(
            "{base}[[triggers.schedule]]\nevery = \"1s\"\ncron = \"* * * * *\"\nfunction = \"f\"\n"
        ));
        assert!(e.message.contains("exactly one"), "{e}");
        let e = err(&format!(
            "{base}[[triggers.schedule]]\ncron = \"* * * * *\"\ntimezone = \"Moon/Base\"\nfunction = \"f\"\n"
        ));
        assert!(e.message.contains("time zone"), "{e}");
        let e = err(&format!(
            "{base}[queues.q]\n[[triggers.queue]]\nqueue = \"q\"\nfunction = \"f\"\n[[triggers.queue]]\nqueue = \"q\"\nfunction = \"f\"\n"
        ));
        assert!(e.message.contains("already has a consumer"), "{e}");
        let e = err(&format!(
            "{base}[topics.t]\n[[triggers.topic]]\ntopic = \"t\"\n"
        ));
        assert!(
            e.message.contains("exactly one of `function` or `queue`"),
            "{e}"
        );
        let e = err(&format!(
            "{base}[queues.q]\n[[triggers.queue]]\nqueue = \"q\"\nfunction = \"f\"\nvisibility_timeout = \"5s\"\n"
        ));
        assert!(
            e.message
                .contains("must be longer than the function's timeout_ms"),
            "{e}"
        );
        let e = err(&format!("{base}retry = {{ max_attempts = 0 }}\n"));
        assert!(e.message.contains("max_attempts"), "{e}");
    }
}

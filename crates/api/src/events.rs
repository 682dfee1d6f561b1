//! The events API's bodies: sends and publishes, queue depths, events with
//! their attempts, dead letters.

use crate::InvocationRow;
use serde::{Deserialize, Serialize};

/// `POST /v1/apps/{app}/queues/{queue}/messages`, answered 202 once stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// The message's id (with `duplicate`, the id first stored).
    pub id: String,
    /// The idempotency key was seen within the queue's window: nothing
    /// new was stored.
    pub duplicate: bool,
}

/// `POST /v1/apps/{app}/topics/{topic}/messages`: one copy per
/// subscriber, answered 202 once stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The copies' ids (none: the topic has no subscribers).
    pub ids: Vec<String>,
}

/// `GET /v1/apps/{app}/queues`: every channel with a consumer or
/// unfinished messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepths {
    pub app: String,
    pub channels: Vec<ChannelStatus>,
}

/// One channel of [`QueueDepths`]: its messages by state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStatus {
    /// `queue:NAME`, `topic:NAME/FUNCTION`, `async:FUNCTION`, ...
    pub channel: String,
    /// Its consumer in the active revision (`None`: no consumer).
    pub function: Option<String>,
    /// Waiting for their first attempt.
    pub queued: u64,
    /// Being delivered.
    pub running: u64,
    /// Waiting for a retry.
    pub failed: u64,
    /// Dead-lettered.
    pub dead: u64,
}

/// A stored message, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRow {
    /// Message id.
    pub id: String,
    /// App.
    pub app: String,
    /// Channel.
    pub channel: String,
    /// queued, running, failed, succeeded or dead.
    pub state: String,
    /// Attempts started.
    pub attempts: u32,
    /// Function that consumed it last.
    pub function: Option<String>,
    /// FIFO group.
    pub group_key: Option<String>,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// Delivery method.
    pub method: String,
    /// Delivery path.
    pub path: String,
    /// Delivery headers.
    pub headers: Vec<(String, String)>,
    /// Body size.
    pub body_bytes: u64,
    /// Stored at (µs).
    pub created_at_us: i64,
    /// Last change (µs).
    pub updated_at_us: i64,
    /// Next attempt not before (µs).
    pub available_at_us: i64,
}

/// An event with its payload and its attempts (`GET .../dlq/{id}`, and the
/// event case of [`InvocationLookup`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventDetail {
    #[serde(flatten)]
    pub message: MessageRow,
    /// The payload, if it is UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The payload in base64, if it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// Its attempts, newest first.
    pub invocations: Vec<InvocationRow>,
}

/// `GET /v1/apps/{app}/invocations/{id}`: an event's state and attempts,
/// or one plain invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InvocationLookup {
    Event(EventDetail),
    Invocation(InvocationRow),
}

/// `POST .../dlq/redrive` and `.../dlq/purge`: which dead letters (all
/// when `ids` is absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
}

/// The answer to a redrive: events put back in their queues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redriven {
    pub redriven: u64,
}

/// The answer to a purge: events deleted for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purged {
    pub purged: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_core::Outcome;

    fn message() -> MessageRow {
        MessageRow {
            id: "m1".into(),
            app: "a".into(),
            channel: "queue:orders".into(),
            state: "dead".into(),
            attempts: 3,
            function: Some("worker".into()),
            group_key: None,
            last_error: Some("HTTP 500".into()),
            method: "POST".into(),
            path: "/".into(),
            headers: vec![("ce-type".into(), "order".into())],
            body_bytes: 2,
            created_at_us: 1,
            updated_at_us: 2,
            available_at_us: 3,
        }
    }

    fn attempt() -> InvocationRow {
        InvocationRow {
            id: "i1".into(),
            app: "a".into(),
            function: "worker".into(),
            revision: 1,
            trigger: "queue".into(),
            method: "POST".into(),
            path: "/".into(),
            started_at_us: 5,
            duration_us: 6,
            status: 500,
            outcome: Outcome::Ok,
            error: None,
            bytes_in: 2,
            bytes_out: 0,
            event_id: Some("m1".into()),
            attempt: 3,
            memory_mb: 128,
            peak_memory_bytes: 1,
            cold: false,
            trace_id: "t".into(),
            span_id: "s".into(),
            parent_span_id: None,
        }
    }

    #[test]
    fn an_event_and_a_plain_invocation_read_back_by_kind() {
        let event = InvocationLookup::Event(EventDetail {
            message: message(),
            body: Some("{}".into()),
            body_base64: None,
            invocations: vec![attempt()],
        });
        let v = serde_json::to_value(&event).unwrap();
        // The wire form the console and earlier CLIs read: the message's
        // fields at the top, with the kind, the body and the attempts.
        assert_eq!(v["kind"], "event");
        assert_eq!(v["state"], "dead");
        assert_eq!(v["body"], "{}");
        assert!(v.get("body_base64").is_none());
        assert_eq!(v["invocations"][0]["outcome"], "ok");
        assert_eq!(
            serde_json::from_value::<InvocationLookup>(v).unwrap(),
            event
        );
        let plain = InvocationLookup::Invocation(attempt());
        let v = serde_json::to_value(&plain).unwrap();
        assert_eq!(v["kind"], "invocation");
        assert_eq!(v["status"], 500);
        assert_eq!(
            serde_json::from_value::<InvocationLookup>(v).unwrap(),
            plain
        );
    }

    #[test]
    fn queue_depths_name_a_missing_consumer_as_null() {
        let d = QueueDepths {
            app: "a".into(),
            channels: vec![ChannelStatus {
                channel: "queue:orders".into(),
                function: None,
                queued: 1,
                running: 0,
                failed: 0,
                dead: 2,
            }],
        };
        let v = serde_json::to_value(&d).unwrap();
        assert!(v["channels"][0]["function"].is_null());
        assert_eq!(serde_json::from_value::<QueueDepths>(v).unwrap(), d);
        let all: DeadLetters = serde_json::from_str("{}").unwrap();
        assert_eq!(all.ids, None);
    }
}

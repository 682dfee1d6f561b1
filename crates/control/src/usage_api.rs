//! Control API for metering: usage per function, hour, day or app over a period —
//! invocations, GB-seconds, operations on KV, documents, objects and events,
//! and stored GB-hours — with a cost estimate from the server's price sheet.

use crate::ctx::{ApiError, ApiResult, Ctx};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use nimbus_api::{Operations, Prices, StorageLine, Stored, Usage, UsageLine, WebSocketUsage};
use nimbus_store::{StorageRow, UsageBy, UsageRow};
use serde::{Deserialize, Serialize};

/// Prices a cost estimate uses. The defaults are published AWS prices in
/// us-east-1 (an example, not a bill): Lambda on-demand x86 for compute,
/// DynamoDB on-demand writes for service operations, S3 Standard for
/// storage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSheet {
    /// Currency the prices are in.
    #[serde(default = "PriceSheet::default_currency")]
    pub currency: String,
    /// Price of one GB-second (memory limit × duration).
    #[serde(default = "PriceSheet::default_gb_second")]
    pub per_gb_second: f64,
    /// Price of one million invocations.
    #[serde(default = "PriceSheet::default_million_requests")]
    pub per_million_requests: f64,
    /// Price of one million operations on KV, documents, objects, events
    /// or realtime.
    #[serde(default = "PriceSheet::default_million_operations")]
    pub per_million_operations: f64,
    /// Price of storing one GB for a month (730 hours).
    #[serde(default = "PriceSheet::default_gb_month")]
    pub per_gb_month: f64,
    /// Price of one million WebSocket messages, either way.
    #[serde(default = "PriceSheet::default_million_messages")]
    pub per_million_messages: f64,
    /// Price of one million minutes of WebSocket connection.
    #[serde(default = "PriceSheet::default_million_connection_minutes")]
    pub per_million_connection_minutes: f64,
}

impl PriceSheet {
    fn default_currency() -> String {
        "USD".into()
    }
    fn default_gb_second() -> f64 {
        0.000_016_666_7
    }
    fn default_million_requests() -> f64 {
        0.20
    }
    fn default_million_operations() -> f64 {
        0.625
    }
    fn default_gb_month() -> f64 {
        0.023
    }
    fn default_million_messages() -> f64 {
        1.00
    }
    fn default_million_connection_minutes() -> f64 {
        0.25
    }

    /// Parses a price sheet (TOML).
    pub fn parse(text: &str) -> Result<PriceSheet, String> {
        toml::from_str(text).map_err(|e| {
            format!("the price sheet is invalid: {e} (keys: currency, per_gb_second, per_million_requests, per_million_operations, per_gb_month, per_million_messages, per_million_connection_minutes)")
        })
    }
}

impl Default for PriceSheet {
    fn default() -> Self {
        PriceSheet {
            currency: Self::default_currency(),
            per_gb_second: Self::default_gb_second(),
            per_million_requests: Self::default_million_requests(),
            per_million_operations: Self::default_million_operations(),
            per_gb_month: Self::default_gb_month(),
            per_million_messages: Self::default_million_messages(),
            per_million_connection_minutes: Self::default_million_connection_minutes(),
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct UsageQuery {
    /// How far back: a duration (`24h`, `7d`); default 30 days.
    since: Option<String>,
    /// `function` (default), `day` or `app`.
    by: Option<String>,
}

const GIB: f64 = (1u64 << 30) as f64;

impl From<&PriceSheet> for Prices {
    fn from(p: &PriceSheet) -> Self {
        Prices {
            currency: p.currency.clone(),
            per_gb_second: p.per_gb_second,
            per_million_requests: p.per_million_requests,
            per_million_operations: p.per_million_operations,
            per_gb_month: p.per_gb_month,
            per_million_messages: p.per_million_messages,
            per_million_connection_minutes: p.per_million_connection_minutes,
        }
    }
}

fn usage_line(r: &UsageRow, prices: &PriceSheet) -> UsageLine {
    let gb_seconds = r.mb_us as f64 / 1024.0 / 1e6;
    let operations = r.kv_ops + r.doc_ops + r.object_ops + r.event_ops + r.realtime_ops;
    let connection_minutes = r.ws_connection_ms as f64 / 60_000.0;
    let messages = r.ws_messages_in + r.ws_messages_out;
    let cost = gb_seconds * prices.per_gb_second
        + r.invocations as f64 / 1e6 * prices.per_million_requests
        + operations as f64 / 1e6 * prices.per_million_operations
        + messages as f64 / 1e6 * prices.per_million_messages
        + connection_minutes / 1e6 * prices.per_million_connection_minutes;
    UsageLine {
        key: r.key.clone(),
        invocations: r.invocations,
        errors: r.errors,
        duration_us: r.duration_us,
        gb_seconds,
        bytes_in: r.bytes_in,
        bytes_out: r.bytes_out,
        cold_starts: r.cold_starts,
        operations: Operations {
            kv: r.kv_ops,
            docs: r.doc_ops,
            objects: r.object_ops,
            events: r.event_ops,
            realtime: r.realtime_ops,
        },
        websockets: WebSocketUsage {
            connection_minutes,
            messages_in: r.ws_messages_in,
            messages_out: r.ws_messages_out,
        },
        cost,
        gb_hours: None,
    }
}

fn storage_line(r: &StorageRow, prices: &PriceSheet) -> StorageLine {
    let gb_hours = |byte_seconds: i64| byte_seconds as f64 / GIB / 3600.0;
    let total = gb_hours(r.kv_byte_seconds + r.doc_byte_seconds + r.object_byte_seconds);
    StorageLine {
        key: r.key.clone(),
        gb_hours: total,
        kv_gb_hours: gb_hours(r.kv_byte_seconds),
        docs_gb_hours: gb_hours(r.doc_byte_seconds),
        objects_gb_hours: gb_hours(r.object_byte_seconds),
        stored_bytes: Stored {
            kv: r.stored.kv,
            docs: r.stored.docs,
            objects: r.stored.objects,
        },
        cost: total / 730.0 * prices.per_gb_month,
    }
}

async fn usage(ctx: &Ctx, app: Option<&str>, q: UsageQuery) -> ApiResult<Json<Usage>> {
    let since = match &q.since {
        Some(s) => humantime::parse_duration(s).map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("since = {s:?} is not a duration ({e}): write e.g. 24h, 7d"),
            )
        })?,
        None => std::time::Duration::from_secs(30 * 86_400),
    };
    let by = match q.by.as_deref() {
        None | Some("function") => UsageBy::Function,
        Some("day") => UsageBy::Day,
        Some("hour") => UsageBy::Hour,
        Some("app") => UsageBy::App,
        Some(other) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("by = {other:?} is unknown: use function, hour, day or app"),
            ));
        }
    };
    let since_us = nimbus_store::now_us() - since.as_micros().min(i64::MAX as u128) as i64;
    let rows = ctx.platform.store.usage(app, since_us, by).await?;
    // Storage belongs to apps, not functions: per app, or per day.
    let storage = ctx
        .platform
        .store
        .storage_usage(app, since_us, by == UsageBy::Day)
        .await?;
    let prices = &ctx.platform.prices;
    let total = rows.iter().fold(UsageRow::default(), |mut t, r| {
        t.add(r);
        t
    });
    let storage_total = storage.iter().fold(StorageRow::default(), |mut t, r| {
        t.kv_byte_seconds += r.kv_byte_seconds;
        t.doc_byte_seconds += r.doc_byte_seconds;
        t.object_byte_seconds += r.object_byte_seconds;
        if by != UsageBy::Day {
            t.stored.add(&r.stored);
        }
        t
    });
    let mut total = usage_line(
        &UsageRow {
            key: "total".into(),
            ..total
        },
        prices,
    );
    let storage_total = storage_line(
        &StorageRow {
            key: "total".into(),
            ..storage_total
        },
        prices,
    );
    total.gb_hours = Some(storage_total.gb_hours);
    total.cost += storage_total.cost;
    Ok(Json(Usage {
        app: app.map(str::to_string),
        since_us,
        by: q.by.unwrap_or_else(|| "function".into()),
        prices: prices.into(),
        rows: rows.iter().map(|r| usage_line(r, prices)).collect(),
        storage: storage.iter().map(|r| storage_line(r, prices)).collect(),
        total,
    }))
}

/// `GET /v1/usage?since=24h&by=function|hour|day|app`: every app.
pub(crate) async fn platform_usage(
    State(ctx): State<Ctx>,
    Query(q): Query<UsageQuery>,
) -> ApiResult<Json<Usage>> {
    usage(&ctx, None, q).await
}

/// `GET /v1/apps/{app}/usage?since=24h&by=function|hour|day`.
pub(crate) async fn app_usage(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Query(q): Query<UsageQuery>,
) -> ApiResult<Json<Usage>> {
    usage(&ctx, Some(&app), q).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_and_costs() {
        let p = PriceSheet::parse("per_gb_second = 0.00002\n").unwrap();
        assert_eq!(p.currency, "USD");
        assert!(
            PriceSheet::parse("per_gb_secnd = 1")
                .unwrap_err()
                .contains("keys")
        );
        // 1,000,000 invocations of 1 GB for 1 s each: 1e6 GB-s and 1M requests.
        let r = UsageRow {
            invocations: 1_000_000,
            mb_us: 1024 * 1_000_000 * 1_000_000,
            ..Default::default()
        };
        let v = usage_line(&r, &PriceSheet::default());
        assert!((v.gb_seconds - 1e6).abs() < 1e-6);
        assert!((v.cost - (16.6667 + 0.20)).abs() < 1e-3);
        // 2 million KV operations; 1 GiB held for 730 hours: one GB-month.
        let r = UsageRow {
            kv_ops: 2_000_000,
            ..Default::default()
        };
        let v = usage_line(&r, &PriceSheet::default());
        assert_eq!(v.operations.kv, 2_000_000);
        assert!((v.cost - 1.25).abs() < 1e-9);
        let s = StorageRow {
            object_byte_seconds: (1i64 << 30) * 3600 * 730,
            ..Default::default()
        };
        let v = storage_line(&s, &PriceSheet::default());
        assert!((v.gb_hours - 730.0).abs() < 1e-9);
        assert!((v.cost - 0.023).abs() < 1e-12);
    }
}

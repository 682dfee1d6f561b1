//! Schedules: one task per schedule fires its ticks as events.
//!
//! Each schedule's last fired tick is stored; firing a tick stores its event
//! and advances that mark in one transaction, guarded by `last_tick < tick`,
//! so a tick fires once even across restarts and nodes: in a cluster every
//! node's task tries, and one `UPDATE … WHERE last_tick < tick` wins.
//!
//! Missed ticks (Nimbus was down): on start-up the schedule fires **once**,
//! for the latest tick that passed, never a burst of every missed tick.
//! A new schedule starts counting when it is first deployed.

use crate::writer::Writer;
use crate::{Outgoing, Shared};
use nimbus_core::events::{Channel, ScheduleSpec, When};
use nimbus_store::{EventOp, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A running schedule.
pub(crate) struct ScheduleHandle {
    pub(crate) spec: ScheduleSpec,
    stop: CancellationToken,
}

impl Drop for ScheduleHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn now_ms() -> i64 {
    nimbus_store::now_us() / 1000
}

/// The latest tick at or before `now` after `last`, if any.
fn latest_due(spec: &ScheduleSpec, last: i64, now: i64) -> Option<i64> {
    if let When::Every(p) = spec.when {
        let p = p.max(1) as i64;
        let t = now.div_euclid(p) * p;
        return (t > last).then_some(t);
    }
    // Only the latest missed tick fires, so the walk can start a day back
    // (at most 86,400 steps for a per-second cron); a rarer cron whose last
    // tick is older than that is walked from `last`, which is few steps.
    const DAY_MS: i64 = 86_400_000;
    let recent = walk(spec, last.max(now - DAY_MS), now);
    if recent.is_some() || last >= now - DAY_MS {
        return recent;
    }
    walk(spec, last, now)
}

/// The last tick in `(from, now]`, walking at most 100,000 ticks.
fn walk(spec: &ScheduleSpec, from: i64, now: i64) -> Option<i64> {
    let ticker = spec.ticker()?;
    let mut due = None;
    let mut t = from;
    for _ in 0..100_000 {
        match ticker.next_after(t) {
            Some(n) if n <= now => {
                due = Some(n);
                t = n;
            }
            _ => break,
        }
    }
    due
}

pub(crate) fn start(app: &str, spec: ScheduleSpec, shared: Arc<Shared>) -> ScheduleHandle {
    let stop = CancellationToken::new();
    tokio::spawn(run(app.to_string(), spec.clone(), shared, stop.clone()));
    ScheduleHandle { spec, stop }
}

async fn run(app: String, spec: ScheduleSpec, shared: Arc<Shared>, stop: CancellationToken) {
    let (store, writer): (&Store, &Writer) = (&shared.store, &shared.writer);
    let channel = Channel::Schedule(spec.name.clone());
    loop {
        let last = match store.schedule_last_tick(&app, &spec.name, now_ms()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(%app, schedule = %spec.name, error = %e, "reading schedule state failed");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stop.cancelled() => return,
                }
            }
        };
        let now = now_ms();
        if let Some(tick) = latest_due(&spec, last, now) {
            let time = std::time::UNIX_EPOCH + Duration::from_millis(tick as u64);
            let msg = Outgoing {
                ce_type: Some("dev.nimbus.schedule.tick".into()),
                ce_source: Some(format!("/apps/{app}/schedules/{}", spec.name)),
                ce_time: Some(time),
                ..Default::default()
            };
            let message = shared.message(&app, &channel, "POST", "/", Vec::new(), msg);
            let op = EventOp::FireTick {
                app: app.clone(),
                name: spec.name.clone(),
                tick_ms: tick,
                message: Box::new(message),
            };
            match writer.call(op).await {
                Ok(_) => shared.notify(&app, &channel),
                Err(e) => {
                    tracing::error!(%app, schedule = %spec.name, error = %e, "firing a schedule tick failed; retrying in 1 s");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.cancelled() => return,
                    }
                }
            }
            continue;
        }
        let Some(next) = spec.next_tick_after(last.max(now)) else {
            tracing::warn!(%app, schedule = %spec.name, "schedule never fires again");
            return;
        };
        let wait = Duration::from_millis((next - now).max(0) as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_core::events::RetryPolicy;

    #[test]
    fn missed_ticks_fire_once() {
        let s = ScheduleSpec {
            name: "s".into(),
            function: "f".into(),
            when: When::Every(1_000),
            timezone: None,
            retry: RetryPolicy::default(),
        };
        assert_eq!(latest_due(&s, 10_000, 10_500), None);
        assert_eq!(latest_due(&s, 10_000, 11_000), Some(11_000));
        assert_eq!(latest_due(&s, 10_000, 95_400), Some(95_000));
        let cron = ScheduleSpec {
            when: When::Cron("* * * * * *".into()),
            ..s.clone()
        };
        // Two days down with a per-second cron: one catch-up, the latest tick.
        let now = 1_767_225_600_000;
        assert_eq!(
            latest_due(&cron, now - 2 * 86_400_000, now + 500),
            Some(now)
        );
        let weekly = ScheduleSpec {
            when: When::Cron("0 0 * * 1".into()),
            ..s
        };
        // 2026-01-01 is a Thursday; the Monday before is 2025-12-29.
        assert_eq!(
            latest_due(&weekly, now - 30 * 86_400_000, now),
            Some(now - 3 * 86_400_000)
        );
    }
}

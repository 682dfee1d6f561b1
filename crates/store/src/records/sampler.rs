//! Which plain successes are stored: a per-function budget per second.

use super::{UsageRow, hour_start};
use nimbus_core::InvocationRecord;

/// Whether a record must be stored whatever the load: it failed, wrote
/// logs, handled an event, or used Nimbus's services (its spans).
fn always_kept(r: &InvocationRecord) -> bool {
    r.failed()
        || r.input.is_some()
        || r.event_id.is_some()
        || !r.stdout.is_empty()
        || !r.stderr.is_empty()
        || !r.op_spans.is_empty()
}

/// Decides, as records are submitted, which plain successes are stored: a
/// per-function budget per second (a reservoir, as tracing systems sample).
/// Under light load every invocation is stored; under heavy load the first
/// `per_sec` of each second, and the rest only add to `pending` usage sums,
/// which the writer drains into `usage_hourly` — so they cost a hash and an
/// addition, not an allocation, a channel send and a row.
pub(super) struct Sampler {
    per_sec: u32,
    hasher: std::collections::hash_map::RandomState,
    /// By a hash of (app, function): the second and the count stored in it.
    seen: std::collections::HashMap<u64, (i64, u32)>,
    /// Sums of records not stored, by a hash of (app, function) and hour.
    pub(super) pending: std::collections::HashMap<(u64, i64), (String, String, UsageRow)>,
    /// Records not stored since the last drain.
    pub(super) sampled_out: u64,
}

impl Sampler {
    /// Stores at most `per_sec` plain successes per function and second
    /// (`u32::MAX`: all).
    pub(super) fn new(per_sec: u32) -> Sampler {
        Sampler {
            per_sec,
            hasher: Default::default(),
            seen: Default::default(),
            pending: Default::default(),
            sampled_out: 0,
        }
    }

    /// Whether `r` goes to the writer; if not, it was added to `pending`.
    pub(super) fn admit(&mut self, r: &InvocationRecord) -> bool {
        use std::hash::BuildHasher;
        if self.per_sec == u32::MAX || always_kept(r) {
            return true;
        }
        let sec = r.started_at_us.div_euclid(1_000_000);
        if self.seen.len() > 100_000 {
            self.seen.clear();
        }
        let key = self.hasher.hash_one((&r.app, &r.function));
        let slot = self.seen.entry(key).or_insert((sec, 0));
        // A late record of an earlier second counts against the current one.
        if sec > slot.0 {
            *slot = (sec, 0);
        }
        slot.1 += 1;
        if slot.1 <= self.per_sec {
            return true;
        }
        let hour = hour_start(r.started_at_us);
        let (app, function, u) = self
            .pending
            .entry((key, hour))
            .or_insert_with(|| (r.app.clone(), r.function.clone(), UsageRow::default()));
        if *app != r.app || *function != r.function {
            return true; // a hash collision: store this one instead
        }
        add_record(u, r);
        self.sampled_out += 1;
        false
    }
}

/// Adds one invocation to a usage sum.
pub(super) fn add_record(u: &mut UsageRow, r: &InvocationRecord) {
    u.invocations += 1;
    u.errors += i64::from(r.failed());
    u.duration_us += r.duration_us;
    u.mb_us += i64::from(r.memory_mb) * r.duration_us;
    u.bytes_in += r.bytes_in as i64;
    u.bytes_out += r.bytes_out as i64;
    u.cold_starts += i64::from(r.cold);
    u.kv_ops += r.ops.kv as i64;
    u.doc_ops += r.ops.docs as i64;
    u.object_ops += r.ops.objects as i64;
    u.event_ops += r.ops.events as i64;
    u.realtime_ops += r.ops.realtime as i64;
}

/// Usage sums of records that were not stored, keyed by app, function, hour.
pub(super) type PendingUsage = Vec<((String, String, i64), UsageRow)>;

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_core::Outcome;

    /// A plain success of `a/function` at `at_us`: no logs, no input.
    fn plain(function: &str, at_us: i64) -> InvocationRecord {
        let mut r = super::super::tests::record(0, function);
        r.stdout.clear();
        r.input = None;
        r.started_at_us = at_us;
        r.duration_us = 7;
        r.memory_mb = 64;
        r.bytes_in = 1;
        r.bytes_out = 2;
        r
    }

    #[test]
    fn a_budget_per_function_and_second_and_the_rest_summed() {
        let mut s = Sampler::new(2);
        let admitted = |s: &mut Sampler, f: &str, at: i64| s.admit(&plain(f, at));
        assert!(admitted(&mut s, "f", 0));
        assert!(admitted(&mut s, "f", 1));
        assert!(!admitted(&mut s, "f", 2), "past the budget of the second");
        assert!(!admitted(&mut s, "f", 3));
        assert!(admitted(&mut s, "g", 4), "each function has its own budget");
        assert!(
            admitted(&mut s, "f", 1_000_000),
            "a new second, a new budget"
        );
        // A late record of an earlier second counts against the current one.
        assert!(admitted(&mut s, "f", 5));
        assert!(!admitted(&mut s, "f", 1_000_001));
        assert_eq!(s.sampled_out, 3);
        // What was not stored is summed for usage, per function and hour.
        let sums: Vec<_> = s.pending.values().collect();
        assert_eq!(sums.len(), 1);
        let (app, function, u) = sums[0];
        assert_eq!((app.as_str(), function.as_str()), ("a", "f"));
        assert_eq!((u.invocations, u.duration_us, u.mb_us), (3, 21, 64 * 21));
        assert_eq!((u.bytes_in, u.bytes_out, u.errors), (3, 6, 0));
    }

    #[test]
    fn what_explains_itself_is_always_stored() {
        let mut s = Sampler::new(0);
        assert!(!s.admit(&plain("f", 0)));
        let mut failed = plain("f", 0);
        failed.status = 500;
        let mut logged = plain("f", 0);
        logged.stderr = "oops".into();
        let mut event = plain("f", 0);
        event.event_id = Some("e".into());
        let mut trapped = plain("f", 0);
        trapped.outcome = Outcome::Trap;
        for r in [failed, logged, event, trapped] {
            assert!(s.admit(&r), "{r:?}");
        }
        // Sampling off: everything is stored.
        let mut all = Sampler::new(u32::MAX);
        assert!((0..1000).all(|i| all.admit(&plain("f", i))));
    }
}

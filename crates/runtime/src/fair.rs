//! Fair CPU: the node's worker threads shared out between apps, one poll at
//! a time.
//!
//! Admission bounds how many invocations each app has in flight; it cannot
//! say whose ready work runs next. Without this, tokio polls ready tasks in
//! arrival order, so an app with 16 busy connections gets 16 turns for every
//! turn of an app with one, and a quiet app's request waits behind the whole
//! flood. Here each poll of a gated future (an invocation's guest: its
//! instantiation, its code between two yields — the epoch yields every
//! millisecond — and the polls that produce its body) first takes one of
//! `slots` turns (the worker-thread count); a future waiting for I/O holds
//! none. An app alone may hold every turn, and more turns than there are
//! (its client-facing calls hold theirs while they wait for the database:
//! alone, it is limited by its admission and the database pool, not here).
//! While several apps are present
//! (holding or waiting for a turn, or did so in the last
//! [`PRESENCE`]), each may hold at most its share (`slots / apps`, at least
//! one), and freed turns go round robin over the waiting apps still under
//! their share. So a busy app's flood runs on its share of the workers, its
//! other ready tasks cost a look at the gate each, and a quiet app's poll
//! waits for at most one poll of the busy app's. Presence lingers because a
//! quiet app is between requests most of the time: a share that vanished
//! between two of its requests would let the flood back onto every worker.
//!
//! Hand-rolled because tokio has no weighted or grouped scheduling, and a
//! semaphore's single FIFO is exactly the arrival order this replaces.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How long an app counts as present after its last turn.
pub const PRESENCE: Duration = Duration::from_millis(20);

/// The shared turns and the apps holding or waiting for one.
pub struct FairCpu {
    slots: usize,
    presence: Duration,
    state: Mutex<State>,
}

struct State {
    /// Turns nobody holds; below zero while an app alone holds more turns
    /// than there are (it may: see [`FairCpu`]).
    free: isize,
    /// The apps present (an app leaves once it has neither held nor waited
    /// for a turn for the presence time, so the map is as large as the
    /// apps running at once).
    apps: HashMap<Arc<str>, Lane>,
    /// When lanes were last looked at for leaving.
    pruned: Instant,
    /// Whether a task will look again when the present apps' presence
    /// ends (see [`FairCpu::acquire`]).
    timer: bool,
    /// The apps with waiters, in the order their next turn comes.
    ring: VecDeque<Arc<str>>,
}

#[derive(Default)]
struct Lane {
    holding: usize,
    waiters: VecDeque<Arc<Ticket>>,
    /// When it last gave a turn back.
    seen: Option<Instant>,
}

impl Lane {
    fn idle_since(&self, now: Instant, presence: Duration) -> bool {
        self.holding == 0
            && self.waiters.is_empty()
            && self.seen.is_none_or(|t| now.duration_since(t) >= presence)
    }
}

/// One waiting poll.
struct Ticket {
    /// Set when a turn was handed to this waiter (and counted as its app's).
    granted: AtomicBool,
    waker: Mutex<Waker>,
}

impl State {
    /// What one app may hold while `present` apps are.
    fn share(slots: usize, present: usize) -> usize {
        match present {
            0 | 1 => slots,
            n => (slots / n).max(1),
        }
    }

    /// Hands free turns to waiters under their app's share, round robin;
    /// returns the wakers to call once the lock is released.
    fn dispatch(&mut self, slots: usize) -> Vec<Waker> {
        let mut wake = Vec::new();
        let mut passed = 0;
        while passed < self.ring.len() {
            let alone = self.apps.len() == 1;
            if !alone && self.free <= 0 {
                break;
            }
            let share = State::share(slots, self.apps.len());
            let app = self.ring.pop_front().expect("passed < len");
            let lane = self.apps.get_mut(&app).expect("a ringed app has a lane");
            if !alone && lane.holding >= share {
                self.ring.push_back(app);
                passed += 1;
                continue;
            }
            passed = 0;
            let ticket = lane.waiters.pop_front().expect("a ringed app waits");
            lane.holding += 1;
            self.free -= 1;
            if !lane.waiters.is_empty() {
                self.ring.push_back(app);
            }
            ticket.granted.store(true, Ordering::Release);
            wake.push(ticket.waker.lock().clone());
        }
        wake
    }

    /// `app` gives a turn back.
    fn release(&mut self, app: &Arc<str>, slots: usize, presence: Duration) -> Vec<Waker> {
        let now = Instant::now();
        let lane = self.apps.get_mut(app).expect("a holder has a lane");
        lane.holding -= 1;
        lane.seen = Some(now);
        self.free += 1;
        self.prune(now, presence);
        self.dispatch(slots)
    }

    /// Lets apps absent for the presence time leave (at most once a
    /// millisecond: it looks at every present app).
    fn prune(&mut self, now: Instant, presence: Duration) {
        if presence.is_zero() || now.duration_since(self.pruned) >= Duration::from_millis(1) {
            self.prune_now(now, presence);
        }
    }

    fn prune_now(&mut self, now: Instant, presence: Duration) {
        self.pruned = now;
        self.apps.retain(|_, l| !l.idle_since(now, presence));
    }
}

impl FairCpu {
    /// `slots` turns (at least one); apps count as present for [`PRESENCE`].
    pub fn new(slots: usize) -> FairCpu {
        FairCpu::with_presence(slots, PRESENCE)
    }

    fn with_presence(slots: usize, presence: Duration) -> FairCpu {
        let slots = slots.max(1);
        FairCpu {
            slots,
            presence,
            state: Mutex::new(State {
                free: slots as isize,
                apps: HashMap::new(),
                pruned: Instant::now(),
                timer: false,
                ring: VecDeque::new(),
            }),
        }
    }

    /// `inner`, polled only while it holds a turn of `app`'s.
    pub fn gate<F: Future>(self: &Arc<Self>, app: Arc<str>, inner: F) -> Fair<F> {
        Fair {
            gate: self.clone(),
            app,
            ticket: None,
            inner,
        }
    }

    /// Apps waiting for a turn now.
    #[cfg(test)]
    fn waiting_apps(&self) -> usize {
        self.state.lock().ring.len()
    }

    fn release(&self, app: &Arc<str>) {
        let wake = self.state.lock().release(app, self.slots, self.presence);
        wake.into_iter().for_each(Waker::wake);
    }

    /// A waiter that went away: forgotten, or its granted turn given back.
    fn forget(&self, app: &Arc<str>, ticket: &Arc<Ticket>) {
        let mut s = self.state.lock();
        if ticket.granted.load(Ordering::Acquire) {
            let wake = s.release(app, self.slots, self.presence);
            drop(s);
            wake.into_iter().for_each(Waker::wake);
            return;
        }
        let State { apps, ring, .. } = &mut *s;
        if let Some(lane) = apps.get_mut(app) {
            lane.waiters.retain(|t| !Arc::ptr_eq(t, ticket));
            if lane.waiters.is_empty() {
                ring.retain(|a| a != app);
            }
        }
        s.prune(Instant::now(), self.presence);
        // Fewer apps may mean a larger share for those still waiting.
        let wake = s.dispatch(self.slots);
        drop(s);
        wake.into_iter().for_each(Waker::wake);
    }
}

pin_project_lite::pin_project! {
    /// A future polled only while holding a turn of its app's; see [`FairCpu`].
    pub struct Fair<F> {
        gate: Arc<FairCpu>,
        app: Arc<str>,
        ticket: Option<Arc<Ticket>>,
        #[pin]
        inner: F,
    }

    impl<F> PinnedDrop for Fair<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(ticket) = this.ticket.take() {
                this.gate.forget(this.app, &ticket);
            }
        }
    }
}

impl FairCpu {
    /// One step of waiting for a turn of `app`'s: `Ready` when this caller
    /// holds one (counted as `app`'s until released), `Pending` with its
    /// place kept in `ticket` otherwise.
    fn acquire(
        self: &Arc<Self>,
        app: &Arc<str>,
        ticket: &mut Option<Arc<Ticket>>,
        cx: &Context<'_>,
    ) -> Poll<()> {
        if let Some(t) = ticket {
            if !t.granted.load(Ordering::Acquire) {
                let mut w = t.waker.lock();
                if !w.will_wake(cx.waker()) {
                    *w = cx.waker().clone();
                }
                drop(w);
                // Granted between the check and the waker's update: the
                // wake went to the old waker, so look again.
                if !t.granted.load(Ordering::Acquire) {
                    return Poll::Pending;
                }
            }
            *ticket = None;
            return Poll::Ready(());
        }
        let mut s = self.state.lock();
        s.prune(Instant::now(), self.presence);
        // Counting this app as present, as it is about to be.
        let n = s.apps.len() + usize::from(!s.apps.contains_key(app));
        let share = State::share(self.slots, n);
        let State {
            free, apps, ring, ..
        } = &mut *s;
        let lane = apps.entry(app.clone()).or_default();
        let alone = n == 1;
        if lane.waiters.is_empty()
            && (alone || (lane.holding < share && *free > 0 && ring.is_empty()))
        {
            *free -= 1;
            lane.holding += 1;
            return Poll::Ready(());
        }
        let t = Arc::new(Ticket {
            granted: AtomicBool::new(false),
            waker: Mutex::new(cx.waker().clone()),
        });
        if lane.waiters.is_empty() {
            ring.push_back(app.clone());
        }
        lane.waiters.push_back(t.clone());
        *ticket = Some(t);
        // A turn may be free for it already (others wait only because they
        // are at their share).
        let wake = s.dispatch(self.slots);
        // Waiting with a turn free, because an app that has gone quiet is
        // still counted: nothing else may happen before its presence ends
        // (the turns may be held by long calls), so look again then.
        if s.free > 0
            && !s.ring.is_empty()
            && !s.timer
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            s.timer = true;
            let gate = self.clone();
            rt.spawn(async move {
                tokio::time::sleep(gate.presence).await;
                let wake = {
                    let mut s = gate.state.lock();
                    s.timer = false;
                    s.prune_now(Instant::now(), gate.presence);
                    s.dispatch(gate.slots)
                };
                wake.into_iter().for_each(Waker::wake);
            });
        }
        drop(s);
        wake.into_iter().for_each(Waker::wake);
        Poll::Pending
    }

    /// Waits for a turn of `app`'s and holds it until the [`Turn`] drops:
    /// for work that keeps the CPU busy while its future waits (a data
    /// request whose rows another thread reads). Never hold one while
    /// waiting for a client: a slow client would keep the turn.
    pub async fn turn(self: &Arc<Self>, app: Arc<str>) -> Turn {
        let mut waiting = Waiting {
            gate: self,
            app: &app,
            ticket: None,
        };
        std::future::poll_fn(|cx| self.acquire(&app, &mut waiting.ticket, cx)).await;
        drop(waiting);
        Turn {
            gate: self.clone(),
            app,
        }
    }
}

/// A place in line; leaving it (dropped while waiting) lets it go.
struct Waiting<'a> {
    gate: &'a FairCpu,
    app: &'a Arc<str>,
    ticket: Option<Arc<Ticket>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.gate.forget(self.app, &t);
        }
    }
}

/// A held turn, given back when dropped.
pub struct Turn {
    gate: Arc<FairCpu>,
    app: Arc<str>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.gate.release(&self.app);
    }
}

impl<F: Future> Future for Fair<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        std::task::ready!(this.gate.acquire(this.app, this.ticket, cx));
        // Held from here until the poll returns, even if it panics.
        struct Held<'a>(&'a FairCpu, &'a Arc<str>);
        impl Drop for Held<'_> {
            fn drop(&mut self) {
                self.0.release(self.1);
            }
        }
        let _held = Held(this.gate, this.app);
        this.inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    type Log = Arc<Mutex<Vec<&'static str>>>;

    /// A future that records, when polled, that `name` ran.
    fn step(log: &Log, name: &'static str) -> impl Future<Output = ()> + use<> {
        let log = log.clone();
        std::future::poll_fn(move |_| {
            log.lock().push(name);
            Poll::Ready(())
        })
    }

    /// Marks one of `app`'s polls as inside a turn (as if on another thread).
    fn hold(gate: &FairCpu, app: &str) {
        let mut s = gate.state.lock();
        assert!(s.free > 0);
        s.free -= 1;
        s.apps.entry(app.into()).or_default().holding += 1;
    }

    fn context() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    /// Polls, in turn, every future whose ticket was granted, until none is;
    /// returns the names they logged in that order.
    fn run_granted(
        futures: &mut Vec<Pin<Box<Fair<impl Future<Output = ()>>>>>,
        log: &Log,
        cx: &mut Context<'_>,
    ) -> Vec<&'static str> {
        let mut order = Vec::new();
        while let Some(i) = futures.iter().position(|f| {
            f.ticket
                .as_ref()
                .is_some_and(|t| t.granted.load(Ordering::Acquire))
        }) {
            let mut f = futures.remove(i);
            assert!(f.as_mut().poll(cx).is_ready());
            order.push(log.lock().pop().expect("it ran"));
        }
        order
    }

    #[test]
    fn turns_alternate_between_apps_whatever_their_queue_lengths() {
        let gate = Arc::new(FairCpu::with_presence(1, Duration::ZERO));
        let log: Log = Default::default();
        let (woken, waker) = context();
        let mut cx = Context::from_waker(&waker);
        hold(&gate, "b");
        let mut futures = Vec::new();
        // A's polls come first: B alone would not wait (see
        // an_app_alone_uses_every_turn_without_waiting).
        for name in ["a", "a", "b", "b", "b", "b"] {
            futures.push(Box::pin(gate.gate(name.into(), step(&log, name))));
        }
        for f in &mut futures {
            assert!(f.as_mut().poll(&mut cx).is_pending(), "no turn is free");
        }
        assert_eq!(gate.waiting_apps(), 2);
        // The held turn ends; each poll's end hands the turn on.
        gate.release(&"b".into());
        assert_eq!(
            run_granted(&mut futures, &log, &mut cx),
            ["a", "b", "a", "b", "b", "b"]
        );
        assert!(futures.is_empty());
        assert_eq!(
            woken.0.load(Ordering::Relaxed),
            6,
            "each grant woke its waiter"
        );
        let s = gate.state.lock();
        assert_eq!(s.free, 1, "every turn came back");
        assert!(
            s.apps.is_empty() && s.ring.is_empty(),
            "no app is left behind"
        );
    }

    #[test]
    fn a_busy_app_keeps_at_most_its_share_while_another_waits() {
        let gate = Arc::new(FairCpu::with_presence(2, Duration::ZERO));
        let log: Log = Default::default();
        let (_, waker) = context();
        let mut cx = Context::from_waker(&waker);
        // B alone holds both turns.
        hold(&gate, "b");
        hold(&gate, "b");
        let mut futures = Vec::new();
        for name in ["a", "b", "b"] {
            futures.push(Box::pin(gate.gate(name.into(), step(&log, name))));
        }
        for f in &mut futures {
            assert!(f.as_mut().poll(&mut cx).is_pending());
        }
        // One of B's polls ends: with A present, B's share is one turn,
        // which B still holds, so the freed turn goes to A, not to B's
        // earlier waiters.
        gate.release(&"b".into());
        let granted: Vec<bool> = futures
            .iter()
            .map(|f| f.ticket.as_ref().unwrap().granted.load(Ordering::Acquire))
            .collect();
        assert_eq!(granted, [true, false, false]);
        // A's poll ends and A is gone: B may use both turns again, so B's
        // waiters run (one on the turn A gave back, one after it).
        assert_eq!(run_granted(&mut futures, &log, &mut cx), ["a", "b", "b"]);
        gate.release(&"b".into());
        assert_eq!(gate.state.lock().free, 2);
    }

    #[test]
    fn a_quiet_app_between_requests_still_keeps_the_busy_one_to_its_share() {
        let gate = Arc::new(FairCpu::with_presence(2, Duration::from_secs(60)));
        let log: Log = Default::default();
        let (_, waker) = context();
        let mut cx = Context::from_waker(&waker);
        // A's one request ran and ended: A is between requests.
        let mut a = Box::pin(gate.gate("a".into(), step(&log, "a")));
        assert!(a.as_mut().poll(&mut cx).is_ready());
        // B's flood: its first poll gets a turn, the second waits although
        // a turn is free, because A is still present and B has its share.
        hold(&gate, "b");
        let mut b = Box::pin(gate.gate("b".into(), step(&log, "b")));
        assert!(b.as_mut().poll(&mut cx).is_pending());
        assert_eq!(gate.state.lock().free, 1);
        // B's first poll ends: the waiter gets that turn.
        gate.release(&"b".into());
        assert!(b.as_mut().poll(&mut cx).is_ready());
        assert_eq!(*log.lock(), ["a", "b"]);
    }

    /// B waits because A, gone quiet, still counts, while B's own turn is
    /// held by a long call: once A's presence ends, B's waiter gets the
    /// free turn without anyone releasing one.
    #[tokio::test]
    async fn a_waiter_kept_out_by_a_gone_app_is_let_in_when_its_presence_ends() {
        let gate = Arc::new(FairCpu::with_presence(2, Duration::from_millis(30)));
        let log: Log = Default::default();
        let mut a = Box::pin(gate.gate("a".into(), step(&log, "a")));
        std::future::poll_fn(|cx| a.as_mut().poll(cx)).await;
        let long_call = gate.turn("b".into()).await;
        let started = Instant::now();
        gate.gate("b".into(), step(&log, "b")).await;
        assert!(
            started.elapsed() >= Duration::from_millis(20),
            "it waited for A to leave"
        );
        assert_eq!(*log.lock(), ["a", "b"]);
        drop(long_call);
    }

    #[tokio::test]
    async fn a_held_turn_counts_until_it_drops() {
        let gate = Arc::new(FairCpu::with_presence(1, Duration::ZERO));
        let turn = gate.turn("a".into()).await;
        let log: Log = Default::default();
        let (_, waker) = context();
        let mut cx = Context::from_waker(&waker);
        let mut b = Box::pin(gate.gate("b".into(), step(&log, "b")));
        assert!(
            b.as_mut().poll(&mut cx).is_pending(),
            "A holds the only turn"
        );
        // Someone who gives up waiting for a turn leaves no trace.
        let waited = tokio::time::timeout(Duration::from_millis(10), gate.turn("c".into())).await;
        assert!(waited.is_err());
        drop(turn);
        assert!(b.as_mut().poll(&mut cx).is_ready());
        let s = gate.state.lock();
        assert_eq!(s.free, 1);
        assert!(s.apps.is_empty() && s.ring.is_empty());
    }

    #[test]
    fn a_waiter_that_goes_away_passes_its_turn_on() {
        let gate = Arc::new(FairCpu::with_presence(1, Duration::ZERO));
        let log: Log = Default::default();
        let (_, waker) = context();
        let mut cx = Context::from_waker(&waker);
        hold(&gate, "x");
        let mut first = Box::pin(gate.gate("a".into(), step(&log, "a")));
        let mut second = Box::pin(gate.gate("b".into(), step(&log, "b")));
        let mut third = Box::pin(gate.gate("c".into(), step(&log, "c")));
        assert!(first.as_mut().poll(&mut cx).is_pending());
        assert!(second.as_mut().poll(&mut cx).is_pending());
        assert!(third.as_mut().poll(&mut cx).is_pending());
        // The second leaves before its turn: it is simply forgotten.
        drop(second);
        assert_eq!(gate.waiting_apps(), 2);
        // The first is granted, then leaves without running: its turn goes
        // on to the third.
        gate.release(&"x".into());
        drop(first);
        assert!(third.as_mut().poll(&mut cx).is_ready());
        assert_eq!(*log.lock(), ["c"]);
        let s = gate.state.lock();
        assert_eq!(s.free, 1);
        assert!(s.apps.is_empty() && s.ring.is_empty());
    }

    #[test]
    fn an_app_alone_uses_every_turn_without_waiting() {
        let gate = Arc::new(FairCpu::with_presence(2, Duration::ZERO));
        let log: Log = Default::default();
        let (_, waker) = context();
        let mut cx = Context::from_waker(&waker);
        hold(&gate, "a");
        let mut f = Box::pin(gate.gate("a".into(), step(&log, "a")));
        assert!(
            f.as_mut().poll(&mut cx).is_ready(),
            "the second turn is A's too"
        );
        assert_eq!(log.lock().len(), 1);
        assert_eq!(gate.state.lock().free, 1);
    }
}

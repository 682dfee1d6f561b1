//! Admission control: a platform-wide, a per-app and a per-function
//! concurrency limit, with a bounded wait instead of an immediate refusal.
//!
//! A request first takes a permit of its function, then one of its app,
//! then one of the platform. When one is exhausted it waits, FIFO, for at
//! most `wait_timeout`; at most `max_waiting` requests wait at once, and at
//! most `app_max_waiting` of one app. Beyond any bound it is throttled (the
//! caller answers 429 with `Retry-After`). Nothing queues without bound, a
//! slow function cannot hold platform permits while waiting for its own,
//! and one app — however many functions it has — can neither hold more
//! than its share of the platform's slots nor fill its waiting line.
//!
//! Hand-rolled, and small: three tokio semaphores and two counters of
//! waiters. Event deliveries use [`Admission::admit_patient`], which waits
//! as long as it takes (the event waits durably in the meantime).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// Too many requests were already waiting (platform-wide).
    QueueFull,
    /// Too many requests of this app were already waiting.
    AppQueueFull,
    /// No capacity freed up within the wait timeout; the limit it waited on.
    WaitTimedOut(Limit),
}

/// The limit a request waited on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Its function's `max_concurrency`.
    Function,
    /// Its app's in-flight cap.
    App,
    /// The platform's `--max-in-flight`.
    Platform,
}

/// Held for the lifetime of an invocation.
pub struct Permit {
    _function: OwnedSemaphorePermit,
    _app: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

/// One app's share of the platform: its in-flight cap and its waiters.
pub struct AppShare {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// Platform-wide admission state.
pub struct Admission {
    global: Arc<Semaphore>,
    limit: usize,
    waiting: AtomicUsize,
    max_waiting: usize,
    app_limit: usize,
    app_max_waiting: usize,
    apps: parking_lot::Mutex<std::collections::HashMap<Arc<str>, Arc<AppShare>>>,
    wait_timeout: Duration,
}

/// Waits for a permit of `s` (admission's semaphores are never closed).
async fn take(s: &Arc<Semaphore>) -> OwnedSemaphorePermit {
    s.clone()
        .acquire_owned()
        .await
        .expect("semaphores are never closed")
}

struct WaitGuard<'a>(&'a AtomicUsize);
impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// `limit` in-flight invocations platform-wide and `app_limit` per app;
    /// at most `max_waiting` requests wait (of one app, at most
    /// `app_limit` of them, and never more than `max_waiting`), up to
    /// `wait_timeout`, for capacity.
    pub fn new(
        limit: usize,
        app_limit: usize,
        max_waiting: usize,
        wait_timeout: Duration,
    ) -> Admission {
        let app_limit = app_limit.clamp(1, limit.max(1));
        Admission {
            global: Arc::new(Semaphore::new(limit)),
            limit,
            waiting: AtomicUsize::new(0),
            max_waiting,
            app_limit,
            app_max_waiting: app_limit.min(max_waiting),
            apps: Default::default(),
            wait_timeout,
        }
    }

    /// The per-app in-flight cap.
    pub fn app_limit(&self) -> usize {
        self.app_limit
    }

    /// The share of `app` (made on its first request, kept while the
    /// process lives: one small entry per app).
    pub fn app_share(&self, app: &str) -> Arc<AppShare> {
        let mut apps = self.apps.lock();
        if let Some(s) = apps.get(app) {
            return s.clone();
        }
        let s = Arc::new(AppShare {
            permits: Arc::new(Semaphore::new(self.app_limit)),
            waiting: AtomicUsize::new(0),
        });
        apps.insert(Arc::from(app), s.clone());
        s
    }

    /// Invocations of `app` running now.
    pub fn app_in_flight(&self, app: &AppShare) -> usize {
        self.app_limit - app.permits.available_permits()
    }

    /// The configured wait timeout (used to compute `Retry-After`).
    pub fn wait_timeout(&self) -> Duration {
        self.wait_timeout
    }

    /// Invocations running now.
    pub fn in_flight(&self) -> usize {
        self.limit - self.global.available_permits()
    }

    /// Requests waiting for capacity now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Takes a permit of `function`, of its app and of the platform,
    /// waiting as long as it takes. For event deliveries: their consumer bounds how many
    /// wait, and the event itself waits durably in its queue meanwhile, so
    /// a flood of events queues up instead of exceeding the limits.
    pub async fn admit_patient(&self, function: &Arc<Semaphore>, app: &AppShare) -> Permit {
        let f = take(function).await;
        let a = take(&app.permits).await;
        let g = take(&self.global).await;
        Permit {
            _function: f,
            _app: a,
            _global: g,
        }
    }

    /// Takes a permit of `function`, of its app and of the platform,
    /// waiting a bounded time.
    pub async fn admit(
        &self,
        function: &Arc<Semaphore>,
        app: &AppShare,
    ) -> Result<Permit, Throttled> {
        let f = function.clone().try_acquire_owned().ok();
        let a = match f {
            Some(_) => app.permits.clone().try_acquire_owned().ok(),
            None => None,
        };
        let (f, a) = match (f, a) {
            (Some(f), Some(a)) => match self.global.clone().try_acquire_owned() {
                Ok(g) => {
                    return Ok(Permit {
                        _function: f,
                        _app: a,
                        _global: g,
                    });
                }
                Err(_) => (Some(f), Some(a)),
            },
            other => other,
        };
        if app.waiting.fetch_add(1, Ordering::Relaxed) >= self.app_max_waiting {
            app.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(Throttled::AppQueueFull);
        }
        let _app_guard = WaitGuard(&app.waiting);
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(Throttled::QueueFull);
        }
        let _guard = WaitGuard(&self.waiting);
        let mut at = Limit::Function;
        let wait = async {
            let f = match f {
                Some(f) => f,
                None => take(function).await,
            };
            at = Limit::App;
            let a = match a {
                Some(a) => a,
                None => take(&app.permits).await,
            };
            at = Limit::Platform;
            let g = take(&self.global).await;
            Permit {
                _function: f,
                _app: a,
                _global: g,
            }
        };
        let out = tokio::time::timeout(self.wait_timeout, wait).await;
        out.map_err(|_| Throttled::WaitTimedOut(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_then_throttles() {
        let adm = Admission::new(10, 10, 1, Duration::from_millis(50));
        let f = Arc::new(Semaphore::new(1));
        let app = adm.app_share("a");
        let p1 = adm.admit(&f, &app).await.unwrap();
        assert_eq!(adm.in_flight(), 1);
        // One waiter allowed; it times out.
        let started = std::time::Instant::now();
        assert_eq!(
            adm.admit(&f, &app).await.err(),
            Some(Throttled::WaitTimedOut(Limit::Function))
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
        // While one waits, a second is refused at once.
        let waiter = adm.admit(&f, &app);
        tokio::pin!(waiter);
        assert!(futures_poll_once(waiter.as_mut()).await.is_none());
        assert_eq!(adm.waiting(), 1);
        assert_eq!(
            adm.admit(&f, &app).await.err(),
            Some(Throttled::AppQueueFull)
        );
        // Releasing the permit lets the waiter in.
        drop(p1);
        let p2 = waiter.await.unwrap();
        assert_eq!(adm.waiting(), 0);
        drop(p2);
        assert_eq!(adm.in_flight(), 0);
    }

    #[tokio::test]
    async fn global_limit_applies_across_functions() {
        let adm = Admission::new(1, 1, 0, Duration::from_millis(10));
        let a = Arc::new(Semaphore::new(5));
        let b = Arc::new(Semaphore::new(5));
        let (x, y) = (adm.app_share("x"), adm.app_share("y"));
        let _p = adm.admit(&a, &x).await.unwrap();
        assert_eq!(adm.admit(&b, &y).await.err(), Some(Throttled::AppQueueFull));
        assert_eq!(b.available_permits(), 5, "a refused request holds nothing");
    }

    /// One app at its cap, with as many functions as it likes, waits or
    /// is refused; another app is admitted at once, and the first app's
    /// waiters cannot fill the platform's waiting line.
    #[tokio::test]
    async fn one_app_at_its_cap_leaves_room_for_others() {
        let adm = Admission::new(10, 3, 4, Duration::from_millis(30));
        let noisy = adm.app_share("noisy");
        let quiet = adm.app_share("quiet");
        let fs: Vec<_> = (0..5).map(|_| Arc::new(Semaphore::new(100))).collect();
        let mut held = Vec::new();
        for f in &fs[..3] {
            held.push(adm.admit(f, &noisy).await.unwrap());
        }
        assert_eq!(adm.app_in_flight(&noisy), 3);
        assert_eq!(
            adm.admit(&fs[3], &noisy).await.err(),
            Some(Throttled::WaitTimedOut(Limit::App))
        );
        // Three of the noisy app's requests wait (its share of the line)...
        let waiters: Vec<_> = (0..3)
            .map(|_| Box::pin(adm.admit(&fs[4], &noisy)))
            .collect();
        let mut waiters = waiters;
        for w in &mut waiters {
            assert!(futures_poll_once(w.as_mut()).await.is_none());
        }
        assert_eq!(
            adm.admit(&fs[4], &noisy).await.err(),
            Some(Throttled::AppQueueFull)
        );
        // ...and the quiet app is admitted at once, its requests can wait.
        let q = Arc::new(Semaphore::new(1));
        let p = adm.admit(&q, &quiet).await.unwrap();
        let w = adm.admit(&q, &quiet);
        tokio::pin!(w);
        assert!(futures_poll_once(w.as_mut()).await.is_none());
        drop(p);
        w.await.unwrap();
        drop(waiters);
        drop(held);
        assert_eq!(adm.in_flight(), 0);
    }

    async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
        let mut f = f;
        std::future::poll_fn(|cx| match std::pin::Pin::new(&mut f).poll(cx) {
            std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
            std::task::Poll::Pending => std::task::Poll::Ready(None),
        })
        .await
    }
}

//! Admission control: a platform-wide and a per-function concurrency limit,
//! with a bounded wait instead of an immediate refusal.
//!
//! A request first takes a permit of its function, then one of the platform.
//! When either is exhausted it waits, FIFO, for at most `wait_timeout`; at
//! most `max_waiting` requests wait at once. Beyond either bound it is
//! throttled (the caller answers 429 with `Retry-After`). Nothing queues
//! without bound, and a slow function cannot hold platform permits while
//! waiting for its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// Too many requests were already waiting.
    QueueFull,
    /// No capacity freed up within the wait timeout.
    WaitTimedOut,
}

/// Held for the lifetime of an invocation.
pub struct Permit {
    _function: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

/// Platform-wide admission state.
pub struct Admission {
    global: Arc<Semaphore>,
    limit: usize,
    waiting: AtomicUsize,
    max_waiting: usize,
    wait_timeout: Duration,
}

struct WaitGuard<'a>(&'a AtomicUsize);
impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// `limit` in-flight invocations platform-wide; at most `max_waiting`
    /// requests wait up to `wait_timeout` for capacity.
    pub fn new(limit: usize, max_waiting: usize, wait_timeout: Duration) -> Admission {
        Admission {
            global: Arc::new(Semaphore::new(limit)),
            limit,
            waiting: AtomicUsize::new(0),
            max_waiting,
            wait_timeout,
        }
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

    /// Takes a permit of `function` and one of the platform, waiting as long
    /// as it takes. For event deliveries: their consumer bounds how many
    /// wait, and the event itself waits durably in its queue meanwhile, so
    /// a flood of events queues up instead of exceeding the limits.
    pub async fn admit_patient(&self, function: &Arc<Semaphore>) -> Permit {
        let f = function
            .clone()
            .acquire_owned()
            .await
            .expect("semaphores are never closed");
        let g = self
            .global
            .clone()
            .acquire_owned()
            .await
            .expect("semaphores are never closed");
        Permit {
            _function: f,
            _global: g,
        }
    }

    /// Takes a permit of `function` and one of the platform, waiting a bounded time.
    pub async fn admit(&self, function: &Arc<Semaphore>) -> Result<Permit, Throttled> {
        let f = match function.clone().try_acquire_owned() {
            Ok(f) => {
                if let Ok(g) = self.global.clone().try_acquire_owned() {
                    return Ok(Permit {
                        _function: f,
                        _global: g,
                    });
                }
                Some(f)
            }
            Err(_) => None,
        };
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(Throttled::QueueFull);
        }
        let _guard = WaitGuard(&self.waiting);
        let wait = async {
            let f = match f {
                Some(f) => f,
                None => function
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphores are never closed"),
            };
            let g = self
                .global
                .clone()
                .acquire_owned()
                .await
                .expect("semaphores are never closed");
            Permit {
                _function: f,
                _global: g,
            }
        };
        tokio::time::timeout(self.wait_timeout, wait)
            .await
            .map_err(|_| Throttled::WaitTimedOut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_then_throttles() {
        let adm = Admission::new(10, 1, Duration::from_millis(50));
        let f = Arc::new(Semaphore::new(1));
        let p1 = adm.admit(&f).await.unwrap();
        assert_eq!(adm.in_flight(), 1);
        // One waiter allowed; it times out.
        let started = std::time::Instant::now();
        assert_eq!(adm.admit(&f).await.err(), Some(Throttled::WaitTimedOut));
        assert!(started.elapsed() >= Duration::from_millis(50));
        // While one waits, a second is refused at once.
        let waiter = adm.admit(&f);
        tokio::pin!(waiter);
        assert!(futures_poll_once(waiter.as_mut()).await.is_none());
        assert_eq!(adm.waiting(), 1);
        assert_eq!(adm.admit(&f).await.err(), Some(Throttled::QueueFull));
        // Releasing the permit lets the waiter in.
        drop(p1);
        let p2 = waiter.await.unwrap();
        assert_eq!(adm.waiting(), 0);
        drop(p2);
        assert_eq!(adm.in_flight(), 0);
    }

    #[tokio::test]
    async fn global_limit_applies_across_functions() {
        let adm = Admission::new(1, 0, Duration::from_millis(10));
        let a = Arc::new(Semaphore::new(5));
        let b = Arc::new(Semaphore::new(5));
        let _p = adm.admit(&a).await.unwrap();
        assert_eq!(adm.admit(&b).await.err(), Some(Throttled::QueueFull));
        assert_eq!(b.available_permits(), 5, "a refused request holds nothing");
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

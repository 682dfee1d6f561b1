//! The bodies of one invocation: the request body counted into the
//! tracker as the guest reads it, and the response body that keeps polling
//! the guest (which runs on the response's own task) until both end.
//!
//! A response cut short by a timeout or a trap fails its body, so the
//! client sees an aborted response, not a complete one. A response hyper
//! never polls (to a HEAD request, or a 1xx, 204 or 304) hands guest and
//! body to a task of their own that drains the body, so the guest finishes
//! as it would have and is not recorded as a client that went away.

use super::tracker::Tracker;
use super::*;
/// Counts the bytes flowing through a body into the tracker; holds the
/// tracker alive until the body is finished or dropped.
pub(super) struct Counted<B> {
    pub(super) inner: B,
    pub(super) tracker: Arc<Tracker>,
    pub(super) outbound: bool,
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let t = &this.tracker;
                    if this.outbound {
                        t.bytes_out.fetch_add(data.len() as u64, Ordering::Relaxed);
                    } else {
                        let seen = t.bytes_in.fetch_add(data.len() as u64, Ordering::Relaxed);
                        // Kept for replay, up to the limit.
                        if (seen as usize) < t.input_limit {
                            let room = t.input_limit - seen as usize;
                            t.input
                                .lock()
                                .extend_from_slice(&data[..data.len().min(room)]);
                        }
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                let t = &this.tracker;
                if !this.outbound && t.bytes_in.load(Ordering::Relaxed) as usize <= t.input_limit {
                    t.input_complete.store(true, Ordering::Relaxed);
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pub(super) type GuestFuture = Pin<Box<dyn Future<Output = TaskEnd> + Send>>;

/// The response body of a guest that may still be running: polls the guest
/// (so it makes progress on this task) and the body it produces. The body
/// ends only once the guest has, so the record and the failure check see
/// how it ended.
pub(super) struct GuestBody {
    pub(super) guest: Option<GuestFuture>,
    pub(super) inner: Counted<ResponseBody>,
    pub(super) inner_done: bool,
    /// A response that carries no body (to a HEAD request, or a 1xx, 204 or
    /// 304): the server drops it unread, which is no client going away.
    pub(super) bodiless: bool,
    /// Its `content-length`: once that many bytes went out, the server
    /// drops the body without asking for its end, which is no client going
    /// away either (a WASI 0.3 guest's task often outlives its last write).
    pub(super) length: Option<u64>,
    /// A request served by a shared instance: `guest` is then its deadline
    /// and its instance's end, and the response ends the request when it is
    /// complete (the instance lives on).
    pub(super) slot: Option<super::shared::Slot>,
}

impl Body for GuestBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Some(guest) = this.guest.as_mut()
            && guest.as_mut().poll(cx).is_ready()
        {
            this.guest = None;
            if this.slot.take().is_some() {
                // Past its deadline, or its instance ended: cut short.
                let failure = this.inner.tracker.failure().unwrap_or_else(|| {
                    wasmtime_wasi_http::Error::InternalError(Some("the instance ended".into()))
                });
                return Poll::Ready(Some(Err(failure)));
            }
        }
        if !this.inner_done {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(None) => this.inner_done = true,
                Poll::Ready(Some(Err(e))) if this.slot.is_some() => {
                    this.inner.tracker.finish(
                        Outcome::Error,
                        Some(format!("its response body failed: {e}")),
                    );
                    return Poll::Ready(Some(Err(e)));
                }
                other => return other,
            }
        }
        if let Some(slot) = this.slot.take() {
            // The shared instance's response is complete: so is the request.
            this.guest = None;
            this.inner.tracker.finish(Outcome::Ok, None);
            slot.complete();
            return Poll::Ready(this.inner.tracker.failure().map(Err));
        }
        if this.guest.is_some() {
            // The body is complete but the guest still runs; it wakes us.
            return Poll::Pending;
        }
        // Guest and body are done. A guest stopped mid-response must not look
        // like a complete response: fail the body so the connection aborts.
        Poll::Ready(this.inner.tracker.failure().map(Err))
    }

    fn is_end_stream(&self) -> bool {
        // A failed invocation must reach `poll_frame`, which reports it.
        self.guest.is_none() && self.inner.is_end_stream() && !self.inner.tracker.failed()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for GuestBody {
    fn drop(&mut self) {
        let sent_all = self.inner_done
            || self
                .length
                .is_some_and(|n| self.inner.tracker.bytes_out.load(Ordering::Relaxed) >= n);
        if let Some(slot) = self.slot.take() {
            // A shared instance's request: complete if nothing more was
            // due; otherwise its client left (its instance takes no more).
            if self.bodiless || sent_all {
                self.inner.tracker.finish(Outcome::Ok, None);
                slot.complete();
            } else {
                self.inner.tracker.finish(
                    Outcome::Error,
                    Some("the client went away before the response was complete".into()),
                );
            }
            return;
        }
        let Some(guest) = self.guest.take() else {
            return;
        };
        if (self.bodiless || sent_all)
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            // Nothing (more) reaches the client, but the guest still writes
            // the body it made, or works on after it (within its timeout):
            // a task of its own drives it, discarding any bytes, and the
            // invocation is recorded as it really ended.
            let empty: ResponseBody = http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed_unsync();
            let rest = GuestBody {
                guest: Some(guest),
                inner: Counted {
                    inner: std::mem::replace(&mut self.inner.inner, empty),
                    tracker: self.inner.tracker.clone(),
                    outbound: self.inner.outbound,
                },
                inner_done: self.inner_done,
                bodiless: false,
                length: None,
                slot: None,
            };
            rt.spawn(async move {
                let mut rest = std::pin::pin!(rest);
                while let Some(Ok(_)) = rest.frame().await {}
            });
            return;
        }
        self.inner.tracker.finish(
            Outcome::Error,
            Some("the client went away before the response was complete".into()),
        );
    }
}

/// The guest's response to `method`, its status recorded, its body a
/// [`GuestBody`] that drives `guest` (and holds `slot`, for a shared
/// instance) until both end.
pub(super) fn guest_response(
    method: &http::Method,
    resp: Response<ResponseBody>,
    tracker: &Arc<Tracker>,
    guest: Option<GuestFuture>,
    slot: Option<super::shared::Slot>,
) -> Response<ResponseBody> {
    tracker
        .status
        .store(resp.status().as_u16(), Ordering::Relaxed);
    let bodiless = is_bodiless(method, resp.status());
    let length = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let tracker = tracker.clone();
    resp.map(move |body| {
        GuestBody {
            guest,
            inner: Counted {
                inner: body,
                tracker,
                outbound: true,
            },
            inner_done: false,
            bodiless,
            length,
            slot,
        }
        .boxed_unsync()
    })
}

/// Whether a response to `method` with `status` has no body on the wire,
/// so the server never polls it.
pub(super) fn is_bodiless(method: &http::Method, status: StatusCode) -> bool {
    method == http::Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}

/// What the guest task reports when it ends.
pub(super) struct TaskEnd {
    pub(super) outcome: Outcome,
    pub(super) error: Option<String>,
}

//! Bounded capture of a guest's stdout or stderr for one invocation.
//!
//! Hand-rolled because wasmtime's `MemoryOutputPipe` errors when full, and
//! a guest must not fail because it logged too much: past the limit, bytes
//! are counted and dropped. Captured text is redacted of the app's secret
//! values before it is recorded.
//!
//! An instance that serves several requests (instance reuse) writes through
//! a [`Route`] instead: the requests it serves at the time each get the
//! bytes in their own captures.

use bytes::Bytes;
use parking_lot::Mutex;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Collects what a guest writes to one stream, up to a byte limit; the rest
/// is counted and dropped so a chatty guest cannot exhaust host memory.
#[derive(Clone)]
pub struct Capture {
    sink: Sink,
}

#[derive(Clone)]
enum Sink {
    /// One invocation's own buffer.
    Own(Arc<Mutex<Buf>>),
    /// A shared instance's stream, handed on to the requests it serves.
    Routed(Arc<dyn Route>, Stream),
}

/// Which of a guest's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// Where a shared instance's output goes: the captures of the requests it
/// serves at the moment of the write.
pub(crate) trait Route: Send + Sync {
    fn write(&self, stream: Stream, data: &[u8]);
}

struct Buf {
    bytes: Vec<u8>,
    limit: usize,
    dropped: u64,
}

impl Capture {
    /// A capture keeping at most `limit` bytes.
    pub fn new(limit: usize) -> Capture {
        Capture {
            sink: Sink::Own(Arc::new(Mutex::new(Buf {
                bytes: Vec::new(),
                limit,
                dropped: 0,
            }))),
        }
    }

    /// A shared instance's `stream`, written through `route`.
    pub(crate) fn routed(route: Arc<dyn Route>, stream: Stream) -> Capture {
        Capture {
            sink: Sink::Routed(route, stream),
        }
    }

    /// Appends bytes, dropping what exceeds the limit.
    pub fn write(&self, data: &[u8]) {
        let b = match &self.sink {
            Sink::Own(b) => b,
            Sink::Routed(route, stream) => return route.write(*stream, data),
        };
        let mut b = b.lock();
        let room = b.limit.saturating_sub(b.bytes.len());
        let take = room.min(data.len());
        b.bytes.extend_from_slice(&data[..take]);
        b.dropped += (data.len() - take) as u64;
    }

    /// The captured text (lossy UTF-8), with a note if output was dropped;
    /// empty for a routed stream, which keeps nothing itself.
    pub fn text(&self) -> String {
        let Sink::Own(b) = &self.sink else {
            return String::new();
        };
        let b = b.lock();
        let mut s = String::from_utf8_lossy(&b.bytes).into_owned();
        if b.dropped > 0 {
            if !s.ends_with('\n') && !s.is_empty() {
                s.push('\n');
            }
            s.push_str(&format!(
                "[nimbus: {} more bytes dropped: the log limit is {} bytes per stream]\n",
                b.dropped, b.limit
            ));
        }
        s
    }
}

impl wasmtime_wasi::cli::IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        Capture::write(self, &bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Capture::write(&self, buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded() {
        let c = Capture::new(5);
        c.write(b"abc");
        c.write(b"defgh");
        assert_eq!(
            c.text(),
            "abcde\n[nimbus: 3 more bytes dropped: the log limit is 5 bytes per stream]\n"
        );
        let c = Capture::new(10);
        c.write(b"hi\n");
        assert_eq!(c.text(), "hi\n");
    }
}

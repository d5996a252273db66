//! A per-connection guard against slow request headers (slowloris).
//!
//! hyper's `header_read_timeout` also runs while a keep-alive connection is
//! idle, so it must stay longer than the API server's idle timeout (see
//! `server::HEADER_READ_TIMEOUT`). This guard adds the short limit that
//! matters: once the first byte of a request has arrived, its headers must be
//! complete within [`REQUEST_HEADER_TIMEOUT`], or the connection is closed.
//! Idle connections are not affected.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// From the first byte of a request to its last header byte.
pub const REQUEST_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct State {
    /// A request's headers are being read since then.
    started: Option<Instant>,
    /// A request is being served (its headers are complete).
    serving: bool,
}

/// Shared between the IO wrapper (bytes in) and the service wrapper (headers complete).
#[derive(Clone, Debug, Default)]
pub struct Activity(Arc<Mutex<State>>);

impl Activity {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        match self.0.lock() {
            Ok(mut state) => f(&mut state),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn bytes_arrived(&self) {
        self.with(|s| {
            if !s.serving && s.started.is_none() {
                s.started = Some(Instant::now());
            }
        });
    }

    /// hyper called the service: the headers are in.
    pub fn request_began(&self) {
        self.with(|s| {
            s.serving = true;
            s.started = None;
        });
    }

    pub fn request_ended(&self) {
        self.with(|s| s.serving = false);
    }

    /// True when a request's headers have been trickling in for longer than `limit`.
    pub fn headers_overdue(&self, limit: Duration) -> bool {
        self.with(|s| s.started.is_some_and(|t| t.elapsed() > limit))
    }
}

/// An IO stream that tells [`Activity`] when bytes arrive.
pub struct Watched<T> {
    inner: T,
    activity: Activity,
}

impl<T> Watched<T> {
    pub fn new(inner: T, activity: Activity) -> Self {
        Watched { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_and_served_connections_are_never_overdue() {
        let a = Activity::default();
        assert!(!a.headers_overdue(Duration::ZERO), "idle");
        a.bytes_arrived();
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            a.headers_overdue(Duration::from_millis(1)),
            "headers trickling"
        );
        a.request_began();
        a.bytes_arrived(); // body bytes while serving
        assert!(!a.headers_overdue(Duration::ZERO), "serving");
        a.request_ended();
        assert!(
            !a.headers_overdue(Duration::ZERO),
            "idle again after the response"
        );
    }
}

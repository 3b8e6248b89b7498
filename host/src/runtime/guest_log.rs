//! A bounded in-memory sink for a guest's stdout/stderr.
//!
//! Keeps the first bytes a guest writes (a panic message, diagnostics) for the
//! host's logs and silently counts the rest: unlike wasmtime's
//! `MemoryOutputPipe`, a chatty guest never traps because its log is full.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Shared handle to one event's captured guest output.
#[derive(Clone)]
pub struct GuestLog {
    /// The kept bytes and how many were dropped past the capacity.
    inner: Arc<Mutex<LogBuffer>>,
}

struct LogBuffer {
    /// Bytes kept, at most `capacity`.
    kept: Vec<u8>,
    /// Bytes written past `capacity`, reported in the log line.
    dropped: usize,
    /// The most bytes kept.
    capacity: usize,
}

impl GuestLog {
    /// An empty log that keeps at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(LogBuffer {
                kept: Vec::new(),
                dropped: 0,
                capacity,
            })),
        }
    }

    /// What the guest wrote, as text (invalid UTF-8 replaced), with a note of
    /// how much was dropped.
    pub fn contents_lossy(&self) -> String {
        let buf = match self.inner.lock() {
            Ok(buf) => buf,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut text = String::from_utf8_lossy(&buf.kept).trim_end().to_string();
        if buf.dropped > 0 {
            text.push_str(&format!(" [… {} more bytes dropped]", buf.dropped));
        }
        text
    }

    /// Forget what was captured: a reused instance starts each event with an
    /// empty log.
    pub fn clear(&self) {
        let mut buf = match self.inner.lock() {
            Ok(buf) => buf,
            Err(poisoned) => poisoned.into_inner(),
        };
        buf.kept.clear();
        buf.dropped = 0;
    }

    fn append(&self, bytes: &[u8]) {
        let mut buf = match self.inner.lock() {
            Ok(buf) => buf,
            Err(poisoned) => poisoned.into_inner(),
        };
        let room = buf.capacity.saturating_sub(buf.kept.len());
        let take = room.min(bytes.len());
        buf.kept.extend_from_slice(&bytes[..take]);
        buf.dropped += bytes.len() - take;
    }
}

impl AsyncWrite for GuestLog {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_bytes_and_counts_the_rest() {
        let log = GuestLog::new(4);
        log.append(b"ab");
        log.append(b"cdef");
        assert_eq!(log.contents_lossy(), "abcd [… 2 more bytes dropped]");
    }
}

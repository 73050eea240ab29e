//! Write coalescing under the HTTP/2 connection to the Monitoring API: [`CoalescingIo`] sits
//! between TLS (or the plain connection) and the TCP socket and turns the HTTP/2 library's
//! frame-by-frame writes into fewer, larger ones.
//!
//! Owns only when bytes reach the socket, never what they are: frames, their sizes and their
//! order are untouched. Must never make written bytes wait for later traffic, only for a pass
//! of the connection task already scheduled.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes waiting that are written at once, without waiting for the end of the pass (the
/// loopback MTU: one segment).
pub const WRITE_AT: usize = 64 * 1024;

/// Most bytes kept waiting; a write that would go past it first writes what is waiting.
const MAX_WAITING: usize = 4 * WRITE_AT;

/// Most flushes put off since the last write: a bound, so that a caller that flushes without
/// ever reading still gets its bytes written (after as many passes).
const MAX_PUT_OFF: u8 = 16;

/// A byte stream whose writes are gathered and written in fewer, larger calls.
///
/// The HTTP/2 library writes each DATA frame (at most the peer's frame size, 16 KiB unless the
/// server allows more) with its own `writev` and flushes after each one, so a 50 KB
/// `CreateTimeSeries` request would cost four system calls and four TCP segments, each paid for
/// on both ends. Here the frames written during one pass of the connection task leave in one
/// call once [`WRITE_AT`] bytes are waiting or the pass is over; a pass is over when the
/// connection reads again. A flush before that only schedules the connection task once more
/// (HTTP/2 always reads until the socket has nothing before it sleeps); bytes it put off wait
/// through the read that ends its pass and are written by the next pass's first flush or read,
/// so a request's HEADERS (written in one pass) and its DATA (handed over by the body's task,
/// which runs before the next pass) leave in one write. Bytes no flush put off are written
/// before any read (the peer may be waiting for them to answer).
#[derive(Debug)]
pub struct CoalescingIo<T> {
    inner: T,
    /// Bytes accepted and not yet written; `waiting[written..]` is still to go.
    waiting: Vec<u8>,
    written: usize,
    /// Reads so far: a read marks a new pass of the connection task.
    reads: u64,
    /// `reads` when a flush was first put off, while one is.
    put_off_at: Option<u64>,
    /// Flushes put off since the last write.
    put_off: u8,
}

impl<T> CoalescingIo<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> CoalescingIo<T> {
        CoalescingIo {
            inner,
            waiting: Vec::new(),
            written: 0,
            reads: 0,
            put_off_at: None,
            put_off: 0,
        }
    }

    /// The wrapped stream.
    #[cfg(test)]
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    fn pending(&self) -> usize {
        self.waiting.len() - self.written
    }
}

impl<T: AsyncWrite + Unpin> CoalescingIo<T> {
    /// Writes everything waiting.
    fn poll_write_waiting(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.waiting.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.waiting[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.waiting.clear();
        self.written = 0;
        self.put_off_at = None;
        self.put_off = 0;
        Poll::Ready(Ok(()))
    }

    /// Makes room for `len` more bytes, writing what waits when they would not fit.
    fn poll_room(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<()>> {
        if self.pending() > 0 && self.pending() + len > MAX_WAITING {
            ready!(self.poll_write_waiting(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// After bytes were accepted: writes them once enough are waiting. A write that would
    /// block leaves them waiting (they are accepted already); the next flush finishes it.
    fn write_if_full(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.pending() >= WRITE_AT
            && let Poll::Ready(Err(err)) = self.poll_write_waiting(cx)
        {
            return Err(err);
        }
        Ok(())
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for CoalescingIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending() > 0 {
            if this.put_off_at == Some(this.reads) {
                // A flush of this pass put these bytes off: they wait for the next pass, which
                // the task is woken for. A request's HEADERS are written by the connection task
                // while its DATA are handed over by the body's task, which runs in between, so
                // the two then go out in one write (and wake the peer once) instead of two.
                // Only once: this read ends the pass, so the next one finds them put off in an
                // earlier pass and writes them.
                cx.waker().wake_by_ref();
            } else if let Poll::Ready(Err(err)) = this.poll_write_waiting(cx) {
                // A read ends the pass, and the peer may be waiting for these bytes before it
                // answers (a TLS handshake flushes once, then reads). A write that would block
                // leaves them waiting, to go on at the next flush or read.
                return Poll::Ready(Err(err));
            }
        }
        this.reads = this.reads.wrapping_add(1);
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CoalescingIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_room(cx, buf.len()))?;
        if this.pending() == 0 && buf.len() >= WRITE_AT {
            // Large enough on its own: no copy.
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        this.waiting.extend_from_slice(buf);
        this.write_if_full(cx)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        ready!(this.poll_room(cx, len))?;
        if this.pending() == 0 && len >= WRITE_AT {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        this.waiting.reserve(len);
        for b in bufs {
            this.waiting.extend_from_slice(b);
        }
        this.write_if_full(cx)?;
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending() == 0 {
            return Pin::new(&mut this.inner).poll_flush(cx);
        }
        if this.pending() < WRITE_AT && this.put_off < MAX_PUT_OFF {
            // More frames may follow in this pass: the read that ends it writes them (or, the
            // first time, the next pass does).
            this.put_off_at.get_or_insert(this.reads);
            this.put_off += 1;
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_write_waiting(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_waiting(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Counts the write calls that reach it.
    #[derive(Default)]
    struct Counting {
        data: Vec<u8>,
        calls: usize,
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.calls += 1;
            self.data.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncRead for Counting {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn frames_of_one_pass_are_written_together() {
        let mut io = CoalescingIo::new(Counting::default());
        let frame = vec![7u8; 16 * 1024];
        // Four frames, each followed by a flush, as the HTTP/2 codec does.
        for _ in 0..4 {
            io.write_all(&frame).await.unwrap();
            io.flush().await.unwrap();
        }
        assert_eq!(io.get_ref().calls, 1, "64 KiB waiting are written at once");
        io.write_all(&frame[..100]).await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(
            io.get_ref().calls,
            1,
            "a small tail waits for the end of the pass"
        );
        // The connection reads, ending the pass whose flush put the tail off: the tail waits
        // for one more pass, whose read writes it.
        let mut none = [0u8; 0];
        let _ = io.read(&mut none).await;
        assert_eq!(io.get_ref().calls, 1);
        io.flush().await.unwrap();
        assert_eq!(io.get_ref().calls, 1);
        let _ = io.read(&mut none).await;
        assert_eq!(io.get_ref().calls, 2);
        io.write_all(&frame[..10]).await.unwrap();
        let _ = io.read(&mut none).await;
        assert_eq!(io.get_ref().calls, 3, "a read writes what no flush put off");
        assert_eq!(io.get_ref().data.len(), 4 * frame.len() + 110);
    }

    /// HTTP/2 writes a request's HEADERS in one pass of the connection task and its DATA, frame
    /// by frame with a flush after each, in the next (another task hands them over in between):
    /// they go out in one write.
    #[tokio::test]
    async fn headers_and_the_data_of_the_next_pass_go_out_together() {
        let mut io = CoalescingIo::new(Counting::default());
        let mut none = [0u8; 0];
        io.write_all(&[1u8; 55]).await.unwrap();
        io.flush().await.unwrap();
        let _ = io.read(&mut none).await;
        assert_eq!(io.get_ref().calls, 0, "the HEADERS wait for the next pass");
        for _ in 0..3 {
            io.write_all(&[2u8; 16_393]).await.unwrap();
            io.flush().await.unwrap();
        }
        assert_eq!(io.get_ref().calls, 0);
        let _ = io.read(&mut none).await;
        assert_eq!(
            io.get_ref().calls,
            1,
            "the read ending that pass writes everything"
        );
        assert_eq!(io.get_ref().data.len(), 55 + 3 * 16_393);
    }

    #[tokio::test]
    async fn flushes_without_reads_still_write_in_the_end() {
        let mut io = CoalescingIo::new(Counting::default());
        io.write_all(b"hello").await.unwrap();
        for _ in 0..=MAX_PUT_OFF {
            io.flush().await.unwrap();
        }
        assert_eq!(io.get_ref().data, b"hello");
    }

    #[tokio::test]
    async fn shutdown_writes_what_waits_and_order_is_kept() {
        let mut io = CoalescingIo::new(Counting::default());
        let mut expected = Vec::new();
        for i in 0..1000u32 {
            let chunk = vec![(i % 251) as u8; (i as usize * 37) % 9000];
            expected.extend_from_slice(&chunk);
            io.write_all(&chunk).await.unwrap();
            if i % 7 == 0 {
                io.flush().await.unwrap();
            }
        }
        io.shutdown().await.unwrap();
        assert_eq!(io.get_ref().data, expected);
    }

    /// A peer that answers only what it received: write, flush once, then read (as a TLS
    /// handshake does) must not wait for ever.
    #[tokio::test]
    async fn a_write_flushed_once_then_a_read_is_not_held_back() {
        use std::time::Duration;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 64];
            while let Ok(n) = socket.read(&mut buf).await {
                if n == 0 || socket.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
        let mut io = CoalescingIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        for line in [&b"hello"[..], b"again"] {
            io.write_all(line).await.unwrap();
            io.flush().await.unwrap();
            let mut back = [0u8; 5];
            tokio::time::timeout(Duration::from_secs(5), io.read_exact(&mut back))
                .await
                .expect("the write was held back")
                .unwrap();
            assert_eq!(&back[..], line);
        }
    }

    /// Through the real client, HTTP/2 and the emulator: a lone small request is answered
    /// (nothing waits for traffic that never comes), and many large requests sent at once all
    /// arrive whole.
    #[tokio::test]
    async fn requests_through_http2_arrive_whole_and_at_once() {
        use crate::export::client::{ApiAddress, GrpcSink, TimeSeriesSink};
        use crate::export::request::RequestBuilder;
        use crate::model::{Point, PointKind, PointValue, SeriesPrototype};
        use std::sync::Arc;
        use std::time::Duration;

        let emulator = gcm_emulator::Emulator::new(gcm_emulator::EmulatorConfig::default());
        let running = emulator
            .serve("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = running.addr;
        let sink = Arc::new(
            GrpcSink::new(
                &ApiAddress {
                    url: format!("http://{addr}/?auth=false"),
                    host: addr.ip().to_string(),
                    port: addr.port(),
                    auth: false,
                    restricted_ips: false,
                },
                Duration::from_secs(10),
                1,
            )
            .unwrap(),
        );
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        // Request `r` holds `series` gauges with long label values (about 1 KB each).
        let request = |r: usize, series: usize| {
            let mut b = RequestBuilder::default();
            b.start("projects/p");
            for s in 0..series {
                let proto = SeriesPrototype::new(
                    "custom.googleapis.com/coalesce".into(),
                    &[("series".into(), format!("{r}-{s}-{}", "x".repeat(1000)))],
                    "global",
                    &[("project_id", "p".into())],
                    PointKind::GaugeDouble,
                );
                b.push(
                    &proto,
                    Point {
                        start_ms: None,
                        end_ms: now_ms,
                        value: PointValue::Double(s as f64),
                    },
                );
            }
            b.take()
        };
        tokio::time::timeout(
            Duration::from_secs(5),
            sink.create_time_series(request(0, 1)),
        )
        .await
        .expect("a lone request was held back")
        .unwrap();
        let sends: Vec<_> = (1..=40)
            .map(|r| {
                let (sink, body) = (sink.clone(), request(r, 200));
                tokio::spawn(async move { sink.create_time_series(body).await })
            })
            .collect();
        for send in sends {
            tokio::time::timeout(Duration::from_secs(20), send)
                .await
                .expect("a request was held back")
                .unwrap()
                .unwrap();
        }
        let stats = emulator.store().stats();
        assert_eq!(stats.points_accepted, 1 + 40 * 200);
        assert_eq!(stats.series_stored, 1 + 40 * 200);
    }
}

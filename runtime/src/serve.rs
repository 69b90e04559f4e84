//! The one way Herald serves HTTP. Every listener (ingest HTTP, ingest gRPC,
//! the admin listener) accepts and serves its connections here, so a slow or
//! silent client meets the same deadlines everywhere:
//!
//! - **Request headers** (HTTP/1): hyper's header timer. It starts whenever
//!   the connection waits for a request head: at accept, and again each time
//!   a kept-alive connection has answered a request. So a client that sends
//!   its headers one byte a second, and a kept-alive connection that sends
//!   no next request, are both closed after `header_read`.
//! - **Connection preface** (HTTP/2): the 24 bytes every HTTP/2 client sends
//!   first must arrive within `header_read` ([`DeadlineIo`]); after that the
//!   server pings every [`HTTP2_KEEPALIVE_INTERVAL`] and closes a connection
//!   whose peer does not answer within `header_read`.
//! - **No progress**: a connection on which no byte moves, either way, for
//!   `idle` is closed ([`DeadlineIo`]): a client that stops reading our
//!   answer, or goes silent where no other timer runs.
//! - **TLS handshake** (when the listener serves TLS): done within
//!   `header_read` of accept, like a request's headers; the deadlines above
//!   then apply to the decrypted connection.
//! - **Bodies** are read by handlers, which know how long a body may take:
//!   ingest answers `408` when an event does not arrive in time.
//!
//! On shutdown the listener closes, every connection is asked to finish
//! (HTTP/1 answers the request in flight and closes, HTTP/2 sends GOAWAY),
//! and [`serve`] returns when they have. Callers bound that wait with their
//! shutdown grace.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// How long a client may take to send a request's headers, by default.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may move no byte at all, by default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How often an HTTP/2 connection is pinged to prove its peer is alive.
pub const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);

/// The length of the HTTP/2 client connection preface
/// (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, RFC 9113 section 3.4).
const HTTP2_PREFACE_LEN: usize = 24;

/// Deadlines every listener of a process applies.
#[derive(Debug, Clone, clap::Args)]
pub struct ListenerArgs {
    /// How long a client may take to send a request's headers (HTTP/1), its
    /// connection preface (HTTP/2) or its answer to a keepalive ping; an idle
    /// kept-alive HTTP/1 connection is closed after it too. Ten seconds is
    /// ample for a client on a working network and short enough that slow
    /// clients cannot pile up.
    #[arg(long, env = "HERALD_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub header_read_timeout: Duration,
    /// How long a connection may go without a byte moving either way before
    /// it is closed (a client that stops reading its answer, or that goes
    /// silent mid-request). Keep it above the longest a request may take to
    /// answer (`--publish-timeout` twice); HTTP/2 pings keep live gRPC
    /// connections moving.
    #[arg(long, env = "HERALD_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_positive_duration)]
    pub idle_timeout: Duration,
}

impl ListenerArgs {
    /// The resolved deadlines.
    #[must_use]
    pub fn deadlines(&self) -> Deadlines {
        Deadlines {
            header_read: self.header_read_timeout,
            idle: self.idle_timeout,
        }
    }
}

/// Parses a duration as [`crate::nats::parse_duration`] does, refusing zero.
///
/// # Errors
///
/// A message saying what is wrong.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = crate::nats::parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(duration)
}

/// The connection deadlines of a listener (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Request headers (HTTP/1), the preface and ping answers (HTTP/2).
    pub header_read: Duration,
    /// No byte moving either way.
    pub idle: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            header_read: DEFAULT_HEADER_READ_TIMEOUT,
            idle: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// The HTTP version a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (Flux controllers, probes, Prometheus).
    Http1,
    /// HTTP/2 only, with prior knowledge (gRPC).
    Http2,
}

/// Serves `router` on `listener` until `shutdown` fires, then stops
/// accepting and waits for the connections to finish. With `tls`, every
/// connection speaks TLS, and its handshake must be done within the header
/// deadline, as a request's headers must.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    protocol: Protocol,
    tls: Option<TlsAcceptor>,
    deadlines: Deadlines,
    shutdown: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Connections::new(protocol, deadlines));
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    accept_failed(&error, &shutdown).await;
                    continue;
                }
            },
        };
        // Answers are written whole; Nagle would only delay them.
        stream.set_nodelay(true).ok();
        let service = TowerToHyperService::new(router.clone());
        // Taken now, so that shutdown waits for a handshake under way too.
        let watcher = graceful.watcher();
        let connections = Arc::clone(&connections);
        match &tls {
            None => {
                tokio::spawn(async move { connections.serve(stream, service, watcher).await });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Some(stream) = connections.handshake(stream, &acceptor).await {
                        connections.serve(stream, service, watcher).await;
                    }
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// How every connection of a listener is served.
struct Connections {
    protocol: Protocol,
    deadlines: Deadlines,
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

// === impl Connections ===

impl Connections {
    fn new(protocol: Protocol, deadlines: Deadlines) -> Self {
        let mut http1 = hyper::server::conn::http1::Builder::new();
        // Half-closed connections allowed: hyper then does not read the
        // connection while a request is being answered to find out whether
        // the client left. That read takes a new buffer for every request
        // (the request's headers and body still share the old one), and an
        // event whose client left is still stored as it would be anyway: a
        // retried POST is recognised by its id.
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(deadlines.header_read)
            .half_close(true);
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .keep_alive_interval(HTTP2_KEEPALIVE_INTERVAL)
            .keep_alive_timeout(deadlines.header_read);
        Self {
            protocol,
            deadlines,
            http1,
            http2,
        }
    }

    /// Serves HTTP on `stream` (plain TCP, or TLS once the handshake is done).
    async fn serve<T>(&self, stream: T, service: Service, watcher: Watcher)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = DeadlineIo::new(stream, self.deadlines.idle);
        let served = match self.protocol {
            Protocol::Http1 => {
                let connection = self.http1.serve_connection(TokioIo::new(io), service);
                watcher.watch(connection).await
            }
            Protocol::Http2 => {
                let io = io.with_preface(HTTP2_PREFACE_LEN, self.deadlines.header_read);
                let connection = self.http2.serve_connection(TokioIo::new(io), service);
                watcher.watch(connection).await
            }
        };
        if let Err(error) = served {
            tracing::debug!(error = %error, "Closed a connection.");
        }
    }

    /// The TLS handshake, within the header deadline. A client that speaks
    /// plain HTTP/1 is answered `400` saying so, as Go's servers do.
    async fn handshake(
        &self,
        stream: TcpStream,
        acceptor: &TlsAcceptor,
    ) -> Option<Box<TlsStream<TcpStream>>> {
        let within = self.deadlines.header_read;
        let opened = tokio::time::timeout(within, async {
            let mut first = [0u8; 1];
            if stream.peek(&mut first).await? == 0 {
                return Ok(Handshake::Closed);
            }
            if first[0] != TLS_HANDSHAKE_RECORD {
                return Ok(Handshake::Plain(stream));
            }
            let tls = acceptor.accept(stream).await?;
            io::Result::Ok(Handshake::Done(Box::new(tls)))
        })
        .await;
        match opened {
            Ok(Ok(Handshake::Done(tls))) => Some(tls),
            Ok(Ok(Handshake::Plain(stream))) => {
                if self.protocol == Protocol::Http1 {
                    refuse_plain_http(stream).await;
                }
                None
            }
            Ok(Ok(Handshake::Closed)) => None,
            Ok(Err(error)) => {
                tracing::debug!(error = %error, "A TLS handshake failed.");
                None
            }
            Err(_) => {
                tracing::debug!(limit = ?within, "A client did not finish its TLS handshake in time.");
                None
            }
        }
    }
}

/// The service every connection runs.
type Service = TowerToHyperService<axum::Router>;

/// The first byte of a TLS connection: a handshake record (RFC 8446 section 5.1).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// How long a refused plain HTTP client may take to read its answer.
const PLAIN_HTTP_LINGER: Duration = Duration::from_secs(1);

enum Handshake {
    Done(Box<TlsStream<TcpStream>>),
    Plain(TcpStream),
    Closed,
}

/// Answers a plain HTTP request on a TLS listener with `400`, then reads
/// what the client still sends (briefly), so that closing does not reset
/// the connection before the client has read the answer.
async fn refuse_plain_http(mut stream: TcpStream) {
    let body = "This listener speaks HTTPS: use https:// in the address.\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    tracing::debug!("Refused a plain HTTP request on a TLS listener.");
    let answered = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    };
    tokio::time::timeout(PLAIN_HTTP_LINGER, answered).await.ok();
}

/// A failed accept: per-connection errors are skipped; others (such as too
/// many open files) are logged and retried after a pause, as axum does.
async fn accept_failed(error: &io::Error, shutdown: &CancellationToken) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %error, "Cannot accept a connection; retrying in a second.");
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(Duration::from_secs(1)) => {}
    }
}

/// A connection that fails with [`io::ErrorKind::TimedOut`] when no byte has
/// moved either way for `idle`, or (optionally) when its first bytes have
/// not all arrived in time.
///
/// The first-bytes deadline is how HTTP/2 gets a header timeout: hyper has
/// none for HTTP/2, and its handshake waits for the client preface for ever.
/// Failing the read is cleaner than a timer around the whole connection
/// future: it needs no knowledge of the protocol state, hyper sees an
/// ordinary I/O error and closes the connection, and the deadline disarms
/// itself for good once the preface is in.
#[derive(Debug)]
pub struct DeadlineIo<T> {
    inner: T,
    idle: Duration,
    last_progress: Instant,
    idle_timer: Pin<Box<Sleep>>,
    preface: Option<Preface>,
}

#[derive(Debug)]
struct Preface {
    remaining: usize,
    within: Duration,
    timer: Pin<Box<Sleep>>,
}

// === impl DeadlineIo ===

impl<T> DeadlineIo<T> {
    /// Wraps `inner`, failing it when no byte moves for `idle`.
    pub fn new(inner: T, idle: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            idle,
            last_progress: now,
            idle_timer: Box::pin(tokio::time::sleep_until(now + idle)),
            preface: None,
        }
    }

    /// Also fails reads when the first `len` bytes have not all arrived
    /// within `within` of now.
    #[must_use]
    pub fn with_preface(mut self, len: usize, within: Duration) -> Self {
        self.preface = Some(Preface {
            remaining: len,
            within,
            timer: Box::pin(tokio::time::sleep(within)),
        });
        self
    }

    fn progressed(&mut self) {
        // The timer is moved lazily, when it fires (see `poll_expired`).
        self.last_progress = Instant::now();
    }

    fn read_some(&mut self, read: usize) {
        if read == 0 {
            return;
        }
        self.progressed();
        let preface_done = self.preface.as_mut().is_some_and(|preface| {
            preface.remaining = preface.remaining.saturating_sub(read);
            preface.remaining == 0
        });
        if preface_done {
            self.preface = None;
        }
    }

    /// Whether a deadline has passed; registers `cx` with the timers when not.
    fn poll_expired(&mut self, cx: &mut Context<'_>, reading: bool) -> Option<io::Error> {
        if reading
            && let Some(preface) = &mut self.preface
            && preface.timer.as_mut().poll(cx).is_ready()
        {
            return Some(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client did not open the connection within {:?}",
                    preface.within
                ),
            ));
        }
        loop {
            if self.idle_timer.as_mut().poll(cx).is_pending() {
                return None;
            }
            let deadline = self.last_progress + self.idle;
            if deadline <= Instant::now() {
                return Some(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("nothing moved on the connection for {:?}", self.idle),
                ));
            }
            self.idle_timer.as_mut().reset(deadline);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for DeadlineIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.read_some(buf.filled().len() - before);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => match this.poll_expired(cx, true) {
                Some(error) => Poll::Ready(Err(error)),
                None => Poll::Pending,
            },
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for DeadlineIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<T> DeadlineIo<T> {
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Ready(Ok(written)) => {
                if written > 0 {
                    self.progressed();
                }
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => match self.poll_expired(cx, false) {
                Some(error) => Poll::Ready(Err(error)),
                None => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_times_out_after_the_idle_deadline() {
        let (client, server) = tokio::io::duplex(64);
        let mut io = DeadlineIo::new(server, Duration::from_secs(5));
        let mut client = client;
        client.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        io.read_exact(&mut buf).await.unwrap();
        let started = Instant::now();
        let error = io.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn progress_moves_the_idle_deadline() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = DeadlineIo::new(server, Duration::from_secs(5));
        let writer = tokio::spawn(async move {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                client.write_all(b"x").await.unwrap();
            }
            client
        });
        let mut buf = [0u8; 4];
        io.read_exact(&mut buf).await.unwrap();
        let _client = writer.await.unwrap();
        let error = io.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_preface_that_does_not_arrive_in_time_fails_the_read() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = DeadlineIo::new(server, Duration::from_secs(60))
            .with_preface(4, Duration::from_secs(1));
        client.write_all(b"PR").await.unwrap();
        let mut buf = [0u8; 4];
        let error = io.read_exact(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn once_the_preface_is_in_only_the_idle_deadline_applies() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = DeadlineIo::new(server, Duration::from_secs(60))
            .with_preface(4, Duration::from_secs(1));
        client.write_all(b"PRI ").await.unwrap();
        let mut buf = [0u8; 4];
        io.read_exact(&mut buf).await.unwrap();
        let started = Instant::now();
        let error = io.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(60));
    }
}

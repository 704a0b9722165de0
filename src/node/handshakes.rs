//! The handshake thread: every TLS handshake of a client connection runs on a thread of
//! its own, at a lower scheduling priority than the threads that serve authenticated
//! connections.
//!
//! Why: a handshake (a signature, a key exchange, the client certificate's verification)
//! is the costliest work anyone can make the node do before it knows who they are, and it
//! is CPU, which no budget of connections bounds. On the request workers, a flood of
//! handshakes (from many addresses, each within its `AddressRate`) would take the CPU the
//! authenticated clients' requests wait for. Here the kernel gives those requests the CPU
//! first, and handshakes get what is left: under a flood, new connections are slower to
//! start (and may hit `handshake_timeout_ms`), but open ones are served as before.
//!
//! Invariant: a connection's TCP socket is registered with exactly one runtime's reactor at
//! a time: the handshake thread's during the handshake, the node's afterwards
//! ([`Movable::rehome`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How much lower the handshake thread's priority is than the node's other threads (a
/// nice value, 0–19): at 10 a busy request worker gets about nine times its CPU when both
/// want it, yet handshakes still progress on a node busy with requests.
const NICENESS: i32 = 10;

/// Why a handshake did not give a connection.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The TLS handshake failed (the client's certificate refused, a protocol error, the
    /// client went away).
    #[error("TLS handshake refused: {0}")]
    Refused(io::Error),
    /// It did not finish within `limits.handshake_timeout_ms`.
    #[error("TLS handshake timed out")]
    TimedOut,
    /// The socket could not be moved between runtimes (out of file descriptors or epoll
    /// registrations), or the handshake thread is gone (the node is stopping).
    #[error("cannot hand the connection over: {0}")]
    Handover(io::Error),
}

/// The handshake thread's runtime; it stops when this is dropped.
#[derive(Debug)]
pub struct Handshakes {
    handle: Handle,
    /// Dropped (or sent) to stop the thread's runtime.
    _stop: oneshot::Sender<()>,
}

impl Handshakes {
    /// Starts the handshake thread.
    pub fn start() -> io::Result<Handshakes> {
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready, handle) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("tls-handshakes".into())
            .spawn(move || {
                // On Linux a nice value is a thread's own: this lowers only this thread.
                if let Err(e) = rustix::process::setpriority_process(None, NICENESS) {
                    tracing::warn!(error = %e, "cannot lower the handshake thread's priority");
                }
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(runtime) => {
                        let _ = ready.send(Ok(runtime.handle().clone()));
                        // Runs the handshakes spawned onto it until the node drops its
                        // `Handshakes`; the runtime is dropped here, on its own thread.
                        let _ = runtime.block_on(stopped);
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                    }
                }
            })?;
        let handle = handle
            .recv()
            .map_err(|_| io::Error::other("the handshake thread ended before it started"))??;
        Ok(Handshakes {
            handle,
            _stop: stop,
        })
    }

    /// Runs the TLS handshake of `tcp` on the handshake thread, at most `timeout`, and
    /// returns the connection registered with the calling task's runtime.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        acceptor: TlsAcceptor,
        timeout: Duration,
    ) -> Result<TlsStream<Movable>, HandshakeError> {
        let std = tcp.into_std().map_err(HandshakeError::Handover)?;
        let handshake = self.handle.spawn(async move {
            let tcp = TcpStream::from_std(std).map_err(HandshakeError::Handover)?;
            match tokio::time::timeout(timeout, acceptor.accept(Movable::new(tcp))).await {
                Ok(Ok(tls)) => Ok(tls),
                Ok(Err(e)) => Err(HandshakeError::Refused(e)),
                Err(_) => Err(HandshakeError::TimedOut),
            }
        });
        let mut tls = handshake
            .await
            .map_err(|e| HandshakeError::Handover(io::Error::other(e)))??;
        tls.get_mut().0.rehome().map_err(HandshakeError::Handover)?;
        Ok(tls)
    }
}

/// A TCP stream that can move from one runtime's reactor to another's.
#[derive(Debug)]
pub struct Movable {
    /// `None` only inside [`Movable::rehome`].
    tcp: Option<TcpStream>,
}

impl Movable {
    fn new(tcp: TcpStream) -> Movable {
        Movable { tcp: Some(tcp) }
    }

    /// Registers the socket with the runtime of the calling task instead of the one it was
    /// registered with (which must still be running).
    fn rehome(&mut self) -> io::Result<()> {
        let tcp = self.tcp.take().ok_or_else(gone)?;
        let std = tcp.into_std()?;
        self.tcp = Some(TcpStream::from_std(std)?);
        Ok(())
    }

    fn pinned(self: Pin<&mut Self>) -> io::Result<Pin<&mut TcpStream>> {
        match self.get_mut().tcp.as_mut() {
            Some(tcp) => Ok(Pin::new(tcp)),
            None => Err(gone()),
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the socket was lost moving runtimes",
    )
}

impl AsyncRead for Movable {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.pinned() {
            Ok(tcp) => tcp.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Movable {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.pinned() {
            Ok(tcp) => tcp.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.pinned() {
            Ok(tcp) => tcp.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.pinned() {
            Ok(tcp) => tcp.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.pinned() {
            Ok(tcp) => tcp.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A socket registered on one runtime keeps working after it moved to another.
    #[tokio::test]
    async fn a_socket_moved_to_this_runtime_still_reads_and_writes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.expect("connect");
            tcp.write_all(b"ping").await.expect("write");
            let mut back = [0u8; 4];
            tcp.read_exact(&mut back).await.expect("read");
            back
        });
        let (tcp, _) = listener.accept().await.expect("accept");
        // Registered with another runtime first, as during a handshake.
        let other = Handshakes::start().expect("thread");
        let std = tcp.into_std().expect("std");
        let mut moved = other
            .handle
            .spawn(async move { Movable::new(TcpStream::from_std(std).expect("register")) })
            .await
            .expect("joined");
        moved.rehome().expect("rehome");
        let mut got = [0u8; 4];
        moved.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"ping");
        moved.write_all(b"pong").await.expect("write");
        assert_eq!(&client.await.expect("client"), b"pong");
    }
}

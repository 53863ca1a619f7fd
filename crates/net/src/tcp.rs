//! TCP: listeners and streams, with an async API in the style of tokio's.

use crate::Error;
use crate::stack::{Inner, Listener, SmolStack};
use alloc::vec::Vec;
use core::future::poll_fn;
use core::task::{Context, Poll};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{self, State};
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};

/// A listening TCP port. Up to `backlog` connections can be in their
/// handshake or waiting for `accept` at once (each has its own listening
/// socket); further SYNs are dropped, so clients retry, until one is
/// accepted or times out.
pub(crate) struct SmolListener {
    stack: SmolStack,
    port: u16,
}

impl SmolListener {
    /// Listens on `port` on every address of `stack`.
    pub fn bind(stack: &SmolStack, port: u16) -> Result<Self, Error> {
        if port == 0 {
            return Err(Error::InvalidInput);
        }
        let mut i = stack.inner.borrow_mut();
        if i.listeners.contains_key(&port) {
            return Err(Error::AddrInUse);
        }
        let mut pool = Vec::new();
        for _ in 0..i.limits.backlog {
            match i.listen_socket(port) {
                Ok(h) => pool.push(h),
                Err(e) => {
                    for h in pool {
                        i.remove(h);
                    }
                    return Err(e);
                }
            }
        }
        i.listeners.insert(
            port,
            Listener {
                pool,
                waiters: Vec::new(),
            },
        );

        i.notify();
        Ok(Self {
            stack: stack.clone(),
            port,
        })
    }

    /// The port.
    pub fn local_port(&self) -> u16 {
        self.port
    }

    /// Waits for a connection; returns it and the peer's address.
    pub async fn accept(&self) -> Result<(SmolStream, IpEndpoint), Error> {
        let mut yielded = false;
        poll_fn(|cx| {
            if morgana::cooperate(cx, &mut yielded) {
                return Poll::Pending;
            }
            let mut guard = self.stack.inner.borrow_mut();
            let i = &mut *guard;
            let pool = &i.listeners.get(&self.port).expect("bound").pool;
            let ready = pool.iter().position(|&h| {
                let s = i.sockets.get::<tcp::Socket>(h);
                matches!(s.state(), State::Established | State::CloseWait)
            });
            let Some(pos) = ready else {
                // The driver wakes every waiting accept() when a connection
                // is ready (smoltcp keeps one waker per socket, which
                // several waiting tasks would keep stealing from each other).
                let l = i.listeners.get_mut(&self.port).expect("bound");
                if !l.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    l.waiters.push(cx.waker().clone());
                }
                return Poll::Pending;
            };
            let h = i
                .listeners
                .get_mut(&self.port)
                .expect("bound")
                .pool
                .swap_remove(pos);
            // Replace the listening socket the connection took.
            if let Ok(n) = i.listen_socket(self.port) {
                i.listeners.get_mut(&self.port).expect("bound").pool.push(n);
            }
            let s = i.sockets.get_mut::<tcp::Socket>(h);
            s.set_timeout(Some(smoltcp::time::Duration::from_micros(
                i.limits.idle_timeout.as_micros() as u64,
            )));
            let peer = s.remote_endpoint().expect("connected");
            i.update_full_ports();
            i.notify();
            Poll::Ready(Ok((
                SmolStream {
                    stack: self.stack.clone(),
                    handle: h,
                },
                peer,
            )))
        })
        .await
    }
}

impl Drop for SmolListener {
    fn drop(&mut self) {
        let mut i = self.stack.inner.borrow_mut();
        if let Some(l) = i.listeners.remove(&self.port) {
            for h in l.pool {
                let s = i.sockets.get_mut::<tcp::Socket>(h);
                if s.state() == State::Listen {
                    i.remove(h);
                } else {
                    // A handshake in progress: let it end, then free it.
                    i.retire(h);
                }
            }
        }
    }
}

/// A TCP connection. Reading and writing take `&self`, so a reader task
/// and a writer task can share one stream. Dropping a stream closes it
/// gracefully in the background; its memory is freed once closed.
///
/// One task at a time may wait on each direction: one in `read` (or
/// `close`), one in `write`, `write_all`, `flush` or `shutdown`. A second
/// task waiting on the same direction replaces the first's wake-up (as in
/// smoltcp), so the first is not woken again until something else polls
/// it: give each direction of a stream to one task.
pub(crate) struct SmolStream {
    stack: SmolStack,
    handle: SocketHandle,
}

impl core::fmt::Debug for SmolStream {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SmolStream")
            .field("local", &self.local_addr())
            .field("peer", &self.peer_addr())
            .finish()
    }
}

impl SmolStream {
    /// Connects to `remote` (an address and port).
    pub async fn connect(stack: &SmolStack, remote: impl Into<IpEndpoint>) -> Result<Self, Error> {
        let remote = remote.into();
        let handle = {
            let mut guard = stack.inner.borrow_mut();
            let i = &mut *guard;
            let mut s = i.tcp_socket();
            // The handshake gets the handshake timeout; the connection, once
            // up, the idle one.
            s.set_timeout(Some(smoltcp::time::Duration::from_micros(
                i.limits.handshake_timeout.as_micros() as u64,
            )));
            let port = i.ephemeral_port();
            s.connect(i.iface.context(), remote, IpListenEndpoint::from(port))
                .map_err(|e| match e {
                    tcp::ConnectError::Unaddressable => Error::Unreachable,
                    tcp::ConnectError::InvalidState => Error::InvalidInput,
                })?;
            let h = i.add(s)?;
            i.notify();
            h
        };
        let stream = Self {
            stack: stack.clone(),
            handle,
        };
        let start = morgana::Instant::now();
        let mut yielded = false;
        poll_fn(|cx| {
            if morgana::cooperate(cx, &mut yielded) {
                return Poll::Pending;
            }
            stream.with_inner(|i, h| {
                let limit = i.limits.handshake_timeout;
                let idle = i.limits.idle_timeout;
                let s = i.sockets.get_mut::<tcp::Socket>(h);
                match s.state() {
                    State::Established | State::CloseWait => {
                        s.set_timeout(Some(smoltcp::time::Duration::from_micros(
                            idle.as_micros() as u64
                        )));
                        Poll::Ready(Ok(()))
                    }
                    State::SynSent | State::SynReceived => {
                        s.register_send_waker(cx.waker());
                        Poll::Pending
                    }
                    // Closed: a reset, or no answer within the timeout.
                    _ if start.elapsed() >= limit => Poll::Ready(Err(Error::TimedOut)),
                    _ => Poll::Ready(Err(Error::ConnectionRefused)),
                }
            })
        })
        .await?;
        Ok(stream)
    }

    fn with<R>(&self, f: impl FnOnce(&mut tcp::Socket<'static>) -> R) -> R {
        let mut i = self.stack.inner.borrow_mut();
        f(i.sockets.get_mut::<tcp::Socket>(self.handle))
    }

    fn with_inner<R>(&self, f: impl FnOnce(&mut Inner, SocketHandle) -> R) -> R {
        f(&mut self.stack.inner.borrow_mut(), self.handle)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<IpEndpoint> {
        self.with(|s| s.remote_endpoint())
    }

    /// The local address.
    pub fn local_addr(&self) -> Option<IpEndpoint> {
        self.with(|s| s.local_endpoint())
    }

    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<usize, Error>> {
        self.with_inner(|i, h| {
            let s = i.sockets.get_mut::<tcp::Socket>(h);
            if s.can_recv() {
                let n = s.recv_slice(buf).map_err(|_| Error::ConnectionReset)?;
                // The window opened: the driver may need to say so.
                i.notify();
                return Poll::Ready(Ok(n));
            }
            if !s.may_recv() {
                // The end of the stream if the peer sent FIN; a reset or a
                // timed-out connection otherwise.
                return Poll::Ready(match s.recv_slice(&mut []) {
                    Err(tcp::RecvError::Finished) => Ok(0),
                    _ => Err(Error::ConnectionReset),
                });
            }
            s.register_recv_waker(cx.waker());
            Poll::Pending
        })
    }

    /// Reads into `buf`; returns 0 at the end of the stream.
    pub async fn read(&self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut yielded = false;
        poll_fn(|cx| {
            if morgana::cooperate(cx, &mut yielded) {
                return Poll::Pending;
            }
            self.poll_read(cx, buf)
        })
        .await
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<Result<usize, Error>> {
        self.with_inner(|i, h| {
            let s = i.sockets.get_mut::<tcp::Socket>(h);
            if !s.may_send() {
                return Poll::Ready(Err(Error::ConnectionReset));
            }
            if s.can_send() {
                let n = s.send_slice(buf).map_err(|_| Error::ConnectionReset)?;
                i.notify();
                return Poll::Ready(Ok(n));
            }
            s.register_send_waker(cx.waker());
            Poll::Pending
        })
    }

    /// Writes some of `buf` (waits while the send buffer is full); returns
    /// how much.
    pub async fn write(&self, buf: &[u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut yielded = false;
        poll_fn(|cx| {
            if morgana::cooperate(cx, &mut yielded) {
                return Poll::Pending;
            }
            self.poll_write(cx, buf)
        })
        .await
    }

    /// Waits until everything written has been acknowledged by the peer.
    pub async fn flush(&self) -> Result<(), Error> {
        let mut yielded = false;
        poll_fn(|cx| {
            if morgana::cooperate(cx, &mut yielded) {
                return Poll::Pending;
            }
            self.with(|s| {
                if s.send_queue() == 0 {
                    Poll::Ready(Ok(()))
                } else if !s.may_send()
                    && !matches!(s.state(), State::FinWait1 | State::Closing | State::LastAck)
                {
                    Poll::Ready(Err(Error::ConnectionReset))
                } else {
                    s.register_send_waker(cx.waker());
                    Poll::Pending
                }
            })
        })
        .await
    }

    /// Closes the sending half (sends FIN); reading still works.
    pub fn shutdown(&self) {
        self.with_inner(|i, h| {
            i.sockets.get_mut::<tcp::Socket>(h).close();
            i.notify();
        })
    }

    /// Closes the connection gracefully and waits until the peer has
    /// closed its half too (or the connection times out).
    pub async fn close(self) -> Result<(), Error> {
        self.shutdown();
        let mut yielded = false;
        poll_fn(|cx| {
            if morgana::cooperate(cx, &mut yielded) {
                return Poll::Pending;
            }
            self.with(|s| match s.state() {
                State::Closed | State::TimeWait => Poll::Ready(Ok(())),
                _ => {
                    s.register_recv_waker(cx.waker());
                    s.register_send_waker(cx.waker());
                    Poll::Pending
                }
            })
        })
        .await
    }

    /// Drops the connection at once (sends RST).
    pub fn abort(&self) {
        self.with_inner(|i, h| {
            i.sockets.get_mut::<tcp::Socket>(h).abort();
            i.notify();
        })
    }
}

impl Drop for SmolStream {
    fn drop(&mut self) {
        let mut i = self.stack.inner.borrow_mut();
        i.retire(self.handle);
    }
}

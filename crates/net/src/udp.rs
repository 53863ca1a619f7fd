//! UDP sockets.

use crate::Error;
use crate::stack::SmolStack;
use alloc::vec;
use core::future::poll_fn;
use core::task::Poll;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp;
use smoltcp::wire::IpEndpoint;

/// A UDP socket bound to a local port.
pub(crate) struct SmolUdp {
    stack: SmolStack,
    handle: SocketHandle,
    port: u16,
}

impl SmolUdp {
    /// Binds `port` (0 picks an ephemeral port).
    pub fn bind(stack: &SmolStack, port: u16) -> Result<Self, Error> {
        let mut i = stack.inner.borrow_mut();
        let port = if port == 0 { i.ephemeral_port() } else { port };
        // smoltcp would deliver every datagram to the first of two sockets
        // bound to one port: refuse the second.
        if i.udp_ports.contains(&port) {
            return Err(Error::AddrInUse);
        }
        let (n, d) = (i.limits.udp_buffer, i.limits.udp_datagrams);
        let meta = || vec![udp::PacketMetadata::EMPTY; d];
        let mut s = udp::Socket::new(
            udp::PacketBuffer::new(meta(), vec![0; n]),
            udp::PacketBuffer::new(meta(), vec![0; n]),
        );
        s.bind(port).map_err(|_| Error::AddrInUse)?;
        let handle = i.add(s)?;
        i.udp_ports.push(port);
        Ok(Self {
            stack: stack.clone(),
            handle,
            port,
        })
    }

    /// The local port.
    pub fn local_port(&self) -> u16 {
        self.port
    }

    /// Sends `buf` to `remote` (waits while the send buffer is full).
    pub async fn send_to(&self, buf: &[u8], remote: impl Into<IpEndpoint>) -> Result<(), Error> {
        let remote = remote.into();
        let mut yielded = false;
        poll_fn(|cx| {
            if morgana::cooperate(cx, &mut yielded) {
                return Poll::Pending;
            }
            let mut i = self.stack.inner.borrow_mut();
            let s = i.sockets.get_mut::<udp::Socket>(self.handle);
            match s.send_slice(buf, remote) {
                Ok(()) => {
                    i.notify();
                    Poll::Ready(Ok(()))
                }
                Err(udp::SendError::BufferFull) => {
                    s.register_send_waker(cx.waker());
                    Poll::Pending
                }
                Err(udp::SendError::Unaddressable) => Poll::Ready(Err(Error::Unreachable)),
            }
        })
        .await
    }

    /// Receives one datagram into `buf`; returns its length and sender. A
    /// datagram longer than `buf` is dropped with [`Error::InvalidInput`].
    pub async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, IpEndpoint), Error> {
        let mut yielded = false;
        poll_fn(|cx| {
            if morgana::cooperate(cx, &mut yielded) {
                return Poll::Pending;
            }
            let mut i = self.stack.inner.borrow_mut();
            let s = i.sockets.get_mut::<udp::Socket>(self.handle);
            match s.recv_slice(buf) {
                Ok((n, meta)) => Poll::Ready(Ok((n, meta.endpoint))),
                // The datagram did not fit in `buf` and is lost.
                Err(udp::RecvError::Truncated) => Poll::Ready(Err(Error::InvalidInput)),
                Err(udp::RecvError::Exhausted) => {
                    s.register_recv_waker(cx.waker());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

impl Drop for SmolUdp {
    fn drop(&mut self) {
        let mut i = self.stack.inner.borrow_mut();
        i.remove(self.handle);
        i.udp_ports.retain(|&p| p != self.port);
    }
}

//! DNS lookups through the configured (or DHCP-provided) servers.

use crate::Error;
use crate::stack::SmolStack;
use alloc::vec::Vec;
use core::future::poll_fn;
use core::task::Poll;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::dns::{self, GetQueryResultError, QueryHandle, StartQueryError};
use smoltcp::wire::{DnsQueryType, IpAddress};

/// A query in flight: cancelled (its slot freed) if dropped unfinished.
struct Query<'a> {
    stack: &'a SmolStack,
    socket: SocketHandle,
    handle: Option<QueryHandle>,
}

impl Drop for Query<'_> {
    fn drop(&mut self) {
        if let Some(q) = self.handle.take() {
            let mut i = self.stack.inner.borrow_mut();
            i.sockets
                .get_mut::<dns::Socket>(self.socket)
                .cancel_query(q);
        }
    }
}

impl SmolStack {
    /// Resolves `name` to its IPv4 addresses (an address literal resolves
    /// to itself).
    pub async fn dns_lookup(&self, name: &str) -> Result<Vec<IpAddress>, Error> {
        if let Ok(ip) = name.parse::<IpAddress>() {
            return Ok(alloc::vec![ip]);
        }
        let mut query = {
            let mut guard = self.inner.borrow_mut();
            let i = &mut *guard;
            if i.dns_servers.is_empty() {
                return Err(Error::NoDnsServer);
            }
            let h = match i.dns {
                Some(h) => h,
                None => {
                    let slots: Vec<Option<dns::DnsQuery>> = (0..8).map(|_| None).collect();
                    let h = i.add(dns::Socket::new(&i.dns_servers.clone(), slots))?;
                    i.dns = Some(h);
                    h
                }
            };
            let s = i.sockets.get_mut::<dns::Socket>(h);
            let q = s
                .start_query(i.iface.context(), name, DnsQueryType::A)
                .map_err(|e| match e {
                    StartQueryError::NoFreeSlot => Error::TooManyQueries,
                    StartQueryError::InvalidName | StartQueryError::NameTooLong => {
                        Error::InvalidInput
                    }
                })?;
            i.notify();
            Query {
                stack: self,
                socket: h,
                handle: Some(q),
            }
        };
        let mut yielded = false;
        poll_fn(|cx| {
            if morgana::cooperate(cx, &mut yielded) {
                return Poll::Pending;
            }
            let q = query.handle.expect("pending");
            let mut i = self.inner.borrow_mut();
            let s = i.sockets.get_mut::<dns::Socket>(query.socket);
            match s.get_query_result(q) {
                Ok(addrs) => {
                    query.handle = None;
                    Poll::Ready(Ok(addrs.into_iter().collect()))
                }
                Err(GetQueryResultError::Pending) => {
                    s.register_query_waker(q, cx.waker());
                    Poll::Pending
                }
                Err(GetQueryResultError::Failed) => {
                    query.handle = None;
                    Poll::Ready(Err(Error::DnsFailed))
                }
            }
        })
        .await
    }
}

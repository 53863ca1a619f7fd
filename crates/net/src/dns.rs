//! DNS lookups through the configured (or DHCP-provided) servers.

use crate::Error;
use crate::stack::Stack;
use alloc::vec::Vec;
use core::future::poll_fn;
use core::task::Poll;
use smoltcp::socket::dns::{self, GetQueryResultError};
use smoltcp::wire::{DnsQueryType, IpAddress};

impl Stack {
    /// Resolves `name` to its IPv4 addresses (an address literal resolves
    /// to itself).
    pub async fn dns_lookup(&self, name: &str) -> Result<Vec<IpAddress>, Error> {
        if let Ok(ip) = name.parse::<IpAddress>() {
            return Ok(alloc::vec![ip]);
        }
        let query = {
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
                .map_err(|_| Error::InvalidInput)?;
            i.notify();
            (h, q)
        };
        poll_fn(|cx| {
            let mut i = self.inner.borrow_mut();
            let s = i.sockets.get_mut::<dns::Socket>(query.0);
            match s.get_query_result(query.1) {
                Ok(addrs) => Poll::Ready(Ok(addrs.into_iter().collect())),
                Err(GetQueryResultError::Pending) => {
                    s.register_query_waker(query.1, cx.waker());
                    Poll::Pending
                }
                Err(GetQueryResultError::Failed) => Poll::Ready(Err(Error::DnsFailed)),
            }
        })
        .await
    }
}

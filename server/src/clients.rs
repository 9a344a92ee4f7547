//! Connections per client: which peer addresses count as one client, and a count of the
//! connections each holds, so that one client cannot take every connection slot.
//!
//! A client is an IPv4 address, or an IPv6 /64 prefix: one host (or one home router)
//! usually holds a whole /64 and can connect from any address in it. An IPv4-mapped IPv6
//! address (`::ffff:a.b.c.d`, what a dual-stack listener sees of an IPv4 peer) counts as
//! its IPv4 address.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};

/// The addresses that count as one client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Client {
    V4(Ipv4Addr),
    /// The first 64 bits; the rest are zero.
    V6Prefix(Ipv6Addr),
}

impl Client {
    pub(crate) fn of(peer: IpAddr) -> Client {
        match peer {
            IpAddr::V4(v4) => Client::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Client::V4(v4),
                None => Client::V6Prefix(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
            },
        }
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Client::V4(v4) => write!(f, "{v4}"),
            Client::V6Prefix(prefix) => write!(f, "{prefix}/64"),
        }
    }
}

/// The connections each client holds, at most `limit` each. Only clients holding one are
/// in the map, so it never has more entries than there are connections open. Its hasher
/// is the standard library's randomly keyed one: clients choose their addresses, and must
/// not be able to choose colliding ones.
#[derive(Clone, Debug)]
pub(crate) struct ClientSlots {
    limit: NonZeroUsize,
    held: Arc<Mutex<HashMap<Client, NonZeroUsize>>>,
}

impl ClientSlots {
    pub(crate) fn new(limit: NonZeroUsize) -> ClientSlots {
        ClientSlots {
            limit,
            held: Arc::default(),
        }
    }

    pub(crate) fn limit(&self) -> NonZeroUsize {
        self.limit
    }

    /// A slot for one more connection from `client`, or `None` if it already holds
    /// `limit`. The slot is given back when it is dropped.
    pub(crate) fn acquire(&self, client: Client) -> Option<Slot> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        match held.entry(client) {
            Entry::Vacant(entry) => {
                entry.insert(NonZeroUsize::MIN);
            }
            Entry::Occupied(mut entry) => {
                let count = entry.get_mut();
                if *count >= self.limit {
                    return None;
                }
                *count = count.saturating_add(1);
            }
        }
        Some(Slot {
            client,
            held: self.held.clone(),
        })
    }

    /// How many connections `client` holds.
    #[cfg(test)]
    fn count(&self, client: Client) -> usize {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.get(&client).map_or(0, |n| n.get())
    }

    /// How many clients hold a connection.
    #[cfg(test)]
    fn clients(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// One connection's place in its client's count. It moves into the connection's task, so
/// that however the task ends (the client closes, the watchdog or the shutdown deadline
/// ends it, it panics) dropping the task gives the slot back.
#[derive(Debug)]
pub(crate) struct Slot {
    client: Client,
    held: Arc<Mutex<HashMap<Client, NonZeroUsize>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Poisoning cannot leave the map half-updated (nothing panics while it is
        // locked), and a slot may be dropped while a panicking task unwinds.
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Entry::Occupied(mut entry) = held.entry(self.client) {
            match NonZeroUsize::new(entry.get().get() - 1) {
                Some(fewer) => {
                    entry.insert(fewer);
                }
                None => {
                    entry.remove();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(address: &str) -> Client {
        Client::of(address.parse().unwrap())
    }

    #[test]
    fn ipv4_addresses_are_clients_of_their_own() {
        assert_eq!(client("192.0.2.1"), client("192.0.2.1"));
        assert_ne!(client("192.0.2.1"), client("192.0.2.2"));
        assert_ne!(client("127.0.0.1"), client("127.0.0.2"));
        assert_eq!(client("192.0.2.1").to_string(), "192.0.2.1");
    }

    #[test]
    fn an_ipv4_mapped_address_is_its_ipv4_address() {
        assert_eq!(client("::ffff:192.0.2.1"), client("192.0.2.1"));
        assert_ne!(client("::ffff:192.0.2.1"), client("::ffff:192.0.2.2"));
        assert_eq!(client("::ffff:192.0.2.1").to_string(), "192.0.2.1");
        // Only the mapped form: an address that merely ends in the same bits is IPv6.
        assert_ne!(client("64:ff9b::192.0.2.1"), client("192.0.2.1"));
    }

    #[test]
    fn ipv6_addresses_are_grouped_by_their_64_bit_prefix() {
        let one = client("2001:db8:1:2::1");
        assert_eq!(one, client("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_eq!(one, client("2001:db8:1:2:abcd::7"));
        assert_ne!(one, client("2001:db8:1:3::1"));
        assert_ne!(one, client("2001:db8:2:2::1"));
        assert_eq!(one.to_string(), "2001:db8:1:2::/64");
        assert_eq!(client("::1"), client("::2"));
        assert_ne!(client("::1"), client("0.0.0.1"));
    }

    #[test]
    fn each_client_holds_at_most_the_limit_and_dropping_gives_a_slot_back() {
        let slots = ClientSlots::new(NonZeroUsize::new(2).unwrap());
        let (a, b) = (client("192.0.2.1"), client("2001:db8::1"));
        let a1 = slots.acquire(a).unwrap();
        let a2 = slots.acquire(a).unwrap();
        assert!(slots.acquire(a).is_none());
        // A refusal counts nothing, and other clients are untouched by it.
        assert_eq!(slots.count(a), 2);
        let b1 = slots.acquire(b).unwrap();
        assert_eq!(slots.count(b), 1);
        drop(a1);
        assert_eq!(slots.count(a), 1);
        let a3 = slots.acquire(a).unwrap();
        assert!(slots.acquire(a).is_none());
        drop((a2, a3, b1));
        // Clients holding nothing are forgotten: the map is bounded by the connections.
        assert_eq!(slots.clients(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_task_gives_its_slot_back_however_it_ends() {
        let slots = ClientSlots::new(NonZeroUsize::new(3).unwrap());
        let a = client("192.0.2.1");
        let ended = slots.acquire(a).unwrap();
        let panicked = slots.acquire(a).unwrap();
        let aborted = slots.acquire(a).unwrap();
        let ended = tokio::spawn(async move {
            let _slot = ended;
        });
        let panicked = tokio::spawn(async move {
            let _slot = panicked;
            panic!("a connection's task panicking (expected by this test)");
        });
        let aborted = tokio::spawn(async move {
            let _slot = aborted;
            std::future::pending::<()>().await;
        });
        aborted.abort();
        ended.await.unwrap();
        assert!(panicked.await.unwrap_err().is_panic());
        assert!(aborted.await.unwrap_err().is_cancelled());
        assert_eq!(slots.count(a), 0);
        assert_eq!(slots.clients(), 0);
    }
}

//! Who may hold a connection, before and after authentication.
//!
//! A connection that has not yet shown a certificate costs the server a
//! socket and a handshake, and anyone on the network can open one. So
//! those are kept apart from the sessions of the mission's laptops:
//!
//! - [`Gate`]: a small budget of unauthenticated connections, with a cap
//!   per IP address. A new connection is always let in; when the budget
//!   (or its address's share) is full, the *oldest* unauthenticated
//!   connection is dropped to make room. Accepting never pauses, so a flood
//!   of connections that never finish a handshake cannot keep a laptop from
//!   reaching the server: its handshake only has to outlast the newest
//!   arrivals, not wait for a free slot behind them.
//! - [`CertSlots`]: once a laptop is authenticated, a cap on the sessions
//!   one certificate may hold at once, so one stolen or broken laptop
//!   cannot take every session slot.
//!
//! Both are plain data behind a mutex: every operation is a few map
//! lookups, taken once per connection.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::store::CertId;

/// A client certificate as the server tells laptops apart: its hash (for
/// [`CertSlots`]) and its serial and subject (recorded with each report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// SHA-256 of the certificate's DER.
    pub hash: [u8; 32],
    /// Serial and subject.
    pub id: CertId,
}

impl ClientCert {
    /// Reads a certificate the handshake accepted (the mission CA signed
    /// it). A certificate x509-parser cannot read still gets its hash, with
    /// the serial and subject marked unreadable.
    pub fn from_der(der: &[u8]) -> ClientCert {
        let hash = Sha256::digest(der).into();
        let id = match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => CertId { serial: hex::encode(cert.raw_serial()), subject: cert.subject().to_string() },
            Err(_) => CertId { serial: "unreadable".into(), subject: "unreadable".into() },
        };
        ClientCert { hash, id }
    }
}

/// The unauthenticated connections, oldest first.
#[derive(Debug)]
pub struct Gate {
    inner: Mutex<GateInner>,
    /// Most unauthenticated connections at once.
    budget: usize,
    /// Most unauthenticated connections from one IP address.
    per_ip: usize,
}

#[derive(Debug, Default)]
struct GateInner {
    /// Ticket number of the next arrival.
    next: u64,
    /// Waiting connections by arrival: their address, and how to drop them.
    waiting: BTreeMap<u64, (IpAddr, oneshot::Sender<Eviction>)>,
    /// Waiting connections per address.
    per_ip: HashMap<IpAddr, usize>,
    /// Connections dropped to make room, since start.
    evicted: u64,
}

/// Which budget a dropped unauthenticated connection made room in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// The budget of all unauthenticated connections was full.
    Budget,
    /// Its address held its cap of them.
    PerIp,
}

/// An unauthenticated connection's place at the gate. Dropping it (the
/// handshake finished, failed or timed out) frees the place.
#[derive(Debug)]
pub struct Ticket {
    gate: Arc<Gate>,
    id: u64,
}

impl Gate {
    /// A gate for `budget` unauthenticated connections, at most `per_ip`
    /// from one address (both at least 1).
    pub fn new(budget: usize, per_ip: usize) -> Arc<Gate> {
        Arc::new(Gate { inner: Mutex::new(GateInner::default()), budget: budget.max(1), per_ip: per_ip.max(1) })
    }

    fn lock(&self) -> MutexGuard<'_, GateInner> {
        // The data stays consistent at every await-free step; a panic
        // elsewhere while holding the lock cannot leave it half-changed.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Lets a new connection from `ip` in, dropping the oldest from the
    /// same address if that address is at its cap, else the oldest of all
    /// if the budget is full. The receiver fires if this connection is
    /// itself dropped later to make room.
    pub fn admit(self: &Arc<Gate>, ip: IpAddr) -> (Ticket, oneshot::Receiver<Eviction>) {
        let mut g = self.lock();
        if g.per_ip.get(&ip).copied().unwrap_or(0) >= self.per_ip {
            let oldest = g.waiting.iter().find(|(_, (from, _))| *from == ip).map(|(id, _)| *id);
            if let Some(id) = oldest {
                g.evict(id, Eviction::PerIp);
            }
        } else if g.waiting.len() >= self.budget {
            if let Some(id) = g.waiting.keys().next().copied() {
                g.evict(id, Eviction::Budget);
            }
        }
        let id = g.next;
        g.next += 1;
        let (tx, rx) = oneshot::channel();
        g.waiting.insert(id, (ip, tx));
        *g.per_ip.entry(ip).or_default() += 1;
        (Ticket { gate: self.clone(), id }, rx)
    }

    /// Unauthenticated connections now.
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Connections dropped to make room since the server started.
    pub fn evicted(&self) -> u64 {
        self.lock().evicted
    }
}

impl GateInner {
    /// Removes `id`; returns whether it was there.
    fn remove(&mut self, id: u64) -> Option<oneshot::Sender<Eviction>> {
        let (ip, tx) = self.waiting.remove(&id)?;
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
        Some(tx)
    }

    fn evict(&mut self, id: u64, why: Eviction) {
        if let Some(tx) = self.remove(id) {
            self.evicted += 1;
            // The connection may have just finished on its own.
            let _ = tx.send(why);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.lock().remove(self.id);
    }
}

/// Sessions held per client certificate.
#[derive(Debug)]
pub struct CertSlots {
    held: Mutex<HashMap<[u8; 32], usize>>,
    /// Most sessions one certificate may hold.
    cap: usize,
}

/// One session's slot of its certificate; dropping it frees the slot.
#[derive(Debug)]
pub struct CertSlot {
    slots: Arc<CertSlots>,
    cert: [u8; 32],
}

impl CertSlots {
    /// At most `cap` sessions per certificate (at least 1).
    pub fn new(cap: usize) -> Arc<CertSlots> {
        Arc::new(CertSlots { held: Mutex::new(HashMap::new()), cap: cap.max(1) })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 32], usize>> {
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A slot for the certificate whose SHA-256 is `cert`, or `None` when it
    /// already holds the cap.
    pub fn take(self: &Arc<CertSlots>, cert: [u8; 32]) -> Option<CertSlot> {
        let mut held = self.lock();
        let n = held.entry(cert).or_default();
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(CertSlot { slots: self.clone(), cert })
    }

    /// The cap.
    pub fn cap(&self) -> usize {
        self.cap
    }
}

impl Drop for CertSlot {
    fn drop(&mut self) {
        let mut held = self.slots.lock();
        if let Some(n) = held.get_mut(&self.cert) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.cert);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn a_full_gate_drops_its_oldest_connection_for_a_new_one() {
        let gate = Gate::new(3, 3);
        let mut held: Vec<_> = (1..=3).map(|i| gate.admit(ip(i))).collect();
        assert_eq!(gate.waiting(), 3);
        let (_t4, _r4) = gate.admit(ip(4));
        assert_eq!(gate.waiting(), 3, "the budget holds");
        assert_eq!(held[0].1.try_recv(), Ok(Eviction::Budget), "the oldest was told to go");
        assert!(held[1].1.try_recv().is_err() && held[2].1.try_recv().is_err());
        assert_eq!(gate.evicted(), 1);
        // Its ticket, dropped by the connection task, frees nothing twice.
        held.remove(0);
        assert_eq!(gate.waiting(), 3);
    }

    #[test]
    fn one_address_at_its_cap_makes_room_from_its_own_connections() {
        let gate = Gate::new(10, 2);
        let mut other = gate.admit(ip(9));
        let mut a1 = gate.admit(ip(1));
        let mut a2 = gate.admit(ip(1));
        let _a3 = gate.admit(ip(1));
        assert_eq!(a1.1.try_recv(), Ok(Eviction::PerIp), "the address's oldest went");
        assert!(a2.1.try_recv().is_err());
        assert!(other.1.try_recv().is_err(), "another address's older connection stays");
        assert_eq!(gate.waiting(), 3);
    }

    #[test]
    fn a_finished_handshake_frees_its_place_at_once() {
        let gate = Gate::new(1, 1);
        let (ticket, _rx) = gate.admit(ip(1));
        drop(ticket);
        assert_eq!(gate.waiting(), 0);
        let (_t, mut rx) = gate.admit(ip(1));
        assert!(rx.try_recv().is_err());
        assert_eq!(gate.evicted(), 0);
    }

    #[test]
    fn a_certificate_holds_at_most_its_cap_of_sessions() {
        let slots = CertSlots::new(2);
        let a = slots.take([1; 32]).expect("first");
        let _b = slots.take([1; 32]).expect("second");
        assert!(slots.take([1; 32]).is_none(), "the third is refused");
        assert!(slots.take([2; 32]).is_some(), "another certificate is not");
        drop(a);
        assert!(slots.take([1; 32]).is_some(), "a closed session frees its slot");
    }
}

//! A TCP relay that cuts the link on command, and can be a slow one: the
//! "bad satellite link" of the fault suite and of the benchmark.
//!
//! Every connection to [`Relay::addr`] is forwarded to the upstream address.
//! Bytes are counted across all connections and both directions; when the
//! count reaches the cut point set with [`Relay::cut_after`], every open
//! connection is dropped mid-stream (possibly mid-frame), and new
//! connections are refused until [`Relay::heal`].
//!
//! [`Relay::start_shaped`] makes each direction of each connection a link
//! of a given [`Shape`]: packets of at most [`PACKET`] bytes are serialized
//! one after another at the link's rate, then delayed by its one-way
//! delay, and delivered in order. The relay takes bytes from the sender only
//! while its bottleneck queue (packets waiting for the link, at most
//! [`QUEUE`] bytes) has room, so a sender that sends too much waits in its
//! own socket buffers, as behind a real modem: what is measured through it
//! is the sender's own pacing, not a relay that swallows everything.
//! Counting and cutting happen where the bytes are delivered.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

/// The largest packet the shaped link carries: an Ethernet MTU.
pub const PACKET: usize = 1500;

/// The shaped link's bottleneck queue, bytes: about half a second at
/// 256 kbit/s, a modest modem buffer.
pub const QUEUE: usize = 16 * 1024;

/// What a shaped link does to the bytes: its rate and its one-way delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// The rate each direction carries, bits a second.
    pub bits_per_s: u64,
    /// One-way propagation delay.
    pub delay: Duration,
}

impl Shape {
    /// The bad satellite link of DESIGN §13: 256 kbit/s, 300 ms each way.
    pub const SATELLITE: Shape = Shape { bits_per_s: 256_000, delay: Duration::from_millis(300) };

    /// How long `bytes` occupy the link.
    pub fn serialization(&self, bytes: usize) -> Duration {
        Duration::from_secs_f64(bytes as f64 * 8.0 / self.bits_per_s.max(1) as f64)
    }

    /// The link's rate in bytes a second.
    pub fn bytes_per_s(&self) -> f64 {
        self.bits_per_s as f64 / 8.0
    }
}

#[derive(Default)]
struct State {
    /// Bytes forwarded so far (both directions, all connections).
    forwarded: AtomicU64,
    /// Cut when `forwarded` reaches this; `u64::MAX` means never.
    cut_at: AtomicU64,
    /// True once cut, until healed.
    cut: AtomicBool,
    /// Wakes every pump when the link is cut.
    on_cut: Notify,
}

/// A running relay. Dropping it stops the relay thread.
pub struct Relay {
    /// Where clients connect.
    pub addr: SocketAddr,
    state: Arc<State>,
    _runtime: tokio::runtime::Runtime,
}

impl Relay {
    /// Starts a relay on 127.0.0.1 forwarding to `upstream` as fast as
    /// loopback goes.
    pub fn start(upstream: SocketAddr) -> Relay {
        Relay::start_with(upstream, None)
    }

    /// Starts a relay on 127.0.0.1 forwarding to `upstream` over a link of
    /// `shape` (each direction of each connection its own link).
    pub fn start_shaped(upstream: SocketAddr, shape: Shape) -> Relay {
        Relay::start_with(upstream, Some(shape))
    }

    fn start_with(upstream: SocketAddr, shape: Option<Shape>) -> Relay {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("relay runtime");
        let state = Arc::new(State { cut_at: AtomicU64::new(u64::MAX), ..Default::default() });
        let listener = runtime.block_on(async { listen(shape.is_some()) }).expect("relay bind");
        let addr = listener.local_addr().expect("relay addr");
        let st = state.clone();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if st.cut.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let st = st.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else { return };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    // When either direction ends or the link is cut, drop both.
                    match shape {
                        None => tokio::select! {
                            _ = pump(cr, sw, st.clone()) => {},
                            _ = pump(sr, cw, st.clone()) => {},
                        },
                        Some(shape) => tokio::select! {
                            _ = link(cr, sw, st.clone(), shape) => {},
                            _ = link(sr, cw, st.clone(), shape) => {},
                        },
                    }
                });
            }
        });
        Relay { addr, state, _runtime: runtime }
    }

    /// Cuts every connection once `bytes` more bytes have been forwarded.
    pub fn cut_after(&self, bytes: u64) {
        let now = self.state.forwarded.load(Ordering::SeqCst);
        self.state.cut_at.store(now.saturating_add(bytes), Ordering::SeqCst);
    }

    /// Whether the link has been cut.
    pub fn is_cut(&self) -> bool {
        self.state.cut.load(Ordering::SeqCst)
    }

    /// Restores the link: no cut point, connections accepted again.
    pub fn heal(&self) {
        self.state.cut_at.store(u64::MAX, Ordering::SeqCst);
        self.state.cut.store(false, Ordering::SeqCst);
    }

    /// Bytes forwarded so far.
    pub fn forwarded(&self) -> u64 {
        self.state.forwarded.load(Ordering::SeqCst)
    }
}

/// The relay's listening socket. A shaped relay's receive buffer is kept
/// small (each accepted connection inherits it), so bytes the link has no
/// room for wait on the sender's side rather than in the relay's kernel.
fn listen(shaped: bool) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    if shaped {
        socket.set_recv_buffer_size(QUEUE as u32)?;
    }
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    socket.listen(1024)
}

/// Copies one direction, byte-exact up to the cut point.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, st: Arc<State>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if st.cut.load(Ordering::SeqCst) {
            return;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
            _ = st.on_cut.notified() => return,
        };
        if !forward(&st, &mut to, &buf[..n]).await {
            return;
        }
    }
}

/// Writes `data` onward, counting it, and cuts the link if the cut point
/// falls within it (writing only the bytes before it). False once the
/// direction should end: cut, or the peer gone.
async fn forward(st: &State, to: &mut OwnedWriteHalf, data: &[u8]) -> bool {
    let n = data.len() as u64;
    let before = st.forwarded.fetch_add(n, Ordering::SeqCst);
    let cut_at = st.cut_at.load(Ordering::SeqCst);
    let allowed = if before + n >= cut_at { cut_at.saturating_sub(before) as usize } else { data.len() };
    if allowed > 0 && to.write_all(&data[..allowed]).await.is_err() {
        return false;
    }
    if allowed < data.len() || before + n >= cut_at {
        st.cut.store(true, Ordering::SeqCst);
        st.on_cut.notify_waiters();
        return false;
    }
    true
}

/// Packets on their way through one shaped direction, beyond the queue:
/// a bound on the relay's memory (at 256 kbit/s and 300 ms about seven
/// are on the wire).
const ON_THE_WIRE: usize = 256;

/// One direction of a shaped link: [`transmit`] takes packets onto the
/// link at its rate, [`deliver`] hands them on after its delay. Ends when
/// everything taken has been delivered, or on a cut.
async fn link(from: OwnedReadHalf, to: OwnedWriteHalf, st: Arc<State>, shape: Shape) {
    let (tx, rx) = mpsc::channel(ON_THE_WIRE);
    let deliver = deliver(rx, to, st.clone());
    tokio::pin!(deliver);
    tokio::select! {
        // The sender is done: what is on the wire still arrives.
        _ = transmit(from, tx, st, shape) => deliver.await,
        _ = &mut deliver => {},
    }
}

/// Reads packets as the bottleneck queue has room and stamps each with the
/// moment its last bit arrives: serialized after the packets before it
/// (the link's `next_free` clock), then the propagation delay.
async fn transmit(mut from: OwnedReadHalf, tx: mpsc::Sender<(Instant, Vec<u8>)>, st: Arc<State>, shape: Shape) {
    let mut next_free = Instant::now();
    let queue = shape.serialization(QUEUE);
    loop {
        if st.cut.load(Ordering::SeqCst) {
            return;
        }
        // The queue holds what is still waiting for the link: take no more
        // until it has room.
        if let Some(room) = next_free.checked_sub(queue) {
            if room > Instant::now() {
                tokio::select! {
                    _ = tokio::time::sleep_until(room) => {},
                    _ = st.on_cut.notified() => return,
                }
            }
        }
        let mut buf = vec![0u8; PACKET];
        let n = tokio::select! {
            r = from.read(&mut buf) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
            _ = st.on_cut.notified() => return,
        };
        buf.truncate(n);
        next_free = next_free.max(Instant::now()) + shape.serialization(n);
        if tx.send((next_free + shape.delay, buf)).await.is_err() {
            return;
        }
    }
}

/// Hands each packet on when it arrives, in order; closes the write side
/// once the sender's end has arrived.
async fn deliver(mut rx: mpsc::Receiver<(Instant, Vec<u8>)>, mut to: OwnedWriteHalf, st: Arc<State>) {
    loop {
        let next = tokio::select! {
            p = rx.recv() => p,
            _ = st.on_cut.notified() => return,
        };
        let Some((at, data)) = next else { break };
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {},
            _ = st.on_cut.notified() => return,
        }
        if st.cut.load(Ordering::SeqCst) || !forward(&st, &mut to, &data).await {
            return;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::thread;
    use std::time::Instant;

    use super::*;

    /// An upstream that reads one connection to its end; returns the bytes
    /// read and when the last of them came.
    fn sink() -> (SocketAddr, thread::JoinHandle<(usize, Instant)>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let (mut total, mut last, mut buf) = (0, Instant::now(), vec![0u8; 64 * 1024]);
            while let Ok(n @ 1..) = s.read(&mut buf) {
                total += n;
                last = Instant::now();
            }
            (total, last)
        });
        (addr, h)
    }

    #[test]
    fn pushing_bytes_takes_their_serialization_plus_the_delay() {
        let (up, got) = sink();
        let shape = Shape { bits_per_s: 512_000, delay: Duration::from_millis(100) };
        let relay = Relay::start_shaped(up, shape);
        let data = vec![7u8; 96 * 1024];
        let start = Instant::now();
        let mut c = TcpStream::connect(relay.addr).unwrap();
        c.write_all(&data).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let (n, last) = got.join().unwrap();
        assert_eq!(n, data.len());
        let took = last.duration_since(start).as_secs_f64();
        // 96 KiB at 64 kB/s is 1.54 s, and the last packet 0.1 s on its way.
        let want = shape.serialization(data.len()).as_secs_f64() + 0.1;
        assert!(took > 0.9 * want && took < 1.6 * want, "took {took:.3} s, the link alone takes {want:.3} s");
        assert_eq!(relay.forwarded(), data.len() as u64);
    }

    #[test]
    fn an_echo_takes_a_round_trip() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let up = l.local_addr().unwrap();
        thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 100];
            while let Ok(n @ 1..) = s.read(&mut buf) {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        });
        let relay = Relay::start_shaped(up, Shape { bits_per_s: 256_000, delay: Duration::from_millis(150) });
        let mut c = TcpStream::connect(relay.addr).unwrap();
        let mut back = [0u8; 100];
        // The first exchange, then a second on the open connection.
        for _ in 0..2 {
            let start = Instant::now();
            c.write_all(&[1u8; 100]).unwrap();
            c.read_exact(&mut back).unwrap();
            let rtt = start.elapsed().as_secs_f64();
            assert!((0.29..0.6).contains(&rtt), "a round trip took {rtt:.3} s, twice the delay is 0.3 s");
        }
    }

    #[test]
    fn a_shaped_relay_cuts_and_heals_like_a_plain_one() {
        let (up, got) = sink();
        let relay = Relay::start_shaped(up, Shape { bits_per_s: 8_000_000, delay: Duration::from_millis(10) });
        relay.cut_after(10_000);
        let mut c = TcpStream::connect(relay.addr).unwrap();
        // The relay may drop the connection before every byte is written.
        let _ = c.write_all(&[3u8; 64 * 1024]);
        let (n, _) = got.join().unwrap();
        assert_eq!(n, 10_000, "exactly the bytes before the cut point arrive");
        assert!(relay.is_cut());
        assert!(relay.forwarded() >= 10_000);
        relay.heal();
        assert!(!relay.is_cut());
    }
}

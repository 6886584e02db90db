//! A TCP relay that cuts the link on command: the "bad satellite link" of
//! the fault suite.
//!
//! Every connection to [`Relay::addr`] is forwarded to the upstream address.
//! Bytes are counted across all connections and both directions; when the
//! count reaches the cut point set with [`Relay::cut_after`], every open
//! connection is dropped mid-stream (possibly mid-frame), and new
//! connections are refused until [`Relay::heal`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

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
    /// Starts a relay on 127.0.0.1 forwarding to `upstream`.
    pub fn start(upstream: SocketAddr) -> Relay {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("relay runtime");
        let state = Arc::new(State { cut_at: AtomicU64::new(u64::MAX), ..Default::default() });
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).expect("relay bind");
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
                    let a = pump(cr, sw, st.clone());
                    let b = pump(sr, cw, st.clone());
                    // When either direction ends or the link is cut, drop both.
                    tokio::select! {
                        _ = a => {},
                        _ = b => {},
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

/// Copies one direction, byte-exact up to the cut point.
async fn pump(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, st: Arc<State>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if st.cut.load(Ordering::SeqCst) {
            return;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
            _ = st.on_cut.notified() => return,
        };
        let before = st.forwarded.fetch_add(n as u64, Ordering::SeqCst);
        let cut_at = st.cut_at.load(Ordering::SeqCst);
        let allowed = if before + n as u64 >= cut_at { cut_at.saturating_sub(before) as usize } else { n };
        if allowed > 0 && to.write_all(&buf[..allowed]).await.is_err() {
            return;
        }
        if allowed < n || before + n as u64 >= cut_at {
            st.cut.store(true, Ordering::SeqCst);
            st.on_cut.notify_waiters();
            return;
        }
    }
}

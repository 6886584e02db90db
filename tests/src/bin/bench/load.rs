//! The load: typical reports, signed chains, mTLS sessions that speak the wire protocol, a queue filled in process.

use super::*;

/// A typical report: a shelling heard at a bearing and distance, a weapon
/// assessment and a paragraph of description (about 300 signed bytes).
pub(super) fn typical_envelope(device: [u8; 32], seq: u64, prev: [u8; 32]) -> Envelope {
    let now = truce_shared::time::now_ms();
    Envelope {
        version: ENVELOPE_VERSION,
        device,
        seq,
        prev,
        recorded_at: now,
        amends: None,
        observation: Observation {
            observed_at: now - 300_000,
            observed_until: None,
            position: Position { lat: 48.0159, lon: 37.8029, accuracy_m: Some(10) },
            bearing_deg: Some(315),
            distance_m: Some((5_000, 7_000)),
            category: Category::Shelling,
            effect: None,
            weapon: Some("152mm artillery".into()),
            count: None,
            basis: Basis::Heard,
            description: format!(
                "Report {seq}: two series of outgoing fire heard to the north-west, about six rounds each, \
                 assessed as 152mm artillery; no impacts observed from the patrol base."
            ),
            attachments: vec![],
        },
    }
}

/// One device's chain, signing as it goes.
pub(super) struct Chain {
    pub(super) key: SigningKey,
    pub(super) seq: u64,
    pub(super) prev: [u8; 32],
}

impl Chain {
    pub(super) fn new() -> Chain {
        Chain { key: truce_shared::signing::generate_key(), seq: 0, prev: [0; 32] }
    }

    pub(super) fn public_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    pub(super) fn next(&mut self) -> Result<SignedReport> {
        self.seq += 1;
        let env = typical_envelope(self.key.verifying_key().to_bytes(), self.seq, self.prev);
        let signed = truce_shared::sign(&self.key, &env)?;
        self.prev = signed.id();
        Ok(signed)
    }
}

pub(super) fn tls_connector(pki: &Pki) -> Result<TlsConnector> {
    let config = truce_agent::tls::client_config(
        Path::new(&pki.file("ca.pem")),
        Path::new(&pki.file("bench.pem")),
        Path::new(&pki.file("bench.key")),
    )?;
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Connects over mTLS and says Hello; returns the stream after Welcome.
pub(super) async fn open_session(
    connector: &TlsConnector,
    addr: SocketAddr,
    device: [u8; 32],
) -> Result<TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector.connect(ServerName::try_from("127.0.0.1")?, tcp).await?;
    let hello = Message::Hello { protocol: PROTOCOL_VERSION, agent_version: "bench".into(), device };
    wire::write_message(&mut tls, &hello, limits::MAX_FRAME).await?;
    match wire::read_message(&mut tls, limits::MAX_FRAME).await? {
        Some(Message::Welcome { .. }) => Ok(tls),
        other => bail!("expected Welcome, got {other:?}"),
    }
}

/// Sends every Submit frame, keeping up to `window` unacknowledged; returns
/// how many reports came back Accepted.
pub(super) async fn submit_all(
    tls: TlsStream<tokio::net::TcpStream>,
    frames: Vec<Vec<u8>>,
    window: usize,
) -> Result<usize> {
    let (mut rd, mut wr) = tokio::io::split(tls);
    let total = frames.len();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(window);
    let writer = tokio::spawn(async move {
        for f in frames {
            // A permit per frame in flight; the reader returns them.
            tx.send(()).await?;
            wr.write_all(&(f.len() as u32).to_be_bytes()).await?;
            wr.write_all(&f).await?;
            wr.flush().await?;
        }
        Ok::<_, anyhow::Error>(wr)
    });
    let mut accepted = 0;
    for _ in 0..total {
        match wire::read_message(&mut rd, limits::MAX_FRAME).await? {
            Some(Message::Ack { results, .. }) => {
                accepted += results.iter().filter(|o| o.status == Status::Accepted).count();
            }
            other => bail!("expected Ack, got {other:?}"),
        }
        rx.recv().await;
    }
    let mut wr = writer.await??;
    let bye = encoding::encode(&Message::Bye);
    wr.write_all(&(bye.len() as u32).to_be_bytes()).await?;
    wr.write_all(&bye).await?;
    wr.shutdown().await?;
    Ok(accepted)
}

/// Fills an agent's queue with `n` signed reports in one transaction,
/// straight into its SQLite file (recording them one durable commit at a
/// time would take minutes and measure nothing new).
pub(super) fn fill_queue(agent: &Agent, n: u64) -> Result<()> {
    let secrets = agent.secrets();
    let data_key = secrets.data_key();
    let mut chain = Chain { key: SigningKey::from_bytes(&secrets.seed), seq: 0, prev: [0; 32] };
    let mut db = rusqlite::Connection::open(agent.dir.path().join("queue.sqlite"))?;
    let tx = db.transaction()?;
    {
        // Sealed rows, as `record` writes them.
        let mut st = tx.prepare("INSERT INTO reports(seq, id, sealed, size) VALUES (?1, ?2, ?3, ?4)")?;
        for _ in 0..n {
            let r = chain.next()?;
            let sealed = data_key.seal_report(chain.seq, &r.id(), &r.body, &r.signature.0);
            st.execute(rusqlite::params![chain.seq as i64, &r.id()[..], sealed, (r.body.len() + 64) as i64])?;
        }
    }
    tx.commit()?;
    Ok(())
}

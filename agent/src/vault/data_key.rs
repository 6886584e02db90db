//! The data key: its subkeys, sealed queue rows and sealed secrets.

use super::*;

/// The subkeys of the data key (see the module docs), wiped when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DataKey {
    queue: [u8; 32],
    pub(super) file: [u8; 32],
    secret: [u8; 32],
    pub(super) name: [u8; 32],
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(…)")
    }
}

impl DataKey {
    /// The subkeys of a data key root.
    pub fn derive(root: &[u8; 32]) -> DataKey {
        DataKey {
            queue: subkey("truce-agent subkey queue v1", root),
            file: subkey("truce-agent subkey file v1", root),
            secret: subkey("truce-agent subkey secret v1", root),
            name: subkey("truce-agent subkey name v1", root),
        }
    }

    fn queue_ad(seq: u64, id: &Bytes32) -> Vec<u8> {
        let mut ad = Vec::with_capacity(QUEUE_AD.len() + 40);
        ad.extend_from_slice(QUEUE_AD);
        ad.extend_from_slice(&seq.to_be_bytes());
        ad.extend_from_slice(id);
        ad
    }

    /// Seals a report's signed bytes for the queue row `(seq, id)`.
    pub fn seal_report(&self, seq: u64, id: &Bytes32, body: &[u8], signature: &[u8; 64]) -> Vec<u8> {
        let mut plain = Vec::with_capacity(body.len() + 64);
        plain.extend_from_slice(body);
        plain.extend_from_slice(signature);
        seal(&self.queue, &Self::queue_ad(seq, id), &plain)
    }

    /// Opens a queue row: the body and signature, or `None` if the row was
    /// not sealed by this key for this `(seq, id)`.
    pub fn open_report(&self, seq: u64, id: &Bytes32, sealed: &[u8]) -> Option<(Vec<u8>, [u8; 64])> {
        let mut plain = open(&self.queue, &Self::queue_ad(seq, id), sealed)?;
        let split = plain.len().checked_sub(64)?;
        let sig: [u8; 64] = plain[split..].try_into().ok()?;
        plain.truncate(split);
        Some((plain, sig))
    }

    /// Seals a small secret (the TLS key) under its label.
    pub fn seal_secret(&self, label: &str, plain: &[u8]) -> Vec<u8> {
        seal(&self.secret, label.as_bytes(), plain)
    }

    /// Opens a sealed secret.
    pub fn open_secret(&self, label: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        open(&self.secret, label.as_bytes(), sealed).map(Zeroizing::new)
    }
}

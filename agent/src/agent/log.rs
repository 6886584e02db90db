//! The server's transparency log as this laptop knows it (DESIGN §9): the
//! pinned log key, the key `link --server-key` said to expect, and the last
//! checkpoint whose proofs verified. All three live in the queue's meta
//! table (readable without the passphrase, so `status` shows them).

use truce_shared::log::{open_checkpoint, Checkpoint};
use truce_shared::signing::fingerprint;
use truce_shared::Bytes32;

use super::Agent;
use crate::error::{AgentError, Result};
use crate::sync::SyncError;

const PINNED: &str = "log_key";
const EXPECTED: &str = "log_key_expected";
const KEPT: &str = "log_checkpoint";

/// What `link --server-key` accepts: the log key's fingerprint or the
/// whole public key ([`KeyPin`]).
pub use truce_shared::log::KeyPin as ServerKey;

/// Reads `--server-key`.
pub fn parse_server_key(text: &str) -> Result<ServerKey> {
    ServerKey::parse(text).ok_or_else(|| {
        AgentError::input(
            "--server-key",
            format!(
                "{text:?} is not a log key fingerprint: give the 16 hex digits the coordinator read out \
                 (abcd-ef01-2345-6789), or the 64-hex public key"
            ),
        )
    })
}

/// How the log key of a session relates to the pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinning {
    /// It is the pinned key.
    Known,
    /// Nothing was pinned; it matched what `link --server-key` gave and is
    /// now pinned.
    Expected,
    /// Nothing was pinned or expected: pinned now, on first sight.
    FirstSeen,
}

impl Agent {
    /// The pinned log key, if any.
    pub fn log_key(&self) -> Result<Option<Bytes32>> {
        let Some(hx) = self.queue.meta(PINNED)? else { return Ok(None) };
        let mut key = [0u8; 32];
        hex::decode_to_slice(hx.trim(), &mut key)
            .map_err(|_| AgentError::Corrupt(format!("the pinned log key {hx:?} is not 64 hex digits")))?;
        Ok(Some(key))
    }

    /// What `link --server-key` said to expect, if it was given.
    pub fn expected_log_key(&self) -> Result<Option<ServerKey>> {
        self.queue.meta(EXPECTED)?.map(|t| parse_server_key(&t)).transpose()
    }

    /// Records what `link --server-key` gave. A pin that does not match it
    /// is dropped, with the checkpoint kept under it (that was another
    /// log); a whole public key is pinned at once.
    pub fn expect_log_key(&mut self, expected: &ServerKey) -> Result<()> {
        if let Some(pinned) = self.log_key()? {
            if !expected.matches(&pinned) {
                self.queue.remove_meta(&[PINNED, KEPT])?;
            }
        }
        self.queue.set_meta(&[(EXPECTED, &expected.text())])?;
        if let ServerKey::Key(k) = expected {
            self.queue.set_meta(&[(PINNED, &hex::encode(k))])?;
        }
        Ok(())
    }

    /// Checks the log key a server showed against the pin (pinning it if
    /// nothing is pinned yet and it matches what `link --server-key` gave,
    /// or nothing was given). A different key is refused.
    pub fn check_log_key(&mut self, addr: &str, key: &Bytes32) -> Result<Pinning> {
        if let Some(pinned) = self.log_key()? {
            if pinned == *key {
                return Ok(Pinning::Known);
            }
            return Err(SyncError::LogKeyChanged {
                addr: addr.to_string(),
                pinned: fingerprint(&pinned),
                shown: fingerprint(key),
            }
            .into());
        }
        let how = match self.expected_log_key()? {
            Some(e) if e.matches(key) => Pinning::Expected,
            Some(e) => {
                return Err(SyncError::LogKeyNotExpected {
                    addr: addr.to_string(),
                    expected: e.text(),
                    shown: fingerprint(key),
                }
                .into())
            }
            None => Pinning::FirstSeen,
        };
        self.queue.set_meta(&[(PINNED, &hex::encode(key))])?;
        Ok(how)
    }

    /// The last checkpoint whose proofs verified, if any (opened under the
    /// pinned key).
    pub fn kept_checkpoint(&self) -> Result<Option<Checkpoint>> {
        let (Some(note), Some(key)) = (self.queue.meta(KEPT)?, self.log_key()?) else { return Ok(None) };
        open_checkpoint(&note, &key).map(Some).map_err(|e| {
            AgentError::Corrupt(format!("the kept log checkpoint does not open under the pinned key: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_key_is_a_fingerprint_or_a_key_in_any_case() {
        let key = [7u8; 32];
        let fp = fingerprint(&key);
        for given in [fp.clone(), fp.to_uppercase(), fp.replace('-', ""), format!(" {fp}\n")] {
            let k = parse_server_key(&given).unwrap();
            assert!(k.matches(&key), "{given}");
            assert_eq!(k.text(), fp);
        }
        let k = parse_server_key(&hex::encode(key).to_uppercase()).unwrap();
        assert_eq!(k, ServerKey::Key(key));
        assert!(!k.matches(&[8; 32]));
        for bad in ["", "abcd", "abcd-ef01-2345-678g", &"a".repeat(63)] {
            assert!(parse_server_key(bad).is_err(), "{bad}");
        }
    }
}

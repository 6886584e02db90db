//! Which evidence files stored reports name (DESIGN §10): the index the
//! server consults before it takes an upload, and that exports read to say
//! whether the server holds each file. The files themselves are
//! [`crate::evidence`].

use truce_shared::{Attachment, Bytes32, Envelope};

use super::sql::args;
use super::{Store, StoreError, Tx};

/// Notes the files a report just stored names (in the writer's
/// transaction).
pub(super) fn index(tx: &Tx<'_>, report: &Bytes32, attachments: &[Attachment]) -> Result<(), StoreError> {
    for a in attachments {
        tx.execute(
            "INSERT INTO attachments (sha256, report, size) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            args![&a.sha256, report, a.size.min(i64::MAX as u64) as i64],
        )?;
    }
    Ok(())
}

/// Indexes the reports stored before the index existed, once (the
/// migration that made it asks for this, and whoever opens the store
/// first does it).
pub(super) fn index_stored(store: &mut Store) -> Result<(), StoreError> {
    let wanted = |tx: &Tx<'_>| tx.one("SELECT value FROM settings WHERE name = 'index_attachments'", &[], |r| r.i64(0));
    if store.read(wanted)? != Some(1) {
        return Ok(());
    }
    store.write(|tx| {
        if wanted(tx)? != Some(1) {
            return Ok(());
        }
        let mut named: Vec<(Bytes32, Vec<Attachment>)> = Vec::new();
        tx.stream("SELECT id, body FROM reports ORDER BY n", &[], &mut |r| {
            // A body that does not decode names no file (the store holds
            // only verified bytes, so this does not happen).
            if let Ok(env) = truce_shared::encoding::decode::<Envelope>(r.bytes(1)?) {
                if !env.observation.attachments.is_empty() {
                    named.push((r.b32(0)?, env.observation.attachments));
                }
            }
            Ok(())
        })?;
        for (id, attachments) in &named {
            index(tx, id, attachments)?;
        }
        tx.execute("UPDATE settings SET value = 0 WHERE name = 'index_attachments'", &[])?;
        Ok(())
    })
}

impl Store {
    /// The sizes stored reports give the file with this hash (empty: no
    /// report names it).
    pub fn attachment_sizes(&self, sha256: &Bytes32) -> Result<Vec<u64>, StoreError> {
        self.read(|tx| {
            tx.all("SELECT DISTINCT size FROM attachments WHERE sha256 = ?1", args![sha256], |r| {
                Ok(r.i64(0)?.max(0) as u64)
            })
        })
    }

    /// Every distinct file stored reports name, with a size signed for it.
    pub fn for_each_named_file(&self, f: &mut dyn FnMut(Bytes32, u64)) -> Result<(), StoreError> {
        self.read(|tx| {
            tx.each("SELECT sha256, MAX(size) FROM attachments GROUP BY sha256", &[], &mut |r| {
                f(r.b32(0)?, r.i64(1)?.max(0) as u64);
                Ok(())
            })
        })
    }
}

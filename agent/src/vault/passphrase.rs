//! The passphrase, how a keyring is protected, and the secrets it holds.

use super::*;

/// The shortest passphrase `init` and `passphrase` take.
pub const MIN_PASSPHRASE_CHARS: usize = 8;

/// A passphrase, wiped from memory when dropped and never printed.
pub struct Passphrase(Zeroizing<String>);

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(…)")
    }
}

impl Passphrase {
    /// A passphrase as typed. Only emptiness is refused here; the length
    /// rule for new passphrases is [`Passphrase::check_new`]'s.
    pub fn new(text: String) -> Result<Passphrase> {
        let text = Zeroizing::new(text);
        if text.is_empty() {
            return Err(AgentError::input("passphrase", "the passphrase is empty"));
        }
        Ok(Passphrase(text))
    }

    /// Reads a passphrase file: its content less one trailing newline.
    pub fn from_file(path: &Path) -> Result<Passphrase> {
        // Sized up front so reading never reallocates and leaves a copy.
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0).min(1 << 16) as usize;
        let mut text = Zeroizing::new(String::with_capacity(len + 1));
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map_err(|e| AgentError::io("cannot read the passphrase file", path, e))?;
        let trimmed = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
        if trimmed.is_empty() {
            return Err(AgentError::input(
                "--passphrase-file",
                format!("{} is empty: write the passphrase in it", path.display()),
            ));
        }
        Passphrase::new(trimmed.to_string())
    }

    /// Refuses a new passphrase that is too short to protect anything.
    pub fn check_new(&self) -> Result<()> {
        if self.0.chars().count() < MIN_PASSPHRASE_CHARS {
            return Err(AgentError::input(
                "passphrase",
                format!(
                    "too short: use at least {MIN_PASSPHRASE_CHARS} characters (several unrelated words are easy to remember and hard to guess)"
                ),
            ));
        }
        Ok(())
    }

    /// Whether two passphrases are the same (the "type it again" check).
    pub fn same_as(&self, other: &Passphrase) -> bool {
        *self.0 == *other.0
    }

    pub(super) fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// How a keyring is protected.
#[derive(Debug)]
pub enum Protection {
    /// Sealed under a key derived from this passphrase.
    Passphrase(Passphrase),
    /// Not protected (`--no-passphrase`, for trials).
    None,
}

/// The secrets a keyring holds, wiped when dropped.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Secrets {
    /// The Ed25519 seed of the device key.
    pub seed: [u8; 32],
    /// The root of the data key.
    pub data_key: [u8; 32],
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets(…)")
    }
}

impl Secrets {
    /// A new data key around an existing (or new) seed.
    pub fn new(seed: &[u8; 32]) -> Secrets {
        let mut s = Secrets { seed: *seed, data_key: [0u8; 32] };
        rand::rngs::OsRng.fill_bytes(&mut s.data_key);
        s
    }

    /// The subkeys of the data key.
    pub fn data_key(&self) -> DataKey {
        DataKey::derive(&self.data_key)
    }
}

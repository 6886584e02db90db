//! The one canonical encoding of an envelope: postcard, field by field.
//!
//! `decode_canonical` accepts a body only if re-encoding what it decoded
//! gives back the same bytes, so there is exactly one body (and one id) per
//! report: overlong varints, trailing bytes and other aliases are refused.

use serde::{de::DeserializeOwned, Serialize};

use crate::report::Envelope;

/// Why bytes are not a canonical encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodingError {
    /// postcard could not decode the bytes as the expected type.
    #[error("malformed encoding: {0}")]
    Malformed(String),
    /// The bytes decode, but are not the form this value encodes to.
    #[error("non-canonical encoding (re-encoding gives different bytes)")]
    NonCanonical,
}

/// Encodes any protocol value with postcard.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // postcard's std serializer writes into a Vec and has no failure mode
    // for the plain data types of this crate.
    postcard::to_stdvec(value).expect("postcard encoding of a plain value into a Vec cannot fail")
}

/// Decodes a protocol value; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, EncodingError> {
    let (v, rest) = postcard::take_from_bytes(bytes).map_err(|e| EncodingError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(EncodingError::Malformed(format!("{} trailing bytes", rest.len())));
    }
    Ok(v)
}

/// Decodes an envelope body and checks it is the one canonical encoding.
pub fn decode_canonical(body: &[u8]) -> Result<Envelope, EncodingError> {
    let env: Envelope = decode(body)?;
    if encode(&env) != body {
        return Err(EncodingError::NonCanonical);
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_observation;
    use crate::report::ENVELOPE_VERSION;

    fn env() -> Envelope {
        Envelope {
            version: ENVELOPE_VERSION,
            device: [7; 32],
            seq: 1,
            prev: [0; 32],
            recorded_at: 1_760_000_000_123,
            amends: None,
            observation: sample_observation(),
        }
    }

    #[test]
    fn version_is_the_first_byte_and_device_follows() {
        let b = encode(&env());
        assert_eq!(b[0], 1);
        assert_eq!(&b[1..33], &[7; 32]);
    }

    #[test]
    fn overlong_varint_is_non_canonical() {
        // version 1 as a two-byte varint: 0x81 0x00.
        let b = encode(&env());
        let mut alias = vec![0x81, 0x00];
        alias.extend_from_slice(&b[1..]);
        assert_eq!(decode::<Envelope>(&alias).map(|e| e.version), Ok(1), "postcard reads the alias");
        assert_eq!(decode_canonical(&alias), Err(EncodingError::NonCanonical));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut b = encode(&env());
        b.push(0);
        assert!(matches!(decode_canonical(&b), Err(EncodingError::Malformed(_))));
    }
}

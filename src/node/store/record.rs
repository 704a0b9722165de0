//! The byte format of every stored value: a format version, a CRC-32 of the body, the body.
//!
//! ```text
//! [version: u8][crc32(body): u32 little-endian][body: JSON]
//! ```
//!
//! The checksum is verified on every read, so a record damaged below us (a bug, a bit flip,
//! an operator's mistake with a hex editor) is reported as corrupt instead of being served.
//! sled has its own checksums for its log; this one covers our record end to end, from the
//! moment we encode it to the moment we decode it.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The record format this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;

const HEADER_LEN: usize = 5;

/// Where a record's body starts.
pub(super) const BODY_START: usize = HEADER_LEN;

/// Why a stored value could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    /// Shorter than the header.
    #[error("record is truncated ({0} bytes)")]
    Truncated(usize),
    /// Written by a format this build does not know.
    #[error("record format version {0} is not supported (this build reads {FORMAT_VERSION})")]
    Version(u8),
    /// The body does not match its checksum.
    #[error("record checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum {
        /// From the header.
        stored: u32,
        /// Over the body as read.
        computed: u32,
    },
    /// The checksum matched but the body does not decode: written by a buggy build.
    #[error("record body does not decode: {0}")]
    Body(String),
}

/// Encodes `value` as a versioned, checksummed record.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION, 0, 0, 0, 0];
    // Writing JSON into a Vec cannot fail for our record types (string keys, no maps with
    // non-string keys), so an error here is a programming error.
    serde_json::to_writer(&mut out, value).expect("record types always serialize to JSON");
    let crc = crc32fast::hash(&out[HEADER_LEN..]);
    out[1..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Computes the checksum of a record whose body was changed in place.
pub(super) fn reseal(bytes: &mut [u8]) {
    let crc = crc32fast::hash(&bytes[HEADER_LEN..]);
    bytes[1..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes and verifies a record.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RecordError> {
    if bytes.len() < HEADER_LEN {
        return Err(RecordError::Truncated(bytes.len()));
    }
    if bytes[0] != FORMAT_VERSION {
        return Err(RecordError::Version(bytes[0]));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[1..HEADER_LEN]);
    let stored = u32::from_le_bytes(crc);
    let body = &bytes[HEADER_LEN..];
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(RecordError::Checksum { stored, computed });
    }
    serde_json::from_slice(body).map_err(|e| RecordError::Body(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct R {
        a: String,
        n: u64,
    }

    fn sample() -> R {
        R {
            a: "수원 고용센터".into(),
            n: 7,
        }
    }

    #[test]
    fn round_trips() {
        assert_eq!(decode::<R>(&encode(&sample())), Ok(sample()));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let good = encode(&sample());
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert!(
                decode::<R>(&bad).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn truncation_and_unknown_versions_are_refused() {
        let good = encode(&sample());
        assert_eq!(decode::<R>(&good[..3]), Err(RecordError::Truncated(3)));
        assert!(decode::<R>(&good[..good.len() - 1]).is_err());
        let mut v2 = good.clone();
        v2[0] = 2;
        assert_eq!(decode::<R>(&v2), Err(RecordError::Version(2)));
    }
}

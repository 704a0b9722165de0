//! Message records too large to be one sled value, stored in pieces.
//!
//! sled 0.34 writes any log item larger than a quarter of its segment size to a file of its
//! own under `blobs/`, and never fsyncs that file or its directory; a tree node that holds
//! several large values is such an item when it is consolidated. So the store keeps every
//! value it writes at most [`PIECE_BYTES`], which with sled's leaf fan-out (a leaf splits
//! above 16 entries) keeps every leaf far below the blob threshold: everything the node
//! writes lives in sled's main log, which [`super::Store::sync`] fsyncs.
//!
//! A record over [`PIECE_BYTES`] is stored as a header under its message key
//!
//! ```text
//! [0xFF][pieces: u32 LE][total length: u32 LE][crc32 of the whole record: u32 LE]
//! ```
//!
//! and its bytes in pieces under `b`, message id, NUL, piece number (u32 BE), all in the same
//! batch. `0xFF` is never a record format version, so a header is never mistaken for a
//! record.

use super::keys::{key, PIECE};
use super::record::RecordError;

/// Largest value the store writes (a piece, a journal chunk, any record).
pub(super) const PIECE_BYTES: usize = 16 << 10;

const MARKER: u8 = 0xFF;
const HEADER_LEN: usize = 13;

/// A key and its value.
pub(super) type Entry = (Vec<u8>, Vec<u8>);

/// Splits `bytes` (an encoded record stored under `record_key`, of message `id`) into the
/// values to write: the record key's value, then the pieces (empty for a small record).
pub(super) fn split(id: &[u8], bytes: Vec<u8>) -> (Vec<u8>, Vec<Entry>) {
    if bytes.len() <= PIECE_BYTES {
        return (bytes, Vec::new());
    }
    let pieces: Vec<Entry> = bytes
        .chunks(PIECE_BYTES)
        .enumerate()
        .map(|(n, chunk)| (piece_key(id, n as u32), chunk.to_vec()))
        .collect();
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.push(MARKER);
    header.extend_from_slice(&(pieces.len() as u32).to_le_bytes());
    header.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    header.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
    (header, pieces)
}

/// If `value` is a header, the number of pieces, the total length and the CRC it promises.
pub(super) fn header(value: &[u8]) -> Result<Option<(u32, usize, u32)>, RecordError> {
    if value.first() != Some(&MARKER) {
        return Ok(None);
    }
    if value.len() != HEADER_LEN {
        return Err(RecordError::Truncated(value.len()));
    }
    let word = |i: usize| u32::from_le_bytes(value[i..i + 4].try_into().expect("4 bytes"));
    Ok(Some((word(1), word(5) as usize, word(9))))
}

/// Checks reassembled pieces against their header.
pub(super) fn check(whole: &[u8], len: usize, crc: u32) -> Result<(), RecordError> {
    if whole.len() != len {
        return Err(RecordError::Truncated(whole.len()));
    }
    let computed = crc32fast::hash(whole);
    if computed != crc {
        return Err(RecordError::Checksum {
            stored: crc,
            computed,
        });
    }
    Ok(())
}

/// The prefix of message `id`'s pieces.
pub(super) fn prefix(id: &[u8]) -> Vec<u8> {
    let mut k = key(PIECE, id);
    k.push(0);
    k
}

fn piece_key(id: &[u8], n: u32) -> Vec<u8> {
    let mut k = prefix(id);
    k.extend_from_slice(&n.to_be_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_records_stay_whole() {
        let (v, pieces) = split(b"m1", vec![1; PIECE_BYTES]);
        assert_eq!(v.len(), PIECE_BYTES);
        assert!(pieces.is_empty());
        assert_eq!(header(&v).expect("reads"), None);
    }

    #[test]
    fn large_records_split_and_check() {
        let bytes: Vec<u8> = (0..PIECE_BYTES * 2 + 7).map(|i| (i % 251) as u8).collect();
        let (h, pieces) = split(b"m1", bytes.clone());
        assert_eq!(pieces.len(), 3);
        assert!(pieces
            .iter()
            .all(|(k, v)| k.starts_with(&prefix(b"m1")) && v.len() <= PIECE_BYTES));
        let (n, len, crc) = header(&h).expect("reads").expect("a header");
        assert_eq!((n, len), (3, bytes.len()));
        let whole: Vec<u8> = pieces.into_iter().flat_map(|(_, v)| v).collect();
        check(&whole, len, crc).expect("intact");
        assert!(check(&whole[1..], len, crc).is_err());
    }
}

//! Payloads at rest: sealed with AES-256-GCM (ring) under the node's data key.
//!
//! A message's payload is what a privacy breach would expose, so it is stored sealed; its
//! metadata (who sent what type to whom, when, under which consent) stays readable for the
//! audit and the delivery state. Sealing happens when a push is prepared (on the request's
//! task, not the single writer), opening when a message is pulled or forwarded.
//!
//! Keys are files of 64 hex digits (32 random bytes), e.g. `head -c 32 /dev/urandom | xxd
//! -p -c 64 > data.key`, readable by the node only. Each key's id is the first 16 hex digits
//! of its SHA-256, stored with every sealed payload, so rotation is: write a new key, make it
//! `[storage] data_key`, move the old one to `old_data_keys`, restart. New payloads are sealed
//! with the new key; old ones stay readable with the old key until they are purged.
//!
//! Architecture invariants, enforced here: a nonce is 96 random bits from the OS and never
//! reused on purpose (for well below the 2^32 messages per key where random nonces would
//! become a risk); the message id is the additional authenticated data, so a sealed payload
//! moved to another message's record does not open.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// Why a key could not be loaded or a payload not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The key file does not hold 64 hex digits.
    #[error("data key {path} must hold 64 hex digits (32 random bytes)")]
    Format {
        /// The file.
        path: PathBuf,
    },
    /// A stored payload names a key this node does not have.
    #[error("the payload was sealed with data key {0}, which is not configured (add it to [storage] old_data_keys)")]
    UnknownKey(String),
    /// A stored payload failed authentication: altered, or moved between records.
    #[error("the sealed payload does not open (altered, or not this message's)")]
    Damaged,
    /// The OS random number generator failed.
    #[error("no randomness for a nonce")]
    Random,
}

/// A payload as stored: which key sealed it, the nonce, and the ciphertext with its tag.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    /// Id of the data key (first 16 hex digits of its SHA-256).
    pub key: String,
    /// The 96-bit nonce, base64.
    pub nonce: String,
    /// Ciphertext and tag, base64.
    pub ct: String,
}

/// The node's data keys: the current one seals, any of them opens.
pub struct DataKeys {
    current: String,
    keys: HashMap<String, LessSafeKey>,
    rng: SystemRandom,
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeys")
            .field("current", &self.current)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl DataKeys {
    /// The current key and the old ones still needed to open older payloads, as bytes
    /// (see [`key_from_file`]; `DataKeys::load` in `node::files` reads the files).
    pub fn from_bytes(current: [u8; 32], old: &[[u8; 32]]) -> DataKeys {
        let mut keys = HashMap::new();
        let (current_id, key) = key_from(&current);
        keys.insert(current_id.clone(), key);
        for bytes in old {
            let (id, key) = key_from(bytes);
            keys.insert(id, key);
        }
        DataKeys {
            current: current_id,
            keys,
            rng: SystemRandom::new(),
        }
    }

    /// Id of the current key.
    pub fn current_id(&self) -> &str {
        &self.current
    }

    /// Seals `plaintext` for the message `message_id` with the current key.
    pub fn seal(&self, message_id: &str, plaintext: &[u8]) -> Result<Sealed, VaultError> {
        let key = &self.keys[&self.current];
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| VaultError::Random)?;
        let mut buf = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(message_id.as_bytes()),
            &mut buf,
        )
        .map_err(|_| VaultError::Damaged)?;
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(Sealed {
            key: self.current.clone(),
            nonce: b64.encode(nonce),
            ct: b64.encode(buf),
        })
    }

    /// Opens a payload sealed for `message_id`.
    pub fn open(&self, message_id: &str, sealed: &Sealed) -> Result<Vec<u8>, VaultError> {
        let key = self
            .keys
            .get(&sealed.key)
            .ok_or_else(|| VaultError::UnknownKey(sealed.key.clone()))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let nonce: [u8; NONCE_LEN] = b64
            .decode(&sealed.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or(VaultError::Damaged)?;
        let mut buf = b64.decode(&sealed.ct).map_err(|_| VaultError::Damaged)?;
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(message_id.as_bytes()),
                &mut buf,
            )
            .map_err(|_| VaultError::Damaged)?;
        Ok(plain.to_vec())
    }
}

/// The key in a data key file's text (64 hex digits, surrounding whitespace ignored);
/// `path` only names the file in the error.
pub fn key_from_file(path: &Path, text: &str) -> Result<[u8; 32], VaultError> {
    crate::core::hex::decode_array(text.trim()).ok_or_else(|| VaultError::Format {
        path: path.to_owned(),
    })
}

fn key_from(bytes: &[u8; 32]) -> (String, LessSafeKey) {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let id = crate::core::hex::encode(&digest.as_ref()[..8]);
    let key = UnboundKey::new(&AES_256_GCM, bytes).expect("32 bytes is an AES-256 key");
    (id, LessSafeKey::new(key))
}

/// A fresh key file's content: 64 hex digits and a newline.
pub fn generate_key_text() -> Result<String, VaultError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| VaultError::Random)?;
    Ok(format!("{}\n", crate::core::hex::encode(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_opens_for_its_own_message_only() {
        let keys = DataKeys::from_bytes([7; 32], &[]);
        let sealed = keys.seal("ref-1", b"{\"summary\":\"x\"}").expect("seal");
        assert_eq!(sealed.key, keys.current_id());
        assert_eq!(
            keys.open("ref-1", &sealed).expect("open"),
            b"{\"summary\":\"x\"}"
        );
        assert!(matches!(
            keys.open("ref-2", &sealed),
            Err(VaultError::Damaged)
        ));
    }

    #[test]
    fn an_altered_ciphertext_does_not_open() {
        let keys = DataKeys::from_bytes([7; 32], &[]);
        let mut sealed = keys.seal("ref-1", b"payload").expect("seal");
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut ct = b64.decode(&sealed.ct).expect("b64");
        ct[0] ^= 1;
        sealed.ct = b64.encode(ct);
        assert!(matches!(
            keys.open("ref-1", &sealed),
            Err(VaultError::Damaged)
        ));
    }

    #[test]
    fn after_rotation_old_payloads_open_with_the_old_key_and_new_ones_use_the_new() {
        let before = DataKeys::from_bytes([1; 32], &[]);
        let old = before.seal("ref-old", b"old").expect("seal");
        let after = DataKeys::from_bytes([2; 32], &[[1; 32]]);
        assert_eq!(after.open("ref-old", &old).expect("open"), b"old");
        let new = after.seal("ref-new", b"new").expect("seal");
        assert_ne!(new.key, old.key);
        // Without the old key, the old payload names a key the node lacks.
        let forgot = DataKeys::from_bytes([2; 32], &[]);
        assert!(matches!(
            forgot.open("ref-old", &old),
            Err(VaultError::UnknownKey(_))
        ));
    }

    #[test]
    fn nonces_differ_between_seals() {
        let keys = DataKeys::from_bytes([9; 32], &[]);
        let a = keys.seal("m", b"same").expect("seal");
        let b = keys.seal("m", b"same").expect("seal");
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ct, b.ct);
    }

    #[test]
    fn key_files_must_hold_64_hex_digits() {
        let text = generate_key_text().expect("key");
        let bytes = key_from_file(Path::new("good.key"), &text).expect("parses");
        assert_eq!(crate::core::hex::encode(&bytes), text.trim());
        let err = key_from_file(Path::new("bad.key"), "abc\n").expect_err("refused");
        assert!(matches!(err, VaultError::Format { .. }));
        assert!(err.to_string().contains("bad.key"), "{err}");
    }
}

//! Payloads at rest: sealed with AES-256-GCM (ring) under the node's data key.
//!
//! A message's payload is what a privacy breach would expose, so it is stored sealed; its
//! metadata (who sent what type to whom, when, under which consent) stays readable for the
//! audit and the delivery state. Sealing happens when a push is prepared (on the request's
//! task, not the single writer), opening when a message is pulled or forwarded.
//!
//! Keys are files of 64 hex digits (32 random bytes), e.g. `(umask 077; head -c 32
//! /dev/urandom | xxd -p -c 64 > data.key)`, readable by the node only (the node refuses to
//! start with a key file open to others). Each key's id is the first 16 hex digits of its
//! SHA-256, stored with every sealed payload, so rotation is: write a new key, make it
//! `[storage] data_key`, move the old one to `old_data_keys`, restart. New payloads are sealed
//! with the new key; old ones stay readable with the old key until they are purged.
//!
//! Architecture invariants, enforced here:
//! - **Nonces** are 96 random bits from the OS, never a counter: several threads seal at once
//!   and a node may restart from a backup, either of which could repeat a counter. With
//!   random nonces NIST SP 800-38D bounds one key to 2^32 sealed payloads (the chance of a
//!   repeated nonce then stays below 2^-32). A node stores every payload it takes once, so
//!   that is 2^32 messages per key: 136 years at one message per second, 2.5 days at the
//!   benchmark's 20,000/s. **Rotate the data key at least yearly, and before 2^30 messages
//!   under one key** (a quarter of the bound; the node does not count for you, but the
//!   audit chain's length is an upper bound on what it sealed);
//! - the **additional authenticated data** binds a payload to its message: its id, sender,
//!   recipient and subject ([`Binding`]), so a sealed payload moved to another record, or a
//!   record whose sender, recipient or subject was altered, does not open. Payloads sealed
//!   before the binding (no `aad` in the stored form) were bound to the message id only, and
//!   still open that way.

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
    /// What the additional authenticated data holds: [`AAD_BINDING`] (the message's id,
    /// sender, recipient and subject), or absent for a payload sealed before that, bound to
    /// the message id only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aad: Option<u8>,
}

/// [`Sealed::aad`] of a payload bound to its message's id, sender, recipient and subject.
pub const AAD_BINDING: u8 = 2;

/// What a sealed payload is bound to: the message it belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// The message id.
    pub id: &'a str,
    /// The sending agency.
    pub from: &'a str,
    /// The recipient agency.
    pub to: &'a str,
    /// The pseudonymous subject.
    pub subject: &'a str,
}

impl Binding<'_> {
    /// The additional authenticated data: a domain tag, then each field with its length
    /// (big-endian u32) first, so no two different bindings encode alike.
    fn aad(&self) -> Vec<u8> {
        let fields = [self.id, self.from, self.to, self.subject];
        let mut out = Vec::with_capacity(32 + fields.iter().map(|f| f.len() + 4).sum::<usize>());
        out.extend_from_slice(b"plusgate payload v2\0");
        for f in fields {
            out.extend_from_slice(&(f.len() as u32).to_be_bytes());
            out.extend_from_slice(f.as_bytes());
        }
        out
    }
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

    /// Seals `plaintext` for the message `binding` names, with the current key.
    pub fn seal(&self, binding: &Binding<'_>, plaintext: &[u8]) -> Result<Sealed, VaultError> {
        self.seal_with(&binding.aad(), plaintext, Some(AAD_BINDING))
    }

    fn seal_with(
        &self,
        aad: &[u8],
        plaintext: &[u8],
        kind: Option<u8>,
    ) -> Result<Sealed, VaultError> {
        let key = &self.keys[&self.current];
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| VaultError::Random)?;
        let mut buf = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buf,
        )
        .map_err(|_| VaultError::Damaged)?;
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(Sealed {
            key: self.current.clone(),
            nonce: b64.encode(nonce),
            ct: b64.encode(buf),
            aad: kind,
        })
    }

    /// Opens a payload sealed for the message `binding` names.
    pub fn open(&self, binding: &Binding<'_>, sealed: &Sealed) -> Result<Vec<u8>, VaultError> {
        let aad = match sealed.aad {
            Some(AAD_BINDING) => binding.aad(),
            // Sealed before the binding: the message id only.
            None => binding.id.as_bytes().to_vec(),
            Some(_) => return Err(VaultError::Damaged),
        };
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
                Aad::from(aad),
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

    fn message<'a>(id: &'a str) -> Binding<'a> {
        Binding {
            id,
            from: "suwon/employment",
            to: "suwon/welfare",
            subject: "sub-1",
        }
    }

    #[test]
    fn a_payload_opens_for_its_own_message_only() {
        let keys = DataKeys::from_bytes([7; 32], &[]);
        let sealed = keys
            .seal(&message("ref-1"), b"{\"summary\":\"x\"}")
            .expect("seal");
        assert_eq!(sealed.key, keys.current_id());
        assert_eq!(sealed.aad, Some(AAD_BINDING));
        assert_eq!(
            keys.open(&message("ref-1"), &sealed).expect("open"),
            b"{\"summary\":\"x\"}"
        );
        assert!(matches!(
            keys.open(&message("ref-2"), &sealed),
            Err(VaultError::Damaged)
        ));
    }

    #[test]
    fn a_payload_does_not_open_under_another_sender_recipient_or_subject() {
        let keys = DataKeys::from_bytes([7; 32], &[]);
        let own = message("ref-1");
        let sealed = keys.seal(&own, b"payload").expect("seal");
        let others = [
            Binding {
                from: "suwon/welfare",
                ..own
            },
            Binding {
                to: "gangseo/welfare",
                ..own
            },
            Binding {
                subject: "sub-2",
                ..own
            },
            // Moving bytes between fields changes the binding too.
            Binding {
                id: "ref-1suwon/employment",
                from: "",
                ..own
            },
        ];
        for other in others {
            assert!(
                matches!(keys.open(&other, &sealed), Err(VaultError::Damaged)),
                "{other:?}"
            );
        }
        assert_eq!(keys.open(&own, &sealed).expect("open"), b"payload");
    }

    #[test]
    fn a_payload_sealed_before_the_binding_still_opens_by_its_id() {
        let keys = DataKeys::from_bytes([7; 32], &[]);
        // As stored by earlier versions: the id alone as AAD, no `aad` field.
        let legacy = keys.seal_with(b"ref-1", b"old", None).expect("seal");
        let json = serde_json::to_string(&legacy).expect("json");
        assert!(!json.contains("aad"), "{json}");
        let legacy: Sealed = serde_json::from_str(&json).expect("parses");
        assert_eq!(keys.open(&message("ref-1"), &legacy).expect("open"), b"old");
        assert!(keys.open(&message("ref-2"), &legacy).is_err());
        // And an unknown binding kind is refused, not guessed.
        let odd = Sealed {
            aad: Some(9),
            ..legacy
        };
        assert!(matches!(
            keys.open(&message("ref-1"), &odd),
            Err(VaultError::Damaged)
        ));
    }

    #[test]
    fn an_altered_ciphertext_does_not_open() {
        let keys = DataKeys::from_bytes([7; 32], &[]);
        let mut sealed = keys.seal(&message("ref-1"), b"payload").expect("seal");
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut ct = b64.decode(&sealed.ct).expect("b64");
        ct[0] ^= 1;
        sealed.ct = b64.encode(ct);
        assert!(matches!(
            keys.open(&message("ref-1"), &sealed),
            Err(VaultError::Damaged)
        ));
    }

    #[test]
    fn after_rotation_old_payloads_open_with_the_old_key_and_new_ones_use_the_new() {
        let before = DataKeys::from_bytes([1; 32], &[]);
        let old = before.seal(&message("ref-old"), b"old").expect("seal");
        let after = DataKeys::from_bytes([2; 32], &[[1; 32]]);
        assert_eq!(after.open(&message("ref-old"), &old).expect("open"), b"old");
        let new = after.seal(&message("ref-new"), b"new").expect("seal");
        assert_ne!(new.key, old.key);
        // Without the old key, the old payload names a key the node lacks.
        let forgot = DataKeys::from_bytes([2; 32], &[]);
        assert!(matches!(
            forgot.open(&message("ref-old"), &old),
            Err(VaultError::UnknownKey(_))
        ));
    }

    #[test]
    fn nonces_differ_between_seals() {
        let keys = DataKeys::from_bytes([9; 32], &[]);
        let a = keys.seal(&message("m"), b"same").expect("seal");
        let b = keys.seal(&message("m"), b"same").expect("seal");
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

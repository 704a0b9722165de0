//! Ed25519 keys (ring): the federation authority's key that signs the directory, and each
//! node's key that signs receipts and checkpoints.
//!
//! A [`PublicKey`] is written as 64 lowercase hex characters (in configs and in the signed
//! directory); a [`SigningKey`] lives in its own file as PKCS#8 PEM (`PRIVATE KEY`), the
//! form `openssl genpkey -algorithm ed25519` also writes. Nothing here reads a file:
//! `SigningKey::load` is in `node::files`.

use std::fmt;
use std::path::Path;

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs8KeyDer;

use crate::core::hex;

/// Length of an Ed25519 public key in bytes.
pub const PUBLIC_KEY_LEN: usize = 32;

/// Length of an Ed25519 signature in bytes.
pub const SIGNATURE_LEN: usize = 64;

/// PEM label of a PKCS#8 private key.
const PKCS8_LABEL: &str = "PRIVATE KEY";

/// What is wrong with a key, and where it came from.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A public key is not 64 hex characters.
    #[error("not an Ed25519 public key: {problem} (expected 64 hexadecimal characters)")]
    PublicKey {
        /// What is wrong with the text.
        problem: String,
    },
    /// The text holds no PKCS#8 `PRIVATE KEY` PEM block.
    #[error("{origin}: no PKCS#8 private key (a \"-----BEGIN PRIVATE KEY-----\" PEM block) found: {detail}")]
    Pem {
        /// `private key file <path>` or `private key PEM text`.
        origin: String,
        /// What the PEM reader said.
        detail: String,
    },
    /// The PKCS#8 document is not an Ed25519 key (e.g. an ECDSA TLS key) or is damaged.
    #[error("{origin}: not an Ed25519 private key ({detail})")]
    NotEd25519 {
        /// `private key file <path>` or `private key PEM text`.
        origin: String,
        /// What ring said.
        detail: String,
    },
    /// The system random number generator failed.
    #[error("cannot generate an Ed25519 key: the system random number generator failed")]
    Generate,
}

/// An Ed25519 public key (32 bytes), written as 64 lowercase hex characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; PUBLIC_KEY_LEN]);

impl PublicKey {
    /// Parses 64 hex characters (upper or lower case).
    pub fn from_hex(s: &str) -> Result<PublicKey, KeyError> {
        if s.len() != 2 * PUBLIC_KEY_LEN {
            return Err(KeyError::PublicKey {
                problem: format!("{} characters long", s.chars().count()),
            });
        }
        let bytes = hex::decode(s).ok_or_else(|| KeyError::PublicKey {
            problem: "contains characters that are not hexadecimal digits".into(),
        })?;
        let mut key = [0; PUBLIC_KEY_LEN];
        key.copy_from_slice(&bytes);
        Ok(PublicKey(key))
    }

    /// The 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// True iff `signature` (64 bytes) is a valid Ed25519 signature of `message` by this key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        signature.len() == SIGNATURE_LEN
            && UnparsedPublicKey::new(&ED25519, &self.0)
                .verify(message, signature)
                .is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// An Ed25519 private key, stored as PKCS#8 PEM (`PRIVATE KEY`).
pub struct SigningKey(Ed25519KeyPair);

impl SigningKey {
    /// Generates a fresh key; returns it with its PKCS#8 PEM text (to be written to a file
    /// only its owner can read).
    pub fn generate() -> Result<(SigningKey, String), KeyError> {
        let document =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Generate)?;
        let pair = Ed25519KeyPair::from_pkcs8(document.as_ref()).map_err(|_| KeyError::Generate)?;
        Ok((SigningKey(pair), pem_encode(PKCS8_LABEL, document.as_ref())))
    }

    /// Parses the bytes of a PKCS#8 PEM private key file; `path` only names the file in
    /// errors (the caller reads it: `SigningKey::load` in `node::files`).
    pub fn from_pem_file(path: &Path, bytes: &[u8]) -> Result<SigningKey, KeyError> {
        parse_pem(bytes, || format!("private key file {}", path.display()))
    }

    /// Parses PKCS#8 PEM text (v1 or v2 documents).
    pub fn from_pem(text: &str) -> Result<SigningKey, KeyError> {
        parse_pem(text.as_bytes(), || "private key PEM text".to_owned())
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        let mut key = [0; PUBLIC_KEY_LEN];
        key.copy_from_slice(self.0.public_key().as_ref());
        PublicKey(key)
    }

    /// The Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut signature = [0; SIGNATURE_LEN];
        signature.copy_from_slice(self.0.sign(message).as_ref());
        signature
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private half.
        write!(f, "SigningKey(public {})", self.public_key())
    }
}

fn parse_pem(bytes: &[u8], origin: impl Fn() -> String) -> Result<SigningKey, KeyError> {
    let der = PrivatePkcs8KeyDer::from_pem_slice(bytes).map_err(|e| KeyError::Pem {
        origin: origin(),
        detail: e.to_string(),
    })?;
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der()).map_err(|e| {
        let detail = match e.to_string().as_str() {
            "WrongAlgorithm" => "it is a key of another algorithm, such as a TLS key".to_owned(),
            other => format!("ring: {other}"),
        };
        KeyError::NotEd25519 {
            origin: origin(),
            detail,
        }
    })?;
    Ok(SigningKey(pair))
}

/// PEM text of `der` under `label`: standard base64 with padding, 64 characters a line.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Standard base64 (RFC 4648 §4) with `=` padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;

//! What the fuzz targets share: the fixed node of the audit-export target (its signing key
//! and a directory listing it).
//!
//! The key is fixed (`export-key.pem`, a throwaway key made for the fuzzer and used nowhere
//! else) and Ed25519 signatures are deterministic, so the committed seed export verifies
//! against the directory every run builds: the fuzzer starts from an export that passes and
//! mutates it, rather than from bytes that fail at the first signature.

use plusgate::core::directory::{self, Directory};
use plusgate::core::keys::SigningKey;

/// The fixed node's signing key.
pub fn export_key() -> SigningKey {
    SigningKey::from_pem(include_str!("../export-key.pem")).expect("the fuzz key parses")
}

/// A directory listing the fixed node as `suwon` (and `gangseo`, with another key), signed
/// by an authority made for the occasion: the export check reads only the node keys.
pub fn export_directory() -> Directory {
    let key = export_key();
    let other = SigningKey::generate().expect("key").0;
    let center = |name: &str, port: u16, key: &SigningKey| {
        serde_json::json!({
            "url": format!("https://127.0.0.1:{port}"),
            "node": format!("urn:plusgate:node:{name}"),
            "signing_key": key.public_key().to_hex(),
            "agencies": {}
        })
    };
    let unsigned = serde_json::json!({
        "version": 1,
        "issued_at": "2026-11-01T00:00:00Z",
        "centers": {"suwon": center("suwon", 7443, &key), "gangseo": center("gangseo", 7444, &other)}
    });
    let authority = SigningKey::generate().expect("key").0;
    let signed =
        directory::sign(unsigned.to_string().as_bytes(), &authority).expect("sign directory");
    Directory::from_signed_bytes(&signed, &authority.public_key()).expect("directory verifies")
}

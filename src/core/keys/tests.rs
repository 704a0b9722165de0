//! Unit tests of `core::keys`.

use super::*;

#[test]
fn base64_matches_rfc_4648_vectors() {
    for (input, expected) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(input.as_bytes()), expected, "{input:?}");
    }
    assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
}

#[test]
fn generated_key_round_trips_through_pem_and_signs() {
    let (key, pem) = SigningKey::generate().expect("generate");
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(pem.ends_with("-----END PRIVATE KEY-----\n"));
    assert!(pem.lines().all(|l| l.len() <= 64));
    let again = SigningKey::from_pem(&pem).expect("parse own PEM");
    assert_eq!(again.public_key(), key.public_key());

    let message = b"directory bytes";
    let signature = key.sign(message);
    let public = key.public_key();
    assert!(public.verify(message, &signature));
    assert!(!public.verify(b"directory bytez", &signature));
    let mut flipped = signature;
    flipped[10] ^= 1;
    assert!(!public.verify(message, &flipped));
    assert!(!public.verify(message, &signature[..63]));
    let (other, _) = SigningKey::generate().expect("generate");
    assert!(!other.public_key().verify(message, &signature));
}

#[test]
fn public_key_hex_round_trips_and_refuses_bad_text() {
    let (key, _) = SigningKey::generate().expect("generate");
    let public = key.public_key();
    let text = public.to_hex();
    assert_eq!(text.len(), 64);
    assert_eq!(text, text.to_ascii_lowercase());
    assert_eq!(PublicKey::from_hex(&text).expect("parse"), public);
    assert_eq!(
        PublicKey::from_hex(&text.to_ascii_uppercase()).expect("upper case"),
        public
    );
    assert_eq!(public.to_string(), text);
    assert_eq!(format!("{public:?}"), format!("PublicKey({text})"));
    assert_eq!(public.as_bytes().len(), 32);

    for bad in [
        "",
        &text[..62],
        &format!("{text}00"),
        &text.replace(&text[..1], "g"),
    ] {
        let err = PublicKey::from_hex(bad).expect_err(bad).to_string();
        assert!(err.contains("64 hexadecimal characters"), "{err}");
    }
}

#[test]
fn a_key_file_names_the_file_and_refuses_other_keys() {
    let (key, pem) = SigningKey::generate().expect("generate");
    let good = Path::new("keys/node-signing.key");
    let loaded = SigningKey::from_pem_file(good, pem.as_bytes()).expect("parse");
    assert_eq!(loaded.public_key(), key.public_key());
    assert!(!format!("{loaded:?}").contains(&pem[28..60]));

    let err = SigningKey::from_pem_file(Path::new("garbage.key"), b"hello").expect_err("PEM");
    assert!(matches!(err, KeyError::Pem { .. }), "{err}");
    assert!(err.to_string().contains("garbage.key"), "{err}");

    // An ECDSA P-256 PKCS#8 key (what the TLS certificates use) is not an Ed25519 key.
    let ecdsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("ecdsa");
    let err = SigningKey::from_pem_file(Path::new("node.key"), ecdsa.serialize_pem().as_bytes())
        .expect_err("ECDSA");
    assert!(matches!(err, KeyError::NotEd25519 { .. }), "{err}");
    assert!(err.to_string().contains("node.key"), "{err}");
    assert!(err.to_string().contains("not an Ed25519"), "{err}");
    assert!(err.to_string().contains("another algorithm"), "{err}");
}

#[test]
fn a_pkcs8_v1_key_from_other_tools_loads() {
    // RFC 8410 §10.3: an Ed25519 private key in PKCS#8 v1 form (what OpenSSL writes).
    let pem = "-----BEGIN PRIVATE KEY-----\n\
               MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
               -----END PRIVATE KEY-----\n";
    let key = SigningKey::from_pem(pem).expect("v1 document");
    // The matching public key from RFC 8410 §10.1.
    assert_eq!(
        key.public_key().to_hex(),
        "19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1"
    );
}

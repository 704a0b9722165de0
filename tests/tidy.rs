//! Repository rules that matter, enforced by tests rather than by review.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The product uses rustls with the ring provider only: neither aws-lc-rs nor OpenSSL may
/// enter the dependency tree (a default feature of rustls, tokio-rustls or rcgen would pull
/// aws-lc-rs back in).
#[test]
fn no_second_crypto_provider_in_the_lock_file() {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).expect("Cargo.lock");
    for banned in ["aws-lc-rs", "aws-lc-sys", "openssl-sys", "openssl"] {
        assert!(
            !lock.contains(&format!("name = \"{banned}\"")),
            "{banned} is in Cargo.lock; turn off the default features that pull it in"
        );
    }
    assert!(lock.contains("name = \"ring\""));
}

/// Every module says what it is for in a `//!` doc at its top.
#[test]
fn every_module_has_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    assert!(files.len() > 10);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source");
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        assert!(
            first.starts_with("//!"),
            "{} has no //! module doc",
            file.display()
        );
    }
}

/// Only the store module may name sled: the rest of the node sees the store's interface, so
/// another engine can replace sled later.
#[test]
fn sled_stays_behind_the_store_interface() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    for file in files {
        if file.starts_with(root().join("src/node/store")) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("source");
        assert!(
            !text.contains("sled::"),
            "{} uses sled directly",
            file.display()
        );
    }
}

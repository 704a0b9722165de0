//! Repository rules that matter, enforced by tests rather than by review.

use std::path::{Path, PathBuf};

mod graph;

use graph::rust_files;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
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

/// Every module, in the crate and in `tools/`, says what it is for in a `//!` doc at its top.
#[test]
fn every_module_has_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    rust_files(&root().join("tools/src"), &mut files);
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

/// The ring a unit belongs to (`core::audit` → `core`; `config` → `config`).
fn ring(unit: &str) -> &str {
    unit.split("::").next().unwrap_or(unit)
}

/// Which rings a ring may import from: arrows point inward only, cli → node/dev → config →
/// core. `core` is the pure rules; `node` must not depend on the development federation;
/// nothing imports `cli`.
fn may_import(from: &str, to: &str) -> bool {
    let allowed: &[&str] = match from {
        "core" => &["core"],
        "config" => &["core"],
        "dev" => &["core", "config", "dev"],
        "node" => &["core", "config", "node"],
        "cli" => &["core", "config", "dev", "node", "cli"],
        _ => &[],
    };
    allowed.contains(&to)
}

/// The import graph has no cycle and every arrow points inward. Run with
/// `cargo test --test tidy import_graph -- --nocapture` to see the graph and its depth;
/// `TIDY_SRC=/some/checkout/src` prints (and checks) another tree, e.g. an older commit.
#[test]
fn import_graph_points_inward_and_has_no_cycle() {
    let src = std::env::var_os("TIDY_SRC").map_or_else(|| root().join("src"), PathBuf::from);
    let graph = graph::read(&src);
    println!("import graph (unit -> units it names), unit tests left out:");
    for (from, to) in &graph {
        let to: Vec<&str> = to.iter().map(String::as_str).collect();
        println!("  {from} -> {}", to.join(", "));
    }
    println!("units: {}, levels: {}", graph.len(), graph::levels(&graph));

    let cycles = graph::cycles(&graph);
    assert!(cycles.is_empty(), "import cycles: {cycles:?}");
    let outward: Vec<String> = graph
        .iter()
        .flat_map(|(from, to)| to.iter().map(move |to| (from, to)))
        .filter(|(from, to)| !may_import(ring(from), ring(to)))
        .map(|(from, to)| format!("{from} -> {to}"))
        .collect();
    assert!(outward.is_empty(), "imports pointing outward: {outward:?}");
    for unit in graph.keys() {
        assert!(
            graph::RINGS.contains(&ring(unit)) || unit == "config",
            "{unit} is outside the rings; put it in core, node, dev or cli"
        );
    }
}

/// `core` is pure: no file system, sockets, threads, environment, tokio or clock reads
/// outside its unit tests (addresses as values, `std::net::IpAddr`, are fine). Callers pass in bytes, keys and times.
#[test]
fn core_does_no_io_and_reads_no_clock() {
    let mut files = Vec::new();
    rust_files(&root().join("src/core"), &mut files);
    let banned = [
        "std::fs",
        "std::net::Tcp",
        "UdpSocket",
        "to_socket_addrs",
        "std::thread",
        "std::env",
        "tokio",
        "now_utc",
        "SystemTime",
        "Instant::now",
    ];
    let mut found = Vec::new();
    for file in files {
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("source");
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for word in banned {
            if code
                .lines()
                .any(|l| !l.trim_start().starts_with("//") && l.contains(word))
            {
                found.push(format!("{}: {word}", file.display()));
            }
        }
    }
    assert!(found.is_empty(), "core must stay pure: {found:?}");
}

/// Most lines a source file may have outside its unit tests; a longer file is more than one
/// concept and is split (see `node/ledger/`, `node/store/`).
const FILE_LINES_MAX: usize = 800;

/// No source file, in the crate or in `tools/`, is over [`FILE_LINES_MAX`] lines before its
/// `#[cfg(test)]` part.
#[test]
fn no_source_file_is_over_800_lines_outside_its_tests() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    rust_files(&root().join("tools/src"), &mut files);
    let mut long = Vec::new();
    for file in files {
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("source");
        let lines = text
            .lines()
            .take_while(|l| !l.starts_with("#[cfg(test)]"))
            .count();
        if lines > FILE_LINES_MAX {
            long.push(format!("{}: {lines}", file.display()));
        }
    }
    assert!(long.is_empty(), "split these by concept: {long:?}");
}

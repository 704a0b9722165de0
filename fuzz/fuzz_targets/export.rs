//! Fuzz target: the audit-export verifier (`cli::export::verify`, line by line through
//! `core::export::Checker`) against a directory listing the fixed node of
//! `plusgate_fuzz`. Nothing may panic; an export is either verified or refused with a
//! place.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use plusgate::core::directory::Directory;

fn directory() -> &'static Directory {
    static DIRECTORY: OnceLock<Directory> = OnceLock::new();
    DIRECTORY.get_or_init(plusgate_fuzz::export_directory)
}

fuzz_target!(|data: &[u8]| {
    match plusgate::cli::export::verify(data, directory()) {
        Ok(summary) => {
            let _ = summary.to_string();
        }
        Err(e) => {
            let _ = e.place.line();
            let _ = e.to_string();
        }
    }
});

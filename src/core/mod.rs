//! The rules, pure: what a message, a consent, an audit entry, a directory, a route and the
//! wire and export formats are, and the checks on them. Nothing here does I/O, reads a clock
//! or knows tokio; callers pass in bytes, keys and times (a file's path only to name it in
//! errors: `node::files` reads the files). The one thing taken from the OS is randomness, for
//! new keys and sealing nonces (ring's `SystemRandom`). `core` imports nothing from `node`,
//! `cli`, `dev` or `config`.

pub mod audit;
pub mod consent;
pub mod directory;
pub mod export;
pub mod hex;
pub mod identity;
pub mod json;
pub mod keys;
pub mod message;
pub mod routing;
pub mod rrn;
pub mod schema;
pub mod stats;
pub mod time;
pub mod vault;
pub mod wire;

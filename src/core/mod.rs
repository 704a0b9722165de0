//! The rules, pure: what a message, a consent, an audit entry, a directory and a route are,
//! and the checks on them. Nothing here does I/O, reads a clock or knows tokio; callers pass
//! in bytes, keys and times. `core` imports nothing from `node`, `cli`, `dev` or `config`.

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
pub mod vault;
pub mod wire;

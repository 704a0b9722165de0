//! plusgate: a federated data-exchange gateway for Employment-Welfare Plus Centers.
//!
//! See `ARCHITECTURE.md` for the map. The crate is organised in rings, and imports point
//! inward only (`tests/tidy.rs` checks it):
//! - [`core`]: the rules, pure — messages, schemas, consents, the audit chain, routing, the
//!   signed directory, keys, sealing, wire formats. No I/O, no clock, no tokio.
//! - [`node`]: the running node — the composition root, TLS, the HTTP API, the ledger (the
//!   single writer), the store (sled behind its own interface), inbox and forwarders.
//! - [`dev`]: the development federation (`dev-init`, `serve --dev`): PKI, configs, examples.
//! - [`cli`]: one file per command group; maps failures to exit codes.
//! - [`config`]: the TOML file, parsed and validated into typed values.

pub mod cli;
pub mod config;
pub mod core;
pub mod dev;
pub mod node;

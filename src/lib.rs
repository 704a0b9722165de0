//! plusgate: a federated data-exchange gateway for Employment-Welfare Plus Centers.
//!
//! See `ARCHITECTURE.md` for the map. The crate is organised by domain noun:
//! `config` → `node` (composition root) → `tls`/`identity` → `api` → `schema`/`message`
//! → `ledger` (the single writer) → `store` (sled behind its own interface) and `audit`.

pub mod admin;
pub mod api;
pub mod audit;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod consent;
pub mod devinit;
pub mod directory;
pub mod export;
pub mod federation;
pub mod identity;
pub mod inbox;
pub mod json;
pub mod keys;
pub mod ledger;
pub mod manifest;
pub mod message;
pub mod node;
pub mod outbox;
pub mod parallel;
pub mod pki;
pub mod report;
pub mod routing;
pub mod rrn;
pub mod schema;
pub mod store;
pub mod tls;
pub mod vault;

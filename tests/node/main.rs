//! Black-box tests of a plusgate node: the real `plusgate` binary as a child process,
//! real mutual TLS with certificates from `dev-init`, a real sled data directory and real
//! signals. Each test module is one part of the specification:
//!
//! - `privacy`: a privacy officer's disclosure history of a subject (JSON, CSV, audited);
//! - `reports`: the officer's consent, refusal, withdrawal and audit-chain reports, through
//!   the API and `plusgate privacy …`;
//! - `push`: `POST /v1/messages` and every status code it can answer;
//! - `status`: `GET /v1/messages/{id}`;
//! - `message_ids`: message ids are per sender: no conflict, squatting or telling;
//! - `inbox`: pull, leases, long poll and acknowledgement;
//! - `tls`: who may connect, and who may use the agency API;
//! - `tls_scan`: an independent scanner (sslyze) finds only TLS 1.2 and 1.3, ECDHE with
//!   AEAD suites, and none of the known weaknesses;
//! - `revocation`: revoked certificates (new connections, resumed sessions, open
//!   connections), the connection age bound, and reloading trust and config;
//! - `limits`: connection budgets before and after authentication, idle connections,
//!   slow and oversized bodies, HTTP/2 flow-control windows;
//! - `hostile`: hostile clients (oversized and malformed requests, slow senders,
//!   connection floods, HTTP/2 frame abuse) get a clear error or a closed connection;
//! - `memory`: what an authenticated flood can make a node hold: the body budget, the
//!   ledger queue's bytes, the inbox bound, report rows, and pulls that do not stall each
//!   other;
//! - `endpoints`: health, readiness, OpenAPI, unknown paths and methods;
//! - `api_properties`: schemathesis' generated requests, valid and invalid, as every role,
//!   against the document the node serves: no finding;
//! - `openapi`: the OpenAPI document is the router's endpoints, resolves from the node,
//!   describes real requests and answers, and a standard validator accepts it;
//! - `ops`: the operations listener: metrics, health and readiness over plain HTTP;
//! - `durability`: restart, crash under load, and corrupt records;
//! - `crash_soak`: either node of two SIGKILLed at random moments under load, a dozen
//!   times, then exactly-once delivery and both audit chains (the short `plusgate-soak`);
//! - `audit`: the audit chain on disk and `plusgate audit verify`;
//! - `audit_export`: `plusgate audit export` and the offline `audit verify --file`;
//! - `startup`: configurations and schemas that must stop a node, and `serve --dev`;
//! - `consent`: the consent registry (register, read, withdraw, audited);
//! - `consent_ids`: consent ids are per collector: no squatting, shadowing or telling;
//! - `console`: the privacy officer's web console in headless Chromium (playwright-core);
//! - `federation`: delivery between centers, crashes and outages on the way, dead letters,
//!   the operator's outbox commands and the signed directory;
//! - `pickups`: the sender sees when its message was first pulled and acknowledged at
//!   another center (signed reports from the recipient's node), across crashes and outages;
//! - `addressing`: nodes named by host name or IPv6 address, checked by their identity;
//! - `upgrade`: a store of an older format is refused, and `plusgate migrate` upgrades it;
//! - `syscalls`: every system call, socket family and mapping the node makes is one the
//!   unit's sandbox allows (traced with strace);
//! - `deploy`: `deploy/federation.sh` starting, using and stopping a whole federation;
//! - `csr`: `plusgate csr`, a certificate request signed by an authority, and a node
//!   joining with the result;
//! - `install`: the operator guide followed on a fresh system, from installing the
//!   Debian package to a node serving agencies;
//! - `packages`: the systemd unit, the Debian package, the container's read-only
//!   confinement, and the alert rules against a real node's metrics.

mod support;

mod addressing;
mod api_properties;
mod audit;
mod audit_export;
mod backup;
mod consent;
mod consent_ids;
mod console;
mod crash_soak;
mod csr;
mod deploy;
mod durability;
mod endpoints;
mod enforcement;
mod federation;
mod hostile;
mod inbox;
mod install;
mod limits;
mod memory;
mod message_ids;
mod openapi;
mod ops;
mod packages;
mod pickups;
mod privacy;
mod push;
mod reports;
mod revocation;
mod startup;
mod stats;
mod status;
mod storage;
mod syscalls;
mod tls;
mod tls_scan;
mod upgrade;

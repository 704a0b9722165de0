//! The harness the integration tests and the bench run plusgate with: a development
//! federation in a temporary folder, real `plusgate` nodes started as child processes on
//! free loopback ports, mutual-TLS agents, and helpers for the API calls they make.
//!
//! Nothing here reaches into the node: everything talks to the real binary over real TLS,
//! stops it with real signals and restarts it on the same sled data directory.
//!
//! - [`Plusgate`]: which executable runs — cargo's `plusgate` of the caller's target dir,
//!   or one given explicitly;
//! - [`Federation`]: `dev-init` into a temporary folder, its certificates and examples,
//!   config and directory edits, starting its nodes;
//! - [`Node`]: one `plusgate serve` process (spawn, bound address, signals, restart, log);
//! - [`free_port_range`]: loopback ports for nodes that must listen where the signed
//!   directory says;
//! - the API helpers ([`push`], [`pull`], [`ack`], [`register_consent`], [`drain_inbox`],
//!   …) over [`plusgate::node::client::Agent`];
//! - [`soak`]: the crash soak (nodes SIGKILLed at random under load, then exactly-once and
//!   audit checks), shared by `plusgate-soak` and the short version in the tests.
//!
//! Two kinds of function: fallible ones (`Result<_, Error>`: [`Federation::create`],
//! [`Federation::spawn_node`], [`Node::spawn`], [`Node::terminate`], [`try_register_consent`],
//! [`try_drain_inbox`], …) for callers that report failures, like the bench; and test
//! conveniences that panic with a message naming what failed ([`Federation::new`],
//! [`Federation::start`], [`Node::start`], [`Node::stop`], [`register_consent`], …),
//! because in a test a failed step is a failed test.

mod api;
mod error;
mod federation;
mod node;
mod ports;
mod process;
pub mod soak;
mod trickle;

pub mod hostile;

pub use api::{
    ack, drain_inbox, drain_inbox_by, ids_of, messages_of, pull, pull_response, push,
    push_accepted, push_raw, push_referrals, register_consent, status, try_drain_inbox,
    try_register_consent, with_id, Drained, InboxMessage, InboxPage, DRAIN_TIME_MAX,
    REQUEST_TIMEOUT, VERSIONS,
};
pub use error::Error;
pub use federation::{agent_to, identity_in, load_manifest, ClientCert, Federation};
pub use node::{listening_addr, Node, NodeSpec, STOP_TIMEOUT};
pub use ports::{free_port_range, PORT_END, PORT_FIRST};
pub use process::{run_command_to_exit, wait_with_timeout, Finished, Plusgate};
pub use trickle::Trickle;

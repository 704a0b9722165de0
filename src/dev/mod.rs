//! The development federation: a CA, node, agency and officer certificates (`pki`), the
//! signed directory, configs and example messages (`devinit`), and the `manifest.json` that
//! describes them for scripts and tests (`manifest`). Used by `plusgate dev-init` and
//! `plusgate serve --dev`; a production node never reads any of it.

pub mod devinit;
pub mod manifest;
pub mod pki;

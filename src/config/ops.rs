//! The `[ops]` section: where the operations listener (plain HTTP: `/metrics`, `/healthz`,
//! `/readyz`, see `node::ops`) listens, validated into [`OpsConfig`].
//!
//! The listener is on by default, on loopback ([`OPS_LISTEN_DEFAULT`]): what it serves
//! carries no personal data, but a node's traffic by agency is still the operator's
//! business, so reaching it from elsewhere is a decision written into the config.
//! `listen = "off"` turns it off; port 0 takes a free port, announced on stdout
//! (`plusgate operations on http://ADDR`), which is what `dev-init` writes so several
//! nodes on one host never collide.

use std::net::SocketAddr;

use serde::Deserialize;

use super::ConfigError;

/// The default `ops.listen`: loopback, on the port commonly used by Prometheus exporters
/// of this kind (9464).
pub const OPS_LISTEN_DEFAULT: &str = "127.0.0.1:9464";

/// The `ops.listen` value that turns the listener off.
pub const OPS_LISTEN_OFF: &str = "off";

/// `[ops]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOps {
    listen: Option<String>,
}

/// The `[ops]` section, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsConfig {
    /// Where the operations listener binds; `None`: no operations listener.
    pub listen: Option<SocketAddr>,
}

/// Validates `[ops]`.
pub(super) fn ops(
    raw: &RawOps,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<OpsConfig, ConfigError> {
    let text = raw.listen.as_deref().unwrap_or(OPS_LISTEN_DEFAULT).trim();
    if text == OPS_LISTEN_OFF {
        return Ok(OpsConfig { listen: None });
    }
    let listen: SocketAddr = text.parse().map_err(|e| {
        invalid(
            "ops.listen",
            format!(
                "is neither an address like {OPS_LISTEN_DEFAULT} nor \"{OPS_LISTEN_OFF}\" ({e})"
            ),
        )
    })?;
    Ok(OpsConfig {
        listen: Some(listen),
    })
}

//! Validation of the `[federation]` section.

use std::path::Path;
use std::time::Duration;

use super::{ConfigError, FederationConfig, RawFederation, BATCH_MAX_LIMIT};
use crate::core::keys::PublicKey;

/// Validates the `[federation]` section; `base` is the config file's folder.
pub(super) fn federation(
    raw: &RawFederation,
    base: &Path,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<FederationConfig, ConfigError> {
    let authority_key = PublicKey::from_hex(&raw.authority_key).map_err(|e| {
        invalid(
            "federation.authority_key",
            format!("is {e}; it is the federation authority's key, as its operators publish it"),
        )
    })?;
    if raw.outbox_max == 0 {
        return Err(invalid(
            "federation.outbox_max",
            "must be at least 1".into(),
        ));
    }
    if raw.retry_initial_ms == 0 {
        return Err(invalid(
            "federation.retry_initial_ms",
            "must be at least 1".into(),
        ));
    }
    if raw.retry_max_ms < raw.retry_initial_ms {
        return Err(invalid(
            "federation.retry_max_ms",
            format!(
                "must be at least federation.retry_initial_ms ({})",
                raw.retry_initial_ms
            ),
        ));
    }
    if raw.message_ttl_s == 0 {
        return Err(invalid(
            "federation.message_ttl_s",
            "must be at least 1".into(),
        ));
    }
    if raw.batch_max == 0 || raw.batch_max > BATCH_MAX_LIMIT {
        return Err(invalid(
            "federation.batch_max",
            format!("must be between 1 and {BATCH_MAX_LIMIT}"),
        ));
    }
    if raw.checkpoint_every == 0 {
        return Err(invalid(
            "federation.checkpoint_every",
            "must be at least 1".into(),
        ));
    }
    if raw.checkpoint_interval_s == 0 {
        return Err(invalid(
            "federation.checkpoint_interval_s",
            "must be at least 1".into(),
        ));
    }
    Ok(FederationConfig {
        directory: base.join(&raw.directory),
        authority_key,
        signing_key: base.join(&raw.signing_key),
        outbox_max: raw.outbox_max,
        retry_initial: Duration::from_millis(raw.retry_initial_ms),
        retry_max: Duration::from_millis(raw.retry_max_ms),
        message_ttl: Duration::from_secs(raw.message_ttl_s),
        batch_max: raw.batch_max,
        checkpoint_every: raw.checkpoint_every,
        checkpoint_interval: Duration::from_secs(raw.checkpoint_interval_s),
    })
}

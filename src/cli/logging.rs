//! Where log lines go and how they look: stderr (stdout carries what scripts read), the
//! level filter from `PLUSGATE_LOG` (default `info`), and the format from
//! `PLUSGATE_LOG_FORMAT`: `text` (default, for people) or `json` (one JSON object per line,
//! for a log collector: `timestamp`, `level`, `target`, the event's fields flattened beside
//! `message`, and the enclosing span's fields under `span`, e.g. a request's `request_id`,
//! `route` and, for a push, `message_id`).
//!
//! Invariant (kept by what the node logs, not here): no log line carries a payload, a
//! subject or a client's personal data; message and consent ids and agency names are
//! operational identifiers and may appear.

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// The environment variable that picks the format.
pub const FORMAT_ENV: &str = "PLUSGATE_LOG_FORMAT";

/// The environment variable that holds the level filter.
pub const FILTER_ENV: &str = "PLUSGATE_LOG";

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `PLUSGATE_LOG_FORMAT` holds neither `text` nor `json`. The operator's to fix.
#[derive(Debug, thiserror::Error)]
#[error("{FORMAT_ENV}={0:?} is not a log format: use `text` or `json`")]
pub struct UnknownFormat(String);

impl LogFormat {
    /// The format `value` names (unset or empty: text).
    pub fn parse(value: Option<&str>) -> Result<LogFormat, UnknownFormat> {
        match value.map(str::trim) {
            None | Some("" | "text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => Err(UnknownFormat(other.to_owned())),
        }
    }
}

/// Installs the process's logger as the environment says.
pub fn init() -> Result<(), UnknownFormat> {
    let format = LogFormat::parse(std::env::var(FORMAT_ENV).ok().as_deref())?;
    let filter = EnvFilter::try_from_env(FILTER_ENV).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing::subscriber::set_global_default(subscriber(format, filter, std::io::stderr))
        .map_err(|_| UnknownFormat("(a logger is already installed)".into()))
}

/// A logger of `format`, filtered by `filter`, writing to `writer`.
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
    }
}

#[cfg(test)]
mod tests;

//! The operator's commands against a running node: `plusgate outbox list|retry|drop`.
//!
//! They call the node's `/admin/v1/…` endpoints over mutual TLS *as the node itself*: the
//! config file names the node's certificate and key, and whoever can read those already
//! controls the node, so operators need no extra credential (see `api::admin`).

use std::path::PathBuf;

use hyper::Method;
use serde_json::{json, Value};

use crate::cli::node_client::{AdminError, NodeClient};
use crate::config::Config;

/// `plusgate outbox …`: talks to the running node as the node itself (its certificate).
#[derive(Debug, clap::Subcommand)]
pub enum OutboxCommand {
    /// List messages waiting for other centers, and dead-lettered ones, with the reasons.
    List {
        /// The node's config file.
        #[arg(long)]
        config: PathBuf,
        /// Print the node's JSON answer instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Put dead-lettered messages back at the end of their outbox (their time to live
    /// starts again).
    Retry {
        /// The node's config file.
        #[arg(long)]
        config: PathBuf,
        /// Message ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Take waiting messages out of their outbox for good (dead-lettered, "dropped by the
    /// operator").
    Drop {
        /// The node's config file.
        #[arg(long)]
        config: PathBuf,
        /// Message ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

impl OutboxCommand {
    /// The node's config file.
    pub fn config(&self) -> &PathBuf {
        match self {
            OutboxCommand::List { config, .. }
            | OutboxCommand::Retry { config, .. }
            | OutboxCommand::Drop { config, .. } => config,
        }
    }
}

/// What to do with the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OutboxAction {
    /// List waiting and dead-lettered messages.
    List,
    /// Put dead-lettered messages back into their outbox.
    Retry(Vec<String>),
    /// Take waiting messages out of their outbox for good.
    Drop(Vec<String>),
}

/// Runs `command` against the node configured in `config`; returns what to print.
pub async fn run(config: &Config, command: OutboxCommand) -> Result<String, AdminError> {
    let (action, json_out) = match command {
        OutboxCommand::List { json, .. } => (OutboxAction::List, json),
        OutboxCommand::Retry { ids, .. } => (OutboxAction::Retry(ids), false),
        OutboxCommand::Drop { ids, .. } => (OutboxAction::Drop(ids), false),
    };
    let node = NodeClient::new(config, (&config.tls.cert, &config.tls.key))?;
    let (method, path, body, what) = match &action {
        OutboxAction::List => (Method::GET, "/admin/v1/outbox", None, "list"),
        OutboxAction::Retry(ids) => (
            Method::POST,
            "/admin/v1/outbox/retry",
            Some(json!({ "ids": ids })),
            "retry",
        ),
        OutboxAction::Drop(ids) => (
            Method::POST,
            "/admin/v1/outbox/drop",
            Some(json!({ "ids": ids })),
            "drop",
        ),
    };
    let response = node.send(method, path, body.as_ref()).await?;
    let body: Value = response.json().unwrap_or_else(|_| json!({}));
    if json_out {
        return Ok(body.to_string());
    }
    Ok(match what {
        "list" => render_list(&body),
        "retry" => format!("put back into the outbox: {}", join_ids(&body["retry"])),
        _ => format!("dropped (dead-lettered): {}", join_ids(&body["drop"])),
    })
}

fn join_ids(ids: &Value) -> String {
    ids.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The list as text: one block per center, then the dead letters.
fn render_list(body: &Value) -> String {
    let line = |m: &Value| {
        let mut s = format!(
            "  {}  {}  {} → {}  accepted {}",
            m["id"].as_str().unwrap_or("?"),
            m["state"].as_str().unwrap_or("?"),
            m["from"].as_str().unwrap_or("?"),
            m["to"].as_str().unwrap_or("?"),
            m["accepted_at"].as_str().unwrap_or("?"),
        );
        if let Some(n) = m["failed_attempts"].as_u64().filter(|n| *n > 0) {
            s.push_str(&format!("  failed attempts {n}"));
        }
        if let Some(e) = m["last_error"].as_str() {
            s.push_str(&format!("\n      {e}"));
        }
        s
    };
    let mut out = Vec::new();
    match body["centers"].as_object() {
        Some(centers) if !centers.is_empty() => {
            for (center, c) in centers {
                out.push(format!(
                    "outbox to {center}: {} waiting",
                    c["queued"].as_u64().unwrap_or(0)
                ));
                for m in c["messages"].as_array().into_iter().flatten() {
                    out.push(line(m));
                }
            }
        }
        _ => out.push("every outbox is empty".into()),
    }
    let dead = body["dead_lettered"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    out.push(format!("dead-lettered: {}", dead.len()));
    for m in &dead {
        out.push(line(m));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_names_every_message_its_state_and_why_it_waits() {
        let body = json!({
            "centers": {"jeongeup": {"queued": 1, "messages": [
                {"id": "ref-1", "state": "forwarded", "from": "suwon/employment",
                 "to": "jeongeup/welfare", "accepted_at": "2026-11-26T03:00:00Z",
                 "failed_attempts": 3, "last_error": "connection refused"}]}},
            "dead_lettered": [
                {"id": "ref-0", "state": "dead-lettered", "from": "suwon/employment",
                 "to": "jeongeup/welfare", "accepted_at": "2026-11-25T03:00:00Z",
                 "failed_attempts": 0, "last_error": "not delivered within its time to live"}]
        });
        let text = render_list(&body);
        for expected in [
            "outbox to jeongeup: 1 waiting",
            "ref-1  forwarded",
            "failed attempts 3",
            "connection refused",
            "dead-lettered: 1",
            "ref-0  dead-lettered",
            "time to live",
        ] {
            assert!(text.contains(expected), "{expected:?} missing in:\n{text}");
        }
    }

    #[test]
    fn an_empty_node_says_so() {
        let text = render_list(&json!({"centers": {}, "dead_lettered": []}));
        assert_eq!(text, "every outbox is empty\ndead-lettered: 0");
    }
}

//! The operator's commands against a running node: `plusgate outbox list|retry|drop`.
//!
//! They call the node's `/admin/v1/…` endpoints over mutual TLS *as the node itself*: the
//! config file names the node's certificate and key, and whoever can read those already
//! controls the node, so operators need no extra credential (see `api::admin`).

use std::path::PathBuf;

use hyper::Method;
use serde_json::{json, Value};

use crate::cli::node_client::{AdminError, NodeClient, Target};
use crate::config::Config;

/// Which node: its config (its certificate and key, CA and, unless `--url` says another,
/// its listen address).
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// The node's config file.
    #[arg(long)]
    pub config: PathBuf,
    /// Reach the node at this URL (`https://HOST:PORT`) instead of its configured listen
    /// address (e.g. when it listens on another interface than loopback).
    #[arg(long)]
    pub url: Option<String>,
}

/// `plusgate outbox …`: talks to the running node as the node itself (its certificate).
#[derive(Debug, clap::Subcommand)]
pub enum OutboxCommand {
    /// List messages waiting for other centers, and dead-lettered ones, with the reasons.
    List {
        /// Which node.
        #[command(flatten)]
        node: NodeArgs,
        /// Print the node's JSON answer instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Put dead-lettered messages back at the end of their outbox (their time to live
    /// starts again): those named, or with `--all` every one (for `--center`: every one
    /// for that center), e.g. after a long outage.
    Retry {
        /// Which node.
        #[command(flatten)]
        node: NodeArgs,
        /// Every dead-lettered message (with `--center`, for that center only).
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// With `--all`: only the messages for this center.
        #[arg(long, requires = "all")]
        center: Option<String>,
        /// Message keys as `outbox list` shows them (`<from>/<id>`), or bare ids.
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
    },
    /// Take waiting messages out of their outbox for good (dead-lettered, "dropped by the
    /// operator").
    Drop {
        /// Which node.
        #[command(flatten)]
        node: NodeArgs,
        /// Message keys as `outbox list` shows them (`<from>/<id>`), or bare ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

impl OutboxCommand {
    /// Which node.
    pub fn node(&self) -> &NodeArgs {
        match self {
            OutboxCommand::List { node, .. }
            | OutboxCommand::Retry { node, .. }
            | OutboxCommand::Drop { node, .. } => node,
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
    let target = match &command.node().url {
        Some(url) => Target::at(url, &config.tls.client_ca)?,
        None => Target::of_config(config),
    };
    let node = NodeClient::new(&target, (&config.tls.cert, &config.tls.key))?;
    let (action, json_out) = match command {
        OutboxCommand::List { json, .. } => (OutboxAction::List, json),
        OutboxCommand::Retry {
            all: true, center, ..
        } => return retry_all(&node, center.as_deref()).await,
        OutboxCommand::Retry { ids, .. } => (OutboxAction::Retry(ids), false),
        OutboxCommand::Drop { ids, .. } => (OutboxAction::Drop(ids), false),
    };
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

/// Most ids one retry request carries (the node's limit for an id list).
const RETRY_BATCH: usize = 1000;

/// `outbox retry --all [--center C]`: puts every dead letter (for center `center`) back,
/// a list and a retry at a time (the node lists at most 1,000), until none is left that
/// can go back. A message that cannot (its payload was erased: its consent was withdrawn)
/// is named with the node's reason and left; the others go on.
async fn retry_all(node: &NodeClient, center: Option<&str>) -> Result<String, AdminError> {
    let mut put_back = 0usize;
    let mut left: Vec<(String, String)> = Vec::new();
    loop {
        let list: Value = node
            .send(Method::GET, "/admin/v1/outbox", None)
            .await?
            .json()
            .unwrap_or_else(|_| json!({}));
        let ids: Vec<String> = list["dead_lettered"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| {
                center.is_none_or(|c| {
                    m["to"]
                        .as_str()
                        .and_then(|to| to.split_once('/'))
                        .is_some_and(|(to_center, _)| to_center == c)
                })
            })
            .filter_map(|m| m["id"].as_str().map(str::to_owned))
            .filter(|id| !left.iter().any(|(l, _)| l == id))
            .take(RETRY_BATCH)
            .collect();
        if ids.is_empty() {
            break;
        }
        let before = put_back;
        match node
            .send(
                Method::POST,
                "/admin/v1/outbox/retry",
                Some(&json!({ "ids": ids })),
            )
            .await
        {
            Ok(_) => put_back += ids.len(),
            // One of them cannot go back: one at a time, to put back the rest.
            Err(AdminError::Refused(_)) => {
                for id in ids {
                    let body = json!({ "ids": [id] });
                    match node
                        .send(Method::POST, "/admin/v1/outbox/retry", Some(&body))
                        .await
                    {
                        Ok(_) => put_back += 1,
                        Err(AdminError::Refused(why)) => left.push((id, why)),
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e),
        }
        if put_back == before && left.is_empty() {
            break;
        }
        eprintln!("  put back {put_back} so far");
    }
    let scope = center.map_or_else(String::new, |c| format!(" for {c}"));
    let mut out = format!("put back into the outbox: {put_back} dead-lettered messages{scope}");
    if !left.is_empty() {
        out.push_str(&format!("; {} left dead-lettered:", left.len()));
        for (id, why) in left {
            out.push_str(&format!("\n  {id}: {why}"));
        }
    }
    Ok(out)
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

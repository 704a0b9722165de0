//! `/admin/v1/backups…`: a consistent backup of the running node, behind `plusgate backup`
//! (and `plusgate audit verify|export` against a running node).
//!
//! `POST` has the ledger's writer write the backup (`node::backup`) and answers 201 with its
//! description and id; `GET …/{id}?offset=N` answers the next piece of at most
//! [`PIECE_BYTES`] from `offset` (an empty body at the end), so the operator's command reads
//! it at its own pace, resumes after a broken connection, and no answer is large; `POST
//! …/{id}/release`
//! frees its space at once (the node also drops one left unread, `backup::IDLE_MAX`).
//! Only this node's own certificate gets in, as for every admin endpoint (`api::admin`).

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE, LOCATION};
use hyper::{Response, StatusCode};
use serde_json::json;

use super::body::json_response;
use super::problem::ledger_problem;
use super::{Api, Problem, Resp};
use crate::node::backup::{BackupError, HeldError};

/// Most bytes of a backup one answer carries (below the client's body limit, 16 MiB).
pub const PIECE_BYTES: u64 = 8 << 20;

fn held_problem(e: HeldError) -> Problem {
    match e {
        HeldError::Busy(_) => Problem::new(
            StatusCode::CONFLICT,
            "backup-in-progress",
            "Another backup is being copied",
            e.to_string(),
        ),
        HeldError::NoSpace { .. } => Problem::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "backup-no-space",
            "Not enough disk space for a backup",
            e.to_string(),
        ),
        HeldError::Unknown(_) => Problem::new(
            StatusCode::NOT_FOUND,
            "no-such-backup",
            "No such backup",
            e.to_string(),
        ),
        HeldError::Offset { .. } => Problem::bad_request(e.to_string()),
        HeldError::Backup(BackupError::Store(e)) => super::problem::store_problem(e),
        HeldError::Backup(e) => Problem::internal("backup-failed", &e),
    }
}

impl Api {
    /// `POST /admin/v1/backups`.
    pub(super) async fn backup_take(&self) -> Result<Resp, Problem> {
        let file = self.backups.prepare().map_err(held_problem)?;
        let started = std::time::Instant::now();
        let (file, written) = self
            .ledger
            .backup(
                self.backups.data_dir().to_owned(),
                self.center.clone(),
                file,
            )
            .await
            .map_err(ledger_problem)?;
        let written = written.map_err(|e| held_problem(e.into()))?;
        // Writes go on meanwhile: the digest is the only pass over the whole file here.
        let took_ms = started.elapsed().as_millis() as u64;
        let (file, summary) = tokio::task::spawn_blocking(move || {
            let sealed = crate::node::backup::seal(&file, written);
            (file, sealed)
        })
        .await
        .map_err(|e| Problem::internal("backup-failed", &e))?;
        let summary = summary.map_err(|e| held_problem(e.into()))?;
        let id = self
            .backups
            .hold(file, summary.clone())
            .map_err(held_problem)?;
        self.backups.expire_later();
        let mut body = serde_json::to_value(&summary).expect("a summary serializes");
        body["id"] = json!(id);
        body["took_ms"] = json!(took_ms);
        body["piece_bytes"] = json!(PIECE_BYTES);
        let mut resp = json_response(StatusCode::CREATED, &body);
        if let Ok(location) = HeaderValue::from_str(&format!("/admin/v1/backups/{id}")) {
            resp.headers_mut().insert(LOCATION, location);
        }
        Ok(resp)
    }

    /// `GET /admin/v1/backups/{id}?offset=N`.
    pub(super) async fn backup_piece(
        &self,
        id: &str,
        query: Option<&str>,
    ) -> Result<Resp, Problem> {
        let mut offset = None;
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "offset" => {
                    offset = Some(v.parse::<u64>().map_err(|_| {
                        Problem::bad_request(format!("offset must be a number of bytes, not {v:?}"))
                    })?)
                }
                other => {
                    return Err(Problem::bad_request(format!(
                        "unknown query parameter {other:?}; the only one is offset"
                    )))
                }
            }
        }
        let offset = offset.unwrap_or(0);
        let (file, len) = self.backups.open(id, offset).map_err(held_problem)?;
        let want = PIECE_BYTES.min(len - offset) as usize;
        let piece = tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let mut buf = vec![0u8; want];
            file.read_exact_at(&mut buf, offset).map(|()| buf)
        })
        .await
        .map_err(|e| Problem::internal("backup-failed", &e))?
        .map_err(|e| Problem::internal("backup-failed", &e))?;
        let mut resp = Response::new(http_body_util::Full::new(Bytes::from(piece)));
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        Ok(resp)
    }

    /// `POST /admin/v1/backups/{id}/release`.
    pub(super) fn backup_release(&self, id: &str) -> Result<Resp, Problem> {
        self.backups.release(id).map_err(held_problem)?;
        let mut resp = Response::new(http_body_util::Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::NO_CONTENT;
        Ok(resp)
    }
}

//! `GET /v1/schemas/{file}`: the JSON Schemas the node validates against, so the OpenAPI
//! document's `$ref`s (`schemas/envelope.v1.json`, relative to `/v1/openapi.json`) resolve
//! from the node that served it. Open to every authenticated client certificate, like the
//! document itself: the schemas hold no data, only the shape of it.

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::StatusCode;

use super::body::raw_json;
use super::{Api, Problem, Resp};

/// The media type of a JSON Schema (RFC draft-bhutton-json-schema-01, section 14).
const SCHEMA_JSON: &str = "application/schema+json";

impl Api {
    /// The schema file `file`, as [`crate::core::schema::Schemas::served`] gives it.
    pub(super) fn schema_file(&self, file: &str) -> Result<Resp, Problem> {
        let text = self
            .schemas
            .served(file)
            .ok_or_else(|| Problem::not_found(format!("no schema {file}")))?;
        let mut resp = raw_json(StatusCode::OK, text);
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(SCHEMA_JSON));
        Ok(resp)
    }
}

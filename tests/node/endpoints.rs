//! Health, readiness, the OpenAPI document, and what unknown paths and methods get.

use bytes::Bytes;
use hyper::Method;
use serde_json::Value;

use crate::support::{assert_problem, Federation, VERSIONS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_are_200() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    for version in VERSIONS {
        let agent = node.agent("suwon/employment", version);
        for path in ["/healthz", "/readyz"] {
            let response = agent.get(path).await.expect("response");
            assert_eq!(response.status.as_u16(), 200, "{path}: {}", response.text());
            response.json::<Value>().expect("JSON body");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_is_served_as_openapi_3_1_json() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let agent = node.agent("suwon/welfare", VERSIONS[1]);
    let response = agent.get("/v1/openapi.json").await.expect("response");
    assert_eq!(response.status.as_u16(), 200);
    assert_eq!(response.content_type(), Some("application/json"));
    let doc: Value = response.json().expect("OpenAPI is JSON");
    let version = doc["openapi"].as_str().expect("openapi field");
    assert!(version.starts_with("3.1"), "{version}");
    assert!(
        doc["paths"]["/v1/messages"].is_object(),
        "documents the push"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_path_is_404_problem() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    for version in VERSIONS {
        let agent = node.agent("suwon/employment", version);
        for path in [
            "/",
            "/v1",
            "/v2/messages",
            "/v1/inbox/ack/extra",
            "/healthz/",
        ] {
            let response = agent.get(path).await.expect("response");
            assert_problem(&response, 404, "not-found");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_is_405_naming_the_allowed_one() {
    let fed = Federation::new();
    let node = fed.start("suwon");
    let cases = [
        (Method::GET, "/v1/messages", "POST"),
        (Method::DELETE, "/v1/messages/ref-1", "GET"),
        (Method::POST, "/v1/inbox", "GET"),
        (Method::GET, "/v1/inbox/ack", "POST"),
        (Method::PUT, "/healthz", "GET"),
    ];
    for version in VERSIONS {
        let agent = node.agent("suwon/employment", version);
        for (method, path, allow) in &cases {
            let body = Some((Bytes::from_static(b"{}"), "application/json"));
            let response = agent
                .request(method.clone(), path, body)
                .await
                .expect("response");
            assert_problem(&response, 405, "method-not-allowed");
            let header = response.headers.get("allow").and_then(|v| v.to_str().ok());
            assert_eq!(header, Some(*allow), "{method} {path}");
        }
    }
}

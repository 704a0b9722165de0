//! HTTP/2 attacks a protocol-abiding client can make, through the `h2` crate: a request
//! body that trickles in DATA frames.

use std::time::{Duration, Instant};

use bytes::Bytes;
use plusgate::node::client::HttpVersion;

use super::h1::{h2_error, h2_post};
use super::{connect, problem_slug, Got, Target, Who};

/// A POST whose body (declaring `declared` bytes, or no length) arrives a byte every
/// `every`, forever; what the node answers within `wait`.
pub(super) async fn trickled_post(
    t: &Target,
    who: Who,
    declared: Option<usize>,
    every: Duration,
    wait: Duration,
) -> Got {
    let start = Instant::now();
    let tls = match connect(t, who, HttpVersion::Http2).await {
        Ok(tls) => tls,
        Err(got) => return got,
    };
    let mut request = h2_post(t);
    if let Some(n) = declared {
        request = request.header("content-length", n);
    }
    let request = match request.body(()) {
        Ok(request) => request,
        Err(e) => return Got::Refused(e.to_string()),
    };
    let attempt = async {
        let (client, conn) = ::h2::client::handshake(tls).await?;
        let conn = tokio::spawn(conn);
        let mut client = client.ready().await?;
        let (response, mut send) = client.send_request(request, false)?;
        let feeder = tokio::spawn(async move {
            loop {
                send.reserve_capacity(1);
                if send.send_data(Bytes::from_static(b" "), false).is_err() {
                    break;
                }
                tokio::time::sleep(every).await;
            }
        });
        let response = response.await;
        feeder.abort();
        let response = response?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(Ok(data)) = body.data().await {
            let _ = body.flow_control().release_capacity(data.len());
            bytes.extend_from_slice(&data);
        }
        conn.abort();
        Ok::<_, ::h2::Error>(Got::Answer {
            status,
            problem: problem_slug(&bytes),
        })
    };
    match tokio::time::timeout(wait, attempt).await {
        Ok(Ok(got)) => got,
        Ok(Err(e)) => h2_error(&e, start),
        Err(_) => Got::Silent { waited: wait },
    }
}

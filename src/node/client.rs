//! A small mutual-TLS HTTP client for plusgate nodes.
//!
//! Used by `plusgate bench`, by the integration tests and by node-to-node forwarding.
//! It speaks HTTP/1.1 or HTTP/2 (chosen up front, negotiated by ALPN) over rustls on the
//! ring provider, using hyper's connection-level client: one [`Connection`] is one TCP +
//! TLS connection, and there is deliberately no pool — callers that want reuse keep their
//! `Connection` (HTTP/1.1: one request in flight; HTTP/2: [`Connection::try_clone`] shares
//! the connection between concurrent streams).
//!
//! Every network step is bounded in time ([`CONNECT_TIMEOUT`], [`REQUEST_TIMEOUT`]) and
//! every response body in size ([`RESPONSE_BODY_BYTES_MAX`]).
//!
//! TLS 1.3 and client certificates: the server checks the client certificate after the
//! client has already sent its `Finished`, so a rejected (or missing) certificate shows up
//! as a fatal alert on the *first request*, not in [`connect`](Connection::connect). The
//! connection records the first rustls error it sees, so that such a request usually fails
//! with [`ClientError::Tls`] carrying the alert. Not always: when the server closes the socket
//! right after its alert, the client may see the closed socket before it reads the alert,
//! and the request fails as [`ClientError::Http`] ("connection closed") instead. Callers
//! that must tell the two apart can only rely on "no HTTP response was received".

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::{http1, http2};
use hyper::{header, HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::core::directory::UrlError;

/// Upper bound on TCP connect plus TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default upper bound on one request/response exchange, body included.
///
/// Longer than the node's longest inbox long-poll (`inbox_wait_s_max`, 30 s by default)
/// so that a legitimate long-poll is not cut short.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest response body the client accepts (16 MiB); a larger one is an error.
pub const RESPONSE_BODY_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The HTTP version a connection uses, fixed when the TLS configuration is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpVersion {
    /// HTTP/1.1, ALPN `http/1.1`: one request in flight per connection, keep-alive.
    Http1,
    /// HTTP/2, ALPN `h2`: many concurrent streams per connection.
    Http2,
}

impl HttpVersion {
    /// The ALPN protocol id offered for this version.
    pub fn alpn(self) -> &'static [u8] {
        match self {
            HttpVersion::Http1 => b"http/1.1",
            HttpVersion::Http2 => b"h2",
        }
    }
}

impl fmt::Display for HttpVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HttpVersion::Http1 => "HTTP/1.1",
            HttpVersion::Http2 => "HTTP/2",
        })
    }
}

/// What went wrong in the client, grouped by who is likely at fault.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The private key file is open to other users.
    #[error(transparent)]
    Exposed(#[from] crate::node::files::ExposedKey),
    /// A PEM file could not be read or holds no usable item (local setup at fault).
    #[error("reading {what} from {}: {source}", path.display())]
    Pem {
        /// The file that was read.
        path: PathBuf,
        /// What was expected in it ("CA certificates", "client certificate", "private key").
        what: &'static str,
        /// The PEM reader's error.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The TLS configuration could not be built, e.g. a key that does not match its
    /// certificate or a CA certificate rustls refuses (local setup at fault).
    #[error("TLS configuration: {detail}")]
    Config {
        /// What was being configured and why it failed.
        detail: String,
    },
    /// The server name is neither a DNS name nor an IP address.
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
    /// A URL given to [`parse_https_url`] is not of the form `https://IP[:PORT][/]`.
    #[error("invalid URL {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The TCP connection could not be established (server down, wrong address).
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The server address.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The TLS layer failed: during the handshake (e.g. untrusted server certificate) or
    /// afterwards through a fatal alert from the server (e.g. our client certificate was
    /// refused under TLS 1.3). The rustls error text is kept as is.
    #[error("TLS with {addr}: {source}")]
    Tls {
        /// The server address.
        addr: SocketAddr,
        /// The rustls error, for example `received fatal alert: CertificateRequired`.
        #[source]
        source: rustls::Error,
    },
    /// The connection broke during the TLS handshake without a TLS error (e.g. the server
    /// closed it).
    #[error("TLS handshake with {addr}: {source}")]
    Handshake {
        /// The server address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The server did not agree to the HTTP version we asked for by ALPN.
    #[error("{addr} did not negotiate {wanted} by ALPN (server chose {chosen:?})")]
    Alpn {
        /// The server address.
        addr: SocketAddr,
        /// The version asked for.
        wanted: HttpVersion,
        /// The protocol the server selected, if any.
        chosen: Option<String>,
    },
    /// The request could not be built (e.g. a path that is not `/…`); caller at fault.
    #[error("building request: {0}")]
    Request(String),
    /// An HTTP protocol or transport failure after the handshake (connection reset,
    /// malformed response, GOAWAY, …). `detail` is the whole error chain.
    #[error("HTTP with {addr}: {detail}")]
    Http {
        /// The server address.
        addr: SocketAddr,
        /// The error and its causes, joined with `: `.
        detail: String,
    },
    /// A step did not finish within its time bound.
    #[error("timed out after {after:?} {during} {addr}")]
    Timeout {
        /// The server address.
        addr: SocketAddr,
        /// What was being done ("connecting to", "waiting for a response from").
        during: &'static str,
        /// The bound that expired.
        after: Duration,
    },
    /// The response body is larger than [`RESPONSE_BODY_BYTES_MAX`].
    #[error("response body from {addr} exceeds {RESPONSE_BODY_BYTES_MAX} bytes")]
    BodyTooLarge {
        /// The server address.
        addr: SocketAddr,
    },
    /// The response body is not the JSON the caller expected.
    #[error("response body is not the expected JSON: {0}")]
    Json(#[source] serde_json::Error),
}

impl ClientError {
    /// True when the failure is the TLS layer refusing the connection: a TLS error
    /// (handshake failure or fatal alert) or the connection dropped mid-handshake.
    pub fn is_tls_refusal(&self) -> bool {
        matches!(
            self,
            ClientError::Tls { .. } | ClientError::Handshake { .. }
        )
    }
}

pub use self::config::{client_config, client_config_with_crls};

/// Splits a node URL of the form `https://HOST[:PORT][/]` into the socket address to
/// connect to and the host name to verify the server certificate against (the parsing is
/// [`crate::core::directory::parse_https_url`]; its rules apply).
pub fn parse_https_url(url: &str) -> Result<(SocketAddr, String), ClientError> {
    crate::core::directory::parse_https_url(url)
        .map_err(|UrlError { url, reason }| ClientError::Url { url, reason })
}

/// A response with its body read completely.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The whole body (at most [`RESPONSE_BODY_BYTES_MAX`] bytes).
    pub body: Bytes,
}

impl Response {
    /// Deserializes the body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        serde_json::from_slice(&self.body).map_err(ClientError::Json)
    }

    /// The body as text, with invalid UTF-8 replaced (for messages and assertions).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `content-type` header, if present and ASCII.
    pub fn content_type(&self) -> Option<&str> {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
    }
}

/// The hyper request sender of one connection.
enum Sender {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

/// One TCP + TLS connection to a node, speaking the HTTP version chosen at connect time.
///
/// The hyper connection driver runs in its own task and ends when every handle of the
/// connection is dropped or the server closes it.
pub struct Connection {
    sender: Sender,
    addr: SocketAddr,
    /// `host:port` sent as `Host` (HTTP/1.1) or `:authority` (HTTP/2).
    authority: Arc<str>,
    /// The first rustls error seen on this connection's socket, if any.
    tls_error: Arc<OnceLock<rustls::Error>>,
    timeout: Duration,
    /// The plusgate identity in the server's (verified) certificate.
    server_identity: Arc<crate::core::identity::Peer>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .field("authority", &self.authority)
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects to `addr` (TCP_NODELAY on), performs the TLS handshake verifying the
    /// server certificate against `server_name`, checks that ALPN chose `version`, and
    /// spawns the HTTP connection driver on the current tokio runtime.
    ///
    /// `config` should come from [`client_config`] with the same `version`. The whole
    /// step is bounded by [`CONNECT_TIMEOUT`].
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        config: Arc<ClientConfig>,
        version: HttpVersion,
    ) -> Result<Connection, ClientError> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| ClientError::ServerName(server_name.to_owned()))?;
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, handshake(addr, name, config))
            .await
            .map_err(|_| ClientError::Timeout {
                addr,
                during: "connecting to",
                after: CONNECT_TIMEOUT,
            })??;
        let chosen = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let server_identity = Arc::new(
            tls.get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map_or(Err(crate::core::identity::Anonymous::NoPlusgateUri), |c| {
                    crate::core::identity::from_certificate(c)
                }),
        );
        // A server without ALPN implies HTTP/1.1; HTTP/2 must be agreed explicitly.
        let agreed = match (&chosen, version) {
            (Some(p), v) => p.as_slice() == v.alpn(),
            (None, HttpVersion::Http1) => true,
            (None, HttpVersion::Http2) => false,
        };
        if !agreed {
            return Err(ClientError::Alpn {
                addr,
                wanted: version,
                chosen: chosen.map(|p| String::from_utf8_lossy(&p).into_owned()),
            });
        }

        let tls_error = Arc::new(OnceLock::new());
        let io = TokioIo::new(RecordTlsError {
            inner: tls,
            tls_error: Arc::clone(&tls_error),
        });
        let sender = match version {
            HttpVersion::Http1 => {
                let (sender, conn) = http1::handshake(io)
                    .await
                    .map_err(|e| transport_error(addr, &tls_error, &e))?;
                // The driver's own error also reaches the pending request, which reports it.
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Sender::Http1(sender)
            }
            HttpVersion::Http2 => {
                let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| transport_error(addr, &tls_error, &e))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Sender::Http2(sender)
            }
        };
        Ok(Connection {
            sender,
            addr,
            authority: authority(server_name, addr.port()).into(),
            tls_error,
            timeout: REQUEST_TIMEOUT,
            server_identity,
        })
    }

    /// The plusgate identity (SAN URI) of the server's verified certificate: a forwarding
    /// node checks it is talking to the center it means to reach.
    pub fn server_identity(&self) -> &crate::core::identity::Peer {
        &self.server_identity
    }

    /// The HTTP version of this connection.
    pub fn version(&self) -> HttpVersion {
        match self.sender {
            Sender::Http1(_) => HttpVersion::Http1,
            Sender::Http2(_) => HttpVersion::Http2,
        }
    }

    /// The server address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the bound on each later [`send`](Self::send) (default [`REQUEST_TIMEOUT`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// A second handle on the same connection for concurrent streams: `Some` for
    /// HTTP/2, `None` for HTTP/1.1 (one request at a time; open another connection).
    pub fn try_clone(&self) -> Option<Connection> {
        match &self.sender {
            Sender::Http1(_) => None,
            Sender::Http2(sender) => Some(Connection {
                sender: Sender::Http2(sender.clone()),
                addr: self.addr,
                authority: Arc::clone(&self.authority),
                tls_error: Arc::clone(&self.tls_error),
                timeout: self.timeout,
                server_identity: Arc::clone(&self.server_identity),
            }),
        }
    }

    /// True once the connection can no longer send requests (closed by either side).
    pub fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::Http1(s) => s.is_closed(),
            Sender::Http2(s) => s.is_closed(),
        }
    }

    /// Waits until the connection can take another request (HTTP/1.1: the previous
    /// response is done), or fails if it has closed.
    pub async fn ready(&mut self) -> Result<(), ClientError> {
        let result = match &mut self.sender {
            Sender::Http1(s) => s.ready().await,
            Sender::Http2(s) => s.ready().await,
        };
        result.map_err(|e| transport_error(self.addr, &self.tls_error, &e))
    }

    /// Sends one request and reads the whole response, within the connection's timeout.
    ///
    /// `path` is the origin-form target (`/v1/messages?…`); `body` is the bytes and their
    /// content type. `Host` (HTTP/1.1) or `:authority` (HTTP/2) is set from the server
    /// name and port given to [`connect`](Self::connect).
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &str)>,
    ) -> Result<Response, ClientError> {
        self.send_with_headers(method, path, &[], body).await
    }

    /// [`send`](Self::send) with extra request headers (e.g. the ones a browser adds).
    pub async fn send_with_headers(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(Bytes, &str)>,
    ) -> Result<Response, ClientError> {
        let mut request = self.build_request(method, path, body)?;
        for (name, value) in headers {
            let (Ok(name), Ok(value)) = (
                header::HeaderName::from_bytes(name.as_bytes()),
                header::HeaderValue::from_str(value),
            ) else {
                return Err(ClientError::Request(format!("bad header {name}: {value}")));
            };
            request.headers_mut().append(name, value);
        }
        let (addr, timeout) = (self.addr, self.timeout);
        tokio::time::timeout(timeout, self.exchange(request))
            .await
            .map_err(|_| ClientError::Timeout {
                addr,
                during: "waiting for a response from",
                after: timeout,
            })?
    }

    fn build_request(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &str)>,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        if !path.starts_with('/') {
            return Err(ClientError::Request(format!(
                "path {path:?} must start with '/'"
            )));
        }
        let mut builder = Request::builder().method(method);
        builder = match self.sender {
            Sender::Http1(_) => builder
                .uri(path)
                .header(header::HOST, self.authority.as_ref()),
            // hyper's HTTP/2 client takes :scheme and :authority from an absolute URI.
            Sender::Http2(_) => builder.uri(format!("https://{}{path}", self.authority)),
        };
        let body = match body {
            Some((bytes, content_type)) => {
                builder = builder.header(header::CONTENT_TYPE, content_type);
                Full::new(bytes)
            }
            None => Full::new(Bytes::new()),
        };
        builder
            .body(body)
            .map_err(|e| ClientError::Request(e.to_string()))
    }

    async fn exchange(&mut self, request: Request<Full<Bytes>>) -> Result<Response, ClientError> {
        let addr = self.addr;
        let result = match &mut self.sender {
            Sender::Http1(s) => match s.ready().await {
                Ok(()) => s.send_request(request).await,
                Err(e) => Err(e),
            },
            Sender::Http2(s) => match s.ready().await {
                Ok(()) => s.send_request(request).await,
                Err(e) => Err(e),
            },
        };
        let response = result.map_err(|e| transport_error(addr, &self.tls_error, &e))?;
        let (parts, body) = response.into_parts();
        let collected = Limited::new(body, RESPONSE_BODY_BYTES_MAX)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    ClientError::BodyTooLarge { addr }
                } else {
                    transport_error(addr, &self.tls_error, e.as_ref())
                }
            })?;
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body: collected.to_bytes(),
        })
    }
}

/// TCP connect (no Nagle: requests are small and latency matters) and TLS handshake.
async fn handshake(
    addr: SocketAddr,
    name: ServerName<'static>,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, ClientError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|source| ClientError::Connect { addr, source })?;
    tcp.set_nodelay(true)
        .map_err(|source| ClientError::Connect { addr, source })?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|source| match rustls_error_in(&source) {
            Some(error) => ClientError::Tls {
                addr,
                source: error.clone(),
            },
            None => ClientError::Handshake { addr, source },
        })
}

/// `host:port`, with brackets around an IPv6 literal.
fn authority(server_name: &str, port: u16) -> String {
    if server_name.contains(':') {
        format!("[{server_name}]:{port}")
    } else {
        format!("{server_name}:{port}")
    }
}

/// Classifies a failure after the handshake: a TLS error recorded on the socket wins
/// (the HTTP layers may have flattened it to "connection closed"), else the error chain.
fn transport_error(
    addr: SocketAddr,
    tls_error: &OnceLock<rustls::Error>,
    error: &(dyn std::error::Error + 'static),
) -> ClientError {
    if let Some(source) = tls_error.get() {
        return ClientError::Tls {
            addr,
            source: source.clone(),
        };
    }
    let mut detail = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        detail.push_str(": ");
        detail.push_str(&e.to_string());
        cause = e.source();
    }
    ClientError::Http { addr, detail }
}

/// The rustls error inside an I/O error, as tokio-rustls reports TLS failures.
fn rustls_error_in(error: &io::Error) -> Option<&rustls::Error> {
    error.get_ref()?.downcast_ref::<rustls::Error>()
}

/// A transparent wrapper around the TLS stream that remembers the first rustls error
/// (for example a fatal alert) passing through it, for [`transport_error`].
struct RecordTlsError<S> {
    inner: S,
    tls_error: Arc<OnceLock<rustls::Error>>,
}

impl<S> RecordTlsError<S> {
    fn record<T>(&self, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(e)) = &poll {
            if let Some(error) = rustls_error_in(e) {
                let _ = self.tls_error.set(error.clone());
            }
        }
        poll
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for RecordTlsError<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.record(poll)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for RecordTlsError<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.record(poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.record(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.record(poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.record(poll)
    }
}

/// Everything needed to reach one node as one identity; opens a fresh connection for
/// every request (simple and isolated, for tests and one-off calls).
#[derive(Debug, Clone)]
pub struct Agent {
    /// The node's address.
    pub addr: SocketAddr,
    /// The name the node's certificate is verified against.
    pub server_name: String,
    /// TLS configuration (trust anchors, optional client certificate, ALPN).
    pub config: Arc<ClientConfig>,
    /// The HTTP version to speak; must match the ALPN in `config`.
    pub version: HttpVersion,
    /// Bound on each request (default [`REQUEST_TIMEOUT`]).
    pub timeout: Duration,
}

impl Agent {
    /// An agent for `addr`, verifying the server as `server_name`.
    pub fn new(
        addr: SocketAddr,
        server_name: impl Into<String>,
        config: Arc<ClientConfig>,
        version: HttpVersion,
    ) -> Agent {
        Agent {
            addr,
            server_name: server_name.into(),
            config,
            version,
            timeout: REQUEST_TIMEOUT,
        }
    }

    /// An agent for a node URL such as `https://127.0.0.1:7443` (see [`parse_https_url`]).
    pub fn from_url(
        url: &str,
        config: Arc<ClientConfig>,
        version: HttpVersion,
    ) -> Result<Agent, ClientError> {
        let (addr, host) = parse_https_url(url)?;
        Ok(Agent::new(addr, host, config, version))
    }

    /// Opens a new connection.
    pub async fn connect(&self) -> Result<Connection, ClientError> {
        let mut conn = Connection::connect(
            self.addr,
            &self.server_name,
            Arc::clone(&self.config),
            self.version,
        )
        .await?;
        conn.set_timeout(self.timeout);
        Ok(conn)
    }

    /// Sends one request on a fresh connection (see [`Connection::send`]).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &str)>,
    ) -> Result<Response, ClientError> {
        self.connect().await?.send(method, path, body).await
    }

    /// POSTs a JSON body (`application/json`) on a fresh connection.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Response, ClientError> {
        let bytes = Bytes::from(body.to_string());
        self.request(Method::POST, path, Some((bytes, "application/json")))
            .await
    }

    /// GETs `path` on a fresh connection.
    pub async fn get(&self, path: &str) -> Result<Response, ClientError> {
        self.request(Method::GET, path, None).await
    }
}

mod config;
#[cfg(test)]
mod tests;

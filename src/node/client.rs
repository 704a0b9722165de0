//! A small mutual-TLS HTTP client for plusgate nodes.
//!
//! Used by `plusgate bench`, by the integration tests and by node-to-node forwarding.
//! It speaks HTTP/1.1 or HTTP/2 (chosen up front, negotiated by ALPN) over rustls on the
//! ring provider, using hyper's connection-level client: one [`Connection`] is one TCP +
//! TLS connection, and there is deliberately no pool — callers that want reuse keep their
//! `Connection` (HTTP/1.1: one request in flight; HTTP/2: [`Connection::try_clone`] shares
//! the connection between concurrent streams).
//!
//! Every network step is bounded in time ([`RESOLVE_TIMEOUT`], [`ADDRESS_CONNECT_TIMEOUT`],
//! [`CONNECT_TIMEOUT`], [`REQUEST_TIMEOUT`]) and every response body in size
//! ([`RESPONSE_BODY_BYTES_MAX`]).
//!
//! Host names: [`Connection::connect_url`] resolves a URL's host name (tokio's resolver,
//! that is the system's: `/etc/hosts`, then DNS) every time it connects, and tries the
//! addresses in the order the resolver gives them, IPv6 and IPv4 alike, until one accepts
//! the TCP connection. Nothing is cached here, so a node whose address changes in DNS is
//! reached at the new one with the next connection. TLS names the server by its host: SNI
//! carries a host name, and none is sent for an IP address (RFC 6066 allows only names).
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

use crate::core::directory::{Host, NodeUrl, UrlError};

/// Upper bound on TCP connect plus TLS handshake (to one address).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Upper bound on resolving a host name (the system resolver's own retries included).
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Upper bound on the TCP connect to each resolved address before the next is tried: an
/// address that does not answer (a black-holed IPv6 route) must not use up the whole
/// [`CONNECT_TIMEOUT`].
pub const ADDRESS_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Most resolved addresses tried per connection, in the resolver's order.
pub const ADDRESSES_TRIED_MAX: usize = 8;

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

pub use self::config::{client_config, client_config_with_crls, peer_node_config};
pub use self::error::ClientError;
pub use self::peer::{NotANode, PeerNodeVerifier};

/// Parses a node URL of the form `https://HOST[:PORT][/]`, HOST an IP address or a host
/// name ([`crate::core::directory::parse_https_url`]; its rules apply), for
/// [`Connection::connect_url`].
pub fn parse_https_url(url: &str) -> Result<NodeUrl, ClientError> {
    crate::core::directory::parse_https_url(url)
        .map_err(|UrlError { url, reason }| ClientError::Url { url, reason })
}

/// The addresses to try for `url`, in order: its IP address, or what its host name
/// resolves to now (at most [`ADDRESSES_TRIED_MAX`]).
pub async fn resolve(url: &NodeUrl) -> Result<Vec<SocketAddr>, ClientError> {
    let name = match &url.host {
        Host::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, url.port())]),
        Host::Name(name) => name.as_str(),
    };
    let failed = |source| ClientError::Resolve {
        host: name.to_owned(),
        source,
    };
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, url.port())))
        .await
        .map_err(|_| {
            failed(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {RESOLVE_TIMEOUT:?}"),
            ))
        })?
        .map_err(failed)?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in found {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    addrs.truncate(ADDRESSES_TRIED_MAX);
    if addrs.is_empty() {
        return Err(failed(io::Error::new(
            io::ErrorKind::NotFound,
            "the resolver returned no address",
        )));
    }
    Ok(addrs)
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
    /// The largest answer body read.
    body_max: usize,
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
        let name = server_name_of(server_name)?;
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, async {
            handshake(addr, tcp_connect(addr).await?, name, config).await
        })
        .await
        .map_err(|_| ClientError::Timeout {
            addr,
            during: "connecting to",
            after: CONNECT_TIMEOUT,
        })??;
        Connection::establish(tls, addr, server_name, version).await
    }

    /// Connects to the node at `url`: resolves its host name now (an IP address is taken
    /// as it is, see [`resolve`]), tries each address in turn until one takes the TCP
    /// connection (each within [`ADDRESS_CONNECT_TIMEOUT`]), then as
    /// [`connect`](Self::connect) with the URL's host as the server name. A TLS or HTTP
    /// failure with the address that answered is returned as it is, without trying the
    /// next address: another address of the same name is the same server.
    pub async fn connect_url(
        url: &NodeUrl,
        config: Arc<ClientConfig>,
        version: HttpVersion,
    ) -> Result<Connection, ClientError> {
        let server_name = url.server_name();
        let name = server_name_of(&server_name)?;
        let addrs = resolve(url).await?;
        let mut attempts = Vec::new();
        for addr in addrs {
            let tcp = match tokio::time::timeout(ADDRESS_CONNECT_TIMEOUT, tcp_connect(addr)).await {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(ClientError::Connect { source, .. })) => {
                    attempts.push((addr, source));
                    continue;
                }
                Ok(Err(other)) => return Err(other),
                Err(_) => {
                    attempts.push((
                        addr,
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("no answer within {ADDRESS_CONNECT_TIMEOUT:?}"),
                        ),
                    ));
                    continue;
                }
            };
            let tls = tokio::time::timeout(CONNECT_TIMEOUT, handshake(addr, tcp, name, config))
                .await
                .map_err(|_| ClientError::Timeout {
                    addr,
                    during: "connecting to",
                    after: CONNECT_TIMEOUT,
                })??;
            return Connection::establish(tls, addr, &server_name, version).await;
        }
        Err(match (&url.host, attempts.len()) {
            (Host::Ip(_), 1) => {
                let (addr, source) = attempts.remove(0);
                ClientError::Connect { addr, source }
            }
            _ => ClientError::ConnectEach {
                host: server_name,
                attempts,
            },
        })
    }

    /// The HTTP connection over a completed TLS handshake: checks ALPN, reads the server's
    /// identity, spawns the connection driver.
    async fn establish(
        tls: TlsStream<TcpStream>,
        addr: SocketAddr,
        server_name: &str,
        version: HttpVersion,
    ) -> Result<Connection, ClientError> {
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
            body_max: RESPONSE_BODY_BYTES_MAX,
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

    /// Sets the largest answer body each later [`send`](Self::send) reads (default
    /// [`RESPONSE_BODY_BYTES_MAX`]): for an answer known to be larger, such as another
    /// node's statistics of a busy year.
    pub fn set_body_max(&mut self, bytes: usize) {
        self.body_max = bytes;
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
                body_max: self.body_max,
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
        let collected = Limited::new(body, self.body_max)
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

/// The TLS server name for `server_name`: an IP address (then rustls sends no SNI) or a
/// DNS name (sent as SNI).
fn server_name_of(server_name: &str) -> Result<ServerName<'static>, ClientError> {
    ServerName::try_from(server_name.to_owned())
        .map_err(|_| ClientError::ServerName(server_name.to_owned()))
}

/// TCP connect, without Nagle: requests are small and latency matters.
async fn tcp_connect(addr: SocketAddr) -> Result<TcpStream, ClientError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|source| ClientError::Connect { addr, source })?;
    tcp.set_nodelay(true)
        .map_err(|source| ClientError::Connect { addr, source })?;
    Ok(tcp)
}

/// The TLS handshake over `tcp`, connected to `addr`.
async fn handshake(
    addr: SocketAddr,
    tcp: TcpStream,
    name: ServerName<'static>,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, ClientError> {
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
mod error;
mod peer;
#[cfg(test)]
mod tests;

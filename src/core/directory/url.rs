//! The grammar of a node URL: `https://HOST[:PORT][/]`, where HOST is an IPv4 address, an
//! IPv6 address in brackets or a DNS host name.
//!
//! Pure parsing, no I/O: a host name is only checked for its shape here; `node::client`
//! resolves it each time it connects, so a node whose address changes needs a new DNS
//! record, not a new directory. Who answers at the address is another matter: the
//! forwarder trusts the node identity in the peer's certificate, never the host name.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The port of a URL that names none (HTTPS's own); a directory URL must name one.
pub const DEFAULT_PORT: u16 = 443;

/// Longest host name (RFC 1035: 255 octets on the wire, 253 characters written out).
pub const HOST_NAME_LEN_MAX: usize = 253;

/// Longest label of a host name (RFC 1035).
pub const LABEL_LEN_MAX: usize = 63;

/// A node URL that is not of the form `https://HOST[:PORT][/]`: the directory's (the
/// federation authority's) or the operator's mistake; it never works on a retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid URL {url:?}: {reason}")]
pub struct UrlError {
    /// The URL as given.
    pub url: String,
    /// Why it was refused.
    pub reason: &'static str,
}

/// Where a node is: an address to connect to as it is, or a name to resolve first.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A DNS host name: letters, digits and hyphens in dot-separated labels, lowercase.
    Name(HostName),
}

impl fmt::Display for Host {
    /// As written in a URL's authority: an IPv6 address in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name.as_str()),
        }
    }
}

/// A DNS host name that passed [`parse_https_url`]'s rules (RFC 1123 LDH labels), in
/// lowercase: DNS names are case-insensitive, and one spelling keeps comparisons and logs
/// simple.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostName(String);

impl HostName {
    /// The name, lowercase, without a trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A parsed node URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeUrl {
    /// Where the node is.
    pub host: Host,
    /// The port the URL names, if it names one (a directory URL must).
    pub explicit_port: Option<u16>,
}

impl NodeUrl {
    /// The port to connect to: the one named, else [`DEFAULT_PORT`].
    pub fn port(&self) -> u16 {
        self.explicit_port.unwrap_or(DEFAULT_PORT)
    }

    /// The socket address when the host is an IP address; `None` for a name, which must
    /// be resolved (`node::client` does, at connect time).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match &self.host {
            Host::Ip(ip) => Some(SocketAddr::new(*ip, self.port())),
            Host::Name(_) => None,
        }
    }

    /// The host as a TLS client names the server: an IP address without brackets, or the
    /// host name.
    pub fn server_name(&self) -> String {
        match &self.host {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(name) => name.as_str().to_owned(),
        }
    }
}

impl fmt::Display for NodeUrl {
    /// `https://HOST:PORT`, the port always written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "https://{}:{}", self.host, self.port())
    }
}

/// Parses a node URL of the form `https://HOST[:PORT][/]`.
///
/// HOST is an IPv4 address in dotted-decimal form, an IPv6 address in brackets (no zone
/// id), or a host name: dot-separated labels of ASCII letters, digits and hyphens, each
/// 1–63 characters that neither start nor end with a hyphen, at most 253 characters in
/// all, the last label not all digits (so `10.0.0.256` is a bad address, not a name). PORT
/// is 1–65535 and defaults to 443. Nothing else: no user information, path, query or
/// fragment, no other scheme.
pub fn parse_https_url(url: &str) -> Result<NodeUrl, UrlError> {
    let refuse = |reason| UrlError {
        url: url.to_owned(),
        reason,
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(refuse("not a URL (expected https://HOST:PORT)"));
    };
    if !scheme.eq_ignore_ascii_case("https") {
        return Err(refuse("scheme must be https"));
    }
    if rest.contains(['?', '#']) {
        return Err(refuse("must not have a path, query or fragment"));
    }
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    if !matches!(path, "" | "/") {
        return Err(refuse("must not have a path, query or fragment"));
    }
    if authority.contains('@') {
        return Err(refuse("user information is not allowed"));
    }
    let (host, port) = split_host_port(authority).map_err(refuse)?;
    let explicit_port = port.map(parse_port).transpose().map_err(refuse)?;
    Ok(NodeUrl {
        host: parse_host(host).map_err(refuse)?,
        explicit_port,
    })
}

/// `HOST[:PORT]` → the host (brackets kept) and the port text, if any.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), &'static str> {
    if authority.is_empty() {
        return Err("missing host");
    }
    if authority.starts_with('[') {
        let end = authority
            .find(']')
            .ok_or("an IPv6 address must be closed with ]")?;
        let (host, after) = authority.split_at(end + 1);
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err("only :PORT may follow the host"),
            },
        };
    }
    match authority.split_once(':') {
        None => Ok((authority, None)),
        Some((_, port)) if port.contains(':') => {
            Err("an IPv6 address must be in brackets, e.g. https://[2001:db8::5]:7443")
        }
        Some((host, port)) => Ok((host, Some(port))),
    }
}

fn parse_port(port: &str) -> Result<u16, &'static str> {
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the port must be a number");
    }
    match port.parse::<u16>() {
        Ok(0) => Err("port 0 cannot be connected to"),
        Ok(port) => Ok(port),
        Err(_) => Err("the port is above 65535"),
    }
}

fn parse_host(host: &str) -> Result<Host, &'static str> {
    if host.is_empty() {
        return Err("missing host");
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').unwrap_or(inner);
        return inner
            .parse::<Ipv6Addr>()
            .map(|ip| Host::Ip(IpAddr::V6(ip)))
            .map_err(|_| "not an IPv6 address inside [ ]");
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    parse_host_name(host).map(Host::Name)
}

fn parse_host_name(name: &str) -> Result<HostName, &'static str> {
    if name.len() > HOST_NAME_LEN_MAX {
        return Err("the host name is longer than 253 characters");
    }
    let mut last = "";
    for label in name.split('.') {
        if label.is_empty() {
            return Err("the host name has an empty label (two dots, or a dot at an end)");
        }
        if label.len() > LABEL_LEN_MAX {
            return Err("a label of the host name is longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(
                "the host must be an IP address or a host name of letters, digits, \
                 '-' and '.'",
            );
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label of the host name starts or ends with '-'");
        }
        last = label;
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not an IPv4 address (four numbers 0-255), nor a host name");
    }
    Ok(HostName(name.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests;

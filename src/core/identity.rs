//! Who is on the other end of a connection: agency, privacy officer, center manager or node
//! identities, parsed from the SAN URI of a client certificate that rustls has already
//! verified against the configured CA.
//!
//! Architecture invariant: identity comes only from the verified certificate, never from a
//! request body. [`Peer`] is computed once per connection and handed to every request on it;
//! the reason a connection has no usable identity is an explicit [`Anonymous`] value.

use std::fmt;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A malformed identifier (center, agency, officer).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    /// A name segment breaks the naming rule.
    #[error(
        "`{0}` is not a valid name: use 1-63 of a-z, 0-9 and '-', starting with a letter or digit"
    )]
    BadName(String),
    /// The id is not `<center>/<name>`.
    #[error("`{0}` is not of the form <center>/<name>")]
    BadShape(String),
}

fn check_name(s: &str) -> Result<(), IdError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(IdError::BadName(s.to_owned()))
    }
}

/// A center (one node per center), e.g. `suwon`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CenterId(String);

impl CenterId {
    /// Parses a center name.
    pub fn parse(s: &str) -> Result<CenterId, IdError> {
        check_name(s)?;
        Ok(CenterId(s.to_owned()))
    }
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CenterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for CenterId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for CenterId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CenterId::parse(&s).map_err(serde::de::Error::custom)
    }
}

macro_rules! scoped_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name {
            full: String,
            center: CenterId,
        }

        impl $name {
            /// Parses `<center>/<name>`.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                let (center, name) = s.split_once('/').ok_or_else(|| IdError::BadShape(s.to_owned()))?;
                Self::from_parts(center, name)
            }
            /// Builds the id from its two segments.
            pub fn from_parts(center: &str, name: &str) -> Result<Self, IdError> {
                let center = CenterId::parse(center)?;
                check_name(name)?;
                Ok(Self { full: format!("{center}/{name}"), center })
            }
            /// `<center>/<name>`.
            pub fn as_str(&self) -> &str {
                &self.full
            }
            /// The center this identity belongs to.
            pub fn center(&self) -> &CenterId {
                &self.center
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.full)
            }
        }
    };
}

scoped_id!(
    /// An agency at a center, e.g. `suwon/employment`: the address used in an envelope's `to`.
    AgencyId
);
scoped_id!(
    /// A privacy officer at a center, e.g. `suwon/privacy-officer`.
    OfficerId
);
scoped_id!(
    /// A center manager, e.g. `suwon/manager`: sees statistics, never a message, a subject
    /// or a consent.
    ManagerId
);

/// The identity a verified certificate proves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// An agency's IT system.
    Agency(AgencyId),
    /// A privacy officer.
    Officer(OfficerId),
    /// Another plusgate node.
    Node(CenterId),
    /// A center manager.
    Manager(ManagerId),
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Agency(a) => write!(f, "agency {a}"),
            Identity::Officer(o) => write!(f, "officer {o}"),
            Identity::Node(c) => write!(f, "node {c}"),
            Identity::Manager(m) => write!(f, "manager {m}"),
        }
    }
}

impl Identity {
    /// Every [`Identity::role`]: the kinds of party an audit entry or a report can name
    /// (the console has a label for each).
    pub const ROLES: [&'static str; 4] = ["agency", "officer", "node", "manager"];

    /// Its role, as its SAN URI names it (`urn:plusgate:<role>:…`).
    pub fn role(&self) -> &'static str {
        match self {
            Identity::Agency(_) => Identity::ROLES[0],
            Identity::Officer(_) => Identity::ROLES[1],
            Identity::Node(_) => Identity::ROLES[2],
            Identity::Manager(_) => Identity::ROLES[3],
        }
    }

    /// The SAN URI that carries this identity.
    pub fn uri(&self) -> String {
        match self {
            Identity::Agency(a) => {
                let (c, n) = a.as_str().split_once('/').unwrap_or_default();
                format!("urn:plusgate:agency:{c}:{n}")
            }
            Identity::Officer(o) => {
                let (c, n) = o.as_str().split_once('/').unwrap_or_default();
                format!("urn:plusgate:officer:{c}:{n}")
            }
            Identity::Node(c) => format!("urn:plusgate:node:{c}"),
            Identity::Manager(m) => {
                let (c, n) = m.as_str().split_once('/').unwrap_or_default();
                format!("urn:plusgate:manager:{c}:{n}")
            }
        }
    }

    /// Parses a `urn:plusgate:…` SAN URI; `None` for any other URI.
    pub fn from_uri(uri: &str) -> Option<Identity> {
        let rest = uri.strip_prefix("urn:plusgate:")?;
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.as_slice() {
            ["agency", c, n] => AgencyId::from_parts(c, n).ok().map(Identity::Agency),
            ["officer", c, n] => OfficerId::from_parts(c, n).ok().map(Identity::Officer),
            ["node", c] => CenterId::parse(c).ok().map(Identity::Node),
            ["manager", c, n] => ManagerId::from_parts(c, n).ok().map(Identity::Manager),
            _ => None,
        }
    }
}

/// Why a connection that completed the TLS handshake still has no identity the node can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anonymous {
    /// The certificate could not be parsed as X.509 (should not happen after verification).
    Unparseable,
    /// The certificate has no `urn:plusgate:` SAN URI, or more than one.
    NoPlusgateUri,
}

/// The peer of a connection, fixed at handshake time.
pub type Peer = Result<Identity, Anonymous>;

/// Extracts the identity from a verified end-entity certificate (DER).
pub fn from_certificate(der: &[u8]) -> Peer {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| Anonymous::Unparseable)?;
    let san = cert
        .subject_alternative_name()
        .map_err(|_| Anonymous::Unparseable)?
        .ok_or(Anonymous::NoPlusgateUri)?;
    let mut found = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(u) if u.starts_with("urn:plusgate:") => Some(*u),
        _ => None,
    });
    let uri = found.next().ok_or(Anonymous::NoPlusgateUri)?;
    if found.next().is_some() {
        // Two plusgate identities in one certificate is ambiguous: refuse rather than pick.
        return Err(Anonymous::NoPlusgateUri);
    }
    Identity::from_uri(uri).ok_or(Anonymous::NoPlusgateUri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip() {
        for uri in [
            "urn:plusgate:agency:suwon:employment",
            "urn:plusgate:officer:gangseo:privacy-officer",
            "urn:plusgate:node:jeongeup",
        ] {
            let id = Identity::from_uri(uri).expect("valid uri");
            assert_eq!(id.uri(), uri);
            assert!(
                uri.starts_with(&format!("urn:plusgate:{}:", id.role())),
                "{uri}"
            );
        }
    }

    #[test]
    fn malformed_uris_are_no_identity() {
        for uri in [
            "urn:plusgate:agency:suwon",
            "urn:plusgate:agency:Suwon:employment",
            "urn:plusgate:agency:suwon:employment:extra",
            "urn:plusgate:admin:suwon",
            "urn:other:agency:suwon:employment",
            "urn:plusgate:agency:suwon:-x",
        ] {
            assert_eq!(Identity::from_uri(uri), None, "{uri}");
        }
    }

    #[test]
    fn agency_ids_parse_and_check() {
        let a = AgencyId::parse("suwon/welfare").expect("valid");
        assert_eq!(a.center().as_str(), "suwon");
        assert!(AgencyId::parse("suwon").is_err());
        assert!(AgencyId::parse("suwon/").is_err());
        assert!(AgencyId::parse("su won/welfare").is_err());
        assert!(AgencyId::parse("suwon/welfare/x").is_err());
    }
}

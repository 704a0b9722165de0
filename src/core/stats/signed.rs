//! A node's answer to another node's statistics question (`GET /federation/v1/stats`):
//! its [`Raw`] numbers of the messages its own agencies sent, signed with its Ed25519 key,
//! so the node that merges them (and anyone it shows them to) can tell which center said
//! what, and no party in between can change a number. A statement is believed only for the
//! answering center's own agencies: one that counts another center's is refused whole.
//!
//! The signature covers the exact bytes of the `statement` member, checked before anything
//! in it is parsed (like the directory's), prefixed with a domain-separation context, so a
//! statistics signature is never valid as a receipt, a checkpoint or a directory.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{By, Raw};
use crate::core::identity::CenterId;
use crate::core::keys::{PublicKey, SigningKey};

const CONTEXT: &[u8] = b"plusgate stats v1\0";

/// What a node states about its numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// The answering node's center.
    pub center: CenterId,
    /// First day (`YYYY-MM-DD`, Asia/Seoul), as asked.
    pub from: String,
    /// Last day.
    pub to: String,
    /// Grouping, as asked.
    pub by: By,
    /// When the node answered (RFC 3339).
    pub answered_at: String,
    /// When the node began counting.
    pub counted_since: String,
    /// The numbers, unsuppressed: suppression applies after merging.
    pub raw: Raw,
}

/// A [`Statement`] and its signature, as it travels.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed {
    /// The statement's JSON, exactly as signed.
    pub statement: Box<RawValue>,
    /// Ed25519 signature (hex) over the context and the statement's bytes.
    pub signature: String,
}

/// Why a signed statement was not believed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignedError {
    /// The signature does not verify with the center's key.
    #[error("the signature does not verify with {0}'s key")]
    Signature(CenterId),
    /// The statement does not parse.
    #[error("the statement does not parse: {0}")]
    Shape(String),
    /// Signed by the right key but about something else than asked.
    #[error("the statement answers another question: {0}")]
    Mismatch(String),
}

fn signed_bytes(statement: &str) -> Vec<u8> {
    let mut out = CONTEXT.to_vec();
    out.extend_from_slice(statement.as_bytes());
    out
}

impl Signed {
    /// Signs `statement` with `key`.
    pub fn sign(key: &SigningKey, statement: &Statement) -> Signed {
        let text = serde_json::to_string(statement).expect("statements serialize");
        let signature = crate::core::hex::encode(&key.sign(&signed_bytes(&text)));
        Signed {
            statement: RawValue::from_string(text).expect("serde_json wrote JSON"),
            signature,
        }
    }

    /// The statement, if signed by `center` with `key` and answering (`from`, `to`, `by`)
    /// over `periods` periods.
    pub fn open(
        &self,
        center: &CenterId,
        key: &PublicKey,
        asked: (&str, &str, By),
        periods: usize,
    ) -> Result<Statement, SignedError> {
        let sig = crate::core::hex::decode(&self.signature)
            .ok_or_else(|| SignedError::Signature(center.clone()))?;
        if !key.verify(&signed_bytes(self.statement.get()), &sig) {
            return Err(SignedError::Signature(center.clone()));
        }
        let s: Statement = crate::core::json::parse_strict(self.statement.get().as_bytes())
            .and_then(serde_json::from_value)
            .map_err(|e| SignedError::Shape(crate::core::json::describe_error(&e)))?;
        if &s.center != center {
            return Err(SignedError::Mismatch(format!("it is {}'s", s.center)));
        }
        if (s.from.as_str(), s.to.as_str(), s.by) != asked {
            return Err(SignedError::Mismatch(format!(
                "{} to {} by {}",
                s.from,
                s.to,
                s.by.as_str()
            )));
        }
        s.raw
            .check_shape(periods)
            .map_err(|e| SignedError::Shape(e.to_string()))?;
        // A node answers for what its own agencies sent, and nothing else: numbers it
        // claims for another center's agencies would be counted twice, or forged.
        if let Some(p) = s.raw.pairs.iter().find(|p| {
            crate::core::identity::AgencyId::parse(&p.from).map_or(true, |a| a.center() != center)
        }) {
            return Err(SignedError::Mismatch(format!(
                "it counts messages sent by {}, not an agency of {center}",
                p.from.chars().take(80).collect::<String>()
            )));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement() -> Statement {
        Statement {
            center: CenterId::parse("suwon").expect("test value"),
            from: "2026-01-01".into(),
            to: "2026-01-31".into(),
            by: By::Month,
            answered_at: "2026-02-01T00:00:00.000Z".into(),
            counted_since: "2025-01-01T00:00:00.000Z".into(),
            raw: Raw {
                withdrawals: vec![3],
                ..Raw::default()
            },
        }
    }

    #[test]
    fn a_signed_statement_opens_only_with_its_key_and_question() {
        let key = SigningKey::generate().expect("test value").0;
        let other = SigningKey::generate().expect("test value").0;
        let suwon = CenterId::parse("suwon").expect("test value");
        let asked = ("2026-01-01", "2026-01-31", By::Month);
        let signed = Signed::sign(&key, &statement());
        assert_eq!(
            signed.open(&suwon, &key.public_key(), asked, 1),
            Ok(statement())
        );
        assert!(matches!(
            signed.open(&suwon, &other.public_key(), asked, 1),
            Err(SignedError::Signature(_))
        ));
        assert!(matches!(
            signed.open(
                &suwon,
                &key.public_key(),
                ("2026-01-01", "2026-01-30", By::Month),
                1
            ),
            Err(SignedError::Mismatch(_))
        ));
        assert!(matches!(
            signed.open(
                &CenterId::parse("jeonju").expect("test value"),
                &key.public_key(),
                asked,
                1
            ),
            Err(SignedError::Mismatch(_))
        ));
        assert!(matches!(
            signed.open(&suwon, &key.public_key(), asked, 2),
            Err(SignedError::Shape(_))
        ));
        // A node that claims another center's messages is not believed, signed or not.
        let mut claims = statement();
        claims.raw.pairs.push(super::super::RawPair {
            from: "jeonju/employment".into(),
            to: "suwon/welfare".into(),
            ..Default::default()
        });
        assert!(matches!(
            Signed::sign(&key, &claims).open(&suwon, &key.public_key(), asked, 1),
            Err(SignedError::Mismatch(_))
        ));
        // One changed number breaks the signature.
        let text = signed.statement.get().replace("[3]", "[4]");
        let forged = Signed {
            statement: RawValue::from_string(text).expect("test value"),
            signature: signed.signature.clone(),
        };
        assert!(matches!(
            forged.open(&suwon, &key.public_key(), asked, 1),
            Err(SignedError::Signature(_))
        ));
    }
}

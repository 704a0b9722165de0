//! A privacy officer's commands against a running node: `plusgate privacy
//! consents|refusals|withdrawals|disclosures|audit`. Each calls the node's `/v1/privacy/…`
//! endpoint over mutual TLS presenting the officer's own certificate (`--cert`, `--key`);
//! the node's address and CA come from its config file, as for `plusgate outbox`. The
//! node audits every query, exactly as when the console asks.

use std::path::PathBuf;

use hyper::Method;
use serde_json::Value;

use crate::cli::node_client::{AdminError, NodeClient, Target};

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The node's JSON answer, pretty-printed.
    Json,
    /// CSV: a UTF-8 byte-order mark, a header row and one row per record (lists joined
    /// with `;`).
    Csv,
}

/// The node and the officer: where to connect and as whom.
#[derive(Debug, Clone, clap::Args)]
pub struct OfficerArgs {
    /// The node's config file (for its listen address and CA), on the node's host.
    #[arg(long, required_unless_present = "url", conflicts_with_all = ["url", "ca"])]
    pub config: Option<PathBuf>,
    /// Elsewhere (an officer's own desk): the node's URL, `https://HOST:PORT`.
    #[arg(long, requires = "ca")]
    pub url: Option<String>,
    /// With `--url`: the CA certificate (PEM) the node's certificate is checked against.
    #[arg(long, requires = "url")]
    pub ca: Option<PathBuf>,
    /// The officer's client certificate (PEM), SAN `urn:plusgate:officer:<center>:<name>`
    /// (for `plusgate stats`, a manager's `urn:plusgate:manager:<center>:<name>` too).
    #[arg(long)]
    pub cert: PathBuf,
    /// Its private key (PKCS#8 PEM).
    #[arg(long)]
    pub key: PathBuf,
}

/// Filters by time: a day (`YYYY-MM-DD`, an Asia/Seoul calendar day, 00:00 to 24:00 at
/// +09:00, inclusive) or an RFC 3339 date-time. The node interprets both.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Range {
    /// From this day (YYYY-MM-DD, Asia/Seoul) or RFC 3339 time on.
    #[arg(long)]
    pub from: Option<String>,
    /// Up to this day (YYYY-MM-DD, Asia/Seoul, inclusive) or RFC 3339 time.
    #[arg(long)]
    pub to: Option<String>,
}

/// The UTF-8 byte-order mark a CSV for officers starts with (Excel on Korean Windows reads
/// a CSV without it as CP949 and garbles Hangul). The node sends it; [`with_bom`] makes
/// sure of it for a node from before it did.
const UTF8_BOM: char = '\u{FEFF}';

/// `csv` starting with [`UTF8_BOM`], exactly once.
pub(crate) fn with_bom(csv: String) -> String {
    if csv.starts_with(UTF8_BOM) {
        csv
    } else {
        format!("{UTF8_BOM}{csv}")
    }
}

type Params<'a> = Vec<(&'static str, &'a Option<String>)>;

fn with_range<'a>(mut params: Params<'a>, range: &'a Range) -> Params<'a> {
    params.extend([("from", &range.from), ("to", &range.to)]);
    params
}

/// Filters by consent: whose it is, and which agency it names.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Concerning {
    /// Only consents of this subject (pseudonymous reference).
    #[arg(long)]
    pub subject: Option<String>,
    /// Only consents naming this agency as collector or recipient.
    #[arg(long)]
    pub agency: Option<String>,
}

/// `plusgate privacy …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum PrivacyCommand {
    /// Consents registered at the node, with their status (granted, withdrawn, expired).
    Consents {
        /// Connection.
        #[command(flatten)]
        officer: OfficerArgs,
        /// Whose, naming whom.
        #[command(flatten)]
        concerning: Concerning,
        /// Only consents in this status: granted, withdrawn or expired.
        #[arg(long)]
        status: Option<String>,
        /// Registered in this range.
        #[command(flatten)]
        range: Range,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// Messages refused because no consent covered them.
    Refusals {
        /// Connection.
        #[command(flatten)]
        officer: OfficerArgs,
        /// Only messages from or to this agency.
        #[arg(long)]
        agency: Option<String>,
        /// Refused in this range.
        #[command(flatten)]
        range: Range,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// Withdrawals of consents.
    Withdrawals {
        /// Connection.
        #[command(flatten)]
        officer: OfficerArgs,
        /// Whose, naming whom.
        #[command(flatten)]
        concerning: Concerning,
        /// Withdrawn in this range.
        #[command(flatten)]
        range: Range,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// A subject's disclosure history: who received what about them, when, and who pulled it.
    Disclosures {
        /// Connection.
        #[command(flatten)]
        officer: OfficerArgs,
        /// The subject (pseudonymous reference, e.g. ps-7f3a9c21e4b05d18).
        #[arg(long)]
        subject: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// The audit chain's status: length, head, whether it verifies, the last signed
    /// checkpoint.
    Audit {
        /// Connection.
        #[command(flatten)]
        officer: OfficerArgs,
        /// Verify the whole chain from genesis instead of from the last checkpoint.
        #[arg(long)]
        full: bool,
    },
}

impl PrivacyCommand {
    /// The connection arguments.
    pub fn officer(&self) -> &OfficerArgs {
        match self {
            PrivacyCommand::Consents { officer, .. }
            | PrivacyCommand::Refusals { officer, .. }
            | PrivacyCommand::Withdrawals { officer, .. }
            | PrivacyCommand::Disclosures { officer, .. }
            | PrivacyCommand::Audit { officer, .. } => officer,
        }
    }

    /// The request path and query, and the output format.
    fn target(&self) -> Result<(String, Format), AdminError> {
        let full = Some("full".to_owned());
        let none = None;
        let (path, params, format) = match self {
            PrivacyCommand::Consents {
                concerning: Concerning { subject, agency },
                status,
                range,
                format,
                ..
            } => (
                "/v1/privacy/consents".to_owned(),
                with_range(
                    vec![("subject", subject), ("agency", agency), ("status", status)],
                    range,
                ),
                *format,
            ),
            PrivacyCommand::Refusals {
                agency,
                range,
                format,
                ..
            } => (
                "/v1/privacy/refusals".to_owned(),
                with_range(vec![("agency", agency)], range),
                *format,
            ),
            PrivacyCommand::Withdrawals {
                concerning: Concerning { subject, agency },
                range,
                format,
                ..
            } => (
                "/v1/privacy/withdrawals".to_owned(),
                with_range(vec![("subject", subject), ("agency", agency)], range),
                *format,
            ),
            PrivacyCommand::Disclosures {
                subject, format, ..
            } => {
                let safe = !subject.is_empty()
                    && subject
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c));
                if !safe {
                    return Err(AdminError::Refused(format!(
                        "`{subject}` is not a subject reference (letters, digits, `.`, `_`, `:`, `-`)"
                    )));
                }
                (
                    format!("/v1/privacy/subjects/{subject}/disclosures"),
                    Vec::new(),
                    *format,
                )
            }
            PrivacyCommand::Audit { full: f, .. } => (
                "/v1/privacy/audit".to_owned(),
                vec![("verify", if *f { &full } else { &none })],
                Format::Json,
            ),
        };
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (name, value) in params {
            if let Some(v) = value {
                q.append_pair(name, v);
            }
        }
        if format == Format::Csv {
            q.append_pair("format", "csv");
        }
        let query = q.finish();
        Ok(if query.is_empty() {
            (path, format)
        } else {
            (format!("{path}?{query}"), format)
        })
    }
}

/// Runs `command` against the node `target`; returns what to print.
pub async fn run(target: &Target, command: &PrivacyCommand) -> Result<String, AdminError> {
    let (path, format) = command.target()?;
    let officer = command.officer();
    let node = NodeClient::new(target, (&officer.cert, &officer.key))?;
    let response = node.send(Method::GET, &path, None).await?;
    Ok(match format {
        Format::Csv => with_bom(response.text()),
        Format::Json => match response.json::<Value>() {
            Ok(body) => serde_json::to_string_pretty(&body).unwrap_or_else(|_| response.text()),
            Err(_) => response.text(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: PrivacyCommand,
    }

    /// The request `args` make, or `None` if clap or the command refuses them.
    fn target(args: &str) -> Option<(String, Format)> {
        let args = format!("privacy {args} --config c.toml --cert o.crt --key o.key");
        let cli = Cli::try_parse_from(args.split(' ')).ok()?;
        cli.command.target().ok()
    }

    #[test]
    fn csv_output_starts_with_one_bom() {
        for csv in ["id,subject\r\n", "\u{FEFF}id,subject\r\n"] {
            let out = with_bom(csv.to_owned());
            assert_eq!(out.as_bytes()[..3], [0xEF, 0xBB, 0xBF]);
            assert_eq!(&out[3..], "id,subject\r\n");
        }
    }

    #[test]
    fn flags_become_the_query_of_the_report() {
        let check = |args: &str, path: &str, format: Format| {
            assert_eq!(target(args), Some((path.to_owned(), format)), "{args}");
        };
        check("consents", "/v1/privacy/consents", Format::Json);
        check(
            "consents --subject ps-1 --agency suwon/welfare --status withdrawn --from 2026-11-01 --format csv",
            "/v1/privacy/consents?subject=ps-1&agency=suwon%2Fwelfare&status=withdrawn&from=2026-11-01&format=csv",
            Format::Csv,
        );
        check(
            "refusals --to 2026-11-30",
            "/v1/privacy/refusals?to=2026-11-30",
            Format::Json,
        );
        check(
            "withdrawals --subject ps-1",
            "/v1/privacy/withdrawals?subject=ps-1",
            Format::Json,
        );
        check(
            "disclosures --subject ps-7f3a9c21e4b05d18 --format csv",
            "/v1/privacy/subjects/ps-7f3a9c21e4b05d18/disclosures?format=csv",
            Format::Csv,
        );
        check(
            "audit --full",
            "/v1/privacy/audit?verify=full",
            Format::Json,
        );
        assert!(target("disclosures --subject ../admin").is_none());
        assert!(target("disclosures").is_none());
        assert!(target("refusals --subject ps-1").is_none());
    }
}

//! `plusgate stats`: the referral statistics of `GET /v1/stats`, for a center manager or a
//! privacy officer, on the command line: the same numbers as the console, JSON or CSV. It
//! connects like `plusgate privacy` (`--config` on the node's host, or `--url` and `--ca`
//! elsewhere) presenting the caller's own certificate (`--cert`, `--key`).

use hyper::Method;
use serde_json::Value;

use crate::cli::node_client::{AdminError, NodeClient, Target};
use crate::cli::privacy::{with_bom, Format, OfficerArgs};

/// `plusgate stats …`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatsArgs {
    /// Connection, and the manager's or officer's certificate.
    #[command(flatten)]
    pub caller: OfficerArgs,
    /// First day (YYYY-MM-DD, Asia/Seoul); default: the first of the month eleven months
    /// before `--to`.
    #[arg(long)]
    pub from: Option<String>,
    /// Last day, included (YYYY-MM-DD, Asia/Seoul); default: today in Seoul.
    #[arg(long)]
    pub to: Option<String>,
    /// Periods: month, week (ISO) or day.
    #[arg(long, value_enum, default_value_t = By::Month)]
    pub by: By,
    /// This center's numbers, or the whole federation's (every node asked, merged).
    #[arg(long, value_enum, default_value_t = Scope::Center)]
    pub scope: Scope,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

/// Periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    /// Calendar months.
    Month,
    /// ISO weeks, Monday first.
    Week,
    /// Days.
    Day,
}

/// Whose numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scope {
    /// This center's node: what it took (sent, received and within).
    Center,
    /// Every center, each message counted once, by its sender's node.
    Federation,
}

impl StatsArgs {
    /// The request path and query.
    fn path(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [("from", &self.from), ("to", &self.to)] {
            if let Some(v) = value {
                q.append_pair(name, v);
            }
        }
        let by = match self.by {
            By::Month => "month",
            By::Week => "week",
            By::Day => "day",
        };
        q.append_pair("by", by);
        if self.scope == Scope::Federation {
            q.append_pair("scope", "federation");
        }
        if self.format == Format::Csv {
            q.append_pair("format", "csv");
        }
        format!("/v1/stats?{}", q.finish())
    }
}

/// Asks the node `target`; returns what to print.
pub async fn run(target: &Target, args: &StatsArgs) -> Result<String, AdminError> {
    let node = NodeClient::new(target, (&args.caller.cert, &args.caller.key))?;
    let response = node.send(Method::GET, &args.path(), None).await?;
    Ok(match args.format {
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
        #[command(flatten)]
        args: StatsArgs,
    }

    fn path(args: &str) -> Option<String> {
        let args = format!("stats {args} --config c.toml --cert m.crt --key m.key");
        Cli::try_parse_from(args.split_whitespace())
            .ok()
            .map(|c| c.args.path())
    }

    #[test]
    fn flags_become_the_query() {
        assert_eq!(path("").as_deref(), Some("/v1/stats?by=month"));
        assert_eq!(
            path("--from 2026-01-01 --to 2026-03-31 --by week --scope federation --format csv")
                .as_deref(),
            Some("/v1/stats?from=2026-01-01&to=2026-03-31&by=week&scope=federation&format=csv")
        );
        assert!(path("--by year").is_none());
        assert!(path("--scope world").is_none());
    }
}

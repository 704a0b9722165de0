//! A [`Raw`] as the agencies see it: the tables of `GET /v1/stats`, every small count
//! suppressed ([`super::suppress`]), as JSON ([`Report::to_json`]) or CSV
//! ([`Report::to_csv`]). The shape is the API's contract (docs/openapi.json, `Stats`).
//!
//! Tables and the sums they publish:
//! - `messages`: a row per (from, to, type), a column per period, row totals, period totals
//!   and the grand total;
//! - `outcomes`: a row per agency pair, a column per [`OUTCOME_COLUMNS`]; a row's total is
//!   the pair's referrals in the range, the same number as the pair's `referral` row total
//!   in `messages`, so the two tables are protected together, and this one has no column
//!   totals (they would tie its rows together, see `suppress`);
//! - `acceptance_distribution`: a row per pair, a column per [`ACCEPTANCE_BANDS`];
//! - `refusals`: a row per reason, a column per period; `withdrawals`: one row;
//! - `times`: median and 90th percentile per pair and measure, published only when at
//!   least [`MIN_COUNT`] referrals were measured (a quantile of fewer is a person's time).

use serde_json::{json, Map, Value};

use super::suppress::{protect, protect_line, Grid, Mask, MIN_COUNT};
use super::{Durations, Period, Raw, ACCEPTANCE_BANDS, OUTCOME_COLUMNS};
use crate::core::identity::AgencyId;

/// Where a pair stands to the center that answers.
pub fn direction(from: &str, to: &str, center: &str) -> &'static str {
    let center_of = |a: &str| {
        AgencyId::parse(a)
            .map(|a| a.center().as_str().to_owned())
            .unwrap_or_default()
    };
    let (f, t) = (center_of(from), center_of(to));
    if f == t {
        "within"
    } else if f == center {
        "sent"
    } else if t == center {
        "received"
    } else {
        "other"
    }
}

/// The message types, in the order the `messages` table lists them.
const TYPE_ORDER: [&str; 4] = ["referral", "referral-status", "case-summary", "consent"];

/// An answer, protected, ready to serialize.
#[derive(Debug)]
pub struct Report {
    json: Value,
}

/// Who answered and how: the header of an answer.
#[derive(Debug, Clone)]
pub struct Context {
    /// `center` or `federation`.
    pub scope: &'static str,
    /// The node's center.
    pub center: String,
    /// `from`, `to` as asked.
    pub from: String,
    /// Last day.
    pub to: String,
    /// Grouping.
    pub by: super::By,
    /// When.
    pub generated_at: String,
    /// One entry per center: `{center, answered_at, counted_since}` or `{center, error}`.
    pub centers: Vec<Value>,
}

struct Rows<K> {
    keys: Vec<K>,
    grid: Grid,
}

fn hide(v: u64, hidden: bool) -> Value {
    if hidden {
        Value::Null
    } else {
        json!(v)
    }
}

fn table_json<K>(rows: &Rows<K>, mask: &Mask, key: impl Fn(&K) -> Map<String, Value>) -> Value {
    let n = rows.keys.len();
    let cols = rows.grid.cells.first().map_or(0, Vec::len) - 1;
    let mut table = rows_json(rows, mask, key);
    let totals: Vec<Value> = (0..cols)
        .map(|c| hide(rows.grid.cells[n][c], mask[n][c]))
        .collect();
    table["totals"] = Value::Array(totals);
    table["total"] = hide(rows.grid.cells[n][cols], mask[n][cols]);
    table
}

/// The rows of a table, each with its counts and total, without the column totals.
fn rows_json<K>(rows: &Rows<K>, mask: &Mask, key: impl Fn(&K) -> Map<String, Value>) -> Value {
    let cols = rows.grid.cells.first().map_or(0, Vec::len) - 1;
    let out: Vec<Value> = rows
        .keys
        .iter()
        .enumerate()
        .map(|(r, k)| {
            let mut m = key(k);
            let counts: Vec<Value> = (0..cols)
                .map(|c| hide(rows.grid.cells[r][c], mask[r][c]))
                .collect();
            m.insert("counts".into(), Value::Array(counts));
            m.insert(
                "total".into(),
                hide(rows.grid.cells[r][cols], mask[r][cols]),
            );
            Value::Object(m)
        })
        .collect();
    json!({ "rows": out })
}

fn times_json(d: &Durations) -> Value {
    if d.count() < MIN_COUNT {
        return json!({"median_s": null, "p90_s": null});
    }
    json!({"median_s": d.quantile(1, 2), "p90_s": d.quantile(9, 10)})
}

impl Report {
    /// Protects `raw` (over `periods`) and lays it out.
    pub fn new(ctx: &Context, periods: &[Period], raw: &Raw) -> Report {
        let np = periods.len();
        let center = ctx.center.as_str();
        let pair_key = |from: &str, to: &str| {
            let mut m = Map::new();
            m.insert("from".into(), json!(from));
            m.insert("to".into(), json!(to));
            m.insert("direction".into(), json!(direction(from, to, center)));
            m
        };

        // messages: (pair index, type)
        let mut m_keys = Vec::new();
        let mut m_inner = Vec::new();
        for (i, p) in raw.pairs.iter().enumerate() {
            let mut types: Vec<&String> = p.messages.keys().collect();
            types.sort_by_key(|t| (TYPE_ORDER.iter().position(|o| o == t), t.as_str()));
            for t in types {
                let v = &p.messages[t];
                if v.iter().any(|x| *x > 0) {
                    m_keys.push((i, t.clone()));
                    m_inner.push(v.clone());
                }
            }
        }
        let messages = Rows {
            grid: Grid::with_totals(m_inner, np),
            keys: m_keys,
        };

        // outcomes: pairs with referrals
        let mut o_keys = Vec::new();
        let mut o_inner = Vec::new();
        for (i, p) in raw.pairs.iter().enumerate() {
            let row: Vec<u64> = OUTCOME_COLUMNS
                .iter()
                .map(|c| p.outcomes.get(*c).copied().unwrap_or(0))
                .collect();
            if row.iter().any(|x| *x > 0) {
                o_keys.push(i);
                o_inner.push(row);
            }
        }
        let outcomes = Rows {
            grid: Grid::with_totals(o_inner, OUTCOME_COLUMNS.len()),
            keys: o_keys,
        };

        // The shared cells: an outcomes row's total is its pair's referral row total (see
        // `suppress`: the outcomes rows are single sums, protected with the messages).
        let links: Vec<Option<usize>> = outcomes
            .keys
            .iter()
            .map(|pair| {
                messages
                    .keys
                    .iter()
                    .position(|(p, t)| p == pair && t == "referral")
            })
            .collect();
        let (m_total_col, o_total_col) = (np, OUTCOME_COLUMNS.len());
        let mut forced_m = Vec::new();
        let (m_mask, o_mask) = loop {
            let mm = protect(&messages.grid, &forced_m);
            let mut om: Mask = Vec::new();
            let mut changed = false;
            for (ro, link) in links.iter().enumerate() {
                let shared_hidden = link.is_some_and(|rm| mm[rm][m_total_col]);
                let forced: &[usize] = if shared_hidden { &[o_total_col] } else { &[] };
                let row = protect_line(&outcomes.grid.cells[ro], forced);
                if let Some(rm) = link {
                    if row[o_total_col] && !mm[*rm][m_total_col] {
                        forced_m.push((*rm, m_total_col));
                        changed = true;
                    }
                }
                om.push(row);
            }
            if !changed {
                break (mm, om);
            }
        };

        // acceptance distribution
        let mut a_keys = Vec::new();
        let mut a_inner = Vec::new();
        for (i, p) in raw.pairs.iter().enumerate() {
            if !p.acceptance.is_empty() {
                a_keys.push(i);
                a_inner.push(p.acceptance.bands(&ACCEPTANCE_BANDS));
            }
        }
        let accept = Rows {
            grid: Grid::with_totals(a_inner, ACCEPTANCE_BANDS.len()),
            keys: a_keys,
        };
        let a_mask = protect(&accept.grid, &[]);

        // refusals
        let r_keys: Vec<&String> = raw.refusals.keys().collect();
        let refusals = Rows {
            grid: Grid::with_totals(raw.refusals.values().cloned().collect(), np),
            keys: r_keys,
        };
        let r_mask = protect(&refusals.grid, &[]);

        // withdrawals: one sum
        let mut w = raw.withdrawals.clone();
        w.resize(np, 0);
        w.push(w.iter().sum());
        let w_mask = protect_line(&w, &[]);

        let pairs = &raw.pairs;
        let json = json!({
            "scope": ctx.scope,
            "center": ctx.center,
            "from": ctx.from,
            "to": ctx.to,
            "by": ctx.by.as_str(),
            "time_zone": "Asia/Seoul",
            "generated_at": ctx.generated_at,
            "min_count": MIN_COUNT,
            "centers": ctx.centers,
            "periods": periods,
            "messages": table_json(&messages, &m_mask, |(i, t)| {
                let mut m = pair_key(&pairs[*i].from, &pairs[*i].to);
                m.insert("type".into(), json!(t));
                m
            }),
            "outcomes": with_columns(
                rows_json(&outcomes, &o_mask, |i| pair_key(&pairs[*i].from, &pairs[*i].to)),
                &OUTCOME_COLUMNS,
            ),
            "times": {"rows": pairs.iter()
                .filter(|p| !(p.first_pull.is_empty() && p.acceptance.is_empty()
                    && p.completion.is_empty()))
                .map(|p| {
                    let mut m = pair_key(&p.from, &p.to);
                    m.insert("first_pull".into(), times_json(&p.first_pull));
                    m.insert("acceptance".into(), times_json(&p.acceptance));
                    m.insert("completion".into(), times_json(&p.completion));
                    Value::Object(m)
                }).collect::<Vec<_>>()},
            "acceptance_distribution": with_columns(
                table_json(&accept, &a_mask, |i| pair_key(&pairs[*i].from, &pairs[*i].to)),
                &ACCEPTANCE_BANDS.map(|(c, _)| c),
            ),
            "refusals": table_json(&refusals, &r_mask, |r| {
                let mut m = Map::new();
                m.insert("reason".into(), json!(r));
                m
            }),
            "withdrawals": {
                "counts": w[..np].iter().zip(&w_mask).map(|(v, h)| hide(*v, *h)).collect::<Vec<_>>(),
                "total": hide(w[np], w_mask[np]),
            },
        });
        Report { json }
    }

    /// The JSON answer.
    pub fn to_json(&self) -> &Value {
        &self.json
    }

    /// The CSV answer: one line per published or suppressed value (`x`), UTF-8, no BOM
    /// (the caller adds what its medium needs).
    pub fn to_csv(&self) -> String {
        let mut out = String::from("table,from,to,type,direction,reason,column,value\r\n");
        let j = &self.json;
        let labels: Vec<String> = j["periods"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| p["label"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let column_names = |table: &str| -> Vec<String> {
            match j[table]["columns"].as_array() {
                Some(cs) => cs
                    .iter()
                    .map(|c| c.as_str().unwrap_or_default().to_owned())
                    .collect(),
                None => labels.clone(),
            }
        };
        let mut line = |table: &str, key: &Value, column: &str, v: &Value| {
            let field = |name: &str| key[name].as_str().unwrap_or("").to_owned();
            let value = if v.is_null() {
                "x".to_owned()
            } else {
                v.to_string()
            };
            let cells = [
                table.to_owned(),
                field("from"),
                field("to"),
                field("type"),
                field("direction"),
                field("reason"),
                column.to_owned(),
                value,
            ];
            out.push_str(
                &cells
                    .iter()
                    .map(|c| csv_field(c))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            out.push_str("\r\n");
        };
        let all = json!({"from": "*", "to": "*", "type": "*", "direction": "*", "reason": "*"});
        for table in [
            "messages",
            "outcomes",
            "acceptance_distribution",
            "refusals",
        ] {
            let cols = column_names(table);
            let t = &j[table];
            for row in t["rows"].as_array().into_iter().flatten() {
                for (c, v) in cols
                    .iter()
                    .zip(row["counts"].as_array().into_iter().flatten())
                {
                    line(table, row, c, v);
                }
                line(table, row, "total", &row["total"]);
            }
            for (c, v) in cols
                .iter()
                .zip(t["totals"].as_array().into_iter().flatten())
            {
                line(table, &all, c, v);
            }
            if !t["total"].is_null() || t.get("totals").is_some() {
                line(table, &all, "total", &t["total"]);
            }
        }
        let w = &j["withdrawals"];
        for (c, v) in labels
            .iter()
            .zip(w["counts"].as_array().into_iter().flatten())
        {
            line("withdrawals", &all, c, v);
        }
        line("withdrawals", &all, "total", &w["total"]);
        for row in j["times"]["rows"].as_array().into_iter().flatten() {
            for measure in ["first_pull", "acceptance", "completion"] {
                for q in ["median_s", "p90_s"] {
                    line("times", row, &format!("{measure}_{q}"), &row[measure][q]);
                }
            }
        }
        out
    }
}

fn with_columns(mut table: Value, columns: &[&str]) -> Value {
    table["columns"] = json!(columns);
    table
}

/// A CSV field, quoted if it holds a comma, quote or line break; a leading `=`, `+`, `-`
/// or `@` is prefixed with `'` so no spreadsheet reads it as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

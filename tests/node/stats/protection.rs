//! An independent check of small-cell suppression, by linear algebra rather than by the
//! node's graph argument: a hidden cell can be worked out exactly iff its unit vector lies
//! in the row space of the published tables' sums restricted to the hidden cells.

use std::collections::BTreeMap;

use serde_json::Value;

/// A table as the node published it: inner counts with row totals and, if published,
/// column totals.
pub struct Published {
    /// `rows[r][c]`: `None` = hidden; the last column is the row total; with
    /// `column_totals`, the last row the column totals and the grand total.
    pub cells: Vec<Vec<Option<u64>>>,
    /// Whether the table publishes column totals (the outcomes table does not).
    pub column_totals: bool,
}

impl Published {
    /// Reads `{rows: [{counts, total}], totals, total}` (or just `rows`).
    pub fn of(table: &Value) -> Published {
        let num = |v: &Value| v.as_u64();
        let mut cells: Vec<Vec<Option<u64>>> = table["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|row| {
                let mut r: Vec<Option<u64>> = row["counts"]
                    .as_array()
                    .expect("counts")
                    .iter()
                    .map(num)
                    .collect();
                r.push(num(&row["total"]));
                r
            })
            .collect();
        let Some(totals) = table["totals"].as_array() else {
            return Published {
                cells,
                column_totals: false,
            };
        };
        let mut totals: Vec<Option<u64>> = totals.iter().map(num).collect();
        totals.push(num(&table["total"]));
        cells.push(totals);
        Published {
            cells,
            column_totals: true,
        }
    }
}

/// A cell of one of several tables: (table, row, column).
pub type Cell = (usize, usize, usize);

/// Checks that no hidden cell of `tables` can be computed from the published ones, the
/// sums of every table, and `same` (pairs of cells that hold one number).
pub fn assert_no_hidden_cell_is_determined(tables: &[Published], same: &[(Cell, Cell)]) {
    // One variable per hidden cell; linked cells share one.
    let mut var: BTreeMap<Cell, usize> = BTreeMap::new();
    let mut canon: BTreeMap<Cell, Cell> = BTreeMap::new();
    for &(a, b) in same {
        canon.insert(b, a);
    }
    for (t, table) in tables.iter().enumerate() {
        for (r, row) in table.cells.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                let cell = canon.get(&(t, r, c)).copied().unwrap_or((t, r, c));
                if v.is_none() && !var.contains_key(&cell) {
                    let n = var.len();
                    var.insert(cell, n);
                }
            }
        }
    }
    let n = var.len();
    if n == 0 {
        return;
    }
    // Each sum, restricted to the hidden cells (the published ones are constants).
    let mut equations: Vec<Vec<f64>> = Vec::new();
    for (t, table) in tables.iter().enumerate() {
        let rows = table.cells.len();
        let cols = table.cells[0].len();
        let mut add = |cells: Vec<((usize, usize), f64)>| {
            let mut eq = vec![0.0; n];
            for ((r, c), coeff) in cells {
                let cell = canon.get(&(t, r, c)).copied().unwrap_or((t, r, c));
                if let Some(&i) = var.get(&cell) {
                    eq[i] += coeff;
                }
            }
            equations.push(eq);
        };
        for r in 0..rows {
            let mut cells: Vec<_> = (0..cols - 1).map(|c| ((r, c), 1.0)).collect();
            cells.push(((r, cols - 1), -1.0));
            add(cells);
        }
        for c in (0..cols).filter(|_| table.column_totals) {
            let mut cells: Vec<_> = (0..rows - 1).map(|r| ((r, c), 1.0)).collect();
            cells.push(((rows - 1, c), -1.0));
            add(cells);
        }
    }
    let base = rank(equations.clone());
    for (cell, &i) in &var {
        let mut with = equations.clone();
        let mut unit = vec![0.0; n];
        unit[i] = 1.0;
        with.push(unit);
        assert_ne!(
            rank(with),
            base,
            "hidden cell {cell:?} (table, row, column) can be worked out from the published sums"
        );
    }
}

fn rank(mut m: Vec<Vec<f64>>) -> usize {
    let cols = m.first().map_or(0, Vec::len);
    let mut rank = 0;
    for c in 0..cols {
        let Some(p) = (rank..m.len()).find(|r| m[*r][c].abs() > 1e-9) else {
            continue;
        };
        m.swap(rank, p);
        let pivot = m[rank][c];
        for r in 0..m.len() {
            if r != rank && m[r][c].abs() > 1e-9 {
                let f = m[r][c] / pivot;
                let pivot_row = m[rank].clone();
                for (x, p) in m[r].iter_mut().zip(&pivot_row).skip(c) {
                    *x -= f * p;
                }
            }
        }
        rank += 1;
    }
    rank
}

/// Checks that every published cell of `table` is its true value and every true value
/// from 1 to 4 is hidden; `truth[r]` = inner counts of row r (totals computed here).
pub fn assert_true_or_hidden(name: &str, table: &Published, truth: &[Vec<u64>]) {
    let cols = truth.first().map_or(0, Vec::len);
    let mut full: Vec<Vec<u64>> = truth
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.push(r.iter().sum());
            r
        })
        .collect();
    if table.column_totals {
        let totals: Vec<u64> = (0..=cols)
            .map(|c| full.iter().map(|r| r[c]).sum())
            .collect();
        full.push(totals);
    }
    assert_eq!(table.cells.len(), full.len(), "{name}: rows");
    for (r, (got, want)) in table.cells.iter().zip(&full).enumerate() {
        assert_eq!(got.len(), want.len(), "{name}: columns of row {r}");
        for (c, (g, w)) in got.iter().zip(want).enumerate() {
            match g {
                Some(g) => {
                    assert_eq!(g, w, "{name}: cell ({r}, {c})");
                    assert!(!(1..5).contains(w), "{name}: ({r}, {c}) = {w} is published");
                }
                None => assert!(*w > 0, "{name}: ({r}, {c}) is a hidden zero"),
            }
        }
    }
}

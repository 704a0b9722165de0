//! Small-cell suppression: which counts of a table with totals are withheld, so that no
//! count from 1 to 4 is published and none can be worked out from the published ones.
//!
//! A table is a grid of counts with its row totals, column totals and grand total (a
//! [`Grid`] holds all of them: the last row and column are the totals). Primary
//! suppression hides every count from 1 to [`MIN_COUNT`] − 1, totals included. Zero is
//! published: it tells nothing about a person, and a reader knows which cells are empty
//! anyway from the rows that exist. Secondary (complementary) suppression then hides more
//! cells until no hidden cell can be computed from the published ones.
//!
//! Why this rule is exact: negate the totals of a row or column, and every row and every
//! column of the grid sums to zero. The hidden values a reader cannot tell apart are
//! then the hidden cells plus any change that keeps every row and column sum, and such a
//! change is a sum of alternating ± around cycles of hidden cells (a cycle visits a row,
//! a column, a row, … each step through a hidden cell). So a hidden cell can be worked out
//! exactly iff it lies on no cycle: iff, in the bipartite graph of rows and columns with an
//! edge per hidden cell, it is a *bridge*. [`protect`] finds bridges (Tarjan) and puts
//! each on a cycle by hiding the three cells that close the cheapest rectangle through it,
//! until there are none. Only cells over zero are hidden as complements (a hidden zero
//! protects nothing a reader could not guess), and the totals always offer such a
//! rectangle, so this ends.
//!
//! A table published without column totals is a set of single sums, one per row
//! ([`protect_line`]): a hidden cell is safe iff its row hides at least two. The outcomes
//! table is one: each of its rows splits a pair's referrals by outcome, and its total is
//! the messages table's total of that pair's referral row, so the two are protected
//! together (`report`): the messages table by [`protect`] with the hidden shared totals
//! forced, each outcomes row by [`protect_line`] with its total forced if hidden there,
//! until neither hides more. Then every change that keeps the messages table's sums
//! extends to the outcomes rows (a row whose total is hidden hides another cell to absorb
//! it), and every hidden outcomes cell can change (with another of its row, or with its
//! hidden total), so nothing hidden can be worked out from both. Publishing the outcomes'
//! column totals would break this: they tie the rows together (their grand total is a sum
//! of shared totals), which is why the outcomes table has none.

/// Counts below this (and above zero) are never published.
pub const MIN_COUNT: u64 = 5;

/// A table with its totals: `cells[r][c]`, the last row and the last column the totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grid {
    /// Rows of counts; every row as long as the first.
    pub cells: Vec<Vec<u64>>,
}

impl Grid {
    /// A grid from the inner counts: the totals are computed and appended.
    pub fn with_totals(inner: Vec<Vec<u64>>, columns: usize) -> Grid {
        let mut cells: Vec<Vec<u64>> = inner
            .into_iter()
            .map(|mut row| {
                row.resize(columns, 0);
                let total = row.iter().sum();
                row.push(total);
                row
            })
            .collect();
        let mut totals = vec![0u64; columns + 1];
        for row in &cells {
            for (t, v) in totals.iter_mut().zip(row) {
                *t += v;
            }
        }
        cells.push(totals);
        Grid { cells }
    }

    fn rows(&self) -> usize {
        self.cells.len()
    }

    fn cols(&self) -> usize {
        self.cells.first().map_or(0, Vec::len)
    }
}

/// The three cells that close a rectangle through a hidden one.
type Corners = [(usize, usize); 3];

/// Which cells of a [`Grid`] are hidden.
pub type Mask = Vec<Vec<bool>>;

/// True for a count that primary suppression hides.
pub fn is_small(v: u64) -> bool {
    v > 0 && v < MIN_COUNT
}

/// The cells of `grid` to hide: the small ones, the `forced` ones, and enough others that
/// none of them can be worked out from the rest.
pub fn protect(grid: &Grid, forced: &[(usize, usize)]) -> Mask {
    let (rows, cols) = (grid.rows(), grid.cols());
    let mut hidden: Mask = grid
        .cells
        .iter()
        .map(|row| row.iter().map(|v| is_small(*v)).collect())
        .collect();
    for &(r, c) in forced {
        hidden[r][c] = true;
    }
    while let Some((r, c)) = first_bridge(&hidden, rows, cols) {
        // (cost, cells newly hidden, the three corners)
        let mut best: Option<(u64, usize, Corners)> = None;
        for r2 in (0..rows).filter(|r2| *r2 != r) {
            for c2 in (0..cols).filter(|c2| *c2 != c) {
                let corners = [(r, c2), (r2, c), (r2, c2)];
                let mut cost = 0;
                let mut new = 0;
                let mut usable = true;
                for &(y, x) in &corners {
                    if !hidden[y][x] {
                        let v = grid.cells[y][x];
                        if v == 0 {
                            usable = false;
                            break;
                        }
                        cost += v;
                        new += 1;
                    }
                }
                if usable
                    && best
                        .as_ref()
                        .is_none_or(|(bc, bn, _)| (cost, new) < (*bc, *bn))
                {
                    best = Some((cost, new, corners));
                }
            }
        }
        let Some((_, _, corners)) = best else {
            // Unreachable for a grid with its totals: the totals' rectangle is usable.
            // Hiding the whole row keeps the promise anyway.
            for (h, v) in hidden[r].iter_mut().zip(&grid.cells[r]) {
                *h = *h || *v > 0;
            }
            break;
        };
        for (y, x) in corners {
            hidden[y][x] = true;
        }
    }
    hidden
}

/// The cells of a single sum (`values` with the total last) to hide: the small ones, the
/// `forced` ones and, if exactly one is hidden, the smallest other count over zero as well.
pub fn protect_line(values: &[u64], forced: &[usize]) -> Vec<bool> {
    let mut hidden: Vec<bool> = values.iter().map(|v| is_small(*v)).collect();
    for &i in forced {
        hidden[i] = true;
    }
    if hidden.iter().filter(|h| **h).count() == 1 {
        let other = values
            .iter()
            .enumerate()
            .filter(|(i, v)| !hidden[*i] && **v > 0)
            .min_by_key(|(i, v)| (**v, *i))
            .map(|(i, _)| i);
        if let Some(i) = other {
            hidden[i] = true;
        }
    }
    hidden
}

/// The first hidden cell (row-major) that is a bridge of the rows–columns graph of hidden
/// cells, if any.
fn first_bridge(hidden: &Mask, rows: usize, cols: usize) -> Option<(usize, usize)> {
    // Nodes: rows 0..rows, columns rows..rows+cols. Edges: hidden cells.
    let n = rows + cols;
    let mut adj: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
    let mut edges = Vec::new();
    for (r, row) in hidden.iter().enumerate() {
        for (c, h) in row.iter().enumerate() {
            if *h {
                let e = edges.len();
                edges.push((r, c));
                adj[r].push((rows + c, e));
                adj[rows + c].push((r, e));
            }
        }
    }
    let mut is_bridge = vec![false; edges.len()];
    let mut order = vec![usize::MAX; n];
    let mut low = vec![0usize; n];
    let mut next = 0;
    for root in 0..n {
        if order[root] != usize::MAX || adj[root].is_empty() {
            continue;
        }
        // Iterative DFS: (node, edge it was entered by, next adjacency index).
        let mut stack: Vec<(usize, usize, usize)> = vec![(root, usize::MAX, 0)];
        order[root] = next;
        low[root] = next;
        next += 1;
        while let Some(&mut (v, via, ref mut i)) = stack.last_mut() {
            if let Some(&(w, e)) = adj[v].get(*i) {
                *i += 1;
                if e == via {
                    continue;
                }
                if order[w] == usize::MAX {
                    order[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push((w, e, 0));
                } else {
                    low[v] = low[v].min(order[w]);
                }
            } else {
                stack.pop();
                if let Some(&(parent, _, _)) = stack.last() {
                    low[parent] = low[parent].min(low[v]);
                    if low[v] > order[parent] {
                        is_bridge[via] = true;
                    }
                }
            }
        }
    }
    edges
        .iter()
        .zip(&is_bridge)
        .filter(|(_, b)| **b)
        .map(|(e, _)| *e)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every hidden cell can take another value with every row and column sum kept: a
    /// brute-force check of the claim, over small grids.
    fn no_hidden_cell_is_determined(grid: &Grid, mask: &Mask) -> bool {
        let rows = grid.rows();
        let cols = grid.cols();
        for (r, row) in mask.iter().enumerate() {
            for (c, h) in row.iter().enumerate() {
                if *h && first_bridge_is(mask, rows, cols, (r, c)) {
                    return false;
                }
            }
        }
        true
    }

    fn first_bridge_is(mask: &Mask, rows: usize, cols: usize, cell: (usize, usize)) -> bool {
        // Is `cell` on a cycle? Remove it and see whether its row and column still connect.
        let (r0, c0) = cell;
        let mut seen = vec![false; rows + cols];
        let mut todo = vec![r0];
        seen[r0] = true;
        while let Some(v) = todo.pop() {
            let neighbours: Vec<usize> = if v < rows {
                (0..cols)
                    .filter(|c| mask[v][*c] && (v, *c) != cell)
                    .map(|c| rows + c)
                    .collect()
            } else {
                (0..rows)
                    .filter(|r| mask[*r][v - rows] && (*r, v - rows) != cell)
                    .collect()
            };
            for w in neighbours {
                if !seen[w] {
                    seen[w] = true;
                    todo.push(w);
                }
            }
        }
        !seen[rows + c0]
    }

    #[test]
    fn a_lone_small_count_takes_a_rectangle_with_it() {
        let grid = Grid::with_totals(vec![vec![3, 10, 20], vec![8, 9, 30]], 3);
        let mask = protect(&grid, &[]);
        assert!(mask[0][0], "3 is under 5");
        assert_eq!(mask.iter().flatten().filter(|h| **h).count(), 4);
        // The cheapest rectangle: 3, 10 / 8, 9.
        assert!(mask[0][1] && mask[1][0] && mask[1][1]);
        assert!(no_hidden_cell_is_determined(&grid, &mask));
    }

    #[test]
    fn nothing_small_hides_nothing_and_zeros_are_published() {
        let grid = Grid::with_totals(vec![vec![0, 10], vec![7, 0]], 2);
        assert!(protect(&grid, &[]).iter().flatten().all(|h| !h));
    }

    #[test]
    fn a_small_total_is_hidden_too() {
        let grid = Grid::with_totals(vec![vec![2, 1], vec![9, 9]], 2);
        let mask = protect(&grid, &[]);
        assert!(mask[0][2], "the row total 3 is small");
        assert!(no_hidden_cell_is_determined(&grid, &mask));
    }

    #[test]
    fn random_grids_never_leave_a_hidden_cell_determined() {
        // A small deterministic generator: no dependency for a test.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for _ in 0..300 {
            let rows = 1 + next(6) as usize;
            let cols = 1 + next(8) as usize;
            let inner = (0..rows)
                .map(|_| {
                    (0..cols)
                        .map(|_| [0, 1, 2, 4, 5, 7, 30][next(7) as usize])
                        .collect()
                })
                .collect();
            let grid = Grid::with_totals(inner, cols);
            let mask = protect(&grid, &[]);
            for (y, row) in grid.cells.iter().enumerate() {
                for (x, v) in row.iter().enumerate() {
                    assert!(!is_small(*v) || mask[y][x], "small count published");
                    assert!(!mask[y][x] || *v > 0 || is_small(*v), "a zero hidden");
                }
            }
            assert!(
                no_hidden_cell_is_determined(&grid, &mask),
                "{grid:?} {mask:?}"
            );
        }
    }

    #[test]
    fn forced_cells_are_protected_like_small_ones() {
        let grid = Grid::with_totals(vec![vec![10, 20], vec![30, 40]], 2);
        let mask = protect(&grid, &[(0, 2)]);
        assert!(mask[0][2]);
        assert!(no_hidden_cell_is_determined(&grid, &mask));
    }

    #[test]
    fn a_line_never_hides_just_one_count() {
        assert_eq!(
            protect_line(&[3, 10, 20, 33], &[]),
            vec![true, true, false, false]
        );
        assert_eq!(
            protect_line(&[3, 2, 20, 25], &[]),
            vec![true, true, false, false]
        );
        assert_eq!(protect_line(&[0, 10, 10], &[]), vec![false, false, false]);
        assert_eq!(protect_line(&[4, 0, 4], &[]), vec![true, false, true]);
        assert_eq!(protect_line(&[6, 9, 15], &[2]), vec![true, false, true]);
    }
}

//! The crate's module graph, read from the source text: which module names which other
//! module through a `crate::…` path (in a `use` or inline) or `super::…`.
//!
//! A *unit* is a ring's direct child (`core::audit`, `node::ledger`, `cli::privacy`: every
//! file below `src/node/ledger/` belongs to `node::ledger`) or a top-level module outside the
//! rings (`config`). Unit tests (`tests.rs` files and `#[cfg(test)] mod tests { … }` blocks)
//! are left out: a test may reach further than the code it tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The rings: directories under `src/` whose children are units of their own.
pub const RINGS: [&str; 4] = ["core", "node", "cli", "dev"];

/// Unit → the units it names (never itself).
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// Reads every `.rs` file under `src` and returns the module graph.
pub fn read(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let units: BTreeSet<String> = files
        .iter()
        .filter_map(|f| module_path(f.strip_prefix(src).expect("under src")))
        .map(|m| unit(&m))
        .collect();
    let mut graph = Graph::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src");
        let Some(module) = module_path(rel) else {
            continue;
        };
        if module.last().is_some_and(|m| m == "tests") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("source");
        let code = without_tests(&strip_comments(&text));
        let from = unit(&module);
        let edges = graph.entry(from.clone()).or_default();
        let mut targets = named_paths(&code, &module);
        targets.extend(child_paths(&code, &module));
        for target in targets {
            let to = known_unit(&target, &units);
            if !to.is_empty() && to != from {
                edges.insert(to);
            }
        }
    }
    graph
}

/// Every `.rs` file under `dir`, appended to `out`.
pub fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `node/ledger/group.rs` → `[node, ledger, group]`; `node/mod.rs` → `[node]`; `lib.rs`
/// and `main.rs` are the crate root (`None`: they only declare modules or call `cli`).
fn module_path(rel: &Path) -> Option<Vec<String>> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        return None;
    }
    Some(parts)
}

/// The unit a module path belongs to: two segments inside a ring, one outside.
pub fn unit(path: &[String]) -> String {
    match path.first() {
        None => String::new(),
        Some(first) if RINGS.contains(&first.as_str()) => {
            path.iter().take(2).cloned().collect::<Vec<_>>().join("::")
        }
        Some(first) => first.clone(),
    }
}

/// The unit a path names: the longest known unit it starts with, so `node::Node` (an item of
/// the ring's root module) is `node`, and `core::audit::hex` is `core::audit`.
fn known_unit(path: &[String], units: &BTreeSet<String>) -> String {
    let candidate = unit(path);
    if units.contains(&candidate) {
        candidate
    } else {
        path.first().cloned().unwrap_or_default()
    }
}

/// Removes `//` line comments (doc comments too) and `/* */` blocks, so prose that mentions a
/// module is not an import. String literals are kept as they are: a `//` inside one is rare
/// enough here (URLs are written without `crate::`).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_block = false;
    for line in text.lines() {
        let mut rest = line;
        let mut kept = String::new();
        loop {
            if in_block {
                match rest.find("*/") {
                    Some(end) => {
                        rest = &rest[end + 2..];
                        in_block = false;
                    }
                    None => break,
                }
            } else {
                let line_comment = comment_start(rest);
                let block = rest.find("/*");
                match (line_comment, block) {
                    (Some(l), Some(b)) if b < l => {
                        kept.push_str(&rest[..b]);
                        rest = &rest[b + 2..];
                        in_block = true;
                    }
                    (None, Some(b)) => {
                        kept.push_str(&rest[..b]);
                        rest = &rest[b + 2..];
                        in_block = true;
                    }
                    (Some(l), _) => {
                        kept.push_str(&rest[..l]);
                        break;
                    }
                    (None, None) => {
                        kept.push_str(rest);
                        break;
                    }
                }
            }
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// Where a `//` comment starts on a line, ignoring `//` inside a string literal.
fn comment_start(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Drops every `#[cfg(test)]` item (a `mod tests { … }` block or a `mod tests;` line) by
/// matching braces from the attribute on.
fn without_tests(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let semi = after.find(';');
        let open = after.find('{');
        match (open, semi) {
            (Some(open), Some(semi)) if semi < open => rest = &after[semi + 1..],
            (Some(open), _) => {
                let mut depth = 0usize;
                let mut end = after.len();
                for (i, c) in after[open..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = open + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &after[end..];
            }
            (None, _) => return out,
        }
    }
    out.push_str(rest);
    out
}

/// Every module path the code names: `crate::a::b::{c, d::e}` and `super::x` expanded into
/// absolute paths (`[a, b, c]`, `[a, b, d, e]`), relative to `module` for `super`.
fn named_paths(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bases = [
        ("crate::", Vec::new()),
        ("super::", parent(module)),
        ("self::", module.to_vec()),
    ];
    for (prefix, base) in bases {
        let mut from = 0;
        while let Some(at) = code[from..].find(prefix) {
            let start = from + at;
            from = start + prefix.len();
            let preceded_by_ident = code[..start]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            if preceded_by_ident {
                continue;
            }
            let mut chars = code[from..].chars().peekable();
            for tail in use_tree(&mut chars) {
                let mut path = base.clone();
                path.extend(tail);
                found.push(path);
            }
        }
    }
    found
}

/// Paths through a child module that `module` declares (`mod audit;` then
/// `audit::AuditCommand`): a module depends on the children it uses, not on those it only
/// declares.
fn child_paths(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let children: Vec<&str> = code
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            let l = l.strip_prefix("pub(crate) ").unwrap_or(l);
            l.strip_prefix("mod ")?.strip_suffix(';')
        })
        .collect();
    let mut found = Vec::new();
    for child in children {
        let prefix = format!("{child}::");
        let mut from = 0;
        while let Some(at) = code[from..].find(&prefix) {
            let start = from + at;
            from = start + prefix.len();
            let preceded = code[..start]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            if !preceded {
                let mut path = module.to_vec();
                path.push(child.to_owned());
                found.push(path);
            }
        }
    }
    found
}

/// The module that `super` names from inside `module` (a file `a/b.rs` is module `a::b`, its
/// `super` is `a`; `a/mod.rs` is module `a`, its `super` is the crate root).
fn parent(module: &[String]) -> Vec<String> {
    module[..module.len().saturating_sub(1)].to_vec()
}

/// Parses a use tree (`a::b::{c, d::{e, f}}`, `a::B`, `self`) into its leaf paths.
fn use_tree(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Vec<Vec<String>> {
    let mut path = Vec::new();
    loop {
        skip_space(chars);
        if chars.peek() == Some(&'{') {
            chars.next();
            let mut leaves = Vec::new();
            loop {
                skip_space(chars);
                match chars.peek() {
                    Some('}') => {
                        chars.next();
                        break;
                    }
                    Some(',') => {
                        chars.next();
                    }
                    None => break,
                    _ => {
                        for tail in use_tree(chars) {
                            let mut leaf = path.clone();
                            leaf.extend(tail);
                            leaves.push(leaf);
                        }
                    }
                }
            }
            return leaves;
        }
        let ident: String =
            std::iter::from_fn(|| chars.next_if(|c| c.is_alphanumeric() || *c == '_')).collect();
        if ident.is_empty() {
            break;
        }
        if ident != "self" {
            path.push(ident);
        }
        if chars.peek() == Some(&':') {
            chars.next();
            if chars.next_if_eq(&':').is_none() {
                break;
            }
        } else {
            // ` as name`, `;`, `,`, `}`, `(`, `<`, …: the path ends here.
            break;
        }
    }
    vec![path]
}

fn skip_space(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while chars.next_if(|c| c.is_whitespace()).is_some() {}
}

/// The strongly connected components with more than one unit: each one is an import cycle.
pub fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    // Tarjan's algorithm; the graph has a few dozen nodes, so recursion depth is no concern.
    struct State<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.found
}

/// The longest chain of imports (in units), on a graph without cycles: how many layers a
/// reader passes through from the top module down to the last one it depends on.
pub fn levels(graph: &Graph) -> usize {
    fn depth<'g>(graph: &'g Graph, v: &'g str, memo: &mut BTreeMap<&'g str, usize>) -> usize {
        if let Some(d) = memo.get(v) {
            return *d;
        }
        memo.insert(v, 1); // a cycle ends the walk rather than looping
        let d = 1 + graph
            .get(v)
            .into_iter()
            .flatten()
            .map(|w| depth(graph, w, memo))
            .max()
            .unwrap_or(0);
        memo.insert(v, d);
        d
    }
    let mut memo = BTreeMap::new();
    graph
        .keys()
        .map(|v| depth(graph, v, &mut memo))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(code: &str, module: &[&str]) -> Vec<String> {
        let module: Vec<String> = module.iter().map(|s| s.to_string()).collect();
        named_paths(code, &module)
            .into_iter()
            .map(|p| p.join("::"))
            .collect()
    }

    #[test]
    fn use_trees_expand_to_their_leaves() {
        assert_eq!(
            paths(
                "use crate::core::{audit::{self, Action}, keys};",
                &["node", "x"]
            ),
            ["core::audit", "core::audit::Action", "core::keys"]
        );
        assert_eq!(
            paths("let e = crate::node::ledger::LedgerError::X;", &["cli"]),
            ["node::ledger::LedgerError::X"]
        );
        assert_eq!(
            paths("use super::problem;", &["node", "api", "privacy"]),
            ["node::api::problem"]
        );
    }

    #[test]
    fn comments_and_tests_are_not_imports() {
        let code = "// crate::node::x\nuse crate::core::a; /* crate::cli */\n#[cfg(test)]\nmod tests {\n use crate::dev::devinit;\n fn f() { {} }\n}\nuse crate::core::b;";
        let code = without_tests(&strip_comments(code));
        assert_eq!(paths(&code, &["node"]), ["core::a", "core::b"]);
    }

    #[test]
    fn cycles_and_levels() {
        let mut g = Graph::new();
        let edge = |g: &mut Graph, a: &str, b: &str| {
            g.entry(a.into()).or_default().insert(b.into());
            g.entry(b.into()).or_default();
        };
        edge(&mut g, "a", "b");
        edge(&mut g, "b", "c");
        assert!(cycles(&g).is_empty());
        assert_eq!(levels(&g), 3);
        edge(&mut g, "c", "a");
        assert_eq!(cycles(&g), [vec!["a", "b", "c"]]);
    }
}

//! `plusgate-charts`: draws the README's benchmark charts (SVG) from the benchmark results
//! under `docs/bench/` (`tools/bench-charts.sh` reruns the benchmarks and then this).
//!
//! ```sh
//! cargo run --release -p plusgate-tools --bin plusgate-charts            # redraw
//! cargo run --release -p plusgate-tools --bin plusgate-charts -- --check # stale?
//! ```
//!
//! Files: [`input`] (the results read), [`charts`] (which charts, from which numbers),
//! [`svg`] (drawing).

mod charts;
mod input;
mod svg;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;

/// Draw the benchmark charts from the benchmark results.
#[derive(Parser, Debug)]
#[command(name = "plusgate-charts", version, about, long_about = None)]
struct Args {
    /// The results folder (connections-*.json, cross.json, memory.json).
    #[arg(long, default_value = "docs/bench")]
    input: PathBuf,
    /// Where the charts go (<name>.svg).
    #[arg(long, default_value = "docs/charts")]
    output: PathBuf,
    /// Write nothing: exit 1 if a chart in --output differs from what the results draw.
    #[arg(long)]
    check: bool,
}

/// Every chart drawn from the results in `input`, as (file name, SVG text).
fn draw(input: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let results = input::Results::read(input)?;
    charts::all(&results)
        .into_iter()
        .map(|(stem, chart)| Ok((format!("{stem}.svg"), chart.to_svg()?)))
        .collect()
}

/// SVG files in `dir` that no chart draws (left from a chart since removed).
fn strays(dir: &Path, drawn: &[(String, String)]) -> anyhow::Result<Vec<PathBuf>> {
    let mut strays = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(strays),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".svg") && !drawn.iter().any(|(drawn, _)| drawn == name) {
            strays.push(path);
        }
    }
    strays.sort();
    Ok(strays)
}

fn run(args: &Args) -> anyhow::Result<bool> {
    let drawn = draw(&args.input)?;
    let mut fresh = true;
    if !args.check {
        std::fs::create_dir_all(&args.output)
            .with_context(|| format!("creating {}", args.output.display()))?;
    }
    for (name, svg) in &drawn {
        let path = args.output.join(name);
        let same = std::fs::read_to_string(&path).is_ok_and(|old| old == *svg);
        if same {
            eprintln!("plusgate-charts: {} unchanged", path.display());
        } else if args.check {
            eprintln!(
                "plusgate-charts: {} is not what {} draws",
                path.display(),
                args.input.display()
            );
            fresh = false;
        } else {
            std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("plusgate-charts: wrote {}", path.display());
        }
    }
    for stray in strays(&args.output, &drawn)? {
        eprintln!(
            "plusgate-charts: {} is no chart of these results; remove it",
            stray.display()
        );
        fresh = false;
    }
    Ok(fresh)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("plusgate-charts: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repository() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("tools/ is inside the repository")
            .to_path_buf()
    }

    /// The charts in the README are exactly what the committed results draw: neither can
    /// change without the other.
    #[test]
    fn the_committed_charts_are_drawn_from_the_committed_results() {
        let root = repository();
        let drawn = draw(&root.join("docs/bench")).expect("the committed results draw");
        assert_eq!(drawn.len(), 7);
        for (name, svg) in &drawn {
            let path = root.join("docs/charts").join(name);
            let committed = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                committed == *svg,
                "{} is not what docs/bench draws: run `cargo run --release -p plusgate-tools \
                 --bin plusgate-charts` and commit the result",
                path.display()
            );
        }
        assert_eq!(
            strays(&root.join("docs/charts"), &drawn).expect("lists docs/charts"),
            Vec::<PathBuf>::new()
        );
        let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
        for (name, _) in &drawn {
            assert!(
                readme.contains(&format!("docs/charts/{name}")),
                "README.md does not show {name}"
            );
        }
    }

    #[test]
    fn a_missing_result_names_the_step_that_makes_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let error = draw(dir.path()).expect_err("nothing to draw from");
        assert!(
            format!("{error:#}").contains("tools/bench-charts.sh connections"),
            "{error:#}"
        );
        let root = repository();
        for file in ["connections-64.json", "cross.json"] {
            std::fs::copy(root.join("docs/bench").join(file), dir.path().join(file))
                .expect("copies a result");
        }
        let error = draw(dir.path()).expect_err("memory.json is missing");
        assert!(
            format!("{error:#}").contains("tools/bench-charts.sh memory"),
            "{error:#}"
        );
        std::fs::write(dir.path().join("memory.json"), "{\"report\": 1}").expect("writes");
        let error = draw(dir.path()).expect_err("memory.json is no result");
        assert!(
            format!("{error:#}").contains("memory.json is not a plusgate-bench result"),
            "{error:#}"
        );
    }
}

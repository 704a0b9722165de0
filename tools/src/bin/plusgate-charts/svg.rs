//! Line and grouped-bar charts written as SVG text.
//!
//! Why by hand: the charting crates (plotters) lay text out with a font backend
//! (fontconfig through font-kit, or a TTF file embedded for ab_glyph) only to measure
//! labels, which an SVG leaves to the viewer anyway. These charts need axes, ticks, a
//! legend and two kinds of marks; writing them is shorter than carrying a font.
//!
//! The output is deterministic (same input, same bytes: numbers are printed with fixed
//! decimals, nothing depends on time or hashing), so the committed charts can be checked
//! against the committed data by a test, and a changed chart shows as a readable diff.

use std::fmt::Write as _;

/// Canvas size, px.
const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 420.0;
/// The plot area inside the canvas: room for the title and subtitle above, the tick
/// labels and axis titles left and below, the legend right.
const LEFT: f64 = 78.0;
const RIGHT: f64 = 560.0;
const TOP: f64 = 64.0;
const BOTTOM: f64 = 360.0;
/// Where the legend starts.
const LEGEND_X: f64 = 578.0;

/// Okabe–Ito colours: told apart with every common kind of colour blindness.
pub const COLOURS: [&str; 6] = [
    "#0072B2", "#009E73", "#D55E00", "#CC79A7", "#E69F00", "#56B4E9",
];

/// What every chart has: its words and its marks.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    /// Under the title: where the numbers come from (date, commit, machine).
    pub subtitle: String,
    /// The benchmark commands that measured the numbers (the SVG's `<desc>`).
    pub commands: Vec<String>,
    pub x_label: String,
    pub y_label: String,
    pub marks: Marks,
}

/// The two kinds of chart.
#[derive(Debug, Clone)]
pub enum Marks {
    /// Lines through points with numeric x; a missing point breaks nothing, it is just not
    /// drawn.
    Lines {
        x_scale: Scale,
        y_scale: Scale,
        series: Vec<Series>,
    },
    /// One group of bars per category, one bar per series, each labelled with its value.
    Bars {
        categories: Vec<String>,
        y_scale: Scale,
        series: Vec<BarSeries>,
    },
}

/// How values map onto an axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// From 0 (or the data's minimum, when negative) to a round number above the maximum.
    Linear,
    /// Logarithmic, base 2 (connection counts).
    Log2,
    /// Logarithmic, base 10 (latencies spanning decades).
    Log10,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone)]
pub struct BarSeries {
    pub name: String,
    /// One per category; `None` draws no bar there.
    pub values: Vec<Option<f64>>,
}

/// Errors that make a chart impossible to draw.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ChartError {
    #[error("chart \"{0}\" has no data to draw")]
    Empty(String),
    #[error("chart \"{chart}\": {what} must be positive on a logarithmic scale (got {value})")]
    NotPositive {
        chart: String,
        what: &'static str,
        value: f64,
    },
    #[error("chart \"{chart}\": {what} is not a finite number")]
    NotFinite { chart: String, what: &'static str },
}

/// An axis fitted to its data: maps values to pixels and knows its ticks.
#[derive(Debug, Clone)]
struct Axis {
    scale: Scale,
    /// The ends of the axis, in data units.
    low: f64,
    high: f64,
    /// The pixel ends (low maps to `from`).
    from: f64,
    to: f64,
    ticks: Vec<f64>,
}

impl Axis {
    fn fit(scale: Scale, values: &[f64], from: f64, to: f64) -> Axis {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (low, high, ticks) = match scale {
            Scale::Linear => {
                let low = min.min(0.0);
                let step = nice_step((max - low).max(f64::EPSILON) / 5.0);
                let high = (max / step).ceil().max(1.0) * step;
                let count = ((high - low) / step).round() as i64;
                let ticks = (0..=count).map(|i| low + i as f64 * step).collect();
                (low, high, ticks)
            }
            Scale::Log2 => {
                let low = min.log2().floor();
                let high = max.log2().ceil().max(low + 1.0);
                let ticks = (low as i64..=high as i64)
                    .map(|e| 2f64.powi(e as i32))
                    .collect();
                (2f64.powf(low), 2f64.powf(high), ticks)
            }
            Scale::Log10 => {
                let low = min.log10().floor();
                let high = max.log10().ceil().max(low + 1.0);
                let decades = (high - low) as i64;
                let mut ticks = Vec::new();
                for e in low as i64..=high as i64 {
                    let base = 10f64.powi(e as i32);
                    ticks.push(base);
                    // Few decades leave room for 2 and 5 between the powers of ten.
                    if decades <= 3 && e < high as i64 {
                        ticks.push(2.0 * base);
                        ticks.push(5.0 * base);
                    }
                }
                (10f64.powf(low), 10f64.powf(high), ticks)
            }
        };
        Axis {
            scale,
            low,
            high,
            from,
            to,
            ticks,
        }
    }

    fn position(&self, value: f64) -> f64 {
        let fraction = match self.scale {
            Scale::Linear => (value - self.low) / (self.high - self.low),
            Scale::Log2 => (value.log2() - self.low.log2()) / (self.high.log2() - self.low.log2()),
            Scale::Log10 => {
                (value.log10() - self.low.log10()) / (self.high.log10() - self.low.log10())
            }
        };
        self.from + fraction * (self.to - self.from)
    }
}

/// A round step (1, 2 or 5 times a power of ten) at least `rough`.
fn nice_step(rough: f64) -> f64 {
    let power = 10f64.powf(rough.log10().floor());
    let mantissa = rough / power;
    let nice = if mantissa <= 1.0 {
        1.0
    } else if mantissa <= 2.0 {
        2.0
    } else if mantissa <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * power
}

/// A number as a reader wants it on a chart: thousands separated, at most three
/// significant decimals below 10.
pub fn format_number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1000.0 {
        let rounded = value.round() as i64;
        let digits = rounded.unsigned_abs().to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if rounded < 0 {
            format!("-{grouped}")
        } else {
            grouped
        }
    } else if magnitude >= 100.0 || value == value.round() {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// Text made safe inside an SVG element or attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

impl Chart {
    /// The chart as a standalone SVG document.
    pub fn to_svg(&self) -> Result<String, ChartError> {
        self.check()?;
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#
        );
        let _ = writeln!(svg, "<title>{}</title>", escape(&self.title));
        let _ = writeln!(
            svg,
            "<desc>Drawn by plusgate-charts from the results of: {}</desc>",
            escape(&self.commands.join("; "))
        );
        let _ = writeln!(
            svg,
            r##"<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##
        );
        let _ = writeln!(
            svg,
            r##"<text x="{LEFT}" y="24" font-size="16" font-weight="bold" fill="#222222">{}</text>"##,
            escape(&self.title)
        );
        let _ = writeln!(
            svg,
            r##"<text x="{LEFT}" y="44" font-size="11" fill="#555555">{}</text>"##,
            escape(&self.subtitle)
        );
        match &self.marks {
            Marks::Lines {
                x_scale,
                y_scale,
                series,
            } => self.lines(&mut svg, *x_scale, *y_scale, series),
            Marks::Bars {
                categories,
                y_scale,
                series,
            } => self.bars(&mut svg, categories, *y_scale, series),
        }
        self.axis_titles(&mut svg);
        svg.push_str("</svg>\n");
        Ok(svg)
    }

    /// Every value can be placed on its scale.
    fn check(&self) -> Result<(), ChartError> {
        let chart = || self.title.clone();
        let values: Vec<(&'static str, f64, Scale)> = match &self.marks {
            Marks::Lines {
                x_scale,
                y_scale,
                series,
            } => series
                .iter()
                .flat_map(|s| &s.points)
                .flat_map(|&(x, y)| [("an x value", x, *x_scale), ("a y value", y, *y_scale)])
                .collect(),
            Marks::Bars {
                y_scale, series, ..
            } => series
                .iter()
                .flat_map(|s| s.values.iter().flatten())
                .map(|&v| ("a bar's value", v, *y_scale))
                .collect(),
        };
        if values.is_empty() {
            return Err(ChartError::Empty(chart()));
        }
        for (what, value, scale) in values {
            if !value.is_finite() {
                return Err(ChartError::NotFinite {
                    chart: chart(),
                    what,
                });
            }
            if scale != Scale::Linear && value <= 0.0 {
                return Err(ChartError::NotPositive {
                    chart: chart(),
                    what,
                    value,
                });
            }
        }
        Ok(())
    }

    fn lines(&self, svg: &mut String, x_scale: Scale, y_scale: Scale, series: &[Series]) {
        let xs: Vec<f64> = series.iter().flat_map(|s| &s.points).map(|p| p.0).collect();
        let ys: Vec<f64> = series.iter().flat_map(|s| &s.points).map(|p| p.1).collect();
        let x_axis = Axis::fit(x_scale, &xs, LEFT, RIGHT);
        let y_axis = Axis::fit(y_scale, &ys, BOTTOM, TOP);
        y_grid(svg, &y_axis);
        for &tick in &x_axis.ticks {
            let x = x_axis.position(tick);
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.1}" y1="{BOTTOM}" x2="{x:.1}" y2="{:.1}" stroke="#222222"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#333333">{}</text>"##,
                BOTTOM + 5.0,
                BOTTOM + 19.0,
                format_number(tick)
            );
        }
        frame(svg);
        for (i, s) in series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let points: Vec<(f64, f64)> = s
                .points
                .iter()
                .map(|&(x, y)| (x_axis.position(x), y_axis.position(y)))
                .collect();
            let path: Vec<String> = points
                .iter()
                .map(|(x, y)| format!("{x:.1},{y:.1}"))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
                path.join(" ")
            );
            // Markers only where there are few points (a measured sweep), not on a time
            // series of hundreds of samples.
            if s.points.len() <= 24 {
                for (&(x, y), &(px, py)) in s.points.iter().zip(&points) {
                    let _ = writeln!(
                        svg,
                        r#"<circle cx="{px:.1}" cy="{py:.1}" r="3.5" fill="{colour}"><title>{}: {} → {}</title></circle>"#,
                        escape(&s.name),
                        format_number(x),
                        format_number(y)
                    );
                }
            }
            legend_entry(svg, i, &s.name, colour, false);
        }
    }

    fn bars(&self, svg: &mut String, categories: &[String], y_scale: Scale, series: &[BarSeries]) {
        let values: Vec<f64> = series
            .iter()
            .flat_map(|s| s.values.iter().flatten().copied())
            .collect();
        let y_axis = Axis::fit(y_scale, &values, BOTTOM, TOP);
        y_grid(svg, &y_axis);
        let group_width = (RIGHT - LEFT) / categories.len().max(1) as f64;
        let bar_width = (group_width * 0.8) / series.len().max(1) as f64;
        // Bars grow from the axis' low end (0, or the lowest power of ten on a log scale).
        let base = y_axis.position(y_axis.low);
        for (c, category) in categories.iter().enumerate() {
            let group_left = LEFT + c as f64 * group_width + group_width * 0.1;
            let _ = writeln!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#333333">{}</text>"##,
                LEFT + (c as f64 + 0.5) * group_width,
                BOTTOM + 19.0,
                escape(category)
            );
            for (i, s) in series.iter().enumerate() {
                let Some(Some(value)) = s.values.get(c) else {
                    continue;
                };
                let colour = COLOURS[i % COLOURS.len()];
                let x = group_left + i as f64 * bar_width;
                let top = y_axis.position(*value);
                let _ = writeln!(
                    svg,
                    r#"<rect x="{x:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{colour}"><title>{}, {}: {}</title></rect>"#,
                    (bar_width - 2.0).max(1.0),
                    (base - top).max(0.0),
                    escape(&s.name),
                    escape(category),
                    format_number(*value)
                );
                let _ = writeln!(
                    svg,
                    r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10" fill="#333333">{}</text>"##,
                    x + bar_width / 2.0 - 1.0,
                    top - 4.0,
                    format_number(*value)
                );
            }
        }
        frame(svg);
        for (i, s) in series.iter().enumerate() {
            legend_entry(svg, i, &s.name, COLOURS[i % COLOURS.len()], true);
        }
    }

    fn axis_titles(&self, svg: &mut String) {
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#222222">{}</text>"##,
            (LEFT + RIGHT) / 2.0,
            BOTTOM + 42.0,
            escape(&self.x_label)
        );
        let middle = (TOP + BOTTOM) / 2.0;
        let _ = writeln!(
            svg,
            r##"<text x="18" y="{middle:.1}" text-anchor="middle" transform="rotate(-90 18 {middle:.1})" fill="#222222">{}</text>"##,
            escape(&self.y_label)
        );
    }
}

/// Horizontal grid lines and labels at the y axis' ticks.
fn y_grid(svg: &mut String, axis: &Axis) {
    for &tick in &axis.ticks {
        let y = axis.position(tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{RIGHT}" y2="{y:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#333333">{}</text>"##,
            LEFT - 6.0,
            y + 4.0,
            format_number(tick)
        );
    }
}

/// The plot area's left and bottom edges.
fn frame(svg: &mut String) {
    let _ = writeln!(
        svg,
        r##"<polyline points="{LEFT},{TOP} {LEFT},{BOTTOM} {RIGHT},{BOTTOM}" fill="none" stroke="#222222"/>"##
    );
}

/// The `index`-th legend line: a swatch (a square for bars, a line for lines) and the name,
/// wrapped at about 26 characters so long names stay inside the canvas.
fn legend_entry(svg: &mut String, index: usize, name: &str, colour: &str, square: bool) {
    let y = TOP + 8.0 + index as f64 * 40.0;
    if square {
        let _ = writeln!(
            svg,
            r#"<rect x="{LEGEND_X}" y="{:.1}" width="12" height="12" fill="{colour}"/>"#,
            y - 10.0
        );
    } else {
        let _ = writeln!(
            svg,
            r#"<line x1="{LEGEND_X}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="3"/>"#,
            y - 4.0,
            LEGEND_X + 14.0,
            y - 4.0
        );
    }
    for (line, text) in wrap(name, 26).iter().enumerate() {
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" fill="#222222">{}</text>"##,
            LEGEND_X + 20.0,
            y + line as f64 * 14.0,
            escape(text)
        );
    }
}

/// `text` broken at spaces into lines of at most `width` characters (a longer word keeps
/// a line of its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(points: Vec<(f64, f64)>, x_scale: Scale) -> Chart {
        Chart {
            title: "t <&>".into(),
            subtitle: "s".into(),
            commands: vec!["bench <1>".into()],
            x_label: "x".into(),
            y_label: "y".into(),
            marks: Marks::Lines {
                x_scale,
                y_scale: Scale::Linear,
                series: vec![Series {
                    name: "one".into(),
                    points,
                }],
            },
        }
    }

    #[test]
    fn steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(2600.0), 5000.0);
        assert_eq!(nice_step(6.0), 10.0);
    }

    #[test]
    fn a_linear_axis_starts_at_zero_and_covers_the_maximum_with_round_ticks() {
        let axis = Axis::fit(Scale::Linear, &[1200.0, 11_800.0], 0.0, 100.0);
        assert_eq!(axis.low, 0.0);
        assert_eq!(axis.ticks, vec![0.0, 5000.0, 10_000.0, 15_000.0]);
        assert_eq!(axis.position(0.0), 0.0);
        assert_eq!(axis.position(15_000.0), 100.0);
    }

    #[test]
    fn log_axes_tick_at_powers() {
        let axis = Axis::fit(Scale::Log2, &[1.0, 256.0], 0.0, 80.0);
        assert_eq!(
            axis.ticks,
            vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]
        );
        assert_eq!(axis.position(16.0), 40.0);
        let axis = Axis::fit(Scale::Log10, &[3.0, 40.0], 0.0, 100.0);
        assert_eq!(axis.ticks, vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]);
        assert!((axis.position(10.0) - 50.0).abs() < 1e-9);
    }

    #[test]
    fn numbers_read_like_a_report() {
        assert_eq!(format_number(11_734.4), "11,734");
        assert_eq!(format_number(-1_000_000.0), "-1,000,000");
        assert_eq!(format_number(256.0), "256");
        assert_eq!(format_number(12.34), "12.3");
        assert_eq!(format_number(4.567), "4.57");
        assert_eq!(format_number(0.1234), "0.123");
    }

    #[test]
    fn text_is_escaped_and_the_output_is_the_same_every_time() {
        let chart = lines(vec![(1.0, 2.0), (4.0, 8.0)], Scale::Log2);
        let svg = chart.to_svg().expect("draws");
        assert!(svg.contains("<title>t &lt;&amp;&gt;</title>"));
        assert!(svg.contains(
            "<desc>Drawn by plusgate-charts from the results of: bench &lt;1&gt;</desc>"
        ));
        assert!(!svg.contains("t <&>"));
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
        assert_eq!(svg, chart.to_svg().expect("draws again"));
    }

    #[test]
    fn what_cannot_be_drawn_is_an_error_naming_the_chart() {
        assert_eq!(
            lines(vec![], Scale::Linear).to_svg(),
            Err(ChartError::Empty("t <&>".into()))
        );
        assert!(matches!(
            lines(vec![(0.0, 1.0)], Scale::Log2).to_svg(),
            Err(ChartError::NotPositive { value, .. }) if value == 0.0
        ));
        assert!(matches!(
            lines(vec![(1.0, f64::NAN)], Scale::Linear).to_svg(),
            Err(ChartError::NotFinite { .. })
        ));
    }

    #[test]
    fn legend_names_wrap_at_spaces() {
        assert_eq!(
            wrap("RabbitMQ 3.10.8 durable queue, publisher confirms", 26),
            vec!["RabbitMQ 3.10.8 durable", "queue, publisher confirms"]
        );
        assert_eq!(wrap("x", 26), vec!["x"]);
    }
}

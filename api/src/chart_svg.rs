//! Draws a chart as SVG, server-side (`GET /chart/{chartID}/render.svg`):
//! `bar`, `line` or `pie` from the rows of the chart's reports, with a
//! title, axes with tick labels, and a legend. Hand-written SVG (no
//! plotting crate); every piece of text is escaped.
//!
//! How rows become a picture: each row of a report is a category, labelled
//! by its dimension values joined with " / " ("all" without dimensions);
//! each metric of each report is a series (`count` only when the report has
//! no other metric). A pie shows the first series.

use std::fmt::Write;

use serde_json::{Map, Value};

/// The chart's kind, from `config.type` (bar when absent or unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bar,
    Line,
    Pie,
}

impl Kind {
    /// Reads `config.type`; `None` for a value that names no kind.
    pub fn parse(config: &Value) -> Option<Kind> {
        match config.get("type").and_then(Value::as_str) {
            None | Some("bar") => Some(Kind::Bar),
            Some("line") => Some(Kind::Line),
            Some("pie") => Some(Kind::Pie),
            Some(_) => None,
        }
    }
}

/// One report's answer: its metric keys, its dimension keys, its rows.
pub struct ReportRows {
    pub metrics: Vec<String>,
    pub dimensions: Vec<String>,
    pub rows: Vec<Map<String, Value>>,
}

/// A named line of values, one per category (`None` where it has none).
struct Series {
    name: String,
    values: Vec<Option<f64>>,
}

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 450.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 60.0;
const BOTTOM: f64 = 90.0;
const COLORS: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f",
];

/// Escapes text for SVG content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0.
            c if c.is_control() && c != '\t' && c != '\n' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters, with "…" when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// Categories and series from the reports' rows.
fn tabulate(reports: &[ReportRows]) -> (Vec<String>, Vec<Series>) {
    let mut categories: Vec<String> = Vec::new();
    let mut series: Vec<Series> = Vec::new();
    for (index, report) in reports.iter().enumerate() {
        let metrics: Vec<&String> = if report.metrics.len() > 1 {
            report
                .metrics
                .iter()
                .filter(|key| *key != "count")
                .collect()
        } else {
            report.metrics.iter().collect()
        };
        let first = series.len();
        for key in &metrics {
            let name = if reports.len() > 1 {
                format!("{key} (report {})", index + 1)
            } else {
                (*key).clone()
            };
            series.push(Series {
                name,
                values: vec![None; categories.len()],
            });
        }
        for row in &report.rows {
            let label = if report.dimensions.is_empty() {
                "all".to_owned()
            } else {
                report
                    .dimensions
                    .iter()
                    .map(|key| match row.get(key) {
                        Some(Value::String(text)) => text.clone(),
                        Some(Value::Null) | None => "(none)".to_owned(),
                        Some(other) => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(" / ")
            };
            let at = match categories.iter().position(|c| *c == label) {
                Some(at) => at,
                None => {
                    categories.push(label);
                    for line in &mut series {
                        line.values.push(None);
                    }
                    categories.len() - 1
                }
            };
            for (offset, key) in metrics.iter().enumerate() {
                series[first + offset].values[at] = row.get(*key).and_then(Value::as_f64);
            }
        }
    }
    (categories, series)
}

/// "Nice" ticks covering `low..=high`: about five, at 1, 2 or 5 × 10ⁿ.
fn ticks(low: f64, high: f64) -> Vec<f64> {
    let (low, high) = if (high - low).abs() < f64::EPSILON {
        (low.min(0.0), if high == 0.0 { 1.0 } else { high.max(0.0) })
    } else {
        (low, high)
    };
    let raw = (high - low) / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude);
    let start = (low / step).floor() * step;
    let mut out = Vec::new();
    // Up to the first tick at or above `high` (multiples, not sums, so no
    // drift), at most 50.
    for index in 0..50 {
        let value = start + f64::from(index) * step;
        out.push(value);
        if value >= high - step * 1e-9 {
            break;
        }
    }
    out
}

/// A tick or value label: 1.2k, 3.5M, 0.25.
fn number(value: f64) -> String {
    let magnitude = value.abs();
    let (scaled, suffix) = if magnitude >= 1e9 {
        (value / 1e9, "G")
    } else if magnitude >= 1e6 {
        (value / 1e6, "M")
    } else if magnitude >= 1e4 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    let text = format!("{scaled:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    let text = if text == "-0" { "0" } else { text };
    format!("{text}{suffix}")
}

/// The SVG of a chart named `title`.
pub fn render(title: &str, kind: Kind, reports: &[ReportRows]) -> String {
    let (categories, series) = tabulate(reports);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = write!(
        svg,
        r##"<rect width="100%" height="100%" fill="#ffffff"/><text x="{}" y="32" text-anchor="middle" font-size="18" font-weight="bold" fill="#222">{}</text>"##,
        WIDTH / 2.0,
        escape(&shorten(title, 80))
    );
    let has_data = !categories.is_empty()
        && series
            .iter()
            .any(|line| line.values.iter().any(Option::is_some));
    if !has_data {
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="middle" font-size="16" fill="#777">no data</text></svg>"##,
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
        return svg;
    }
    match kind {
        Kind::Pie => pie(&mut svg, &categories, &series[0]),
        Kind::Bar | Kind::Line => axes_chart(&mut svg, kind, &categories, &series),
    }
    svg.push_str("</svg>");
    svg
}

fn legend(svg: &mut String, entries: &[(String, &str)]) {
    let x = WIDTH - RIGHT + 20.0;
    for (index, (name, color)) in entries.iter().enumerate().take(20) {
        let y = TOP + 10.0 + index as f64 * 20.0;
        let _ = write!(
            svg,
            r##"<rect x="{x}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{}" fill="#222">{}</text>"##,
            y - 10.0,
            x + 18.0,
            y,
            escape(&shorten(name, 24))
        );
    }
}

fn axes_chart(svg: &mut String, kind: Kind, categories: &[String], series: &[Series]) {
    let values = series.iter().flat_map(|line| line.values.iter().flatten());
    let (low, high) = values.fold((0.0f64, 0.0f64), |(low, high), v| {
        (low.min(*v), high.max(*v))
    });
    let ticks = ticks(low, high);
    let (axis_low, axis_high) = (ticks[0], ticks[ticks.len() - 1]);
    let span = if axis_high > axis_low {
        axis_high - axis_low
    } else {
        1.0
    };
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let bottom = TOP + plot_height;
    let y_of = |v: f64| bottom - (v - axis_low) / span * plot_height;
    // Grid lines and y tick labels.
    for tick in &ticks {
        let y = y_of(*tick);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{}" y="{:.1}" text-anchor="end" fill="#444">{}</text>"##,
            LEFT + plot_width,
            LEFT - 8.0,
            y + 4.0,
            escape(&number(*tick))
        );
    }
    // Axes.
    let zero = y_of(0.0_f64.clamp(axis_low, axis_high));
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" stroke="#333"/><line x1="{LEFT}" y1="{zero:.1}" x2="{:.1}" y2="{zero:.1}" stroke="#333"/>"##,
        LEFT + plot_width
    );
    let band = plot_width / categories.len() as f64;
    let rotate = categories.len() > 6;
    for (index, label) in categories.iter().enumerate() {
        let x = LEFT + band * (index as f64 + 0.5);
        let text = escape(&shorten(label, if rotate { 16 } else { 24 }));
        if rotate {
            let _ = write!(
                svg,
                r##"<text x="{x:.1}" y="{}" text-anchor="end" fill="#444" transform="rotate(-35 {x:.1} {})">{text}</text>"##,
                bottom + 16.0,
                bottom + 16.0
            );
        } else {
            let _ = write!(
                svg,
                r##"<text x="{x:.1}" y="{}" text-anchor="middle" fill="#444">{text}</text>"##,
                bottom + 18.0
            );
        }
    }
    match kind {
        Kind::Line => {
            for (number, line) in series.iter().enumerate() {
                let color = COLORS[number % COLORS.len()];
                let points: Vec<String> = line
                    .values
                    .iter()
                    .enumerate()
                    .filter_map(|(index, v)| {
                        v.map(|v| {
                            format!("{:.1},{:.1}", LEFT + band * (index as f64 + 0.5), y_of(v))
                        })
                    })
                    .collect();
                let _ = write!(
                    svg,
                    r##"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"##,
                    points.join(" ")
                );
                for point in &points {
                    let (x, y) = point.split_once(',').unwrap_or(("0", "0"));
                    let _ = write!(svg, r##"<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>"##);
                }
            }
        }
        _ => {
            let width = band * 0.8 / series.len() as f64;
            for (number, line) in series.iter().enumerate() {
                let color = COLORS[number % COLORS.len()];
                for (index, value) in line.values.iter().enumerate() {
                    let Some(value) = value else { continue };
                    let x = LEFT + band * index as f64 + band * 0.1 + width * number as f64;
                    let (top, height) = if *value >= 0.0 {
                        (y_of(*value), zero - y_of(*value))
                    } else {
                        (zero, y_of(*value) - zero)
                    };
                    let _ = write!(
                        svg,
                        r##"<rect x="{x:.1}" y="{top:.1}" width="{width:.1}" height="{height:.1}" fill="{color}"><title>{}: {}</title></rect>"##,
                        escape(&categories[index]),
                        escape(&number_text(*value))
                    );
                }
            }
        }
    }
    let entries: Vec<(String, &str)> = series
        .iter()
        .enumerate()
        .map(|(number, line)| (line.name.clone(), COLORS[number % COLORS.len()]))
        .collect();
    legend(svg, &entries);
}

fn number_text(value: f64) -> String {
    number(value)
}

fn pie(svg: &mut String, categories: &[String], series: &Series) {
    let slices: Vec<(usize, f64)> = series
        .values
        .iter()
        .enumerate()
        .filter_map(|(index, v)| v.filter(|v| *v > 0.0).map(|v| (index, v)))
        .collect();
    let total: f64 = slices.iter().map(|(_, v)| v).sum();
    let (cx, cy, r) = (
        (WIDTH - RIGHT) / 2.0,
        TOP + (HEIGHT - TOP - 30.0) / 2.0,
        150.0,
    );
    let mut entries = Vec::new();
    if total <= 0.0 {
        let _ = write!(
            svg,
            r##"<text x="{cx}" y="{cy}" text-anchor="middle" font-size="16" fill="#777">no data</text>"##
        );
        return;
    }
    let mut angle = -std::f64::consts::FRAC_PI_2;
    for (number, (index, value)) in slices.iter().enumerate() {
        let color = COLORS[number % COLORS.len()];
        let sweep = value / total * std::f64::consts::TAU;
        let label = format!(
            "{} — {} ({:.0}%)",
            categories[*index],
            number_text(*value),
            value / total * 100.0
        );
        if slices.len() == 1 {
            let _ = write!(
                svg,
                r##"<circle cx="{cx}" cy="{cy}" r="{r}" fill="{color}"/>"##
            );
        } else {
            let (x1, y1) = (cx + r * angle.cos(), cy + r * angle.sin());
            let end = angle + sweep;
            let (x2, y2) = (cx + r * end.cos(), cy + r * end.sin());
            let large = i32::from(sweep > std::f64::consts::PI);
            let _ = write!(
                svg,
                r##"<path d="M{cx:.1},{cy:.1} L{x1:.1},{y1:.1} A{r},{r} 0 {large} 1 {x2:.1},{y2:.1} Z" fill="{color}" stroke="#fff"><title>{}</title></path>"##,
                escape(&label)
            );
        }
        angle += sweep;
        entries.push((label, color));
    }
    let _ = write!(
        svg,
        r##"<text x="{cx}" y="{}" text-anchor="middle" fill="#444">{}</text>"##,
        cy + r + 24.0,
        escape(&shorten(&series.name, 40))
    );
    legend(svg, &entries);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows(values: Value) -> Vec<Map<String, Value>> {
        values
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row.as_object().unwrap().clone())
            .collect()
    }

    #[test]
    fn ticks_are_nice_and_cover_the_range() {
        assert_eq!(ticks(0.0, 9.0), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let flat = ticks(0.0, 0.0);
        assert_eq!(flat.len(), 6, "{flat:?}");
        assert!(flat[0] == 0.0 && flat[5] >= 1.0, "{flat:?}");
        assert_eq!(ticks(-30.0, 120.0), [-50.0, 0.0, 50.0, 100.0, 150.0]);
        assert_eq!(ticks(0.0, 2000.0), [0.0, 500.0, 1000.0, 1500.0, 2000.0]);
        assert_eq!(number(12_500.0), "12.5k");
        assert_eq!(number(0.25), "0.25");
    }

    #[test]
    fn text_is_escaped_and_empty_data_says_so() {
        let report = ReportRows {
            metrics: vec!["count".into()],
            dimensions: vec!["name".into()],
            rows: rows(json!([{"count": 2, "name": "<b>&\"x'"}])),
        };
        let svg = render("A & B <c>", Kind::Bar, &[report]);
        assert!(svg.contains("A &amp; B &lt;c&gt;"), "{svg}");
        assert!(svg.contains("&lt;b&gt;&amp;&quot;x&apos;"), "{svg}");
        assert!(!svg.contains("<b>"));
        let empty = render("Empty", Kind::Line, &[]);
        assert!(empty.contains(">no data</text>"), "{empty}");
    }
}

//! SVG plots of a result document, drawn with plotters' SVG backend only: throughput over
//! time, latency percentiles over time and the latency distribution.
//!
//! No font is embedded or needed: plotters only estimates text sizes for layout, and the
//! SVG carries `<text>` elements that the browser renders with its own sans-serif font.

use anyhow::anyhow;
use plotters::prelude::*;
use serde_json::Value;

const SIZE: (u32, u32) = (960, 420);

/// One line of a time plot.
struct Series {
    name: &'static str,
    points: Vec<(f64, f64)>,
}

/// Lines from the timeline: `(label, field)` pairs; a field that is never positive is left out.
fn series(doc: &Value, fields: &[(&'static str, &'static str)]) -> Vec<Series> {
    let timeline = doc["timeline"].as_array().cloned().unwrap_or_default();
    fields
        .iter()
        .filter_map(|&(name, field)| {
            let points: Vec<(f64, f64)> =
                timeline.iter().filter_map(|e| Some((e["t"].as_f64()?, e[field].as_f64()?))).collect();
            points.iter().any(|&(_, y)| y > 0.0).then_some(Series { name, points })
        })
        .collect()
}

/// The end of the warm-up in the timeline (s), if it had one.
fn warmup_end(doc: &Value) -> Option<f64> {
    doc["timeline"]
        .as_array()?
        .iter()
        .filter(|e| e["phase"] == "warm-up")
        .filter_map(|e| e["t"].as_f64())
        .reduce(f64::max)
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("plot: {e}")
}

/// A line chart over time; `None` when there is nothing to draw.
fn time_chart(
    title: &str,
    y_desc: &str,
    lines: &[Series],
    warmup: Option<f64>,
) -> anyhow::Result<Option<String>> {
    if lines.is_empty() {
        return Ok(None);
    }
    let x_max = lines.iter().flat_map(|s| s.points.iter().map(|p| p.0)).fold(1.0_f64, f64::max);
    let y_max =
        lines.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0_f64, f64::max).max(1e-3) * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(err)?;
        chart.configure_mesh().x_desc("time since traffic started (s)").y_desc(y_desc).draw().map_err(err)?;
        if let Some(w) = warmup.filter(|&w| w > 0.0) {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, 0.0), (w, y_max)],
                    BLACK.mix(0.07).filled(),
                )))
                .map_err(err)?
                .label("warm-up (not measured)")
                .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], BLACK.mix(0.15).filled()));
        }
        for (i, line) in lines.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(line.points.iter().copied(), color.stroke_width(2)))
                .map_err(err)?
                .label(line.name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(Some(svg))
}

/// Throughput over time: deliveries, sends, connects and history pages per second.
pub fn throughput(doc: &Value) -> anyhow::Result<Option<String>> {
    let lines = series(
        doc,
        &[
            ("deliveries/s", "deliveries_per_sec"),
            ("sends/s", "sends_per_sec"),
            ("connects/s", "connects_per_sec"),
            ("history pages/s", "pages_per_sec"),
        ],
    );
    time_chart("Throughput per second", "per second", &lines, warmup_end(doc))
}

/// Latency percentiles of each second.
pub fn latency(doc: &Value) -> anyhow::Result<Option<String>> {
    let lines = series(
        doc,
        &[
            ("delivery p50", "p50_ms"),
            ("delivery p99", "p99_ms"),
            ("arrival p99", "arrival_p99_ms"),
            ("connect p50", "connect_p50_ms"),
            ("connect p99", "connect_p99_ms"),
            ("history p50", "history_p50_ms"),
            ("history p99", "history_p99_ms"),
        ],
    );
    time_chart("Latency percentiles per second", "latency (ms)", &lines, warmup_end(doc))
}

/// The measured latency distribution: deliveries, or else history requests, or else connects.
pub fn distribution(doc: &Value) -> anyhow::Result<Option<String>> {
    let candidates = [
        ("Delivery latency (measured window)", "results/latency_distribution"),
        ("History request latency (measured window)", "results/history/latency_distribution"),
        ("Connect latency (measured window)", "results/churn/connect_latency_distribution"),
        ("Connect latency", "results/connect_latency_distribution"),
    ];
    let Some((title, bins)) = candidates.iter().find_map(|(title, path)| {
        let bins: Vec<(f64, f64, f64)> = crate::report::get(doc, path)?
            .as_array()?
            .iter()
            .filter_map(|b| Some((b["from_ms"].as_f64()?, b["to_ms"].as_f64()?, b["count"].as_f64()?)))
            .collect();
        bins.iter().any(|b| b.2 > 0.0).then_some((*title, bins))
    }) else {
        return Ok(None);
    };
    let x_max = bins.iter().map(|b| b.1).fold(1e-3, f64::max);
    let y_max = bins.iter().map(|b| b.2).fold(1.0, f64::max) * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("latency (ms); the last bar holds everything above p99.9")
            .y_desc("samples")
            .draw()
            .map_err(err)?;
        let color = Palette99::pick(0).to_rgba();
        chart
            .draw_series(bins.iter().map(|&(from, to, count)| {
                Rectangle::new([(from, 0.0), (to, count)], color.filled().stroke_width(1))
            }))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(Some(svg))
}

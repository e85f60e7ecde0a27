//! Report files of a result document: a Markdown summary and an HTML page with its SVG
//! plots written next to it (`STEM-throughput.svg`, `STEM-latency.svg`,
//! `STEM-distribution.svg`), so the page and its pictures can be committed together and
//! opened in any browser without a server.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::plots;
use crate::report::{cell, get, rows_for};

/// A plot of the report: file-name suffix, heading, renderer.
type Plot = (&'static str, &'static str, fn(&Value) -> anyhow::Result<Option<String>>);

const PLOTS: [Plot; 3] = [
    ("throughput", "Throughput over time", plots::throughput),
    ("latency", "Latency percentiles over time", plots::latency),
    ("distribution", "Latency distribution", plots::distribution),
];

fn ensure_parent(path: &Path) -> anyhow::Result<PathBuf> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn stem(path: &Path) -> String {
    path.file_stem().and_then(|s| s.to_str()).unwrap_or("report").to_string()
}

fn title(doc: &Value) -> String {
    format!(
        "palaver-load {} against {}",
        doc["scenario"].as_str().unwrap_or("?"),
        doc["target"].as_str().unwrap_or("?")
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Writes the HTML report and its SVG files; returns the SVG paths.
pub fn write_html(doc: &Value, path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dir = ensure_parent(path)?;
    let stem = stem(path);
    let mut svgs = Vec::new();
    let mut figures = String::new();
    for (suffix, heading, render) in PLOTS {
        let Some(svg) = render(doc)? else { continue };
        let name = format!("{stem}-{suffix}.svg");
        let file = dir.join(&name);
        std::fs::write(&file, svg)?;
        let _ = writeln!(
            figures,
            "<figure><figcaption>{heading}</figcaption><img src=\"{}\" alt=\"{heading}\" width=\"960\"></figure>",
            escape(&name)
        );
        svgs.push(file);
    }
    let title = title(doc);
    let mut rows = String::new();
    for (label, p) in rows_for(doc) {
        let _ = writeln!(
            rows,
            "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
            escape(label),
            escape(&cell(get(doc, p)))
        );
    }
    if let Some(codes) = get(doc, "results/totals/error_codes").and_then(Value::as_object)
        && !codes.is_empty()
    {
        let _ = writeln!(
            rows,
            "<tr><td>error codes</td><td>{}</td></tr>",
            escape(&Value::Object(codes.clone()).to_string())
        );
    }
    let machine = &doc["machine"];
    let command = doc["command_line"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let html = format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
figure {{ margin: 1.5em 0; }}
figcaption {{ font-weight: bold; margin-bottom: 0.4em; }}
img {{ max-width: 100%; border: 1px solid #eee; }}
pre {{ background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>{date} · server {addr} · {nproc} × {cpu} · {kernel} · load average at start {load}</p>
<p><code>{command}</code></p>
<h2>Summary</h2>
<table>
<tr><th>metric</th><th>value</th></tr>
{rows}</table>
<h2>Plots</h2>
{figures}<h2>Configuration</h2>
<pre>{config}</pre>
<p>Full numbers, including the per-second timeline, are in the JSON result (<code>--out</code>).</p>
</body>
</html>
"#,
        date = escape(doc["date"].as_str().unwrap_or("?")),
        addr = escape(&server_text(doc)),
        nproc = machine["nproc"],
        cpu = escape(machine["cpu_model"].as_str().unwrap_or("?")),
        kernel = escape(machine["kernel"].as_str().unwrap_or("?")),
        load = escape(machine["loadavg"].as_str().unwrap_or("?")),
        command = escape(&command),
        config = escape(&serde_json::to_string_pretty(&doc["config"])?),
    );
    std::fs::write(path, html)?;
    eprintln!("wrote {} and {} plot(s)", path.display(), svgs.len());
    Ok(svgs)
}

/// The server's address, with the node count of a cluster (`ADDR (+2 nodes, nats)`).
fn server_text(doc: &Value) -> String {
    let server = &doc["server"];
    let mut text = server["addr"].as_str().unwrap_or("?").to_string();
    let nodes = server["nodes"].as_u64().unwrap_or(1);
    let nats = !server["nats"].is_null();
    if nodes > 1 || nats {
        text.push_str(&format!(" (cluster of {nodes}{})", if nats { ", NATS" } else { "" }));
    }
    text
}

/// Writes the Markdown summary: the summary table, the per-second timeline, and links to
/// the SVG plots when an HTML report was written too.
pub fn write_markdown(doc: &Value, path: &Path, svgs: Option<&[PathBuf]>) -> anyhow::Result<()> {
    let dir = ensure_parent(path)?;
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", title(doc));
    let machine = &doc["machine"];
    let _ = writeln!(
        md,
        "{} · server {} · {} × {} · {} · load average at start {}\n",
        doc["date"].as_str().unwrap_or("?"),
        server_text(doc),
        machine["nproc"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine["kernel"].as_str().unwrap_or("?"),
        machine["loadavg"].as_str().unwrap_or("?"),
    );
    let _ = writeln!(md, "| metric | value |\n|---|---:|");
    for (label, p) in rows_for(doc) {
        let _ = writeln!(md, "| {label} | {} |", cell(get(doc, p)));
    }
    if let Some(svgs) = svgs {
        md.push('\n');
        for svg in svgs {
            let rel = svg.strip_prefix(&dir).unwrap_or(svg);
            let name = rel.display().to_string();
            let _ = writeln!(md, "![{name}]({name})");
        }
    }
    if let Some(timeline) = doc["timeline"].as_array().filter(|t| !t.is_empty()) {
        let columns: Vec<(&str, &str)> = [
            ("sends/s", "sends_per_sec"),
            ("deliveries/s", "deliveries_per_sec"),
            ("p50 ms", "p50_ms"),
            ("p99 ms", "p99_ms"),
            ("connects/s", "connects_per_sec"),
            ("connect p99 ms", "connect_p99_ms"),
            ("pages/s", "pages_per_sec"),
            ("history p99 ms", "history_p99_ms"),
            ("index backlog", "index_backlog"),
            ("index lag s", "index_lag_secs"),
            ("errors", "errors"),
        ]
        .into_iter()
        .filter(|(_, f)| timeline.iter().any(|e| e[*f].as_f64().is_some_and(|v| v > 0.0)))
        .collect();
        let _ = writeln!(md, "\n## Per second\n");
        let _ = writeln!(
            md,
            "| t (s) | phase | {} |\n|---:|---|{}",
            columns.iter().map(|c| c.0).collect::<Vec<_>>().join(" | "),
            "---:|".repeat(columns.len())
        );
        for e in timeline {
            let values: Vec<String> = columns.iter().map(|(_, f)| cell(e.get(*f))).collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                cell(e.get("t")),
                e["phase"].as_str().unwrap_or(""),
                values.join(" | ")
            );
        }
    }
    std::fs::write(path, md)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

//! `compare`: result files side by side as a Markdown table, each column with its ratio to
//! the first file's value.

use anyhow::Context as _;
use serde_json::Value;

use crate::report::{self, cell, get};

/// Prints the table for `files` (the first is the reference).
pub fn run(files: &[std::path::PathBuf]) -> anyhow::Result<()> {
    let docs: Vec<Value> = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).with_context(|| format!("read {}", f.display()))?;
            serde_json::from_str(&text).with_context(|| format!("parse {}", f.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    let Some(first) = docs.first() else { return Ok(()) };
    let mut header = vec!["metric".to_string()];
    for (doc, file) in docs.iter().zip(files) {
        let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
        header.push(format!(
            "{} ({}, {})",
            doc["target"].as_str().unwrap_or("?"),
            doc["scenario"].as_str().unwrap_or("?"),
            name
        ));
    }
    println!("| {} |", header.join(" | "));
    println!("|{}", "---|".repeat(header.len()));
    // Every row any of the files has, in the first file's order, then the others'.
    let mut rows = report::rows_for(first);
    for doc in &docs[1..] {
        for row in report::rows_for(doc) {
            if !rows.contains(&row) {
                rows.push(row);
            }
        }
    }
    for (label, path) in rows {
        let reference = get(first, path).and_then(Value::as_f64);
        let mut row = vec![label.to_string()];
        for (i, doc) in docs.iter().enumerate() {
            let v = get(doc, path);
            let mut text = cell(v);
            if i > 0
                && let (Some(r), Some(x)) = (reference, v.and_then(Value::as_f64))
                && r != 0.0
            {
                text.push_str(&format!(" ({:.2}×)", x / r));
            }
            row.push(text);
        }
        println!("| {} |", row.join(" | "));
    }
    let dates: Vec<String> = docs.iter().map(|d| d["date"].as_str().unwrap_or("?").to_string()).collect();
    let machine = &first["machine"];
    println!(
        "\nMachine: {} × {}, {}. Runs: {}.",
        machine["nproc"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine["kernel"].as_str().unwrap_or("?"),
        dates.join(", ")
    );
    Ok(())
}

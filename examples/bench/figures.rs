//! One row per measured figure, with its target and whether it was met, and the table that
//! prints them.

use std::fmt::Write as _;

/// Whether a figure meets its target.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// No target: the figure is context.
    Info,
    /// The target is met.
    Met,
    /// The target is missed, with by how much.
    Missed(String),
}

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Figure {
    pub scenario: &'static str,
    pub name: String,
    pub value: String,
    pub target: String,
    pub verdict: Verdict,
}

impl Figure {
    /// A figure without a target.
    pub fn info(scenario: &'static str, name: &str, value: impl Into<String>) -> Figure {
        Figure {
            scenario,
            name: name.to_owned(),
            value: value.into(),
            target: String::new(),
            verdict: Verdict::Info,
        }
    }

    /// A figure that must be at least `target` (`unit` follows both numbers).
    pub fn at_least(
        scenario: &'static str,
        name: &str,
        value: f64,
        target: f64,
        unit: &str,
    ) -> Figure {
        let verdict = if value >= target {
            Verdict::Met
        } else {
            Verdict::Missed(format!("{:.0}% short", (1.0 - value / target) * 100.0))
        };
        Figure {
            scenario,
            name: name.to_owned(),
            value: format!("{} {unit}", number(value)),
            target: format!(">= {} {unit}", number(target)),
            verdict,
        }
    }

    /// A figure that must stay under `target` (`unit` follows both numbers).
    pub fn under(
        scenario: &'static str,
        name: &str,
        value: f64,
        target: f64,
        unit: &str,
    ) -> Figure {
        let verdict = if value < target {
            Verdict::Met
        } else {
            Verdict::Missed(format!("{:.0}% over", (value / target - 1.0) * 100.0))
        };
        Figure {
            scenario,
            name: name.to_owned(),
            value: format!("{} {unit}", number(value)),
            target: format!("< {} {unit}", number(target)),
            verdict,
        }
    }

    /// A figure that must equal `target` exactly.
    pub fn equal(scenario: &'static str, name: &str, value: u64, target: u64) -> Figure {
        let verdict = if value == target {
            Verdict::Met
        } else {
            Verdict::Missed(format!("{value} vs {target}"))
        };
        Figure {
            scenario,
            name: name.to_owned(),
            value: value.to_string(),
            target: format!("= {target} (minimum)"),
            verdict,
        }
    }

    /// A yes/no property that must hold.
    pub fn holds(scenario: &'static str, name: &str, holds: bool, what: &str) -> Figure {
        Figure {
            scenario,
            name: name.to_owned(),
            value: if holds { "yes" } else { "no" }.to_owned(),
            target: what.to_owned(),
            verdict: if holds {
                Verdict::Met
            } else {
                Verdict::Missed("does not hold".to_owned())
            },
        }
    }
}

/// A number with as many decimals as its size deserves.
pub fn number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 100.0 || value == value.trunc() {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 0.1 {
        format!("{value:.2}")
    } else {
        format!("{value:.4}")
    }
}

/// The figures as one plain-text table.
pub fn table(figures: &[Figure]) -> String {
    let header = ["scenario", "figure", "value", "target", "result"];
    let rows: Vec<[String; 5]> = figures
        .iter()
        .map(|f| {
            let result = match &f.verdict {
                Verdict::Info => String::new(),
                Verdict::Met => "met".to_owned(),
                Verdict::Missed(by) => format!("MISSED ({by})"),
            };
            [
                f.scenario.to_owned(),
                f.name.clone(),
                f.value.clone(),
                f.target.clone(),
                result,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[&str]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "| {} |", padded.join(" | "));
    };
    line(&mut out, &header);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let _ = writeln!(out, "|-{}-|", rule.join("-|-"));
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&mut out, &cells);
    }
    out
}

/// The `q`-quantile (0.0..=1.0) of `values` by the nearest-rank rule; `values` sorted.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

//! The side-by-side table: the same scenarios run against several hubs
//! (told apart by `--label`), one row per figure, each hub's value next to
//! the baseline hub's and the ratio of the two.
//!
//! Results pair up by scenario and load, so every hub must have run the
//! scenario with exactly the same options; the protocol may differ (the
//! original speaks only the legacy one, ours both), and each hub and
//! protocol gets its own column.

use crate::report::{medians, ms, number, render, Report};

/// Whether a bigger or a smaller value is the better one, so that a ratio
/// can be read at a glance.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
    Neither,
}

impl Better {
    fn text(self) -> &'static str {
        match self {
            Better::Higher => "higher",
            Better::Lower => "lower",
            Better::Neither => "",
        }
    }

    /// From a figure's unit: rates are better high, times and memory low,
    /// plain counts neither.
    fn of_unit(unit: &str) -> Better {
        if unit.ends_with("/s") || unit.contains("/s ") {
            Better::Higher
        } else if matches!(unit, "s" | "ms" | "KiB" | "MiB" | "MB" | "%") {
            Better::Lower
        } else {
            Better::Neither
        }
    }
}

/// One figure of one scenario, as every column has it.
struct Line {
    figure: String,
    better: Better,
    /// Per column; `None` where that hub has no such figure.
    values: Vec<Option<f64>>,
    /// How to print a value of this figure.
    format: fn(f64) -> String,
}

/// The side-by-side table of `reports` against the hub labelled
/// `baseline`. Repeated runs become medians first.
pub fn comparison(reports: &[Report], baseline: &str, markdown: bool) -> String {
    let merged = medians(reports);
    // Columns: every hub and protocol, the baseline's first.
    let mut columns: Vec<(Option<String>, String)> = Vec::new();
    let baseline_first = merged
        .iter()
        .filter(|r| r.hub.as_deref() == Some(baseline))
        .chain(merged.iter().filter(|r| r.hub.as_deref() != Some(baseline)));
    for report in baseline_first {
        let column = (report.hub.clone(), report.protocol.clone());
        if !columns.contains(&column) {
            columns.push(column);
        }
    }
    let baseline_columns = columns
        .iter()
        .filter(|(hub, _)| hub.as_deref() == Some(baseline))
        .count();
    let name = |(hub, protocol): &(Option<String>, String)| match hub {
        Some(hub) => format!("{hub} {protocol}"),
        None => protocol.clone(),
    };

    let mut header = vec![
        "scenario".to_owned(),
        "load".to_owned(),
        "figure".to_owned(),
        "better".to_owned(),
    ];
    for (c, column) in columns.iter().enumerate() {
        header.push(name(column));
        if c >= baseline_columns && baseline_columns > 0 {
            header.push(format!("{} / {}", name(column), name(&columns[0])));
        }
    }
    let mut rows = vec![header];

    // Scenarios in order of first appearance.
    let mut scenarios: Vec<(&str, &str)> = Vec::new();
    for report in &merged {
        let key = (report.scenario.as_str(), report.load.as_str());
        if !scenarios.contains(&key) {
            scenarios.push(key);
        }
    }
    for (scenario, load) in scenarios {
        let cells: Vec<Option<&Report>> = columns
            .iter()
            .map(|(hub, protocol)| {
                merged.iter().find(|r| {
                    r.scenario == scenario
                        && r.load == load
                        && &r.hub == hub
                        && &r.protocol == protocol
                })
            })
            .collect();
        let runs = cells.iter().flatten().map(|r| r.runs).max().unwrap_or(1);
        let mut label = scenario.to_owned();
        if runs > 1 {
            label.push_str(&format!(" ×{runs}"));
        }
        for (i, line) in lines(&cells).into_iter().enumerate() {
            let mut row = if i == 0 {
                vec![label.clone(), load.to_owned()]
            } else {
                vec![String::new(), String::new()]
            };
            row.push(line.figure.clone());
            row.push(line.better.text().to_owned());
            let base = line.values.first().copied().flatten();
            for (c, value) in line.values.iter().enumerate() {
                row.push(value.map_or("—".to_owned(), line.format));
                if c >= baseline_columns && baseline_columns > 0 {
                    row.push(ratio(*value, base, line.better));
                }
            }
            rows.push(row);
        }
    }
    render(&rows, markdown)
}

/// The figures worth comparing, in a fixed order: throughput, the main
/// latency's p50 and p99, the scenario's own figures, the hub's CPU, and
/// the errors.
fn lines(cells: &[Option<&Report>]) -> Vec<Line> {
    let present = cells.iter().flatten();
    let mut lines = Vec::new();
    if let Some(unit) = present
        .clone()
        .find_map(|r| r.throughput.as_ref().map(|t| t.unit.clone()))
    {
        lines.push(Line {
            figure: format!("throughput ({unit})"),
            better: Better::Higher,
            values: cells
                .iter()
                .map(|r| r.and_then(|r| r.throughput.as_ref()).map(|t| t.achieved))
                .collect(),
            format: number,
        });
    }
    if let Some(name) = present
        .clone()
        .find_map(|r| r.latency.as_ref().map(|l| l.name.clone()))
    {
        for (percentile, pick) in [
            ("p50", (|s| s.p50_ms) as fn(&crate::stats::Summary) -> f64),
            ("p99", |s| s.p99_ms),
        ] {
            lines.push(Line {
                figure: format!("{name} {percentile} (ms)"),
                better: Better::Lower,
                values: cells
                    .iter()
                    .map(|r| r.and_then(|r| r.latency.as_ref()).map(|l| pick(&l.summary)))
                    .collect(),
                format: ms,
            });
        }
    }
    let mut figures: Vec<(String, String)> = Vec::new();
    for report in present.clone() {
        for figure in &report.figures {
            let key = (figure.name.clone(), figure.unit.clone());
            if !figures.contains(&key) {
                figures.push(key);
            }
        }
    }
    for (name, unit) in figures {
        let values: Vec<Option<f64>> = cells
            .iter()
            .map(|r| {
                r.and_then(|r| r.figures.iter().find(|f| f.name == name))
                    .map(|f| f.value)
            })
            .collect();
        // A figure that is nothing everywhere (token minting on hubs
        // without tokens) only lengthens the table.
        if values.iter().flatten().all(|v| v.abs() < 1e-3) {
            continue;
        }
        lines.push(Line {
            figure: if unit.is_empty() {
                name.clone()
            } else {
                format!("{name} ({unit})")
            },
            better: Better::of_unit(&unit),
            values,
            format: number,
        });
    }
    lines.push(Line {
        figure: "hub CPU (% of a core)".to_owned(),
        better: Better::Neither,
        values: cells
            .iter()
            .map(|r| r.and_then(|r| r.hub_cpu_percent))
            .collect(),
        format: |p| format!("{p:.0}"),
    });
    lines.push(Line {
        figure: "errors".to_owned(),
        better: Better::Neither,
        values: cells
            .iter()
            .map(|r| r.map(|r| r.errors.total() as f64))
            .collect(),
        format: number,
    });
    // No hub has it (CPU over a window too short to measure).
    lines.retain(|line| line.values.iter().any(Option::is_some));
    lines
}

/// `value / base`, or a dash where that means nothing. Counts (errors,
/// CPU) get no ratio: "twice the errors" of zero says nothing.
fn ratio(value: Option<f64>, base: Option<f64>, better: Better) -> String {
    match (value, base) {
        (Some(value), Some(base)) if better != Better::Neither && base > 0.0 => {
            let r = value / base;
            if r >= 100.0 {
                format!("{r:.0}×")
            } else if r >= 10.0 {
                format!("{r:.1}×")
            } else if r >= 0.1 || r == 0.0 {
                format!("{r:.2}×")
            } else {
                // Two significant digits however small: 0.0014×, not 0.00×.
                let decimals = (-r.log10()).ceil() as usize + 1;
                format!("{r:.decimals$}×")
            }
        }
        _ => "—".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Throughput;
    use crate::stats::Summary;

    fn dm(hub: &str, protocol: &str, achieved: f64, p99: f64) -> Report {
        let mut report = Report::new("dm", protocol, "2 pairs, 100 msg/s".into());
        report.hub = Some(hub.to_owned());
        report.throughput = Some(Throughput {
            achieved,
            offered: Some(100.0),
            unit: "msg/s".into(),
        });
        report.latency(
            "delivery",
            Some(Summary {
                count: 10,
                p50_ms: p99 / 2.0,
                p90_ms: p99,
                p99_ms: p99,
                max_ms: p99,
                mean_ms: p99 / 2.0,
            }),
        );
        report.figure("drained all in", 2.0, "s");
        report.finish()
    }

    #[test]
    fn each_hub_gets_a_column_and_a_ratio_to_the_baseline() {
        let reports = [
            dm("ours", "legacy", 100.0, 1.0),
            dm("original", "legacy", 50.0, 4.0),
            dm("ours", "v2", 100.0, 2.0),
        ];
        let text = comparison(&reports, "original", true);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with(
                "| scenario | load | figure | better | original legacy | ours legacy | ours legacy / original legacy | ours v2 |"
            ),
            "{text}"
        );
        let throughput = lines.iter().find(|l| l.contains("throughput")).unwrap();
        assert!(
            throughput.contains("| 50 | 100 | 2.00× | 100 | 2.00× |"),
            "{throughput}"
        );
        let p99 = lines.iter().find(|l| l.contains("p99")).unwrap();
        assert!(
            p99.contains("| 0.25× |") && p99.contains("| 0.50× |"),
            "{p99}"
        );
        let errors = lines.iter().find(|l| l.contains("errors")).unwrap();
        assert!(errors.contains("| 0 | 0 | — |"), "{errors}");
    }

    #[test]
    fn small_ratios_keep_two_significant_digits() {
        assert_eq!(ratio(Some(0.014), Some(10.0), Better::Lower), "0.0014×");
        assert_eq!(ratio(Some(0.5), Some(1.0), Better::Lower), "0.50×");
        assert_eq!(ratio(Some(1.0), Some(0.0), Better::Lower), "—");
        assert_eq!(ratio(Some(3.0), Some(1.0), Better::Neither), "—");
    }

    #[test]
    fn a_scenario_the_baseline_did_not_run_has_dashes() {
        let mut other = dm("ours", "v2", 100.0, 1.0);
        other.scenario = "idle".into();
        let text = comparison(
            &[dm("original", "legacy", 50.0, 4.0), other],
            "original",
            false,
        );
        let idle = text.lines().find(|l| l.starts_with("idle")).unwrap();
        assert!(idle.contains('—'), "{text}");
    }
}

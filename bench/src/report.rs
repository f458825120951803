//! One result per scenario run: a line for people, a JSON line for
//! scripts, and a table built from many JSON lines.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::stats::{CpuUse, Errors, Summary};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    /// Which hub was measured (`--label`), when the results of several
    /// hubs are set side by side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub: Option<String>,
    /// How many runs this report summarises (medians of each figure when
    /// more than one; see [`medians`]).
    #[serde(default = "one")]
    pub runs: usize,
    pub protocol: String,
    /// The load offered, in words ("10 pairs, 5000 msg/s, 64 B").
    pub load: String,
    /// No errors of any kind: nothing missing, doubled, out of order,
    /// refused or closed.
    pub ok: bool,
    pub throughput: Option<Throughput>,
    /// The scenario's main latency.
    pub latency: Option<NamedLatency>,
    /// Further latencies (the `sent` confirmation, the generator's own
    /// send lag, ...).
    #[serde(default)]
    pub other_latencies: Vec<NamedLatency>,
    /// Scenario-specific figures (time to register all, KiB per
    /// connection, drain time, ...).
    #[serde(default)]
    pub figures: Vec<Figure>,
    pub errors: Errors,
    /// Percent of one core the generator used during the measurement:
    /// near 100 means the figures may be the generator's limit, not the
    /// hub's.
    pub generator_cpu_percent: Option<f64>,
    pub hub_cpu_percent: Option<f64>,
    /// Percent of one core used by everything else on the machine: noise.
    #[serde(default)]
    pub other_cpu_percent: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Throughput {
    pub achieved: f64,
    pub offered: Option<f64>,
    pub unit: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamedLatency {
    pub name: String,
    #[serde(flatten)]
    pub summary: Summary,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: String,
}

fn one() -> usize {
    1
}

impl Report {
    pub fn new(scenario: &str, protocol: &str, load: String) -> Report {
        Report {
            scenario: scenario.to_owned(),
            hub: None,
            runs: 1,
            protocol: protocol.to_owned(),
            load,
            ok: false,
            throughput: None,
            latency: None,
            other_latencies: Vec::new(),
            figures: Vec::new(),
            errors: Errors::default(),
            generator_cpu_percent: None,
            hub_cpu_percent: None,
            other_cpu_percent: None,
        }
    }

    pub fn latency(&mut self, name: &str, summary: Option<Summary>) {
        self.latency = summary.map(|summary| NamedLatency {
            name: name.to_owned(),
            summary,
        });
    }

    pub fn other_latency(&mut self, name: &str, summary: Option<Summary>) {
        if let Some(summary) = summary {
            self.other_latencies.push(NamedLatency {
                name: name.to_owned(),
                summary,
            });
        }
    }

    pub fn figure(&mut self, name: &str, value: f64, unit: &str) {
        self.figures.push(Figure {
            name: name.to_owned(),
            value,
            unit: unit.to_owned(),
        });
    }

    pub fn cpu(&mut self, cpu: CpuUse) {
        self.generator_cpu_percent = cpu.generator;
        self.hub_cpu_percent = cpu.hub;
        self.other_cpu_percent = cpu.other;
    }

    /// Sets `ok` from the errors; call last.
    pub fn finish(mut self) -> Report {
        self.ok = self.errors.total() == 0;
        self
    }

    /// One line for people.
    pub fn human(&self) -> String {
        let mut line = format!("{} [{}] {}:", self.scenario, self.variant(), self.load);
        if let Some(throughput) = &self.throughput {
            let _ = write!(line, " {} {}", number(throughput.achieved), throughput.unit);
            if let Some(offered) = throughput.offered {
                let _ = write!(line, " (offered {})", number(offered));
            }
            line.push(';');
        }
        for latency in self.latency.iter().chain(&self.other_latencies) {
            let s = &latency.summary;
            let _ = write!(
                line,
                " {} p50 {} p90 {} p99 {} max {} ms (n={});",
                latency.name,
                ms(s.p50_ms),
                ms(s.p90_ms),
                ms(s.p99_ms),
                ms(s.max_ms),
                s.count
            );
        }
        for figure in &self.figures {
            let _ = write!(
                line,
                " {} {} {};",
                figure.name,
                number(figure.value),
                figure.unit
            );
        }
        let _ = write!(line, " errors {}", self.errors.total());
        if !self.errors.0.is_empty() {
            let kinds: Vec<String> = self
                .errors
                .0
                .iter()
                .map(|(kind, count)| format!("{kind}={count}"))
                .collect();
            let _ = write!(line, " ({})", kinds.join(", "));
        }
        let _ = write!(line, "; cpu gen/hub/other {}", cpu_text(self));
        line.push_str(if self.ok { "; OK" } else { "; FAILED" });
        line
    }

    /// The hub (if labelled) and the protocol: "original legacy", "v2".
    pub fn variant(&self) -> String {
        match &self.hub {
            Some(hub) => format!("{hub} {}", self.protocol),
            None => self.protocol.clone(),
        }
    }

    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("reports serialize")
    }

    fn row(&self) -> Vec<String> {
        let (p50, p90, p99, max) = match &self.latency {
            Some(l) => (
                ms(l.summary.p50_ms),
                ms(l.summary.p90_ms),
                ms(l.summary.p99_ms),
                ms(l.summary.max_ms),
            ),
            None => Default::default(),
        };
        let mut notes: Vec<String> = self
            .figures
            .iter()
            .map(|f| format!("{} {} {}", f.name, number(f.value), f.unit))
            .collect();
        for latency in &self.other_latencies {
            notes.push(format!(
                "{} p50/p99 {}/{} ms",
                latency.name,
                ms(latency.summary.p50_ms),
                ms(latency.summary.p99_ms)
            ));
        }
        let runs = if self.runs > 1 {
            format!(" ×{}", self.runs)
        } else {
            String::new()
        };
        vec![
            format!("{} [{}]{runs}", self.scenario, self.variant()),
            self.load.clone(),
            self.throughput
                .as_ref()
                .map(|t| format!("{} {}", number(t.achieved), t.unit))
                .unwrap_or_default(),
            self.latency
                .as_ref()
                .map(|l| l.name.clone())
                .unwrap_or_default(),
            p50,
            p90,
            p99,
            max,
            if self.ok {
                "0".to_owned()
            } else {
                self.errors.total().max(1).to_string()
            },
            cpu_text(self),
            notes.join("; "),
        ]
    }
}

const HEADER: [&str; 11] = [
    "scenario",
    "load",
    "throughput",
    "latency of",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    "errors",
    "cpu gen/hub/other",
    "notes",
];

/// Reports of the same hub, scenario, protocol and load (repeated runs) merged
/// into one each, in order of first appearance: every figure is the median
/// over the runs, sample counts and errors are added up, and the result is
/// OK only if every run was. These machines are noisy; one run proves
/// little.
pub fn medians(reports: &[Report]) -> Vec<Report> {
    let mut groups: Vec<Vec<&Report>> = Vec::new();
    for report in reports {
        let key = |r: &Report| {
            (
                r.hub.clone(),
                r.scenario.clone(),
                r.protocol.clone(),
                r.load.clone(),
            )
        };
        match groups.iter_mut().find(|g| key(g[0]) == key(report)) {
            Some(group) => group.push(report),
            None => groups.push(vec![report]),
        }
    }
    groups.iter().map(|group| merge(group)).collect()
}

fn merge(group: &[&Report]) -> Report {
    let mut merged = group[0].clone();
    merged.runs = group.iter().map(|r| r.runs).sum();
    if let Some(throughput) = &mut merged.throughput {
        throughput.achieved = median(
            group
                .iter()
                .filter_map(|r| r.throughput.as_ref().map(|t| t.achieved)),
        )
        .unwrap_or(throughput.achieved);
    }
    let latency_named = |name: &str| -> Option<Summary> {
        let all: Vec<&Summary> = group
            .iter()
            .flat_map(|r| r.latency.iter().chain(&r.other_latencies))
            .filter(|l| l.name == name)
            .map(|l| &l.summary)
            .collect();
        median_summary(&all)
    };
    for latency in merged.latency.iter_mut().chain(&mut merged.other_latencies) {
        if let Some(summary) = latency_named(&latency.name) {
            latency.summary = summary;
        }
    }
    for figure in &mut merged.figures {
        let values = group
            .iter()
            .flat_map(|r| &r.figures)
            .filter(|f| f.name == figure.name)
            .map(|f| f.value);
        figure.value = median(values).unwrap_or(figure.value);
    }
    merged.errors = Errors::default();
    for report in group {
        merged.errors.merge(&report.errors);
    }
    merged.ok = group.iter().all(|r| r.ok);
    merged.generator_cpu_percent = median(group.iter().filter_map(|r| r.generator_cpu_percent));
    merged.hub_cpu_percent = median(group.iter().filter_map(|r| r.hub_cpu_percent));
    merged.other_cpu_percent = median(group.iter().filter_map(|r| r.other_cpu_percent));
    merged
}

pub(crate) fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    })
}

/// Each percentile's median; the sample counts added up.
fn median_summary(summaries: &[&Summary]) -> Option<Summary> {
    let of = |field: fn(&Summary) -> f64| median(summaries.iter().map(|s| field(s)));
    Some(Summary {
        count: summaries.iter().map(|s| s.count).sum(),
        p50_ms: of(|s| s.p50_ms)?,
        p90_ms: of(|s| s.p90_ms)?,
        p99_ms: of(|s| s.p99_ms)?,
        max_ms: of(|s| s.max_ms)?,
        mean_ms: of(|s| s.mean_ms)?,
    })
}

/// One table of many results, aligned text or Markdown.
pub fn table(reports: &[Report], markdown: bool) -> String {
    let rows: Vec<Vec<String>> = std::iter::once(HEADER.iter().map(|h| h.to_string()).collect())
        .chain(reports.iter().map(Report::row))
        .collect();
    render(&rows, markdown)
}

/// Rows (the first one the header, all of the same length) as Markdown or
/// as aligned text.
pub(crate) fn render(rows: &[Vec<String>], markdown: bool) -> String {
    let mut out = String::new();
    if markdown {
        for (i, row) in rows.iter().enumerate() {
            let _ = writeln!(out, "| {} |", row.join(" | "));
            if i == 0 {
                let _ = writeln!(out, "|{}", "---|".repeat(row.len()));
            }
        }
        return out;
    }
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

fn cpu_text(report: &Report) -> String {
    let percent = |p: Option<f64>| p.map_or("?".to_owned(), |p| format!("{p:.0}%"));
    format!(
        "{}/{}/{}",
        percent(report.generator_cpu_percent),
        percent(report.hub_cpu_percent),
        percent(report.other_cpu_percent)
    )
}

/// Milliseconds with precision that suits the size.
pub(crate) fn ms(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.3}")
    } else if value < 1000.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

/// A count or rate, without false precision.
pub(crate) fn number(value: f64) -> String {
    if value.abs() >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut report = Report::new("dm", "v2", "2 pairs, 100 msg/s, 64 B".into());
        report.throughput = Some(Throughput {
            achieved: 99.5,
            offered: Some(100.0),
            unit: "msg/s".into(),
        });
        report.latency(
            "delivery",
            Some(Summary {
                count: 100,
                p50_ms: 0.4,
                p90_ms: 0.8,
                p99_ms: 1.5,
                max_ms: 2.0,
                mean_ms: 0.5,
            }),
        );
        report.figure("drain", 0.25, "s");
        report.finish()
    }

    #[test]
    fn reports_round_trip_through_json() {
        let report = sample();
        assert!(report.ok);
        let back: Report = serde_json::from_str(&report.json()).unwrap();
        assert_eq!(back.latency.unwrap().summary.p99_ms, 1.5);
        assert!(report.human().contains("delivery p50 0.400"));
        assert!(report.human().ends_with("OK"));
    }

    #[test]
    fn repeated_runs_become_medians() {
        let mut runs = vec![sample(), sample(), sample()];
        for (run, p99) in runs.iter_mut().zip([1.0, 9.0, 2.0]) {
            run.latency.as_mut().unwrap().summary.p99_ms = p99;
        }
        runs[1].errors.add("missing", 2);
        runs[1].ok = false;
        let mut other = sample();
        other.protocol = "legacy".into();
        runs.push(other);
        let merged = medians(&runs);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].runs, 3);
        assert_eq!(merged[0].latency.as_ref().unwrap().summary.p99_ms, 2.0);
        assert_eq!(merged[0].latency.as_ref().unwrap().summary.count, 300);
        assert_eq!(merged[0].errors.total(), 2);
        assert!(!merged[0].ok);
        assert!(merged[1].ok);
        assert!(table(&merged, false).contains("dm [v2] ×3"));
    }

    #[test]
    fn tables_have_a_row_per_report() {
        let text = table(&[sample(), sample()], false);
        assert_eq!(text.lines().count(), 3);
        let markdown = table(&[sample()], true);
        assert_eq!(markdown.lines().count(), 3);
        assert!(markdown.lines().nth(1).unwrap().starts_with("|---|"));
    }
}

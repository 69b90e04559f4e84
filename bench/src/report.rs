//! Markdown tables, goals, and the figures they are computed from.

use crate::procs::Usage;

/// A markdown table.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Prints the table and a blank line.
    pub fn print(&self) {
        println!("| {} |", self.header.join(" | "));
        println!("|{}", "---|".repeat(self.header.len()));
        for row in &self.rows {
            println!("| {} |", row.join(" | "));
        }
        println!();
    }
}

/// One goal and whether this run met it.
#[derive(Debug, Clone)]
pub struct Goal {
    pub scenario: String,
    pub goal: String,
    pub measured: String,
    pub met: bool,
}

impl Goal {
    /// A goal of `scenario`.
    pub fn new(scenario: &str, goal: &str, measured: String, met: bool) -> Self {
        Self {
            scenario: scenario.to_owned(),
            goal: goal.to_owned(),
            measured,
            met,
        }
    }

    /// A goal that `rate` is at least `at_least` × `base` (events/s).
    pub fn rate_ratio(scenario: &str, goal: &str, rate: f64, base: f64, at_least: f64) -> Self {
        let ratio = if base > 0.0 { rate / base } else { 0.0 };
        Self::new(
            scenario,
            goal,
            format!(
                "{} vs {} events/s = {ratio:.2}",
                thousands(rate),
                thousands(base)
            ),
            ratio >= at_least,
        )
    }

    /// "met" or "not met".
    pub fn verdict(&self) -> &'static str {
        if self.met { "met" } else { "not met" }
    }
}

/// Prints goals as a table.
pub fn print_goals(goals: &[Goal]) {
    let mut table = Table::new(&["scenario", "goal", "measured", "verdict"]);
    for goal in goals {
        table.row(vec![
            goal.scenario.clone(),
            goal.goal.clone(),
            goal.measured.clone(),
            goal.verdict().to_owned(),
        ]);
    }
    table.print();
}

/// The 64 MiB goal on every Herald process.
pub const RSS_LIMIT_KIB: u64 = 64 * 1024;

/// Prints the processes' peak RSS and CPU seconds (in all, and within the
/// measured window, also per event when `events` is known), and returns the
/// RSS goal when there is a Herald process.
pub fn print_usage(
    scenario: &str,
    phase: &str,
    usages: &[Usage],
    events: Option<u64>,
) -> Option<Goal> {
    println!("Processes, {phase}:\n");
    let mut table = Table::new(&[
        "process",
        "peak RSS (VmHWM)",
        "CPU s (user+sys)",
        "CPU s in the measured window",
        "CPU µs per event",
        "≤ 64 MiB",
    ]);
    let mut worst: Option<&Usage> = None;
    for usage in usages {
        let verdict = if !usage.herald {
            "(not Herald)"
        } else if usage.peak_rss_kib <= RSS_LIMIT_KIB {
            "met"
        } else {
            "not met"
        };
        #[allow(clippy::cast_precision_loss)]
        let per_event = match (usage.window_cpu, events) {
            (Some(cpu), Some(n)) if n > 0 => format!("{:.0}", cpu * 1e6 / n as f64),
            _ => "-".to_owned(),
        };
        table.row(vec![
            usage.name.clone(),
            mib(usage.peak_rss_kib),
            format!("{:.1}", usage.cpu_seconds),
            usage
                .window_cpu
                .map_or("-".to_owned(), |c| format!("{c:.1}")),
            per_event,
            verdict.to_owned(),
        ]);
        if usage.herald && worst.is_none_or(|w| usage.peak_rss_kib > w.peak_rss_kib) {
            worst = Some(usage);
        }
    }
    table.print();
    let worst = worst?;
    Some(Goal::new(
        scenario,
        &format!("peak RSS of every Herald process ≤ 64 MiB ({phase})"),
        format!("{}: {}", worst.name, mib(worst.peak_rss_kib)),
        worst.peak_rss_kib <= RSS_LIMIT_KIB,
    ))
}

/// `12.3 MiB` (`-` for nothing measured).
pub fn mib(kib: u64) -> String {
    if kib == 0 {
        return "-".to_owned();
    }
    #[allow(clippy::cast_precision_loss)]
    let mib = kib as f64 / 1024.0;
    format!("{mib:.1} MiB")
}

/// Events per second over a span of nanoseconds.
pub fn rate(count: u64, from_ns: u64, to_ns: u64) -> f64 {
    let seconds = secs(to_ns.saturating_sub(from_ns));
    #[allow(clippy::cast_precision_loss)]
    let count = count as f64;
    if seconds > 0.0 { count / seconds } else { 0.0 }
}

/// Nanoseconds as seconds.
pub fn secs(ns: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let ns = ns as f64;
    ns / 1e9
}

/// `12,345`.
pub fn thousands(value: f64) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let mut n = value.max(0.0).round() as u64;
    let mut groups = Vec::new();
    loop {
        if n < 1000 {
            groups.push(n.to_string());
            break;
        }
        groups.push(format!("{:03}", n % 1000));
        n /= 1000;
    }
    groups.reverse();
    groups.join(",")
}

/// The `q` quantile (0..=1) of sorted values.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Nanoseconds as milliseconds, `12.34 ms`.
pub fn ms(ns: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let ms = ns as f64 / 1e6;
    format!("{ms:.2} ms")
}

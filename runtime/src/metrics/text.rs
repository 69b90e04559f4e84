//! The two text formats of `/metrics`. prometheus-client writes OpenMetrics
//! 1.0; scrapers that do not ask for it (and `promtool check metrics`) read
//! the Prometheus text format 0.0.4, which differs in the names it gives
//! families and in what it may hold:
//!
//! - a counter family is named after its samples (`x_total`), not `x`;
//! - an `info` family is a gauge named `x_info`, `unknown` is `untyped`;
//! - there is no `# UNIT`, no `# EOF`, no `_created` sample and no exemplar.
//!
//! Samples, label escaping and numbers are the same in both.

/// The content type of the Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The content type of OpenMetrics text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether a request's `Accept` header prefers OpenMetrics: it names
/// `application/openmetrics-text` with a quality above zero and at least
/// that of any `text/plain` it names. Without the header, or with anything
/// else, the Prometheus text format is served.
#[must_use]
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let (mut openmetrics, mut plain): (Option<f64>, Option<f64>) = (None, None);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let quality = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .and_then(|(_, v)| v.trim().parse::<f64>().ok())
            .unwrap_or(1.0);
        let slot = match media.as_str() {
            "application/openmetrics-text" => &mut openmetrics,
            "text/plain" => &mut plain,
            _ => continue,
        };
        *slot = Some(slot.map_or(quality, |q: f64| q.max(quality)));
    }
    match openmetrics {
        Some(q) if q > 0.0 => plain.is_none_or(|p| q >= p),
        _ => false,
    }
}

/// Rewrites an OpenMetrics exposition as the Prometheus text format 0.0.4.
#[must_use]
pub fn to_prometheus(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // A family's HELP comes before its TYPE, which decides its name.
    let mut help: Option<(&str, &str)> = None;
    let mut counter: Option<&str> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (exposed, kind) = match kind {
                "counter" => (with_suffix(name, "_total"), "counter"),
                "info" => (with_suffix(name, "_info"), "gauge"),
                "gauge" | "histogram" | "summary" => (name.to_owned(), kind),
                _ => (name.to_owned(), "untyped"),
            };
            counter = (kind == "counter").then_some(name);
            if let Some((help_name, text)) = help.take()
                && help_name == name
            {
                out.push_str(&format!("# HELP {exposed} {}\n", escape_help(text)));
            }
            out.push_str(&format!("# TYPE {exposed} {kind}\n"));
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            // `# UNIT`, `# EOF`, other comments.
            continue;
        }
        let sample = without_exemplar(line);
        if let Some(family) = counter
            && sample
                .split(['{', ' '])
                .next()
                .is_some_and(|n| n.strip_prefix(family) == Some("_created"))
        {
            continue;
        }
        out.push_str(sample);
        out.push('\n');
    }
    out
}

fn with_suffix(name: &str, suffix: &str) -> String {
    if name.ends_with(suffix) {
        name.to_owned()
    } else {
        format!("{name}{suffix}")
    }
}

/// HELP text as format 0.0.4 escapes it (a backslash and a line feed).
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample line without its exemplar (` # {...} value`), found after the
/// labels so that a `#` inside a label value is left alone.
fn without_exemplar(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut i = 0;
    // The name, then the labels with their quoted values.
    while i < bytes.len() && bytes[i] != b'{' && bytes[i] != b' ' {
        i += 1;
    }
    if i < bytes.len() && bytes[i] == b'{' {
        let mut quoted = false;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b'}' if !quoted => break,
                _ => {}
            }
            i += 1;
        }
    }
    match line[i.min(line.len())..].find(" # ") {
        Some(at) => &line[..i + at],
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_after_their_samples_and_openmetrics_only_lines_go() {
        let openmetrics = "# HELP a_events Events.\n# TYPE a_events counter\n\
            a_events_total{reason=\"x # {y}\"} 3 # {trace_id=\"1\"} 1.0\na_events_created 17.5\n\
            # HELP a_up Up.\n# TYPE a_up gauge\n# UNIT a_up seconds\na_up 1\n\
            # HELP a_build Build.\n# TYPE a_build info\na_build_info{v=\"1\"} 1\n\
            # HELP a_odd Odd \\ one.\n# TYPE a_odd unknown\na_odd 2\n# EOF\n";
        assert_eq!(
            to_prometheus(openmetrics),
            "# HELP a_events_total Events.\n# TYPE a_events_total counter\n\
             a_events_total{reason=\"x # {y}\"} 3\n\
             # HELP a_up Up.\n# TYPE a_up gauge\na_up 1\n\
             # HELP a_build_info Build.\n# TYPE a_build_info gauge\na_build_info{v=\"1\"} 1\n\
             # HELP a_odd Odd \\\\ one.\n# TYPE a_odd untyped\na_odd 2\n"
        );
    }

    #[test]
    fn histograms_keep_their_names() {
        let openmetrics = "# HELP h Seconds.\n# TYPE h histogram\nh_sum 1.5\nh_count 2\n\
            h_bucket{le=\"1.0\"} 1\nh_bucket{le=\"+Inf\"} 2\n# EOF\n";
        assert_eq!(
            to_prometheus(openmetrics),
            "# HELP h Seconds.\n# TYPE h histogram\nh_sum 1.5\nh_count 2\n\
             h_bucket{le=\"1.0\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
        );
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        for (accept, openmetrics) in [
            (None, false),
            (Some("*/*"), false),
            (Some("text/plain"), false),
            (Some("text/plain;version=0.0.4"), false),
            (Some("application/openmetrics-text"), true),
            (Some("application/openmetrics-text; version=1.0.0"), true),
            // What Prometheus sends by default.
            (
                Some(
                    "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
                ),
                true,
            ),
            // Prometheus with `scrape_protocols: [PrometheusText0.0.4]`.
            (Some("text/plain;version=0.0.4;q=1.0,*/*;q=0.1"), false),
            (
                Some("text/plain;q=0.9,application/openmetrics-text;q=0.5"),
                false,
            ),
            (Some("application/openmetrics-text;q=0"), false),
        ] {
            assert_eq!(wants_openmetrics(accept), openmetrics, "{accept:?}");
        }
    }
}

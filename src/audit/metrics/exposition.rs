//! The two text formats `/metrics` speaks: OpenMetrics 1.0, which
//! `prometheus-client` writes, and the Prometheus text format 0.0.4 made from
//! it for scrapers that do not ask for OpenMetrics.

use std::collections::HashSet;

/// OpenMetrics text as the Prometheus text format 0.0.4: a counter family
/// `x` is HELP/TYPE'd as `x_total` there (its samples already are), and
/// `# UNIT` / `# EOF` do not exist.
pub(super) fn to_text_004(om: &str) -> String {
    let counters: HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Whether the scraper asked for OpenMetrics (its `Accept` header).
pub(super) fn wants_openmetrics(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

#[cfg(test)]
mod tests {
    use super::super::Metrics;

    #[test]
    fn text_004_names_counters_with_total_and_has_no_eof_or_unit() {
        let m = Metrics::new();
        m.register_server("fs");
        let om = m.encode(true);
        assert!(
            om.contains("# TYPE gavel_upstream_restarts counter"),
            "{om}"
        );
        assert!(om.trim_end().ends_with("# EOF"));
        let t = m.encode(false);
        assert!(
            t.contains("# TYPE gavel_upstream_restarts_total counter"),
            "{t}"
        );
        assert!(
            t.contains("# HELP gavel_upstream_restarts_total Restarts"),
            "{t}"
        );
        assert!(
            t.contains(r#"gavel_upstream_restarts_total{server="fs"} 0"#),
            "{t}"
        );
        assert!(t.contains("# TYPE gavel_upstream_up gauge"), "{t}");
        assert!(!t.contains("# EOF") && !t.contains("# UNIT"), "{t}");
    }
}

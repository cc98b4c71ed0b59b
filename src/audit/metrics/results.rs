//! Result decisions' series (`decision::result`, docs/policy.md "Result
//! policy"): result decisions by server, tool and outcome (`pass`,
//! `modified`, `deny`, `error`), pattern matches and pointers redacted by
//! rule, and items dropped by rule — what `gavel report` counts from the
//! log, live.
//!
//! Labels stay bounded: tools as the decisions' (the first
//! `MAX_TOOLS` pairs), rules are the bundles' result and per-item rules,
//! a pattern is a name its bundle declares (at most 64 per bundle) and
//! every pointer counts as `pointer`; item kinds are four.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultL {
    server: String,
    tool: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RedactionL {
    server: String,
    rule: String,
    redaction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FilteredL {
    server: String,
    rule: String,
    items: String,
}

#[derive(Default)]
pub(super) struct ResultMetrics {
    decisions: Family<ResultL, Counter>,
    redactions: Family<RedactionL, Counter>,
    filtered: Family<FilteredL, Counter>,
}

impl ResultMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "result_decisions",
            "Result decisions (an upstream's answer through the result rules, resource lists included) by server, tool and outcome: pass, modified (something redacted or filtered), deny, error (withheld: a rule failed or the record could not be written)",
            self.decisions.clone(),
        );
        registry.register(
            "result_redactions",
            "Pattern matches and JSON pointers redacted from results, by server, result rule and redaction (the pattern's name, or pointer)",
            self.redactions.clone(),
        );
        registry.register(
            "result_items_filtered",
            "Items dropped from results by a per-item rule, by server, rule and item kind (content, lines, tree, structured)",
            self.filtered.clone(),
        );
    }
}

impl Metrics {
    /// One result decision and its outcome.
    pub fn result_decision(&self, server: &str, tool: &str, outcome: &'static str) {
        let tool = self.tool_label(server, tool);
        self.results
            .decisions
            .get_or_create(&ResultL {
                server: server.into(),
                tool,
                outcome,
            })
            .inc();
    }

    /// `n` redactions (pattern matches, or a pointer's value) by `rule`.
    /// The series is created even at 0: a rule that asks and finds nothing
    /// is visible too.
    pub fn result_redactions(&self, server: &str, rule: &str, redaction: &str, n: u64) {
        let c = self.results.redactions.get_or_create(&RedactionL {
            server: server.into(),
            rule: rule.into(),
            redaction: redaction.into(),
        });
        c.inc_by(n);
    }

    /// `n` items of kind `items` dropped by the per-item rule `rule`.
    pub fn result_filtered(&self, server: &str, rule: &str, items: &str, n: u64) {
        let c = self.results.filtered.get_or_create(&FilteredL {
            server: server.into(),
            rule: rule.into(),
            items: items.into(),
        });
        c.inc_by(n);
    }
}

#[cfg(test)]
mod tests {
    use super::super::Metrics;

    #[test]
    fn result_series_count_outcomes_redactions_and_dropped_items() {
        let m = Metrics::new();
        m.result_decision("fs", "read", "modified");
        m.result_decision("fs", "read", "modified");
        m.result_decision("fs", "resources/list", "error");
        m.result_redactions("fs", "data.p.result", "email", 3);
        m.result_redactions("fs", "data.p.result", "pointer", 0);
        m.result_filtered("fs", "data.p.result_item", "lines", 2);
        m.result_filtered("fs", "data.p.result_item", "lines", 1);
        let text = m.encode(true);
        for line in [
            r#"gavel_result_decisions_total{server="fs",tool="read",outcome="modified"} 2"#,
            r#"gavel_result_decisions_total{server="fs",tool="resources/list",outcome="error"} 1"#,
            r#"gavel_result_redactions_total{server="fs",rule="data.p.result",redaction="email"} 3"#,
            r#"gavel_result_redactions_total{server="fs",rule="data.p.result",redaction="pointer"} 0"#,
            r#"gavel_result_items_filtered_total{server="fs",rule="data.p.result_item",items="lines"} 3"#,
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
    }
}

//! The plain-text replay report.

use super::{MAX_LINE_BYTES, Summary};

/// Plain-text report. Tool names, reasons and bundle names come from the
/// log (agent and bundle text): each line is escaped so none of them can
/// forge a line or send escape sequences to the terminal.
pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    let mut line = |l: String| {
        out.push_str(&crate::text::escape_controls(&l));
        out.push('\n');
    };
    line(format!("replayed {} decision records", s.total));
    line(format!("  unchanged          {}", s.unchanged));
    line(format!("  allow → deny       {}", s.allow_to_deny));
    line(format!("  deny → allow       {}", s.deny_to_allow));
    line(format!(
        "  reasons changed    {} (still denied)",
        s.reasons_changed
    ));
    let nr: u64 = s.not_replayable.values().sum();
    let why: Vec<String> = s
        .not_replayable
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    line(format!(
        "  not replayable     {nr}{}",
        if why.is_empty() {
            String::new()
        } else {
            format!(" ({})", why.join(", "))
        }
    ));
    line(format!("  gavel-side (static rules) {}", s.gavel_side));
    if s.approval_added + s.approval_removed > 0 {
        line(format!(
            "  approval added     {} / removed {} (still allowed)",
            s.approval_added, s.approval_removed
        ));
    }
    if s.other_persona > 0 {
        line(format!("  other personas (skipped) {}", s.other_persona));
    }
    if s.other_server > 0 {
        line(format!("  other servers (skipped) {}", s.other_server));
    }
    if s.malformed > 0 {
        let lines: Vec<String> = s.malformed_lines.iter().map(u64::to_string).collect();
        line(format!(
            "  malformed lines    {} (lines {}){}",
            s.malformed,
            lines.join(", "),
            if s.too_long > 0 {
                format!(", {} over {} MiB", s.too_long, MAX_LINE_BYTES >> 20)
            } else {
                String::new()
            }
        ));
    }
    for (title, groups) in [
        ("flips by tool", &s.by_tool),
        ("flips by reason", &s.by_reason),
        ("approval changes", &s.by_approval),
    ] {
        if groups.is_empty() {
            continue;
        }
        line(format!("{title}:"));
        for (k, g) in groups {
            line(format!(
                "  {k}  {}  e.g. {}",
                g.count,
                g.examples.join(", ")
            ));
        }
    }
    super::results::render(&s.results, &mut line);
    if !s.logged_revisions.is_empty() {
        let revs: Vec<String> = s
            .logged_revisions
            .iter()
            .map(|(b, r)| format!("{b}@{}", r.join("|")))
            .collect();
        line(format!("logged with: {}", revs.join(", ")));
    }
    out
}

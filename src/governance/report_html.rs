//! The report as one self-contained HTML page: inline CSS and SVG, no
//! script, no external reference of any kind, so it opens offline, from a
//! mail attachment or a CI artifact, exactly as written.
//!
//! Every figure carries a stable `id` or `data-*` attribute holding the exact
//! number (the text shown may be rounded), so tests and scripts can read the
//! page. Every string from the log is escaped: tool names and reasons come
//! from agents and policies and must never become markup.

use std::fmt::Write as _;

use super::report::{Report, Split};
use super::report_trail::{Recent, Trail};

/// HTML-escapes text and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn ms(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else {
        format!("{:.1} µs", ns as f64 / 1e3)
    }
}

fn utc(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

const CSS: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px}
.muted{color:#59636e}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{background:#fff;border:1px solid #d1d9e0;border-radius:8px;padding:12px 16px;min-width:140px}
.card .v{font-size:24px;font-weight:600}
section{background:#fff;border:1px solid #d1d9e0;border-radius:8px;padding:14px 16px;margin-top:12px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef1f4}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.bar{display:inline-block;height:10px;background:#cf222e;border-radius:2px;vertical-align:middle}
.allow{fill:#1a7f37}.deny{fill:#cf222e}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}
td,th,code{overflow-wrap:anywhere}
details summary{cursor:pointer;color:#0969da}details code{display:block}
"#;

/// Renders the whole page.
pub fn render(r: &Report) -> String {
    let mut h = String::with_capacity(32 << 10);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<link rel=\"icon\" href=\"data:,\">\
<title>gavel decision report</title><style>{CSS}</style></head><body><main>"
    );
    let _ = write!(
        h,
        "<h1>gavel decision report</h1><p class=\"muted\">Log <code id=\"source\">{}</code>, \
from <span id=\"first\">{}</span> to <span id=\"last\">{}</span>.</p>",
        esc(&r.source),
        esc(r.first.as_deref().unwrap_or("—")),
        esc(r.last.as_deref().unwrap_or("—")),
    );
    // Headline figures.
    let rate = r.denial_rate();
    let _ = write!(
        h,
        "<div class=\"cards\">\
<div class=\"card\"><div class=\"muted\">decisions</div><div class=\"v\" id=\"total\" data-value=\"{t}\">{t}</div></div>\
<div class=\"card\"><div class=\"muted\">allowed</div><div class=\"v\" id=\"allowed\" data-value=\"{a}\">{a}</div></div>\
<div class=\"card\"><div class=\"muted\">denied</div><div class=\"v\" id=\"denied\" data-value=\"{d}\">{d}</div></div>\
<div class=\"card\"><div class=\"muted\">denial rate</div><div class=\"v\" id=\"denial-rate\" data-value=\"{rate:.4}\">{pct:.1} %</div></div>\
<div class=\"card\"><div class=\"muted\">approval steps</div><div class=\"v\" id=\"approval-steps\" data-value=\"{s}\">{s}</div></div>\
<div class=\"card\"><div class=\"muted\">audit required</div><div class=\"v\" id=\"audit-required\" data-value=\"{au}\">{au}</div></div>\
<div class=\"card\"><div class=\"muted\">let through by fail_open</div><div class=\"v\" id=\"fail-open\" data-value=\"{fo}\">{fo}</div></div>\
</div>",
        t = r.split.total(),
        a = r.split.allowed,
        d = r.split.denied,
        pct = rate * 100.0,
        s = r.approval_steps,
        au = r.trail.audit_required,
        fo = r.trail.fail_open,
    );
    if r.approval_steps > 0 {
        let steps: Vec<String> = r
            .approval_by_step
            .map
            .iter()
            .map(|(k, n)| {
                format!(
                    "<span data-step=\"{}\" data-count=\"{n}\">{} {n}</span>",
                    esc(k),
                    esc(k)
                )
            })
            .collect();
        let _ = write!(
            h,
            "<p class=\"muted\" id=\"approval-by-step\">Approval steps (human approvals; a decision that waited for one is counted once, with the outcome of its final step): {}.</p>",
            steps.join(", ")
        );
    }
    if r.approval_unsettled > 0 {
        let _ = write!(
            h,
            "<p class=\"muted\" id=\"approval-unsettled\" data-value=\"{n}\">{n} decision(s) waited for a human with no final approval record in this log (gavel stopped while asking); they are not counted as allowed or denied.</p>",
            n = r.approval_unsettled
        );
    }
    h.push_str(&r.results.html());
    if let Some(line) = r.torn_tail {
        let _ = write!(
            h,
            "<p class=\"muted\" id=\"torn-tail\" data-line=\"{line}\">The last line ({line}) is a record cut off while it was written (a crash or a full disk); it is not counted.</p>"
        );
    }
    volume(&mut h, r);
    reasons(&mut h, r);
    people(&mut h, r);
    personas(&mut h, r);
    tools(&mut h, r);
    latency(&mut h, r);
    revisions(&mut h, r);
    h.push_str("</main></body></html>\n");
    h
}

fn volume(h: &mut String, r: &Report) {
    let _ = write!(
        h,
        "<section><h2>Decision volume over time</h2><p class=\"muted\">Buckets of <span id=\"bucket-seconds\" data-value=\"{b}\">{b}</span> s (UTC).\
<span class=\"legend\"><span style=\"background:#1a7f37\"></span>allowed<span style=\"background:#cf222e\"></span>denied</span>{u}</p>",
        b = r.bucket_s,
        u = if r.untimed > 0 {
            format!(
                " {} record(s) without a readable timestamp are not on the chart.",
                r.untimed
            )
        } else {
            String::new()
        }
    );
    let (w, hgt) = (1000.0_f64, 200.0_f64);
    let _ = write!(
        h,
        "<svg id=\"volume\" viewBox=\"0 0 {w} {}\" width=\"100%\" role=\"img\" aria-label=\"decisions per time bucket\">",
        hgt + 20.0
    );
    let (Some(&first), Some(&last)) = (r.timeline.keys().next(), r.timeline.keys().next_back())
    else {
        h.push_str("<text x=\"10\" y=\"20\">no timestamped decisions</text></svg></section>");
        return;
    };
    let slots = ((last - first) / r.bucket_s + 1) as f64;
    let max = r
        .timeline
        .values()
        .map(|s| s.total())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let bw = w / slots;
    for (start, s) in &r.timeline {
        let x = ((start - first) / r.bucket_s) as f64 * bw;
        let ha = s.allowed as f64 / max * hgt;
        let hd = s.denied as f64 / max * hgt;
        let _ = write!(
            h,
            "<g class=\"bucket\" data-start=\"{start}\" data-allowed=\"{a}\" data-denied=\"{d}\"><title>{t}: {a} allowed, {d} denied</title>\
<rect class=\"allow\" x=\"{x:.2}\" y=\"{ya:.2}\" width=\"{bw2:.2}\" height=\"{ha:.2}\"/>\
<rect class=\"deny\" x=\"{x:.2}\" y=\"{yd:.2}\" width=\"{bw2:.2}\" height=\"{hd:.2}\"/></g>",
            a = s.allowed,
            d = s.denied,
            t = esc(&utc(*start)),
            ya = hgt - ha,
            yd = hgt - ha - hd,
            bw2 = (bw * 0.9).max(0.5),
        );
    }
    let _ = write!(
        h,
        "<text x=\"0\" y=\"{y}\" font-size=\"11\">{}</text><text x=\"{w}\" y=\"{y}\" font-size=\"11\" text-anchor=\"end\">{}</text></svg></section>",
        esc(&utc(first)),
        esc(&utc(last)),
        y = hgt + 15.0,
    );
}

fn reasons(h: &mut String, r: &Report) {
    h.push_str("<section><h2>Top denial reasons</h2><table id=\"reasons\"><thead><tr><th>reason</th><th>meaning</th><th class=\"n\">denials</th><th></th><th>decisions</th></tr></thead><tbody>");
    let top = r.top_reasons();
    let max = top.first().map(|t| t.1).unwrap_or(1).max(1);
    for (code, n) in top.iter().take(25) {
        let _ = write!(
            h,
            "<tr data-reason=\"{c}\" data-count=\"{n}\"><td><code>{c}</code></td><td class=\"reason-text\">{t}</td><td class=\"n\">{n}</td><td><span class=\"bar\" style=\"width:{w}px\"></span></td><td>{ids}</td></tr>",
            c = esc(code),
            t = esc(r
                .trail
                .reason_texts
                .map
                .get(*code)
                .map_or("", String::as_str)),
            w = (*n as f64 / max as f64 * 150.0).round(),
            ids = decisions(&r.source, r.trail.by_reason.map.get(*code)),
        );
    }
    if top.is_empty() {
        h.push_str("<tr><td colspan=\"5\" class=\"muted\">no denials</td></tr>");
    }
    more_rows(h, top.len(), 25, 5, " reason codes");
    h.push_str("</tbody></table></section>");
}

/// The latest decisions behind a figure, each with the command that
/// explains it (in a `<details>`, so the table stays readable).
fn decisions(source: &str, recent: Option<&Recent>) -> String {
    let Some(recent) = recent.filter(|r| !r.ids.is_empty()) else {
        return String::new();
    };
    let mut out = format!(
        "<details class=\"decisions\" data-total=\"{t}\"><summary>latest {n} of {t}</summary>",
        n = recent.ids.len(),
        t = recent.total
    );
    for id in recent.ids.iter().rev() {
        let _ = write!(
            out,
            "<code data-decision=\"{i}\">gavel explain --decision {i} --log {s}</code>",
            i = esc(id),
            s = esc(source),
        );
    }
    out.push_str("</details>");
    out
}

/// The row that says how many rows a table left out (`total` > `shown`).
fn more_rows(h: &mut String, total: usize, shown: usize, cols: usize, what: &str) {
    if total > shown {
        let _ = write!(
            h,
            "<tr><td colspan=\"{cols}\" class=\"muted\">… {} more{what}</td></tr>",
            total - shown
        );
    }
}

/// Denied as a percentage of all (0 for none).
fn denied_pct(s: &Split) -> f64 {
    s.denied as f64 / s.total().max(1) as f64 * 100.0
}

/// Who was denied: users and agents by denials.
fn people(h: &mut String, r: &Report) {
    h.push_str(&r.shadow.html());
    h.push_str("<section><h2>Who was denied</h2><p class=\"muted\">Users and agents by denials (from each decision's input; an approval's final step counts for the decision it settled).</p>");
    for (id, title, table) in [
        ("users", "user", &r.trail.users),
        ("agents", "agent", &r.trail.agents),
    ] {
        let _ = write!(
            h,
            "<table id=\"{id}\"><thead><tr><th>{title}</th><th class=\"n\">allowed</th><th class=\"n\">denied</th><th class=\"n\">denial rate</th></tr></thead><tbody>"
        );
        let top: Vec<(&str, &Split)> = Trail::top(table);
        for (name, s) in top.iter().take(25) {
            let _ = write!(
                h,
                "<tr data-name=\"{n}\" data-allowed=\"{a}\" data-denied=\"{d}\"><td><code>{n}</code></td><td class=\"n\">{a}</td><td class=\"n\">{d}</td><td class=\"n\">{p:.0} %</td></tr>",
                n = esc(name),
                a = s.allowed,
                d = s.denied,
                p = denied_pct(s),
            );
        }
        more_rows(h, top.len(), 25, 4, "");
        h.push_str("</tbody></table>");
    }
    h.push_str("</section>");
}

/// Outcomes per persona (`labels.persona`), when the log has any persona.
fn personas(h: &mut String, r: &Report) {
    let none = crate::governance::persona::NONE;
    if r.personas.map.keys().all(|k| k == none) {
        return;
    }
    h.push_str("<section><h2>Outcomes per persona</h2><p class=\"muted\">The persona each decision was made as (<code>labels.persona</code>); <code>(none)</code>: an agent of no persona.</p><table id=\"personas\"><thead><tr><th>persona</th><th class=\"n\">allowed</th><th class=\"n\">denied</th><th class=\"n\">denial rate</th></tr></thead><tbody>");
    for (name, s) in &r.personas.map {
        let _ = write!(
            h,
            "<tr data-persona=\"{n}\" data-allowed=\"{a}\" data-denied=\"{d}\"><td><code>{n}</code></td><td class=\"n\">{a}</td><td class=\"n\">{d}</td><td class=\"n\">{p:.0} %</td></tr>",
            n = esc(name),
            a = s.allowed,
            d = s.denied,
            p = denied_pct(s),
        );
    }
    h.push_str("</tbody></table></section>");
}

fn tools(h: &mut String, r: &Report) {
    h.push_str("<section><h2>Outcomes per server and tool</h2><table id=\"tools\"><thead><tr><th>server</th><th>request</th><th>tool / name</th><th class=\"n\">allowed</th><th class=\"n\">denied</th><th class=\"n\">denial rate</th><th>denied decisions</th></tr></thead><tbody>");
    let mut rows: Vec<_> = r.tools.map.iter().collect();
    rows.sort_by(|a, b| b.1.total().cmp(&a.1.total()).then(a.0.cmp(b.0)));
    for ((server, kind, tool), s) in rows.iter().take(200) {
        let _ = write!(
            h,
            "<tr data-server=\"{sv}\" data-type=\"{k}\" data-tool=\"{t}\" data-allowed=\"{a}\" data-denied=\"{d}\"><td>{sv}</td><td>{k}</td><td><code>{t}</code></td><td class=\"n\">{a}</td><td class=\"n\">{d}</td><td class=\"n\">{p:.0} %</td><td>{ids}</td></tr>",
            ids = decisions(
                &r.source,
                r.trail
                    .by_tool
                    .map
                    .get(&(server.clone(), kind.clone(), tool.clone()))
            ),
            sv = esc(server),
            k = esc(kind),
            t = esc(tool),
            a = s.allowed,
            d = s.denied,
            p = denied_pct(s),
        );
    }
    more_rows(h, rows.len(), 200, 7, " rows");
    h.push_str("</tbody></table></section>");
}

fn latency(h: &mut String, r: &Report) {
    h.push_str("<section><h2>Latency</h2><p class=\"muted\">Percentiles from a log-linear histogram (within 6.25 %); the maximum is exact.</p><table id=\"latency\"><thead><tr><th>metric</th><th class=\"n\">samples</th><th class=\"n\">p50</th><th class=\"n\">p90</th><th class=\"n\">p99</th><th class=\"n\">max</th></tr></thead><tbody>");
    for (name, hist) in [
        ("timer_gavel_decision_ns", &r.decision_ns),
        ("timer_rego_query_eval_ns", &r.eval_ns),
    ] {
        let q = |x: f64| hist.quantile(x).unwrap_or(0);
        let (p50, p90, p99, max) = (q(0.5), q(0.9), q(0.99), hist.max);
        if hist.count == 0 {
            let _ = write!(
                h,
                "<tr data-metric=\"{name}\" data-count=\"0\"><td><code>{name}</code></td><td class=\"n\">0</td><td colspan=\"4\" class=\"muted\">no samples</td></tr>"
            );
            continue;
        }
        let _ = write!(
            h,
            "<tr data-metric=\"{name}\" data-count=\"{c}\" data-p50=\"{p50}\" data-p90=\"{p90}\" data-p99=\"{p99}\" data-max=\"{max}\"><td><code>{name}</code></td><td class=\"n\">{c}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            ms(p50),
            ms(p90),
            ms(p99),
            ms(max),
            c = hist.count,
        );
    }
    h.push_str("</tbody></table></section>");
}

fn revisions(h: &mut String, r: &Report) {
    h.push_str("<section><h2>Bundle revisions seen</h2><table id=\"revisions\"><thead><tr><th>bundle</th><th>revision</th><th>digest</th><th class=\"n\">decisions</th><th>first</th><th>last</th></tr></thead><tbody>");
    for ((name, rev, digest), seen) in r.revisions.map.iter() {
        let _ = write!(
            h,
            "<tr data-bundle=\"{n}\" data-revision=\"{rv}\" data-digest=\"{dg}\" data-count=\"{c}\"><td>{n}</td><td>{rv}</td><td><code>{dg}</code></td><td class=\"n\">{c}</td><td>{f}</td><td>{l}</td></tr>",
            n = esc(name),
            rv = esc(rev),
            dg = esc(digest),
            c = seen.count,
            f = esc(&seen.first),
            l = esc(&seen.last),
        );
    }
    if r.revisions.map.is_empty() {
        h.push_str("<tr><td colspan=\"6\" class=\"muted\">no bundles recorded (static rules or no policy)</td></tr>");
    }
    h.push_str("</tbody></table></section>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn page_is_self_contained_and_escapes_log_text() {
        let mut r = Report::new("d.jsonl");
        r.add(&json!({"timestamp": "2026-11-22T12:00:00Z", "path": "fs",
            "input": {"action": {"type": "tool_call", "tool": "<script>alert(1)</script>"}},
            "result": {"allow": false, "reasons": ["x\"><img src=y>"]},
            "metrics": {"timer_gavel_decision_ns": 5000}}));
        let page = render(&r);
        assert!(!page.contains("<script"), "log text must not become markup");
        assert!(!page.contains("<img"), "log text must not become markup");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        for external in ["http://", "https://", "src=\"", "<link rel=\"stylesheet\""] {
            assert!(
                !page.contains(external),
                "{external} in a self-contained page"
            );
        }
        assert!(page.contains("id=\"total\" data-value=\"1\""));
        assert!(page.contains("id=\"denial-rate\" data-value=\"1.0000\""));
        assert!(page.contains("data-metric=\"timer_rego_query_eval_ns\" data-count=\"0\""));
    }
}

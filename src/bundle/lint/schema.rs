//! Schema-aware lint: a bundle held against the tools its server really
//! offers (`tools/list`: names and each `inputSchema`'s argument names).
//!
//! The load-time lint (`bundle::lint`) knows only gavel's input contract, so
//! `input.action.tool == "wirte_file"` or `input.action.args.pth` pass it:
//! both are well-formed and simply never true — a deny rule that never fires.
//! Here the parse tree is reduced to [`Facts`] (which tool names the policy
//! compares against, which argument names it reads and under which tool
//! pins, which path arguments it scopes by string prefix, and whether its
//! decision allows a tool it never names), and [`judge`] holds them against
//! a tool list. What the server's whole policy allows by default is decided
//! one level up (`decision::tool_lint`), which knows the layers.
//!
//! Everything is read from the parse tree; nothing is evaluated.

use std::collections::BTreeSet;

use serde_json::Value;

#[path = "facts.rs"]
mod extract;
pub use extract::facts;

/// A tool as its server lists it: its name and the argument names its
/// `inputSchema` defines (`None`: the schema names none — no `properties`,
/// or `patternProperties`/an `additionalProperties` schema — so any name
/// may be meant).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolInfo {
    pub name: String,
    pub args: Option<BTreeSet<String>>,
}

impl ToolInfo {
    /// From a tool's JSON Schema: `properties` at the top and in
    /// `allOf`/`anyOf`/`oneOf` branches.
    pub fn from_schema(name: &str, schema: &serde_json::Map<String, Value>) -> Self {
        let mut args = BTreeSet::new();
        let mut open = false;
        let mut visit = |s: &serde_json::Map<String, Value>| {
            if let Some(Value::Object(p)) = s.get("properties") {
                args.extend(p.keys().cloned());
            }
            open |= s.contains_key("patternProperties")
                || matches!(s.get("additionalProperties"), Some(Value::Object(_)));
        };
        visit(schema);
        for key in ["allOf", "anyOf", "oneOf"] {
            for branch in schema
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(b) = branch.as_object() {
                    visit(b);
                }
            }
        }
        ToolInfo {
            name: name.to_string(),
            args: (!open && !args.is_empty()).then_some(args),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// Which check a finding comes from (its `check` in `gavel lint --json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The server did not start or list its tools.
    ServerUnavailable,
    /// The server's policy did not load (every request would be denied).
    PolicyUnavailable,
    /// A `tools.allow`/`tools.deny` glob of servers.toml matching no tool.
    ConfigGlob,
    UnknownTool,
    UnknownArgument,
    PrefixTest,
    UnmentionedTool,
}

/// One finding; `line` 0 when no line applies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct SchemaFinding {
    pub severity: Severity,
    pub check: Check,
    pub bundle: String,
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Where in a bundle something was found.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub file: String,
    pub line: usize,
}

/// A tool name the policy compares `input.action.tool` with.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRef {
    pub name: String,
    pub at: Site,
    /// The data list it came from (`data.mcp.x.blocked`), if any.
    pub via: Option<String>,
}

/// An argument the policy reads: `input.action.args.X` (or `["X"]`, or
/// `canonical_args`), with the tools the reading rule body pins by a
/// positive test (`==`, `in`) — empty when it pins none.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgRead {
    pub name: String,
    pub view: &'static str,
    pub pinned: Vec<String>,
    pub at: Site,
}

/// A string-prefix test (`startswith`, `strings.any_prefix_match`) on a
/// path-like argument, directly or through a local variable bound from it.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefixTest {
    pub arg: String,
    pub view: &'static str,
    pub local: Option<String>,
    pub at: Site,
}

/// What the schema checks need to know about one bundle.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub tools: Vec<ToolRef>,
    pub args: Vec<ArgRead>,
    pub prefix_tests: Vec<PrefixTest>,
    /// Where the decision rule allows without testing the tool name, when
    /// the bundle allows by default (see [`facts`]); `None` otherwise.
    pub default_allow: Option<Site>,
}

/// Argument names taken to hold paths (a name containing `path`, `file`,
/// `dir` or `folder`, or one of these).
const PATH_NAMES: [&str; 7] = [
    "source",
    "destination",
    "src",
    "dst",
    "dest",
    "target",
    "root",
];

pub fn path_like(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["path", "file", "dir", "folder"]
        .iter()
        .any(|k| n.contains(k))
        || PATH_NAMES.contains(&n.as_str())
}

/// The names of `tools`, and the closest to `name` within two edits.
fn closest<'t>(name: &str, tools: &'t [ToolInfo]) -> Option<&'t str> {
    tools
        .iter()
        .map(|t| (edit_distance(name, &t.name), t.name.as_str()))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

fn q(s: &str) -> String {
    format!("{:?}", crate::text::escape_controls(s))
}

/// Checks 1–3 of [`Facts`] against the tools a bundle's server(s) offer.
pub fn judge(bundle: &str, facts: &Facts, tools: &[ToolInfo]) -> Vec<SchemaFinding> {
    let mut out = Vec::new();
    let finding = |severity, check, at: &Site, message: String| SchemaFinding {
        severity,
        check,
        bundle: bundle.to_string(),
        file: at.file.clone(),
        line: at.line,
        message,
    };
    let has = |n: &str| tools.iter().any(|t| t.name == n);
    for t in facts.tools.iter().filter(|t| !has(&t.name)) {
        let via = t
            .via
            .as_ref()
            .map(|v| format!(" (listed in {v})"))
            .unwrap_or_default();
        let hint = closest(&t.name, tools)
            .map(|c| format!("; did you mean {}?", q(c)))
            .unwrap_or_default();
        out.push(finding(Severity::Error, Check::UnknownTool, &t.at, format!(
            "the policy compares input.action.tool with {}{via}, a tool the server does not offer: a rule about it never fires{hint}",
            q(&t.name)
        )));
    }
    for a in &facts.args {
        let candidates: Vec<&ToolInfo> = if a.pinned.is_empty() {
            tools.iter().collect()
        } else {
            tools
                .iter()
                .filter(|t| a.pinned.contains(&t.name))
                .collect()
        };
        if candidates.is_empty() && !a.pinned.is_empty() {
            continue; // the pinned tools are unknown: reported above
        }
        if candidates
            .iter()
            .any(|t| t.args.as_ref().is_none_or(|s| s.contains(&a.name)))
        {
            continue;
        }
        let whose = if a.pinned.is_empty() {
            "no tool of the server defines it in its inputSchema".to_string()
        } else {
            let names: Vec<String> = candidates.iter().map(|t| q(&t.name)).collect();
            format!(
                "the inputSchema of {} (the tool the rule tests for) does not define it",
                names.join(", ")
            )
        };
        out.push(finding(
            Severity::Error,
            Check::UnknownArgument,
            &a.at,
            format!(
                "input.action.{}.{}: {whose}, so the reference is always undefined",
                a.view,
                crate::text::escape_controls(&a.name)
            ),
        ));
    }
    for p in &facts.prefix_tests {
        let local = p
            .local
            .as_ref()
            .map(|l| format!(" (through {l})"))
            .unwrap_or_default();
        out.push(finding(Severity::Warning, Check::PrefixTest, &p.at, format!(
            "string-prefix test on the path argument input.action.{}.{}{local}: a prefix is not containment (\"/srv/data-evil\" starts with \"/srv/data\"; \"..\", \"./\", \"//\" and array-valued arguments slip past); use data.gavel.lib.paths.within on input.action.canonical_args",
            p.view, p.arg
        )));
    }
    out
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;

//! Each host's variable syntax, rewritten into gavel's (`${VAR}`,
//! `${VAR:-d}`, `${VAR-d}`, `$$`) so that the imported servers.toml means
//! what the host config meant. The clash this exists for: Claude Code and
//! gavel both write `${VAR}` and `${VAR:-default}`, but Claude Code's default
//! replaces only an *unset* variable (gavel's `:-` also replaces an empty
//! one), so its `${VAR:-d}` becomes gavel's `${VAR-d}`; a host that does not
//! expand at all (Claude Desktop, Zed, Codex) has every `$` escaped.

use std::path::{Path, PathBuf};

use super::Carried;

/// Which syntax a host config's strings use.
#[derive(Clone, Debug, PartialEq)]
pub enum Syntax {
    /// No expansion: every `$` is literal.
    Literal,
    /// Claude Code `.mcp.json`: `${VAR}` and `${VAR:-default}` (default when unset).
    ClaudeCode,
    /// VS Code-style `${env:VAR}` (unset: ""), `${input:ID}`, `${workspaceFolder}`,
    /// `${userHome}`; Cursor and Windsurf use the same forms. `workspace` is the
    /// folder `${workspaceFolder}` stands for, when the file's place says it.
    VsCode { workspace: Option<PathBuf> },
    /// Gemini CLI: `$VAR` and `${VAR}`.
    Gemini,
    /// Continue: `${{ secrets.NAME }}` / `${{ inputs.NAME }}`.
    Continue,
}

impl Syntax {
    /// The VS Code-style syntax for a config at `source`: `<ws>/.vscode/mcp.json`
    /// and `<ws>/.cursor/mcp.json` name their workspace folder.
    pub fn vscode(source: &Path) -> Syntax {
        let abs = std::path::absolute(source).unwrap_or_else(|_| source.to_path_buf());
        let workspace = abs.parent().and_then(|dir| {
            let name = dir.file_name()?.to_str()?;
            matches!(name, ".vscode" | ".cursor" | ".windsurf")
                .then(|| dir.parent().map(Path::to_path_buf))
                .flatten()
        });
        Syntax::VsCode { workspace }
    }
}

/// A gavel variable name (what `config/expand.rs` accepts).
fn gavel_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `text` (a literal) with every `$` doubled.
fn escape(text: &str) -> String {
    text.replace('$', "$$")
}

/// The environment variable that carries VS Code input `id`.
pub fn input_var(id: &str) -> String {
    let upper: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("GAVEL_INPUT_{upper}")
}

impl Carried {
    /// `s`, a string of the host config at `field`, in gavel's syntax.
    pub fn convert(&mut self, s: &str, field: &str) -> String {
        match self.syntax.clone() {
            Syntax::Literal => escape(s),
            Syntax::ClaudeCode => self.braces(s, field, |c, expr, f| c.claude_code(expr, f)),
            Syntax::VsCode { workspace } => self.braces(s, field, |c, expr, f| {
                c.vscode(expr, f, workspace.as_deref())
            }),
            Syntax::Gemini => self.gemini(s, field),
            Syntax::Continue => self.continue_secrets(s, field),
        }
    }

    /// Walks `s`: each `${…}` (up to the first `}`, as the hosts' own
    /// patterns do) is converted by `var`; every other `$` is escaped.
    fn braces(
        &mut self,
        s: &str,
        field: &str,
        mut var: impl FnMut(&mut Self, &str, &str) -> String,
    ) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            match after
                .strip_prefix('{')
                .and_then(|b| b.find('}').map(|e| (b, e)))
            {
                Some((body, end)) if end > 0 => {
                    out.push_str(&var(self, &body[..end], field));
                    rest = &body[end + 1..];
                }
                _ => {
                    out.push_str("$$");
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// Claude Code's `${NAME}` / `${NAME:-default}`. Its expander splits the
    /// braces' content with `split(":-", 2)` (JavaScript: a second `:-` and
    /// what follows are dropped) and uses the default only when NAME is unset.
    fn claude_code(&mut self, expr: &str, field: &str) -> String {
        let mut parts = expr.split(":-");
        let name = parts.next().unwrap_or_default();
        let default = parts.next();
        if !gavel_name(name) {
            self.notes.push(format!(
                "{field}: ${{{expr}}} names a variable gavel cannot read ({name:?}); kept as literal text"
            ));
            return escape(&format!("${{{expr}}}"));
        }
        match default {
            Some(d) => format!("${{{name}-{d}}}"),
            None => {
                self.require(name);
                format!("${{{name}}}")
            }
        }
    }

    /// VS Code / Cursor / Windsurf variables.
    fn vscode(&mut self, expr: &str, field: &str, workspace: Option<&Path>) -> String {
        if let Some(id) = expr.strip_prefix("input:") {
            let var = input_var(id);
            self.require(&var);
            self.inputs.push(id.to_string());
            return format!("${{{var}}}");
        }
        if let Some(name) = expr.strip_prefix("env:")
            && gavel_name(name)
        {
            // VS Code resolves an unset variable to "".
            return format!("${{{name}-}}");
        }
        match (expr, workspace) {
            ("userHome", _) => "${HOME}".into(),
            ("pathSeparator" | "/", _) => "/".into(),
            ("workspaceFolder", Some(ws)) => escape(&ws.display().to_string()),
            ("workspaceFolder", None) => {
                self.notes.push(format!(
                    "{field}: ${{workspaceFolder}} has no meaning outside the editor; replaced by \".\" (the servers.toml's directory)"
                ));
                ".".into()
            }
            _ => {
                self.notes.push(format!(
                    "{field}: variable ${{{expr}}} is not supported by gavel; kept as literal text"
                ));
                escape(&format!("${{{expr}}}"))
            }
        }
    }

    /// Gemini CLI's `$NAME` (NAME: `\w+`) and `${NAME}`. Gemini leaves an
    /// unset variable as its literal text; gavel refuses to start instead
    /// (docs/config.md), naming the field.
    fn gemini(&mut self, s: &str, field: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let word = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if word > 0 {
                self.require(&after[..word]);
                out.push_str(&format!("${{{}}}", &after[..word]));
                rest = &after[word..];
            } else if let Some(body) = after.strip_prefix('{')
                && let Some(end) = body.find('}')
                && gavel_name(&body[..end])
            {
                self.require(&body[..end]);
                out.push_str(&format!("${{{}}}", &body[..end]));
                rest = &body[end + 1..];
            } else {
                if after.starts_with('{') {
                    self.notes.push(format!(
                        "{field}: {s:?} has a variable gavel cannot read; kept as literal text"
                    ));
                }
                out.push_str("$$");
                rest = after;
            }
        }
        out.push_str(rest);
        out
    }

    /// Continue's `${{ secrets.NAME }}` and `${{ inputs.NAME }}`: read from
    /// the environment variable NAME.
    fn continue_secrets(&mut self, s: &str, field: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find("${{") {
            out.push_str(&escape(&rest[..i]));
            let body = &rest[i + 3..];
            let Some(end) = body.find("}}") else {
                out.push_str(&escape(&rest[i..]));
                rest = "";
                break;
            };
            let expr = body[..end].trim();
            let name = expr
                .strip_prefix("secrets.")
                .or_else(|| expr.strip_prefix("inputs."))
                .filter(|n| gavel_name(n));
            match name {
                Some(n) => {
                    self.require(n);
                    self.notes.push(format!(
                        "{field}: Continue's ${{{{ {expr} }}}} is read from the environment variable {n}"
                    ));
                    out.push_str(&format!("${{{n}}}"));
                }
                None => {
                    self.notes.push(format!(
                        "{field}: ${{{{ {expr} }}}} is not supported by gavel; kept as literal text"
                    ));
                    out.push_str(&escape(&rest[i..i + 3 + end + 2]));
                }
            }
            rest = &body[end + 2..];
        }
        out.push_str(&escape(rest));
        out
    }

    pub(super) fn require(&mut self, var: &str) {
        if !self.required.iter().any(|v| v == var) {
            self.required.push(var.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::expand_for_tests as expand;

    fn conv(syntax: Syntax, s: &str) -> (String, Carried) {
        let mut c = Carried::new(syntax);
        let out = c.convert(s, "f");
        (out, c)
    }

    fn env(k: &str) -> Option<String> {
        match k {
            "SET" => Some("v".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    /// What Claude Code would produce for each form, and what gavel now
    /// produces from the converted text, side by side.
    #[test]
    fn claude_code_forms_mean_the_same_in_gavel() {
        for (host, want) in [
            ("${SET}", Some("v")),
            ("${EMPTY}", Some("")),
            ("${UNSET}", None),
            ("${SET:-d}", Some("v")),
            // Claude Code: set (even to "") wins over the default.
            ("${EMPTY:-d}", Some("")),
            ("${UNSET:-d}", Some("d")),
            ("${UNSET:-a:-b}", Some("a")),
            ("${UNSET:-}/x", Some("/x")),
            ("$SET and $$ and $", Some("$SET and $$ and $")),
            (
                "https://${SET}.example/mcp?q=${UNSET:-1}",
                Some("https://v.example/mcp?q=1"),
            ),
        ] {
            let (g, _) = conv(Syntax::ClaudeCode, host);
            assert_eq!(expand(&g, &env).ok().as_deref(), want, "{host} → {g}");
        }
        let (g, c) = conv(Syntax::ClaudeCode, "${A.B}");
        assert_eq!(expand(&g, &env).unwrap(), "${A.B}");
        assert!(c.notes[0].contains("cannot read"), "{:?}", c.notes);
        assert_eq!(conv(Syntax::ClaudeCode, "${X}").1.required, ["X"]);
    }

    #[test]
    fn literal_hosts_keep_every_dollar() {
        let (g, _) = conv(Syntax::Literal, "${SET} $$ $x");
        assert_eq!(expand(&g, &env).unwrap(), "${SET} $$ $x");
    }

    #[test]
    fn vscode_forms() {
        let ws = Syntax::VsCode {
            workspace: Some("/w s".into()),
        };
        let (g, c) = conv(
            ws.clone(),
            "${env:SET}|${env:UNSET}|${workspaceFolder}|${input:api-key}",
        );
        assert_eq!(g, "${SET-}|${UNSET-}|/w s|${GAVEL_INPUT_API_KEY}");
        assert_eq!(c.required, ["GAVEL_INPUT_API_KEY"]);
        let (g, c) = conv(ws, "${file:/etc/x}");
        assert_eq!(expand(&g, &env).unwrap(), "${file:/etc/x}");
        assert_eq!(c.notes.len(), 1);
        assert_eq!(
            Syntax::vscode(Path::new("/p/.vscode/mcp.json")),
            Syntax::VsCode {
                workspace: Some("/p".into())
            }
        );
        assert_eq!(
            Syntax::vscode(Path::new("/p/mcp.json")),
            Syntax::VsCode { workspace: None }
        );
    }

    #[test]
    fn gemini_and_continue_forms() {
        let (g, c) = conv(Syntax::Gemini, "$SET/${SET}-$ x");
        assert_eq!(g, "${SET}/${SET}-$$ x");
        assert_eq!(c.required, ["SET"]);
        let (g, c) = conv(
            Syntax::Continue,
            "Bearer ${{ secrets.TOKEN }} $5 ${{ other }}",
        );
        assert_eq!(g, "Bearer ${TOKEN} $$5 $${{ other }}");
        assert_eq!(c.required, ["TOKEN"]);
    }
}

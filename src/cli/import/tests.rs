//! The parsers, format by format (the e2e tests drive the same files
//! through the binary: tests/e2e/e2e_import.rs).

use std::path::Path;

use super::*;
use crate::config::{Config, UpstreamTransport};

fn load(r: &Imported, env: &dyn Fn(&str) -> Option<String>) -> Config {
    Config::from_toml_str(&r.toml, Path::new("/tmp/servers.toml"), env).expect(&r.toml)
}

fn set(_: &str) -> Option<String> {
    Some("x".into())
}

fn imp(text: &str, file: &str) -> Imported {
    import(text, Path::new(file), None).unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn claude_desktop_round_trips() {
    let r = imp(
        r#"{"mcpServers": {
        "fs": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"], "env": {"A": "1", "P": "${HOME}"}},
        "remote": {"url": "https://mcp.example.test/mcp", "headers": {"Authorization": "Bearer x"}},
        "old": {"url": "https://legacy.example.test/sse"},
        "weird name!": {"command": "srv", "autoApprove": ["x"], "disabled": true, "timeout": 5000}
    }}"#,
        "claude_desktop_config.json",
    );
    assert_eq!(r.host, Host::ClaudeDesktop);
    let c = load(&r, &set);
    assert_eq!(c.servers.len(), 4);
    // Claude Desktop does not expand: the text stays as written.
    assert!(
        matches!(&c.servers["fs"].transport, UpstreamTransport::Stdio { env, .. } if env["P"] == "${HOME}")
    );
    assert!(!c.servers["old"].enabled);
    assert!(!r.servers.iter().find(|s| s.name == "old").unwrap().proxied);
    assert!(!c.servers["weird-name-"].enabled);
    assert_eq!(
        c.servers["weird-name-"].call_timeout,
        std::time::Duration::from_millis(5000)
    );
    let notes = r.notes.join("\n");
    assert!(notes.contains("autoApprove"), "{notes}");
    assert!(notes.contains("legacy HTTP+SSE"), "{notes}");
    assert!(notes.contains("weird-name-"), "{notes}");
    assert!(
        r.permissions[0].contains("\"weird-name-__x\""),
        "{:?}",
        r.permissions
    );
}

#[test]
fn claude_code_variables_keep_their_meaning_and_work_in_a_url() {
    let r = imp(
        r#"{"mcpServers": {"api": {"type": "http", "url": "${API_BASE_URL:-https://api.example.com}/mcp",
            "headers": {"Authorization": "Bearer ${API_KEY}"}}}}"#,
        ".mcp.json",
    );
    assert_eq!(r.host, Host::ClaudeCode);
    assert_eq!(r.required_env, ["API_KEY"]);
    let env = |k: &str| (k == "API_KEY").then(|| "k".to_string());
    let c = load(&r, &env);
    match &c.servers["api"].transport {
        UpstreamTransport::Http { url, headers, .. } => {
            assert_eq!(url.as_str(), "https://api.example.com/mcp");
            assert_eq!(headers["Authorization"], "Bearer k");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn vscode_jsonc_with_inputs() {
    let r = imp(
        r#"{
        // secrets are prompted for
        "inputs": [{"type": "promptString", "id": "api-key", "description": "API key", "password": true},],
        "servers": {"gh": {"type": "stdio", "command": "gh-mcp", "env": {"TOKEN": "${input:api-key}", "H": "${env:HOME}"}, "envFile": "x.env",},},
    }"#,
        "/p/.vscode/mcp.json",
    );
    assert_eq!(r.host, Host::Vscode);
    assert_eq!(r.required_env, vec!["GAVEL_INPUT_API_KEY"]);
    assert!(r.notes.iter().any(|n| n.contains("envFile")));
    assert!(r.notes.iter().any(|n| n.contains("inputs.api-key")));
    let c = load(&r, &|_| None::<String>.or(Some("x".into())));
    assert!(
        matches!(&c.servers["gh"].transport, UpstreamTransport::Stdio { env, .. } if env["TOKEN"] == "x")
    );
}

#[test]
fn windsurf_and_gemini_remote_servers_and_tool_lists() {
    let r = imp(
        r#"{"mcpServers": {"w": {"serverUrl": "https://w.example/mcp", "headers": {"X": "${env:TOK}"}, "disabledTools": ["drop_db"]}}}"#,
        "mcp_config.json",
    );
    assert_eq!(r.host, Host::Windsurf);
    let c = load(&r, &|_| None);
    assert!(
        matches!(&c.servers["w"].transport, UpstreamTransport::Http { headers, .. } if headers["X"].is_empty())
    );
    assert!(r.toml.contains("deny = [\"drop_db\"]"), "{}", r.toml);

    let g = import(
        r#"{"mcp": {"excluded": ["off"]}, "mcpServers": {
            "h": {"httpUrl": "https://h.example/mcp", "includeTools": ["a", "b"], "excludeTools": ["b"], "trust": true},
            "s": {"url": "https://s.example/events"},
            "off": {"command": "x"}}}"#,
        Path::new("/home/u/.gemini/settings.json"),
        None,
    )
    .unwrap();
    assert_eq!(g.host, Host::Gemini);
    let c = load(&g, &set);
    assert!(c.servers["h"].enabled && !c.servers["s"].enabled && !c.servers["off"].enabled);
    let t: toml::Table = toml::from_str(&g.toml).unwrap();
    assert_eq!(
        t["servers"]["h"]["tools"]["allow"],
        toml::Value::try_from(["a", "b"]).unwrap()
    );
    assert_eq!(
        t["servers"]["h"]["tools"]["deny"],
        toml::Value::try_from(["b"]).unwrap()
    );
}

#[test]
fn zed_codex_and_continue() {
    let z = imp(
        r#"{ "theme": "One Dark", // editor settings too
        "context_servers": {
            "new": {"command": "srv", "args": ["a"], "env": {}},
            "old": {"source": "custom", "command": {"path": "old-srv", "args": ["b"], "env": {"K": "v"}}},
            "ext": {"source": "extension", "settings": {}},
            "remote": {"url": "https://r.example/mcp"},
        }}"#,
        "/home/u/.config/zed/settings.json",
    );
    assert_eq!(z.host, Host::Zed);
    let c = load(&z, &set);
    assert!(
        matches!(&c.servers["old"].transport, UpstreamTransport::Stdio { command, .. } if command == "old-srv")
    );
    assert_eq!(z.skipped, ["ext"]);

    let x = imp(
        "# Codex\n[mcp_servers.docs]\ncommand = \"docs-mcp\"\nargs = [\"--x\"]\nenabled_tools = [\"search\"]\ntool_timeout_sec = 12.5\n\n[mcp_servers.remote]\nurl = \"https://r.example/mcp\"\nbearer_token_env_var = \"R_TOKEN\"\n",
        "/home/u/.codex/config.toml",
    );
    assert_eq!(x.host, Host::Codex);
    let c = load(&x, &set);
    assert_eq!(
        c.servers["docs"].call_timeout,
        std::time::Duration::from_millis(12500)
    );
    assert!(
        matches!(&c.servers["remote"].transport, UpstreamTransport::Http { headers, .. } if headers["Authorization"] == "Bearer x")
    );
    assert_eq!(x.required_env, ["R_TOKEN"]);

    let y = imp(
        "name: my\nversion: 0.0.1\nschema: v1\nmcpServers:\n  - name: SQLite\n    command: npx\n    args: [\"-y\", \"mcp-sqlite\", \"/db\"]\n    env:\n      KEY: ${{ secrets.SQL_KEY }}\n",
        "config.yaml",
    );
    assert_eq!(y.host, Host::Continue);
    assert_eq!(y.required_env, ["SQL_KEY"]);
    load(&y, &set);
}

#[test]
fn errors_name_the_formats_tried() {
    let e = import("nope = [", Path::new("x.conf"), None)
        .err()
        .unwrap()
        .to_string();
    for f in ["JSON/JSONC", "TOML (Codex", "YAML (Continue)"] {
        assert!(e.contains(f), "{e}");
    }
    let e = import(r#"{"foo": 1}"#, Path::new("x.json"), None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("mcpServers") && e.contains("context_servers"),
        "{e}"
    );
    let e = import(r#"{"mcpServers": {"a": {}}}"#, Path::new("x.json"), None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("neither a command nor a URL"), "{e}");
}

#[test]
fn several_servers_warn_and_rewrite_claude_code_rules() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".claude")).unwrap();
    std::fs::write(
        dir.path().join(".claude/settings.json"),
        r#"{"permissions": {"allow": ["mcp__fs__read_file", "mcp__git", "Bash(ls)"], "deny": ["mcp__fs__write_file"]}}"#,
    )
    .unwrap();
    let src = dir.path().join(".mcp.json");
    let r = import(
        r#"{"mcpServers": {"fs": {"command": "a"}, "git": {"command": "b"}}}"#,
        &src,
        None,
    )
    .unwrap();
    let p = r.permissions.join("\n");
    assert!(
        p.contains(r#""mcp__fs__read_file" → "mcp__gavel__fs__read_file""#),
        "{p}"
    );
    assert!(p.contains(r#""mcp__git" → "mcp__gavel__git__*""#), "{p}");
    assert!(
        p.contains(r#"permissions.deny: "mcp__fs__write_file" → "mcp__gavel__fs__write_file""#),
        "{p}"
    );
    assert!(!p.contains("Bash"), "{p}");
}

#[test]
fn a_host_told_only_by_contents_is_named() {
    let r = imp(r#"{"mcpServers": {"a": {"command": "x"}}}"#, "hosts.json");
    assert_eq!(r.host, Host::ClaudeDesktop);
    assert!(r.notes[0].contains("pass --host"), "{:?}", r.notes);
    let r = import(
        r#"{"mcpServers": {"a": {"command": "x", "args": ["${A}"]}}}"#,
        Path::new("hosts.json"),
        Some(Host::ClaudeCode),
    )
    .unwrap();
    assert_eq!(r.host, Host::ClaudeCode);
    assert_eq!(r.required_env, ["A"]);
    assert!(r.notes.is_empty(), "{:?}", r.notes);
}

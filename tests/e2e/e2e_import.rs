//! `gavel import`, `install` and `uninstall` on host configs in each
//! format, as the hosts document them (`tests/hosts/`, sources in its
//! README): the import parsed and checked, the rewritten host config
//! launched as the host would and proxying a real server (npm
//! `server-everything`), uninstall giving back the original bytes.

use crate::common;
use crate::e2e_everything::everything;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use serde_json::{Value, json};

fn host_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/hosts")
        .join(name)
}

fn gavel_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(GAVEL);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// The variables `gavel import` says the config reads.
fn required_env(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Set these environment variables for gavel: "))
        .map(|l| l.split(", ").map(String::from).collect())
        .unwrap_or_default()
}

/// `gavel import FILE --host HOST`, then `gavel config check` on the result
/// with exactly the variables import named set: the servers.toml and stdout.
fn import_checked(dir: &Path, file: &str, host: &str) -> (toml::Table, String) {
    let out_path = dir.join(format!("{file}.toml"));
    let src = host_file(file);
    let stdout = ok(&gavel_env(
        &[
            "import",
            src.to_str().unwrap(),
            "--host",
            host,
            "-o",
            out_path.to_str().unwrap(),
        ],
        &[],
    ));
    let vars = required_env(&stdout);
    let env: Vec<(&str, &str)> = vars.iter().map(|v| (v.as_str(), "from-env")).collect();
    ok(&gavel_env(
        &["config", "check", "--config", out_path.to_str().unwrap()],
        &env,
    ));
    let table = toml::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    (table, stdout)
}

#[test]
fn every_documented_host_config_imports() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (t, _) = import_checked(d, "claude_desktop_config.json", "claude-desktop");
    assert_eq!(t["servers"]["filesystem"]["command"].as_str(), Some("npx"));

    let (t, out) = import_checked(d, "cursor-mcp.json", "cursor");
    assert_eq!(
        t["servers"]["server-name"]["env"]["API_KEY"].as_str(),
        Some("${API_KEY-}")
    );
    assert_eq!(
        t["servers"]["remote-server"]["url"].as_str(),
        Some("http://localhost:3000/mcp")
    );
    assert!(out.contains("warning: 2 servers are enabled"), "{out}");

    let (t, out) = import_checked(d, "vscode-mcp.json", "vscode");
    assert_eq!(
        t["servers"]["Perplexity"]["env"]["PERPLEXITY_API_KEY"].as_str(),
        Some("${GAVEL_INPUT_PERPLEXITY_KEY}")
    );
    assert_eq!(
        t["servers"]["github"]["url"].as_str(),
        Some("https://api.githubcopilot.com/mcp/")
    );
    assert_eq!(required_env(&out), ["GAVEL_INPUT_PERPLEXITY_KEY"]);

    // Windsurf: the remote server kept, the switched-off tools denied.
    let (t, _) = import_checked(d, "windsurf-mcp_config.json", "windsurf");
    assert_eq!(
        t["servers"]["figma"]["url"].as_str(),
        Some("https://your-server-url.example/mcp")
    );
    assert_eq!(
        t["servers"]["figma"]["headers"]["Authorization"].as_str(),
        Some("Bearer ${AUTH_TOKEN-}")
    );
    assert_eq!(
        t["servers"]["github"]["tools"]["deny"],
        toml::Value::try_from(["create_repository", "push_files"]).unwrap()
    );

    let (t, _) = import_checked(d, "zed-settings.json", "zed");
    assert_eq!(
        t["servers"]["mcp-local-server"]["command"].as_str(),
        Some("uv")
    );
    assert_eq!(
        t["servers"]["remote-mcp-server"]["url"].as_str(),
        Some("https://example.com/mcp")
    );
    assert_eq!(
        t["servers"]["local-mcp-server"]["args"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let (t, out) = import_checked(d, "codex-config.toml", "codex");
    assert_eq!(
        t["servers"]["figma"]["headers"]["Authorization"].as_str(),
        Some("Bearer ${FIGMA_OAUTH_TOKEN}")
    );
    let chrome = &t["servers"]["chrome_devtools"];
    assert_eq!(
        chrome["tools"]["allow"],
        toml::Value::try_from(["open", "screenshot"]).unwrap()
    );
    assert_eq!(
        chrome["tools"]["deny"],
        toml::Value::try_from(["screenshot"]).unwrap()
    );
    assert_eq!(chrome["call_timeout"].as_str(), Some("45000ms"));
    assert_eq!(required_env(&out), ["FIGMA_OAUTH_TOKEN"]);

    let (t, out) = import_checked(d, "gemini-settings.json", "gemini");
    assert_eq!(
        t["servers"]["httpServer"]["url"].as_str(),
        Some("http://localhost:3000/mcp")
    );
    assert_eq!(t["servers"]["sseServer"]["enabled"].as_bool(), Some(false));
    assert_eq!(
        t["servers"]["pythonTools"]["env"]["DATABASE_URL"].as_str(),
        Some("${DB_CONNECTION_STRING}")
    );
    let f = &t["servers"]["filteredServer"]["tools"];
    assert_eq!(f["allow"].as_array().unwrap().len(), 3);
    assert_eq!(
        f["deny"],
        toml::Value::try_from(["dangerous_tool", "file_deleter"]).unwrap()
    );
    assert!(out.contains("legacy HTTP+SSE"), "{out}");

    let (t, out) = import_checked(d, "continue-config.yaml", "continue");
    assert_eq!(
        t["servers"]["Brave-Search"]["env"]["BRAVE_API_KEY"].as_str(),
        Some("${BRAVE_API_KEY}")
    );
    assert!(
        out.contains("mcpServers:"),
        "the entry is printed as YAML: {out}"
    );
}

/// Claude Code's `${VAR:-default}` takes the default only when VAR is
/// unset; gavel's `:-` also replaces an empty value. The import keeps
/// Claude Code's meaning, in a `url` too (this aborted with "internal
/// error" before).
#[test]
fn claude_code_variables_mean_what_they_meant() {
    let dir = tempfile::tempdir().unwrap();
    let (t, out) = import_checked(dir.path(), "claude-code.mcp.json", "claude-code");
    assert_eq!(
        t["servers"]["api-server"]["url"].as_str(),
        Some("${API_BASE_URL-https://api.example.com}/mcp")
    );
    assert_eq!(required_env(&out), ["API_KEY"]);
    let cfg = dir.path().join("claude-code.mcp.json.toml");
    let check = |env: &[(&str, &str)]| {
        gavel_env(&["config", "check", "--config", cfg.to_str().unwrap()], env)
    };
    let unset = ok(&check(&[("API_KEY", "k")]));
    assert!(unset.contains("https://api.example.com/mcp"), "{unset}");
    let set = ok(&check(&[
        ("API_KEY", "k"),
        ("API_BASE_URL", "https://other.example"),
    ]));
    assert!(set.contains("https://other.example/mcp"), "{set}");
    // Set but empty: Claude Code uses "", so the URL is "/mcp" — refused, not defaulted.
    let empty = failed(&check(&[("API_KEY", "k"), ("API_BASE_URL", "")]));
    assert!(empty.contains("servers.api-server.url"), "{empty}");
    let missing = failed(&check(&[]));
    assert!(missing.contains("API_KEY"), "{missing}");
}

#[test]
fn an_unknown_file_names_every_format_tried() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("hosts.conf");
    std::fs::write(&f, "servers = [").unwrap();
    let o = dir.path().join("o.toml");
    let err = failed(&gavel_env(
        &["import", f.to_str().unwrap(), "-o", o.to_str().unwrap()],
        &[],
    ));
    for format in ["JSON/JSONC", "TOML (Codex CLI", "YAML (Continue)"] {
        assert!(err.contains(format), "{err}");
    }
    assert!(!o.exists());
}

/// The host entry install wrote, launched as the host launches it.
async fn launch(entry: &Value, env: &[(&str, &str)]) -> Client {
    let mut cmd = tokio::process::Command::new(entry["command"].as_str().unwrap());
    for a in entry["args"].as_array().unwrap() {
        cmd.arg(a.as_str().unwrap());
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    connect_cmd(cmd, TestHost::new()).await
}

/// A copy of fixture `name` at `dir/as_name`, and its bytes.
fn copy_fixture(dir: &Path, name: &str, as_name: &str) -> (PathBuf, Vec<u8>) {
    let p = dir.join(as_name);
    let bytes = std::fs::read(host_file(name)).unwrap();
    std::fs::write(&p, &bytes).unwrap();
    (p, bytes)
}

fn install(host: &str, config: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "install",
        "--host",
        host,
        "--config-file",
        config.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    gavel_env(&args, &[])
}

fn uninstall(host: &str, config: &Path) -> Output {
    gavel_env(
        &[
            "uninstall",
            "--host",
            host,
            "--config-file",
            config.to_str().unwrap(),
        ],
        &[],
    )
}

fn backups(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".gavel-backup-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn install_claude_code_puts_gavel_in_front_of_server_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (config, original) =
        copy_fixture(dir.path(), "claude-code-everything.mcp.json", ".mcp.json");
    // A dry run writes nothing.
    let dry = ok(&install("claude-code", &config, &["--dry-run"]));
    assert!(dry.contains("not written"), "{dry}");
    assert_eq!(std::fs::read(&config).unwrap(), original);
    assert!(backups(dir.path()).is_empty() && !dir.path().join("gavel-servers.toml").exists());

    // Host configs hold tokens: what install writes keeps them private.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
    ok(&install("claude-code", &config, &[]));
    assert_eq!(mode(&config), 0o640, "the host config keeps its mode");
    assert_eq!(mode(&dir.path().join("gavel-servers.toml")), 0o600);
    assert_eq!(mode(&backups(dir.path())[0]), 0o600);
    let installed = std::fs::read(&config).unwrap();
    let doc: Value = serde_json::from_slice(&installed).unwrap();
    let servers = doc["mcpServers"].as_object().unwrap();
    assert_eq!(servers.keys().collect::<Vec<_>>(), ["gavel"]);
    let entry = &servers["gavel"];
    assert_eq!(entry["type"], "stdio");
    assert_eq!(entry["command"].as_str(), Some(GAVEL));
    let servers_toml = dir.path().join("gavel-servers.toml");
    assert_eq!(
        entry["args"],
        json!(["run", "--config", servers_toml.to_str().unwrap()])
    );
    let b = backups(dir.path());
    assert_eq!(b.len(), 1);
    assert_eq!(
        std::fs::read(&b[0]).unwrap(),
        original,
        "the backup is the original"
    );

    // The host's launch: gavel proxies the real server, with the
    // variables of .mcp.json expanded as Claude Code would.
    let path = everything();
    let client = launch(entry, &[("GAVEL_TEST_EVERYTHING", path.to_str().unwrap())]).await;
    let r = call(&client, "echo", json!({"message": "through gavel"}))
        .await
        .unwrap();
    assert_eq!(text(&r), "Echo: through gavel");
    let r = call(&client, "get-env", json!({})).await.unwrap();
    let env: Value = serde_json::from_str(&text(&r)).unwrap();
    assert_eq!(
        env["GREETING"], "hello",
        "${{GREETING:-hello}} with GREETING unset"
    );
    client.cancel().await.unwrap();

    // Installing again changes nothing.
    let again = ok(&install("claude-code", &config, &[]));
    assert!(again.contains("nothing changed"), "{again}");
    assert_eq!(std::fs::read(&config).unwrap(), installed);
    assert_eq!(backups(dir.path()).len(), 1);

    // Uninstall gives back the original bytes (for the host it was installed as).
    let e = failed(&uninstall("cursor", &config));
    assert!(e.contains("--host claude-code"), "{e}");
    ok(&uninstall("claude-code", &config));
    assert_eq!(std::fs::read(&config).unwrap(), original);
    let e = failed(&uninstall("claude-code", &config));
    assert!(e.contains("not installed"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn install_vscode_settings_keeps_comments_and_other_settings() {
    let dir = tempfile::tempdir().unwrap();
    let (config, original) = copy_fixture(dir.path(), "vscode-settings.json", "settings.json");
    ok(&install("vscode", &config, &[]));
    let written = std::fs::read_to_string(&config).unwrap();
    for kept in [
        "// VS Code user settings",
        "/* kept as it is by gavel install */",
        "\"editor.fontSize\": 14",
        "\"workbench.colorTheme\"",
    ] {
        assert!(written.contains(kept), "{kept} missing from {written}");
    }
    let doc = jsonc_parser::cst::CstRootNode::parse(&written, &Default::default())
        .unwrap()
        .to_serde_value()
        .unwrap();
    let servers = doc["mcp"]["servers"].as_object().unwrap();
    assert_eq!(servers.keys().collect::<Vec<_>>(), ["gavel"]);
    assert_eq!(servers["gavel"]["type"], "stdio");
    // VS Code's ${env:…} reaches the server through gavel.
    let path = everything();
    let client = launch(
        &servers["gavel"],
        &[("GAVEL_TEST_EVERYTHING", path.to_str().unwrap())],
    )
    .await;
    let r = call(&client, "echo", json!({"message": "jsonc"}))
        .await
        .unwrap();
    assert_eq!(text(&r), "Echo: jsonc");
    client.cancel().await.unwrap();
    ok(&uninstall("vscode", &config));
    assert_eq!(std::fs::read(&config).unwrap(), original);
}

/// Gemini's `includeTools`/`excludeTools` through gavel: never wider. Two
/// servers, so names are SERVER__TOOL.
#[tokio::test(flavor = "multi_thread")]
async fn tool_restrictions_are_never_widened() {
    let dir = tempfile::tempdir().unwrap();
    let (config, original) = copy_fixture(dir.path(), "gemini-everything.json", "settings.json");
    let out = ok(&install("gemini", &config, &[]));
    assert!(out.contains("warning: 2 servers are enabled"), "{out}");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let path = everything();
    let client = launch(
        &doc["mcpServers"]["gavel"],
        &[("GAVEL_TEST_EVERYTHING", path.to_str().unwrap())],
    )
    .await;
    let names = tool_names(&client).await;
    assert!(names.contains(&"everything__echo".to_string()), "{names:?}");
    // Not included, or excluded: not listed.
    for hidden in ["everything__get-sum", "everything__get-env", "second__echo"] {
        assert!(
            !names.contains(&hidden.to_string()),
            "{hidden} listed: {names:?}"
        );
    }
    assert!(names.contains(&"second__get-sum".to_string()), "{names:?}");
    // Nor callable.
    for denied in ["everything__get-sum", "second__echo"] {
        let r = call(&client, denied, json!({"a": 1, "b": 2, "message": "x"}))
            .await
            .unwrap();
        assert_eq!(r.is_error, Some(true), "{denied}: {}", text(&r));
        assert!(text(&r).contains("static_rule"), "{denied}: {}", text(&r));
    }
    let r = call(&client, "second__get-sum", json!({"a": 2, "b": 40}))
        .await
        .unwrap();
    assert!(text(&r).contains("42"), "{}", text(&r));
    client.cancel().await.unwrap();
    ok(&uninstall("gemini", &config));
    assert_eq!(std::fs::read(&config).unwrap(), original);
}

#[test]
fn install_codex_rewrites_the_toml_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let (config, original) = copy_fixture(dir.path(), "codex-config.toml", "config.toml");
    ok(&install("codex", &config, &[]));
    let text = std::fs::read_to_string(&config).unwrap();
    for kept in [
        "# Codex CLI ~/.codex/config.toml",
        "model = \"gpt-5-codex\"",
        "[mcp_servers.gavel]",
    ] {
        assert!(text.contains(kept), "{kept} missing from {text}");
    }
    let doc: toml::Table = toml::from_str(&text).unwrap();
    let servers = doc["mcp_servers"].as_table().unwrap();
    assert_eq!(servers.keys().collect::<Vec<_>>(), ["gavel"]);
    assert_eq!(servers["gavel"]["args"][0].as_str(), Some("run"));
    // Changed since install: uninstall refuses without --force.
    std::fs::write(&config, format!("{text}\n# edited\n")).unwrap();
    let e = failed(&uninstall("codex", &config));
    assert!(e.contains("changed since"), "{e}");
    ok(&gavel_env(
        &[
            "uninstall",
            "--host",
            "codex",
            "--config-file",
            config.to_str().unwrap(),
            "--force",
        ],
        &[],
    ));
    assert_eq!(std::fs::read(&config).unwrap(), original);
}

/// The other JSON hosts: install, the host's launch proxying the real
/// server, uninstall — each in its own file shape and servers key.
#[tokio::test(flavor = "multi_thread")]
async fn install_works_for_every_json_host() {
    let path = everything();
    let server = json!({"command": "node", "args": [path.to_str().unwrap(), "stdio"]});
    for (host, file, key) in [
        ("claude-desktop", "claude_desktop_config.json", "mcpServers"),
        ("cursor", "mcp.json", "mcpServers"),
        ("windsurf", "mcp_config.json", "mcpServers"),
        ("zed", "settings.json", "context_servers"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join(file);
        let original = serde_json::to_vec_pretty(&json!({key: {"everything": server}})).unwrap();
        std::fs::write(&config, &original).unwrap();
        ok(&install(host, &config, &[]));
        let doc: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
        let servers = doc[key].as_object().unwrap();
        assert_eq!(servers.keys().collect::<Vec<_>>(), ["gavel"], "{host}");
        let client = launch(&servers["gavel"], &[]).await;
        let r = call(&client, "echo", json!({"message": host}))
            .await
            .unwrap();
        assert_eq!(text(&r), format!("Echo: {host}"));
        client.cancel().await.unwrap();
        ok(&uninstall(host, &config));
        assert_eq!(std::fs::read(&config).unwrap(), original, "{host}");
    }
}

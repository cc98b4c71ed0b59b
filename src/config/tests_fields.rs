//! Every error names the dotted field: type errors of the typed parse in
//! every section (keypath.rs), and the values `run`/`serve` parse at use,
//! now checked at load (values.rs, the `[auth]` algorithm).

use std::path::Path;

use super::*;

const SERVER: &str = "[servers.fs]\ncommand = \"x\"\n";

fn err(text: &str) -> String {
    Config::from_toml_str(text, Path::new("/etc/gavel/servers.toml"), &|k| {
        (k == "SECRET").then(|| "s3cret".to_string())
    })
    .expect_err(text)
    .to_string()
}

/// `text` fails, and its error names `field` (and says where).
fn names(text: &str, field: &str) {
    let e = err(text);
    assert!(
        e.starts_with("/etc/gavel/servers.toml:") && e.contains(&format!(" {field}: ")),
        "{text:?} should name {field}: {e}"
    );
}

// One piece (over 80 lines) because it is a table of cases, one line a
// case, read top to bottom; the loops that run them are a few lines.
#[test]
fn type_errors_name_the_dotted_field_in_every_section() {
    let in_server = [
        ("startup_timeout = 5", "servers.fs.startup_timeout"),
        ("args = \"x\"", "servers.fs.args"),
        ("args = [\"a\", 5]", "servers.fs.args"),
        ("cwd = { a = 1 }", "servers.fs.cwd"),
        ("env = { A = 5 }", "servers.fs.env.A"),
        ("enabled = \"yes\"", "servers.fs.enabled"),
        ("tools = \"x\"", "servers.fs.tools"),
        ("keys = \"k\"", "servers.fs.keys"),
        ("limits = 5", "servers.fs.limits"),
        ("bundles = \"b\"", "servers.fs.bundles"),
        ("session_mode = 1", "servers.fs.session_mode"),
        ("era = 1", "servers.fs.era"),
    ];
    for (line, field) in in_server {
        names(&format!("{SERVER}{line}\n"), field);
    }
    let sections = [
        (
            "[servers.fs.tools]\nallow = \"x\"",
            "servers.fs.tools.allow",
        ),
        ("[servers.fs.cwd]\nx = 1", "servers.fs.cwd"),
        ("[identity.user]\nid = 5", "identity.user.id"),
        (
            "[identity.environment]\nis_production = \"no\"",
            "identity.environment.is_production",
        ),
        (
            "[identity.environment]\nlabels = { team = 1 }",
            "identity.environment.labels.team",
        ),
        ("[identity.agent]\nscope = \"read\"", "identity.agent.scope"),
        (
            "[limits]\nmax_message_bytes = true",
            "limits.max_message_bytes",
        ),
        (
            "[limits]\nstderr_tail_lines = \"9\"",
            "limits.stderr_tail_lines",
        ),
        ("[log]\nlevel = 5", "log.level"),
        ("[log]\nsecret_fields = \"token\"", "log.secret_fields"),
        ("[log]\nrotate_keep = \"3\"", "log.rotate_keep"),
        (
            "[policy]\nrequire_bundle = \"yes\"",
            "policy.require_bundle",
        ),
        ("[policy]\nshared_bundles = \"b\"", "policy.shared_bundles"),
        ("[keys.k]\nalgorithm = 256", "keys.k.algorithm"),
        ("[metrics]\nlisten = 9464", "metrics.listen"),
        ("[budget]\ncalls = \"10\"", "budget.calls"),
        (
            "[auth]\nissuer = 5\naudience = \"https://g.example/mcp\"",
            "auth.issuer",
        ),
        ("[state]\npath = 5", "state.path"),
        ("[oci]\nmin_delay = 60", "oci.min_delay"),
        (
            "[oci.registries.\"r.example:5000\"]\ninsecure = \"yes\"",
            "oci.registries.\"r.example:5000\".insecure",
        ),
        ("[serve]\nmax_sessions = \"many\"", "serve.max_sessions"),
        ("[serve]\nallowed_hosts = \"h\"", "serve.allowed_hosts"),
        ("[serve]\nlisen = \"127.0.0.1:1\"", "serve.lisen"),
        ("log = \"debug\"", "log"),
    ];
    for (table, field) in sections {
        // Before and after the server table: the path never leaks from a neighbour.
        names(&format!("{table}\n{SERVER}"), field);
        if !table.starts_with('[') {
            continue;
        }
        names(&format!("{SERVER}{table}\n"), field);
    }
    names("servers = \"x\"\n", "servers");
    names("[servers]\nfs = \"x\"\n", "servers.fs");
    names(
        &format!("{SERVER}[auth]\naudience = \"https://g.example/mcp\"\n"),
        "auth",
    );
}

#[test]
fn values_used_at_run_or_serve_time_are_checked_at_load() {
    let auth = "[auth]\nissuer = \"https://idp.example\"\naudience = \"https://g.example/mcp\"\n";
    let cases = [
        ("[log]\nlevel = \"gavel=loud\"\n".to_string(), "log.level"),
        (
            format!("{auth}key_file = \"k.pem\"\nalgorithm = \"ES512\"\n"),
            "auth.algorithm",
        ),
        (
            format!("{auth}key_file = \"k.pem\"\nalgorithm = \"HS256\"\n"),
            "auth.algorithm",
        ),
        (format!("{auth}key_env = \"SECRET\"\n"), "auth.algorithm"),
        (
            "[state]\nbackend = \"redis\"\nredis_url = \"http://cache.example\"\n".to_string(),
            "state.redis_url",
        ),
    ];
    for (text, field) in &cases {
        names(&format!("{text}{SERVER}"), field);
    }
    let http = "[servers.web]\nurl = ";
    for (server, field) in [
        (format!("{http}\"https://\"\n"), "servers.web.url"),
        (
            format!("{http}\"http://exa mple/mcp\"\n"),
            "servers.web.url",
        ),
        (
            format!("{http}\"https://h.example/mcp\"\nheaders = {{ \"Bad Name\" = \"x\" }}\n"),
            "servers.web.headers.Bad Name",
        ),
        (
            format!("{http}\"https://h.example/mcp\"\nheaders = {{ X = \"a\\nb\" }}\n"),
            "servers.web.headers.X",
        ),
        (
            "[servers.p]\ncommand = \"x\"\nenv = { \"A=B\" = \"x\" }\n".to_string(),
            "servers.p.env.A=B",
        ),
        (
            "[servers.p]\ncommand = \"x\"\nenv = { A = \"x\\u0000\" }\n".to_string(),
            "servers.p.env.A",
        ),
        (
            "[servers.p]\ncommand = \"x\"\nargs = [\"a\\u0000\"]\n".to_string(),
            "servers.p.args",
        ),
        (
            "[servers.p]\ncommand = \"x\\u0000\"\n".to_string(),
            "servers.p.command",
        ),
    ] {
        names(&server, field);
    }
    // What is valid stays valid.
    let ok = format!(
        "[log]\nlevel = \"info,gavel=debug\"\n{auth}key_env = \"SECRET\"\nalgorithm = \"HS384\"\n[state]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:6379/0\"\n[servers.web]\nurl = \"https://h.example/mcp\"\nheaders = {{ Authorization = \"Bearer x\" }}\n"
    );
    Config::from_toml_str(&ok, Path::new("/etc/gavel/servers.toml"), &|_| None).unwrap();
}

#[test]
fn era_is_auto_unless_set_and_an_unknown_era_names_its_field() {
    let parse = |extra: &str| {
        Config::from_toml_str(
            &format!("{SERVER}{extra}"),
            Path::new("/etc/gavel/servers.toml"),
            &|_| None,
        )
        .unwrap()
        .servers["fs"]
            .era
    };
    assert_eq!(parse(""), Era::Auto);
    assert_eq!(parse("era = \"auto\"\n"), Era::Auto);
    assert_eq!(parse("era = \"legacy\"\n"), Era::Legacy);
    assert_eq!(parse("era = \"modern\"\n"), Era::Modern);
    names(&format!("{SERVER}era = \"2026\"\n"), "servers.fs.era");
    assert!(err(&format!("{SERVER}era = \"2026\"\n")).contains("\"legacy\""));
}

#[test]
fn unlisted_tools_is_refuse_by_default_or_forward() {
    let parse = |extra: &str| {
        Config::from_toml_str(
            &format!("{SERVER}{extra}"),
            Path::new("/etc/gavel/servers.toml"),
            &|_| None,
        )
        .unwrap()
        .servers["fs"]
            .forward_unlisted
    };
    assert!(!parse(""));
    assert!(!parse("unlisted_tools = \"refuse\"\n"));
    assert!(parse("unlisted_tools = \"forward\"\n"));
    names(
        &format!("{SERVER}unlisted_tools = \"yes\"\n"),
        "servers.fs.unlisted_tools",
    );
    assert!(err(&format!("{SERVER}unlisted_tools = true\n")).contains("unlisted_tools"));
}

//! `gavel status`: every running gavel on this machine, read from the
//! status files they keep (`crate::status`), as text or JSON.

use serde_json::Value;

use super::say;

pub fn run(json: bool) -> anyhow::Result<()> {
    let all = crate::status::read_all(&crate::status::state_dir());
    if json {
        say(serde_json::to_string_pretty(&all)?);
    } else if all.is_empty() {
        say("no running gavel instances");
    } else {
        all.iter().for_each(print_instance);
    }
    Ok(())
}

/// One instance: its process, what it serves, each server's upstream and
/// policy, and the tool names it withholds.
fn print_instance(i: &Value) {
    say(format!(
        "gavel pid {} (since {}, config {})",
        i["pid"],
        i["started"].as_str().unwrap_or("?"),
        i["config"]
    ));
    if let Some(url) = i["serving"].as_str() {
        say(format!(
            "  serving {url}, {} HTTP sessions open",
            i["http_sessions"]
        ));
    }
    for (name, p) in i["policies"].as_object().into_iter().flatten() {
        print_server(name, p, &i["session"]["upstreams"][name]);
    }
    for w in i["session"]["withheld_names"]
        .as_array()
        .into_iter()
        .flatten()
    {
        say(format!(
            "  withheld (name collision): {}",
            w.as_str().unwrap_or("?")
        ));
    }
}

/// One server: its upstream's phase (and MCP era, or why it is down), its
/// policy, and each registry bundle.
fn print_server(name: &str, p: &Value, up: &Value) {
    say(format!(
        "  {name}: upstream {}{} (restarts {}), policy {} {}{}",
        up["phase"].as_str().unwrap_or("-"),
        up["era"]
            .as_str()
            .map(|e| format!(", {e} era"))
            .unwrap_or_default(),
        up["restarts"],
        p["policy"].as_str().unwrap_or("?"),
        p["version"].as_str().unwrap_or(""),
        p["last_error"]
            .as_str()
            .map(|e| format!(" — {e}"))
            .unwrap_or_default()
    ));
    if let Some(e) = up["last_error"].as_str() {
        say(format!(
            "    upstream error: {}",
            crate::text::escape_controls(e)
        ));
    }
    print_lint(&p["lint"]);
    let sh = &p["shadow"];
    if sh.is_object() {
        say(format!(
            "    shadow (never decides): {} {}{}",
            sh["policy"].as_str().unwrap_or("?"),
            sh["version"].as_str().unwrap_or(""),
            sh["last_error"]
                .as_str()
                .map(|e| format!(" — {e}"))
                .unwrap_or_default()
        ));
    }
    print_oci(&p["oci"]);
    for (persona, pp) in p["personas"].as_object().into_iter().flatten() {
        print_persona(persona, pp);
    }
}

/// One persona's policy for a server: its version and bundle revisions.
fn print_persona(name: &str, p: &Value) {
    let bundles: Vec<String> = p["bundles"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            format!(
                "{}@{} ({})",
                b["name"].as_str().unwrap_or("?"),
                b["active_revision"].as_str().unwrap_or("-"),
                b["layer"].as_str().unwrap_or("-")
            )
        })
        .collect();
    say(format!(
        "    persona {name}: policy {}{}{}",
        p["policy"].as_str().unwrap_or("?"),
        if bundles.is_empty() {
            String::new()
        } else {
            format!(", bundles {}", bundles.join(", "))
        },
        p["last_error"]
            .as_str()
            .map(|e| format!(" — {e}"))
            .unwrap_or_default()
    ));
    print_oci(&p["oci"]);
}

/// Each registry bundle's status (OPA's fields).
fn print_oci(oci: &Value) {
    for o in oci.as_array().into_iter().flatten() {
        say(format!(
            "    {}: revision {} ({}, from {}), signer {}, activated {}, last pull {}{}",
            o["name"].as_str().unwrap_or("?"),
            o["active_revision"].as_str().unwrap_or("-"),
            o["active_digest"].as_str().unwrap_or("no bundle"),
            o["source"].as_str().unwrap_or("-"),
            // This entry's own signer (layers can have different ones).
            o["signer_keyid"].as_str().unwrap_or("-"),
            o["last_successful_activation"].as_str().unwrap_or("never"),
            o["last_successful_download"].as_str().unwrap_or("never"),
            o["message"]
                .as_str()
                .map(|e| format!("\n      last error: {e}"))
                .unwrap_or_default()
        ));
    }
}

/// The schema lint of a server's policy against its tools (`gavel lint`'s
/// checks, run when its upstream lists them and on every activation).
fn print_lint(l: &Value) {
    if l["checked"] != Value::Bool(true) {
        return;
    }
    say(format!(
        "    lint: {} error(s), {} warning(s)",
        l["errors"], l["warnings"]
    ));
    for f in l["findings"].as_array().into_iter().flatten() {
        say(format!(
            "      {} {} {}:{}: {}",
            f["severity"].as_str().unwrap_or("?"),
            f["bundle"].as_str().unwrap_or("-"),
            f["file"].as_str().unwrap_or("-"),
            f["line"],
            crate::text::escape_controls(f["message"].as_str().unwrap_or(""))
        ));
    }
}

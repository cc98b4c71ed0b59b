use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, Path::new("/etc/gavel/servers.toml"), &|k| {
        (k == "TEAM").then(|| "hr".to_string())
    })
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

const SERVERS: &str = "[servers.fs]\ncommand = \"a\"\n[servers.mail]\ncommand = \"b\"\n";

#[test]
fn personas_parse_with_servers_bundles_roles_and_the_default() {
    let c = parse(&format!(
        "{SERVERS}[policy]\nunmatched_persona = \"base\"\n\
         [personas.hr]\nagents = [\"hr-bot\", \"${{TEAM}}-*\"]\nservers = [\"mail\"]\nbundles = [\"hr-policy\"]\n\
         [personas.hr.bundle_roles.\"hr-policy\"]\nlayer = \"identity\"\n\
         [personas.dev]\nagents = [\"dev-bot\"]\n"
    ))
    .unwrap();
    let p = &c.personas;
    assert!(p.enabled());
    assert_eq!(p.unmatched, UnmatchedPersona::Base);
    let hr = &p.by_name["hr"];
    // ${TEAM} expands; `hr-bot` and `hr-*` overlap within one persona: fine.
    assert_eq!(hr.agents, ["hr-bot", "hr-*"]);
    assert_eq!(hr.bundles, ["/etc/gavel/hr-policy"]);
    assert_eq!(
        hr.bundle_roles["/etc/gavel/hr-policy"].layer.as_deref(),
        Some("identity")
    );
    assert!(hr.reaches("mail") && !hr.reaches("fs"));
    assert!(p.by_name["dev"].reaches("fs"), "no servers: every server");
    assert_eq!(p.of("hr-payroll").map(|p| p.name.as_str()), Some("hr"));
    assert_eq!(p.of("dev-bot").map(|p| p.name.as_str()), Some("dev"));
    assert!(p.of("dev-bot-2").is_none());
    assert_eq!(p.reaching("fs").count(), 1);
}

#[test]
fn without_personas_the_feature_is_off_and_unmatched_defaults_to_deny() {
    let c = parse(SERVERS).unwrap();
    assert!(!c.personas.enabled());
    assert_eq!(c.personas.unmatched, UnmatchedPersona::Deny);
}

#[test]
fn an_unknown_server_in_a_persona_is_named_with_the_known_ones() {
    let e = err(&format!(
        "{SERVERS}[personas.hr]\nagents = [\"hr-bot\"]\nservers = [\"mial\"]\n"
    ));
    assert!(e.contains("personas.hr.servers"), "{e}");
    assert!(
        e.contains("no [servers.mial]") && e.contains("fs, mail"),
        "{e}"
    );
    assert!(e.contains(":7:"), "line of the key: {e}");
    let e = err(&format!(
        "{SERVERS}[personas.hr]\nagents = [\"hr-bot\"]\nservers = []\n"
    ));
    assert!(e.contains("reaches no server"), "{e}");
}

#[test]
fn an_agent_in_two_personas_is_refused_exact_or_by_glob() {
    let e = err(&format!(
        "{SERVERS}[personas.hr]\nagents = [\"bot-1\"]\n[personas.it]\nagents = [\"bot-1\"]\n"
    ));
    assert!(e.contains("personas.it.agents"), "{e}");
    assert!(
        e.contains("agent \"bot-1\" is listed by both persona \"hr\" and persona \"it\""),
        "{e}"
    );
    let e = err(&format!(
        "{SERVERS}[personas.hr]\nagents = [\"hr-*\"]\n[personas.it]\nagents = [\"hr-it\"]\n"
    ));
    assert!(e.contains("\"hr-*\" (persona \"hr\") and \"hr-it\""), "{e}");
    let e = err(&format!(
        "{SERVERS}[personas.hr]\nagents = [\"*-bot\"]\n[personas.it]\nagents = [\"it-*\"]\n"
    ));
    assert!(e.contains("can match the same agent id"), "{e}");
    // Disjoint globs are fine.
    parse(&format!(
        "{SERVERS}[personas.hr]\nagents = [\"hr-*\"]\n[personas.it]\nagents = [\"it-*\", \"h*x\"]\n"
    ))
    .unwrap_err(); // h*x overlaps hr-* ("hr-x")
    parse(&format!(
        "{SERVERS}[personas.hr]\nagents = [\"hr-*\"]\n[personas.it]\nagents = [\"it-*\", \"x*\"]\n"
    ))
    .unwrap();
}

#[test]
fn bad_globs_and_empty_agent_lists_are_refused() {
    for (pattern, why) in [
        ("", "empty agent id"),
        ("hr-?", "only `*` is a wildcard"),
        ("hr-[ab]", "only `*` is a wildcard"),
        ("hr-**", "`**`"),
        ("*", "matches every agent"),
        ("hr bot", "whitespace"),
    ] {
        let e = err(&format!(
            "{SERVERS}[personas.hr]\nagents = [\"{pattern}\"]\n"
        ));
        assert!(
            e.contains("personas.hr.agents") && e.contains(why),
            "{pattern}: {e}"
        );
    }
    let e = err(&format!("{SERVERS}[personas.hr]\nservers = [\"fs\"]\n"));
    assert!(e.contains("at least one agent"), "{e}");
    let e = err(&format!("{SERVERS}[personas.\"h r\"]\nagents = [\"x\"]\n"));
    assert!(e.contains("invalid persona name"), "{e}");
    let e = err(&format!(
        "{SERVERS}[personas.hr]\nagents = [\"x\"]\nbundle = \"p\"\n"
    ));
    assert!(e.contains("bundle"), "unknown key: {e}");
}

#[test]
fn unmatched_persona_takes_deny_or_base_only() {
    let e = err(&format!(
        "{SERVERS}[policy]\nunmatched_persona = \"allow\"\n"
    ));
    assert!(
        e.contains("policy.unmatched_persona") && e.contains("\"deny\""),
        "{e}"
    );
}

#[test]
fn a_roles_entry_must_name_one_of_the_personas_bundles() {
    let e = err(&format!(
        "{SERVERS}[personas.hr]\nagents = [\"x\"]\nbundles = [\"a\"]\n[personas.hr.bundle_roles.\"b\"]\nlayer = \"identity\"\n"
    ));
    assert!(
        e.contains("personas.hr.bundle_roles") && e.contains("not one of the bundles"),
        "{e}"
    );
}

#[test]
fn a_registry_persona_bundle_must_be_signed_on_every_server_it_reaches() {
    let e = err(&format!(
        "{SERVERS}[personas.hr]\nagents = [\"x\"]\nservers = [\"mail\"]\nbundles = [\"oci://reg.example/hr:1\"]\n"
    ));
    assert!(
        e.contains("servers.mail.keys") && e.contains("persona \"hr\""),
        "{e}"
    );
    let c = parse(
        "[servers.fs]\ncommand = \"a\"\n[servers.mail]\ncommand = \"b\"\nrequire_signature = false\n\
         [personas.hr]\nagents = [\"x\"]\nservers = [\"mail\"]\nbundles = [\"oci://reg.example/hr:1\"]\n",
    )
    .unwrap();
    assert!(!c.servers["mail"].signing.require_signature);
    let e = err("[servers.fs]\ncommand = \"a\"\nfail_open = true\n\
         [personas.hr]\nagents = [\"x\"]\nbundles = [\"oci://reg.example/hr:1\"]\n");
    assert!(e.contains("fail_open"), "{e}");
}

#[test]
fn globs_match_and_overlap_as_documented() {
    assert!(glob_match("hr-*", "hr-"));
    assert!(glob_match("hr-*", "hr-payroll"));
    assert!(glob_match("*-bot", "it-bot"));
    assert!(glob_match("a*b*c", "a-b-b-c"));
    assert!(!glob_match("a*b*c", "a-b-b-"));
    assert!(!glob_match("hr-*", "xhr-1"));
    assert!(glob_match("exact", "exact") && !glob_match("exact", "exact2"));
    assert!(glob_match("ü-*-ß", "ü-bot-ß") && !glob_match("ü-*", "u-bot"));
    assert!(glob_match("*é", "xé") && !glob_match("*é", "xe"));
    assert!(globs_overlap("hr-*", "*-bot"));
    assert!(globs_overlap("a*", "*b"));
    assert!(!globs_overlap("a*", "b*"));
    assert!(!globs_overlap("a*x", "a*y"));
    assert!(globs_overlap("a*x", "a*"));
    assert!(!globs_overlap("abc", "abd"));
}

#[test]
fn config_check_renders_personas_so_that_they_parse_back_the_same() {
    let c = parse(&format!(
        "{SERVERS}[policy]\nunmatched_persona = \"base\"\n\
         [personas.hr]\nagents = [\"hr-*\"]\nservers = [\"mail\"]\nbundles = [\"/b/hr\"]\n\
         [personas.hr.bundle_roles.\"/b/hr\"]\nlayer = \"identity\"\n"
    ))
    .unwrap();
    let out = c.render_masked();
    assert!(out.contains("unmatched_persona = \"base\""), "{out}");
    let again = parse(&out).unwrap();
    assert_eq!(again.personas, c.personas, "{out}");
    // Without personas nothing is added.
    assert!(!parse(SERVERS).unwrap().render_masked().contains("persona"));
}

#[test]
fn a_persona_bundle_that_already_is_a_layer_is_refused() {
    let e = err(
        "[servers.fs]\ncommand = \"a\"\nbundle = \"p\"\n[personas.hr]\nagents = [\"x\"]\nbundles = [\"p\"]\n",
    );
    assert!(
        e.contains("personas.hr.bundles") && e.contains("already in servers.fs.bundle(s)"),
        "{e}"
    );
    let e = err(&format!(
        "{SERVERS}[policy]\nshared_bundles = [\"s\"]\n[personas.hr]\nagents = [\"x\"]\nbundles = [\"s\"]\n"
    ));
    assert!(e.contains("already in [policy] shared_bundles"), "{e}");
    // A server the persona does not reach may have it.
    parse(
        "[servers.fs]\ncommand = \"a\"\nbundle = \"p\"\n[servers.mail]\ncommand = \"b\"\n[personas.hr]\nagents = [\"x\"]\nservers = [\"mail\"]\nbundles = [\"p\"]\n",
    )
    .unwrap();
}

//! Building one server's policy: the signature is checked before any
//! bundle file is parsed, and a bundle is bound to what the operator says it
//! is for (`bind`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::bundle::RawBundle;
use crate::config::Config;
use crate::decision::Enforcer;
use crate::policy::source::{Offline, Resolve};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes";

fn write_bundle(dir: &Path, manifest: &str, package: &str, rego_extra: &str) {
    let pkg_dir = dir.join(package.replace('.', "/"));
    std::fs::create_dir_all(&pkg_dir).unwrap();
    std::fs::write(dir.join(".manifest"), manifest).unwrap();
    std::fs::write(
        pkg_dir.join("policy.rego"),
        format!("package {package}\n\ndecision := {{\"allow\": true}}\n{rego_extra}"),
    )
    .unwrap();
}

fn config(text: &str) -> Config {
    Config::from_toml_str(text, Path::new("/etc/gavel/servers.toml"), &|_| None).unwrap()
}

fn check(cfg: &Config, server: &str, resolver: &dyn Resolve) -> Result<String, String> {
    Enforcer::check_server(cfg, server, resolver).map_err(|e| e.to_string())
}

/// A signed bundle whose module was replaced by one that does not even
/// parse: refused for its signature, and the parser never ran (the error is
/// the digest mismatch, not a parse error).
#[test]
fn a_signed_bundle_is_verified_before_any_file_is_parsed() {
    let d = tempfile::tempdir().unwrap();
    let b = d.path().join("b");
    write_bundle(&b, r#"{"revision":"1","roots":["mcp/fs"]}"#, "mcp.fs", "");
    crate::bundle::sign::sign_bundle(&b, "HS256", SECRET, Some("k1"), None).unwrap();
    let cfg = config(&format!(
        "[keys.k1]\nalgorithm = \"HS256\"\nkey = {SECRET:?}\n[servers.fs]\ncommand = \"x\"\nbundle = {:?}\nkeys = [\"k1\"]\n",
        b.display().to_string()
    ));
    assert!(check(&cfg, "fs", &Offline::new(None)).is_ok());
    std::fs::write(
        b.join("mcp/fs/policy.rego"),
        "package mcp.fs\n\ndecision := {{{ this is not rego",
    )
    .unwrap();
    let e = check(&cfg, "fs", &Offline::new(None)).unwrap_err();
    assert!(
        e.contains("failed signature verification") && e.contains("digest mismatch"),
        "{e}"
    );
    assert!(!e.contains("does not parse"), "parsed before verified: {e}");
}

/// Serves registry references from local directories (the supply's role).
struct Registry(HashMap<String, Arc<RawBundle>>);

impl Resolve for Registry {
    fn resolve(&self, owner: &str, reference: &str) -> Result<Arc<RawBundle>, String> {
        match self.0.get(reference) {
            Some(b) => Ok(b.clone()),
            None => Offline::new(None).resolve(owner, reference),
        }
    }
}

fn registry(refs: &[(&str, &Path)]) -> Registry {
    Registry(
        refs.iter()
            .map(|(r, p)| {
                let raw = crate::bundle::read_bundle(p, &Default::default()).unwrap();
                (r.to_string(), Arc::new(raw))
            })
            .collect(),
    )
}

const TEAM: &str = "oci://r.test:5000/team/policy:live";
const ORG: &str = "oci://r.test:5000/org/override:live";

fn server(extra: &str) -> Config {
    config(&format!(
        "[servers.fs]\ncommand = \"x\"\nbundles = [{TEAM:?}]\nrequire_signature = false\n{extra}"
    ))
}

/// A registry bundle made for another server (roots `mcp/other`), or for
/// everything (root `""`), is not this server's policy; one within
/// `mcp/<server>` or within the roots the config declares is.
#[test]
fn a_registry_bundle_must_be_made_for_this_server() {
    let d = tempfile::tempdir().unwrap();
    let other = d.path().join("other");
    write_bundle(&other, r#"{"roots":["mcp/other"]}"#, "mcp.other", "");
    let e = check(&server(""), "fs", &registry(&[(TEAM, &other)])).unwrap_err();
    assert!(
        e.contains("roots [\"mcp/other\"]")
            && e.contains("[\"mcp/fs\"]")
            && e.contains("servers.fs.bundle_roles"),
        "{e}"
    );
    let everything = d.path().join("everything");
    write_bundle(
        &everything,
        r#"{"metadata":{"gavel":{"decision":"mcp/fs/decision"}}}"#,
        "mcp.fs",
        "",
    );
    let e = check(&server(""), "fs", &registry(&[(TEAM, &everything)])).unwrap_err();
    assert!(e.contains("roots [\"\"]"), "{e}");
    let own = d.path().join("own");
    write_bundle(&own, r#"{"roots":["mcp/fs"]}"#, "mcp.fs", "");
    check(&server(""), "fs", &registry(&[(TEAM, &own)])).unwrap();
    // Declared by the operator: another root is this server's after all.
    let declared = format!("[servers.fs.bundle_roles.{TEAM:?}]\nroots = [\"mcp/other\"]\n");
    check(&server(&declared), "fs", &registry(&[(TEAM, &other)])).unwrap();
    let e = check(&server(&declared), "fs", &registry(&[(TEAM, &own)])).unwrap_err();
    assert!(
        e.contains("servers.fs.bundle_roles") && e.contains(".roots"),
        "{e}"
    );
}

/// Which layer a registry bundle plays is the config's word: a team bundle
/// claiming `override` in its manifest is refused unless the operator gave
/// it that layer; a local bundle keeps its manifest's layer.
#[test]
fn a_registry_bundle_cannot_choose_its_own_layer() {
    let d = tempfile::tempdir().unwrap();
    let promoted = d.path().join("promoted");
    write_bundle(
        &promoted,
        r#"{"roots":["mcp/fs"],"metadata":{"gavel":{"layer":"override"}}}"#,
        "mcp.fs",
        "",
    );
    let e = check(&server(""), "fs", &registry(&[(TEAM, &promoted)])).unwrap_err();
    assert!(
        e.contains("declares layer \"override\"") && e.contains("plays \"resource\""),
        "{e}"
    );
    let given = format!("[servers.fs.bundle_roles.{TEAM:?}]\nlayer = \"override\"\n");
    check(&server(&given), "fs", &registry(&[(TEAM, &promoted)])).unwrap();
    let other = format!("[servers.fs.bundle_roles.{TEAM:?}]\nlayer = \"identity\"\n");
    let e = check(&server(&other), "fs", &registry(&[(TEAM, &promoted)])).unwrap_err();
    assert!(e.contains("says \"identity\""), "{e}");
    // The layer the config gives is the one the engine uses.
    let org = d.path().join("org");
    write_bundle(
        &org,
        r#"{"roots":["gavel/override"]}"#,
        "gavel.override",
        "",
    );
    let own = d.path().join("own");
    write_bundle(&own, r#"{"roots":["mcp/fs"]}"#, "mcp.fs", "");
    let cfg = config(&format!(
        "[servers.fs]\ncommand = \"x\"\nbundles = [{TEAM:?}, {ORG:?}]\nrequire_signature = false\n[servers.fs.bundle_roles.{ORG:?}]\nlayer = \"override\"\nroots = [\"gavel/override\"]\n"
    ));
    let resolver = registry(&[(TEAM, &own), (ORG, &org)]);
    let a = super::server_active(
        "fs",
        &cfg.servers["fs"],
        &cfg,
        &super::EngineOptions {
            eval_timeout: cfg.policy.eval_timeout,
            strict_input: false,
        },
        &resolver,
    )
    .unwrap();
    let super::Policy::Rego(engine) = &a.policy else {
        panic!("{:?}", a.unavailable())
    };
    let layers: Vec<String> = engine
        .bundle_info()
        .into_iter()
        .map(|b| format!("{}={}", b.name, b.layer.as_str()))
        .collect();
    assert!(layers.contains(&"org=override".to_string()), "{layers:?}");
    // A local bundle (the operator's own file) keeps its manifest's layer.
    let local = config(&format!(
        "[servers.fs]\ncommand = \"x\"\nbundle = {:?}\n",
        promoted.display().to_string()
    ));
    check(&local, "fs", &Offline::new(None)).unwrap();
}

/// `bundle_roles` keys name one of the table's bundles, with a known layer.
#[test]
fn bundle_roles_are_checked_at_load() {
    let e = Config::from_toml_str(
        &format!("[servers.fs]\ncommand = \"x\"\nbundles = [{TEAM:?}]\nrequire_signature = false\n[servers.fs.bundle_roles.\"oci://r.test:5000/x:1\"]\nlayer = \"resource\"\n"),
        Path::new("/etc/gavel/servers.toml"),
        &|_| None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("servers.fs.bundle_roles") && e.contains("not one of the bundles"),
        "{e}"
    );
    let e = Config::from_toml_str(
        &format!("[servers.fs]\ncommand = \"x\"\nbundles = [{TEAM:?}]\nrequire_signature = false\n[servers.fs.bundle_roles.{TEAM:?}]\nlayer = \"boss\"\n"),
        Path::new("/etc/gavel/servers.toml"),
        &|_| None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(".layer") && e.contains("unknown layer \"boss\""),
        "{e}"
    );
}

//! What a bundle is for is the operator's word, not the bundle's. A
//! signature says who published a bundle; it does not say which server the
//! bundle governs, which layer it plays or that it is newer than what
//! decides now. So, for every bundle a server's policy is built from:
//!
//! - **Layer.** `bundle_roles."REF".layer` in the config decides. A registry
//!   bundle without one plays `resource` (the layer every other layer can
//!   overrule); a local bundle — a path the operator wrote, as trusted as
//!   the config itself — plays what its manifest says. A manifest that
//!   claims another layer than the config gives is refused: a team bundle
//!   cannot promote itself to `override` and waive other layers' denials.
//! - **Roots.** A registry bundle's roots must lie within
//!   `bundle_roles."REF".roots`, else within the server's decision package
//!   `mcp/<server>` (a shared bundle: within `gavel`, the org layers'
//!   namespace). A bundle legitimately signed for `mcp/other` is not this
//!   server's policy; a root of `""` (everything) is never within.
//! - **Rollback** ([`older`]). A tag moving to an older revision than the
//!   active one is refused (by the supply, which knows what is active)
//!   unless the reference pins a digest or `allow_rollback` is set.

use std::cmp::Ordering;

use serde_json::Value;

use crate::bundle::{Bundle, root_contains};
use crate::config::BundleRole;

/// Where a bundle comes from, for the checks and their messages.
pub(super) struct Place<'a> {
    /// `servers.NAME` or `policy` (the table of its `bundle_roles`).
    pub table: String,
    pub server: &'a str,
    pub shared: bool,
    pub oci: bool,
    pub reference: &'a str,
    pub role: Option<&'a BundleRole>,
}

/// Applies the operator's layer to `b` (the engine reads it from the
/// manifest) and refuses a bundle outside its permitted roots.
pub(super) fn bind(b: &mut Bundle, at: &Place) -> Result<(), String> {
    let layer = layer(b, at)?;
    let gavel = b
        .manifest
        .metadata
        .entry("gavel")
        .or_insert_with(|| Value::Object(Default::default()));
    if !gavel.is_object() {
        *gavel = Value::Object(Default::default());
    }
    if let (Value::Object(g), Some(l)) = (gavel, layer) {
        g.insert("layer".into(), Value::String(l));
    }
    roots(b, at)
}

/// The layer `b` plays: the config's, else (registry) `resource`, else
/// (local) the manifest's. `None`: the manifest's default (local, unset).
fn layer(b: &Bundle, at: &Place) -> Result<Option<String>, String> {
    let claimed = b.manifest.gavel("layer").and_then(Value::as_str);
    let configured = at.role.and_then(|r| r.layer.as_deref());
    let (effective, why) = match (configured, at.oci) {
        (Some(l), _) => (l, format!("{}.layer says {l:?}", key(at))),
        (None, true) => (
            "resource",
            format!(
                "{}.layer is not set, so a registry bundle plays \"resource\"",
                key(at)
            ),
        ),
        (None, false) => return Ok(claimed.map(str::to_string)),
    };
    match claimed {
        Some(c) if c != effective => Err(format!(
            "bundle {} declares layer {c:?} in its .manifest but {why}: which layer a bundle plays is the operator's decision; if it is meant to play {c:?}, set {}.layer = {c:?}",
            b.source,
            key(at)
        )),
        _ => Ok(Some(effective.to_string())),
    }
}

/// `<table>.bundle_roles."REF"`.
fn key(at: &Place) -> String {
    format!("{}.bundle_roles.{:?}", at.table, at.reference)
}

fn roots(b: &Bundle, at: &Place) -> Result<(), String> {
    // A bundle declaring gavel/lib replaces gavel's policy library for
    // every policy it is loaded with (bundle::library): a registry bundle
    // does that only where the operator names the root.
    let declared = at.role.is_some_and(|r| r.roots.is_some());
    if at.oci && !declared && crate::bundle::library::provides(b) {
        return Err(format!(
            "bundle {} declares the root {:?}: it would replace gavel's policy library for every policy of the server; if that is intended, declare the root in {}.roots",
            b.source,
            crate::bundle::library::ROOT,
            key(at)
        ));
    }
    let (allowed, from) = match at.role.and_then(|r| r.roots.clone()) {
        Some(r) => (r, format!("{}.roots", key(at))),
        None if !at.oci => return Ok(()),
        None if at.shared => (
            vec!["gavel".to_string()],
            format!(
                "the shared layers' namespace; or declare them in {}.roots",
                key(at)
            ),
        ),
        None => (
            vec![format!("mcp/{}", at.server)],
            format!(
                "the decision package of server {:?}; or declare them in {}.roots",
                at.server,
                key(at)
            ),
        ),
    };
    let within = |r: &String| allowed.iter().any(|a| root_contains(a, r));
    if b.manifest.roots.iter().all(within) {
        return Ok(());
    }
    Err(format!(
        "bundle {} has roots {:?}, not within {allowed:?} ({from}): a bundle made for other data is not this server's policy, whoever signed it",
        b.source, b.manifest.roots
    ))
}

/// Whether revision `candidate` is older than `active`. Revisions are
/// ordered as versions: split into runs of digits and of other characters,
/// digit runs compared by value (`r2 < r10`, `1.4.7 < 1.10.0`), others
/// character by character, a prefix before what extends it. An empty
/// revision cannot be ordered against a non-empty one: counted as older
/// (a rollback guard that an unrevisioned bundle could step around would
/// guard nothing).
pub fn older(candidate: &str, active: &str) -> bool {
    if active.is_empty() {
        return false;
    }
    if candidate.is_empty() {
        return true;
    }
    version_cmp(candidate, active) == Ordering::Less
}

fn version_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (runs(a), runs(b));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) => {
                let o = match (digits(p), digits(q)) {
                    (true, true) => {
                        let (p, q) = (p.trim_start_matches('0'), q.trim_start_matches('0'));
                        p.len().cmp(&q.len()).then_with(|| p.cmp(q))
                    }
                    _ => p.cmp(q),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

fn digits(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

/// Maximal runs of ASCII digits and of everything else.
fn runs(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let d = first.is_ascii_digit();
        let end = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() != d)
            .map_or(rest.len(), |(i, _)| i);
        let (run, tail) = rest.split_at(end);
        rest = tail;
        Some(run)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_bundle_replaces_the_policy_library_only_where_declared() {
        let mut b = crate::bundle::library::embedded().clone();
        b.source = "oci://r/lib:1".into();
        fn at(oci: bool, role: Option<&BundleRole>) -> Place<'_> {
            Place {
                table: "policy".into(),
                server: "fs",
                shared: true,
                oci,
                reference: "oci://r/lib:1",
                role,
            }
        }
        let e = roots(&b, &at(true, None)).unwrap_err();
        assert!(
            e.contains("policy library") && e.contains("bundle_roles"),
            "{e}"
        );
        assert!(
            roots(&b, &at(false, None)).is_ok(),
            "a local path is the operator's word"
        );
        let role = BundleRole {
            roots: Some(vec!["gavel/lib".into()]),
            ..BundleRole::default()
        };
        assert!(roots(&b, &at(true, Some(&role))).is_ok());
    }

    #[test]
    fn revisions_order_as_versions() {
        assert!(older("r1", "r2"));
        assert!(older("r2", "r10"));
        assert!(!older("r10", "r2"));
        assert!(older("1.4.7", "1.10.0"));
        assert!(!older("1.10.0", "1.4.7"));
        assert!(!older("1.0.0", "1.0.0"));
        assert!(older("1.0", "1.0.1"));
        assert!(!older("2026-12-01", "2026-11-30"));
        assert!(
            older("", "r1"),
            "an unrevisioned bundle cannot prove it is newer"
        );
        assert!(!older("r1", ""), "nothing to roll back from");
        assert!(!older("007", "7") && !older("7", "007"));
    }
}

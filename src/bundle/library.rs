//! gavel's policy library, `data.gavel.lib` (`bundles/lib`): path, URL,
//! name and argument helpers every MCP policy needs, in pure Rego so they
//! evaluate identically in OPA (tests/e2e/e2e_opa_parity.rs checks it).
//!
//! Why embedded: the library is what makes the correct policy the easy one
//! (segment-aware scoping instead of `startswith`), so it must be there
//! without configuration. The modules are compiled into the binary and added
//! to every engine gavel builds — a server's engine and each memo engine
//! (`decision::engine::build`), `gavel test` (`bundle::testrun`), and
//! through those replay and explain. This file is the one place that knows.
//!
//! The rules, decided here:
//! - **Replacement.** A bundle whose `.manifest` declares the root
//!   `gavel/lib` *provides* the library: the embedded copy is left out of
//!   any engine it is in (so OPA users can ship `bundles/lib` as a bundle,
//!   and `gavel test bundles/lib` tests the files, not them and the copy).
//!   A bundle whose only root is `gavel/lib` is a library, not a layer.
//! - **Reserved.** Any other bundle with a package or data at or under
//!   `gavel.lib` is refused at load ([`check_reserved`]): it would merge
//!   into (or shadow) the library's functions.
//! - **Roots.** The embedded copy takes no part in the roots-overlap check:
//!   a bundle with roots `[""]` (no manifest) may still use it. The
//!   reserved check gives the guarantee the overlap check would (no two
//!   sources for one package). A *configured* library is an ordinary bundle
//!   there, as it is in OPA.
//! - **Analysis.** Lint checks that a call into `data.gavel.lib` names one
//!   of its functions; the recursion check and the memo's read analysis
//!   (`bundle::deps`) take the library's rules as part of the set, so a
//!   replacement library that reads `input` is seen (the embedded one reads
//!   none: a test below holds it to that).

use std::collections::BTreeSet;
use std::sync::OnceLock;

use super::lint::index;
use super::{Bundle, BundleError, Manifest, RegoModule, file_err, invalid};

/// The library's data root, as a manifest names it.
pub const ROOT: &str = "gavel/lib";

macro_rules! module {
    ($path:literal) => {
        ($path, include_str!(concat!("../../bundles/lib/", $path)))
    };
}

/// The library's policy modules (its `*_test.rego` stay in `bundles/lib`:
/// `gavel test bundles/lib` runs them).
const MODULES: &[(&str, &str)] = &[
    module!("gavel/lib/args.rego"),
    module!("gavel/lib/names.rego"),
    module!("gavel/lib/paths.rego"),
    module!("gavel/lib/urls.rego"),
];

/// `(bundle-relative path, Rego text)` of every embedded module.
pub fn modules() -> &'static [(&'static str, &'static str)] {
    MODULES
}

/// The embedded library as a bundle named `gavel:lib`, roots `gavel/lib`.
pub fn embedded() -> &'static Bundle {
    static LIB: OnceLock<Bundle> = OnceLock::new();
    LIB.get_or_init(|| Bundle {
        name: "gavel:lib".into(),
        source: "gavel:lib (embedded bundles/lib)".into(),
        manifest: Manifest {
            roots: vec![ROOT.into()],
            ..Manifest::default()
        },
        modules: MODULES
            .iter()
            .map(|(path, text)| RegoModule {
                path: format!("gavel:lib/{path}"),
                text: text.to_string(),
            })
            .collect(),
        data: serde_json::json!({}),
        digest: String::new(),
        signatures: None,
        files: vec![],
    })
}

/// Whether `b` provides the library itself (declares the root `gavel/lib`).
pub fn provides(b: &Bundle) -> bool {
    b.manifest.roots.iter().any(|r| r == ROOT)
}

/// Whether `b` is a library only (its one root is `gavel/lib`): not a layer.
pub fn library_only(b: &Bundle) -> bool {
    provides(b) && b.manifest.roots.len() == 1
}

/// `set` and the library its engine gets: the embedded copy appended unless
/// one of them provides it.
pub fn with_library<'a>(set: &[&'a Bundle]) -> Vec<&'a Bundle> {
    let mut all = set.to_vec();
    if !set.iter().any(|b| provides(b)) {
        all.push(embedded());
    }
    all
}

/// Refuses a bundle that puts a package or data at or under `gavel.lib`
/// without declaring the root `gavel/lib`.
pub fn check_reserved(b: &Bundle) -> Result<(), BundleError> {
    if provides(b) {
        return Ok(());
    }
    let fix = "the package gavel.lib is reserved for gavel's policy library (docs/policy.md, The policy library); rename it, or declare \"roots\": [\"gavel/lib\"] in .manifest to ship a replacement of the whole library";
    for m in index(b)? {
        if super::root_contains(ROOT, &m.package) {
            return Err(file_err(
                &b.source,
                &m.path,
                format!("package data.{}: {fix}", m.package.replace('/', ".")),
            ));
        }
    }
    if ROOT.split('/').try_fold(&b.data, |v, k| v.get(k)).is_some() {
        return Err(invalid(&b.source, format!("data at gavel/lib: {fix}")));
    }
    Ok(())
}

/// The embedded library's functions, as full dotted names
/// (`gavel.lib.paths.within`): what lint accepts in a call into it.
pub fn functions() -> &'static BTreeSet<String> {
    static FUNCTIONS: OnceLock<BTreeSet<String>> = OnceLock::new();
    FUNCTIONS.get_or_init(|| functions_of(embedded()).expect("the embedded library parses"))
}

/// The library functions `b` defines (full dotted names).
pub fn functions_of(b: &Bundle) -> Result<BTreeSet<String>, BundleError> {
    Ok(index(b)?
        .iter()
        .filter(|m| super::root_contains(ROOT, &m.package))
        .flat_map(|m| {
            let pkg = m.package.replace('/', ".");
            m.functions.iter().map(move |f| format!("{pkg}.{f}"))
        })
        .collect())
}

/// Adds the embedded library to `engine`, which holds `bundle` alone
/// (`gavel test`): refuses a bundle that trespasses on the reserved
/// package, and leaves the copy out when the bundle provides the library.
pub fn add_to(engine: &mut regorus::Engine, bundle: &Bundle) -> Result<(), BundleError> {
    check_reserved(bundle)?;
    if provides(bundle) {
        return Ok(());
    }
    let lib = embedded();
    engine.set_rego_v0(false);
    for m in &lib.modules {
        engine
            .add_policy(m.path.clone(), m.text.clone())
            .map_err(|e| file_err(&lib.source, &m.path, e.to_string()))?;
    }
    engine.set_rego_v0(bundle.manifest.rego_v0());
    Ok(())
}

#[cfg(test)]
#[path = "library_tests.rs"]
mod tests;

//! The policy *lifecycle*: where a server's bundles come from (`source`:
//! local paths, the verified cache, a registry), what an operator says each
//! bundle is for (`bind`), building a server's policy from them (`build`:
//! resolve, verify, bind, the bundle's own tests, compile), and keeping it
//! current (`supply`: pull, poll, activate, keep the last good, refuse
//! rollbacks). The bundle *format* (reading, manifest, hashing, signatures,
//! lint) is `crate::bundle`, as OPA separates `v1/bundle` from
//! `v1/plugins/bundle`; the enforcement point that decides with the result
//! is `crate::decision`.

pub mod bind;
mod build;
pub mod persona;
pub mod source;
pub mod start;
pub mod supply;

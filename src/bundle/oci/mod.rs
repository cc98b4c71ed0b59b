//! Bundles from OCI registries, the way OPA distributes them: references
//! (`reference`), manifests and indexes (`manifest`), registry I/O with
//! oci-client (`registry`), credentials (`auth`) and the offline cache
//! (`cache`). Verification and activation are not here: a pulled bundle is
//! bytes until `policy::supply` has it verified and built. See README.md
//! beside this file for the trade-offs.

pub mod auth;
pub mod cache;
pub mod manifest;
pub mod reference;
pub mod registry;
pub mod settings;

pub use reference::OciRef;
pub use registry::{OciError, Registry, Resolved};

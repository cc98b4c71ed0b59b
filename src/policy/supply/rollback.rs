//! Rollback: a registry tag can be moved back to an older bundle — one that
//! was legitimately signed once and has since been replaced (a revoked
//! rule, a fixed hole). The signature still verifies, so verification alone
//! would activate it. A new layer for a tag is therefore refused when its
//! revision is older than the active one (ordered as versions:
//! [`crate::policy::bind::older`]), unless the operator says so: a digest
//! pin names exact bytes (no rollback to guard against), and
//! `bundle_roles."REF".allow_rollback = true` accepts it. What is "active"
//! survives restarts: a start from the cache makes the cached bundle active
//! before the registry is asked.

use super::{Key, Supply};
use crate::bundle::oci::OciRef;
use crate::decision::{Active, Enforcer};

impl Supply {
    /// Why the freshly built `built` (for `key`) must not replace the active
    /// bundle, if it is a rollback.
    pub(super) fn rollback(
        &self,
        key: &Key,
        built: &[(String, Active)],
        enforcer: &Enforcer,
    ) -> Option<String> {
        let r = OciRef::parse(&key.1).ok()?;
        if !r.is_mutable()
            || enforcer
                .bundle_role(&key.0, &key.1)
                .is_some_and(|b| b.allow_rollback)
        {
            return None;
        }
        let active = self.lock().get(key)?.status.active_revision.clone()?;
        let candidate = built.first()?.1.bundle_revision(&r.repository)?;
        let table = crate::policy::persona::table_of_owner(&key.0);
        crate::policy::bind::older(&candidate, &active).then(|| {
            format!(
                "revision {candidate:?} is older than the active revision {active:?}: refused as a rollback (revisions compare as versions). To run it, pin it by digest (oci://…@sha256:…) or set {table}.bundle_roles.{:?}.allow_rollback = true",
                key.1
            )
        })
    }
}

//! The slot hashes of the shared-memory tables (`budgetfile`, `ratefile`),
//! remembered per thread.
//!
//! Why: a table finds a counter by a SHA-256 of its name, and a decision
//! looks up the same few names call after call (its budget, read and
//! charged; its rate limit's key) — the digests were four SHA-256 runs a
//! deployed call (~2 % of its instructions, issue 17). The hash is a pure
//! function of the name, so remembering it changes no slot.
//!
//! Bounded: [`ENTRIES`] names a thread, the oldest replaced first.

use std::cell::RefCell;

/// Names whose hash a thread remembers.
pub(super) const ENTRIES: usize = 8;

/// Which table a name belongs to: the two hash their names differently.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Table {
    Budget,
    Rate,
}

struct Entry {
    table: Table,
    key: String,
    period: String,
    hash: (u64, u64),
}

thread_local! {
    /// The entries, and the next to replace once full.
    static CACHE: RefCell<(Vec<Entry>, usize)> = const { RefCell::new((Vec::new(), 0)) };
}

/// `digest`'s answer for (`table`, `key`, `period`): remembered, or computed
/// and remembered.
pub(super) fn remembered(
    table: Table,
    key: &str,
    period: &str,
    digest: impl FnOnce() -> (u64, u64),
) -> (u64, u64) {
    let found = CACHE.with(|c| {
        c.borrow()
            .0
            .iter()
            .find(|e| e.table == table && e.key == key && e.period == period)
            .map(|e| e.hash)
    });
    if let Some(h) = found {
        return h;
    }
    let hash = digest();
    CACHE.with(|c| {
        let (entries, next) = &mut *c.borrow_mut();
        let e = Entry {
            table,
            key: key.to_string(),
            period: period.to_string(),
            hash,
        };
        if entries.len() < ENTRIES {
            entries.push(e);
        } else {
            entries[*next % ENTRIES] = e;
            *next = next.wrapping_add(1);
        }
    });
    hash
}

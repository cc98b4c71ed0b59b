//! The memory bound of policy evaluation.
//!
//! regorus 0.14.1 built with `allocator-memory-limits` makes its mimalloc
//! build the process allocator, counting live bytes, and checks a ceiling on
//! that count between interpreter steps and inside its looping builtins
//! (`numbers.range`, value construction), failing the evaluation with
//! `MemoryLimitExceeded`. The ceiling is process-wide; set once, it would
//! also fail bundle loads (regorus checks while parsing and converting data)
//! and every decision once the rest of the process grew past it.
//!
//! So gavel sets it only while evaluations are in flight, relative to the
//! process: when the first of a group of overlapping evaluations starts, the
//! ceiling becomes what the process holds then plus [`LIMIT`]; when the last
//! one ends, there is none. A runaway evaluation (a string doubled until it
//! fills memory) fails at the next check past the ceiling — closed, as
//! `policy_error` — instead of growing the process; evaluations that overlap
//! it fail closed while it holds the memory.
//!
//! Not bounded: what one builtin call allocates by itself before the next
//! check (a doubling overshoots by at most the ceiling's worth), and other
//! parts of the process growing during a long unbroken run of overlapping
//! evaluations (the base is taken again whenever none is in flight).

use std::sync::Mutex;

use crate::sync::Recover;

/// What evaluations in flight may add to the process's live bytes.
pub const LIMIT: u64 = 256 << 20;

/// Evaluations in flight (a mutex, not an atomic: the first and the last
/// must set the ceiling in order with the count).
static IN_FLIGHT: Mutex<usize> = Mutex::new(0);

/// The process's live bytes as the allocator counts them (this thread's
/// pending count published first).
pub fn live_bytes() -> u64 {
    regorus_mimalloc::limits::global_allocation_stats_snapshot().allocated
}

/// Runs one evaluation under the ceiling.
pub(super) fn scope<T>(f: impl FnOnce() -> T) -> T {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            regorus_mimalloc::limits::flush_thread_counters();
            let mut n = IN_FLIGHT.lock().recover();
            *n -= 1;
            if *n == 0 {
                regorus::set_global_memory_limit(None);
            }
        }
    }
    {
        let mut n = IN_FLIGHT.lock().recover();
        if *n == 0 {
            regorus::set_global_memory_limit(Some(live_bytes().saturating_add(LIMIT)));
        }
        *n += 1;
    }
    let _leave = Leave;
    f()
}

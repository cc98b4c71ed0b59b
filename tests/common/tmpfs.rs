//! A real, small tmpfs (root only): a filesystem that really fills up, for
//! what gavel does on a full disk. The one implementation is the library's
//! unit-test helper (`src/test_support.rs`), compiled here as well, since an
//! integration test cannot reach the library's `cfg(test)` code.

#[path = "../../src/test_support.rs"]
mod support;

pub use support::Tmpfs;

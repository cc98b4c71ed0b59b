//! The library's unit-test helpers (`src/test_support.rs`), compiled here as
//! well, since an integration test cannot reach the library's `cfg(test)`
//! code: a real, small tmpfs (root only: a filesystem that really fills up,
//! for what gavel does on a full disk) and a throw-away `redis-server`.

#[path = "../../src/test_support.rs"]
mod support;

pub use support::{RedisServer, Tmpfs};

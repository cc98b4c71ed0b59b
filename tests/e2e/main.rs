//! gavel's integration tests, as one crate: one module per area (the module
//! names are the former test files', so a test's path reads
//! `e2e_proxy::one_server_keeps_names_unchanged`). One crate links the
//! library, rmcp and the helpers once instead of once per file, and the
//! helpers in `tests/common` are checked for dead code like any module.
//!
//! Most modules run the real `gavel` binary against the fixture upstream
//! (`tests/fixture/server.rs`, the `gavel-fixture` binary); a few need an
//! external tool that `scripts/setup` installs (node, a registry, Redis):
//! see README.md, Development. Run one area with
//! `cargo test --test e2e e2e_proxy::`.

// The helpers live beside the crate (tests/common), not inside it, so the
// fixture paths and `tests/common/tmpfs.rs`'s path to `src/` keep working.
#[path = "../common/mod.rs"]
mod common;

mod e2e_agent_tools;
mod e2e_approval;
mod e2e_approval_effects;
mod e2e_bad_input;
mod e2e_budgets;
mod e2e_conformance;
mod e2e_conformance_2026;
mod e2e_conformance_everything;
mod e2e_contract;
mod e2e_counters;
mod e2e_dataflow;
mod e2e_decision_log;
mod e2e_decision_shape;
mod e2e_decision_ship;
mod e2e_era;
mod e2e_era_matrix;
mod e2e_era_rounds;
mod e2e_everything;
mod e2e_example;
mod e2e_explain;
mod e2e_host_era;
mod e2e_host_era_http;
mod e2e_host_listen;
mod e2e_host_listen_edges;
mod e2e_host_listen_resources;
mod e2e_host_logs;
mod e2e_host_rounds;
mod e2e_http;
mod e2e_http_auth;
mod e2e_http_jwks;
mod e2e_http_serve;
mod e2e_http_users;
mod e2e_import;
mod e2e_legacy_questions;
mod e2e_lifecycle;
mod e2e_limits;
mod e2e_lint;
mod e2e_metrics;
mod e2e_modern_sessions;
mod e2e_oci;
mod e2e_oci_auth;
mod e2e_oci_ops;
mod e2e_oci_registry;
mod e2e_oci_reload;
mod e2e_opa_parity;
mod e2e_parked_shared;
mod e2e_paths;
mod e2e_personas;
mod e2e_policy;
mod e2e_proxy;
mod e2e_relay;
mod e2e_relay_shared;
mod e2e_replay;
mod e2e_report;
mod e2e_resource_lists;
mod e2e_result_policy;
mod e2e_round_limits;
mod e2e_shadow;
mod e2e_signing;
mod e2e_signing_es512;
mod e2e_status;
mod e2e_telemetry;
mod e2e_test_cmd;
mod e2e_unlisted_tools;
mod e2e_url_rounds;
mod fuzz_replay;
mod golden_fidelity;
mod policy_bundles;

//! Replays every fuzz corpus under `fuzz/corpus/<target>/` through the same
//! entry points the cargo-fuzz targets use, on stable, as an ordinary test.

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| f(&data));
        assert!(r.is_ok(), "corpus input {} fails", path.display());
        n += 1;
    }
    assert!(n > 0, "empty corpus for {target}");
}

#[test]
fn idscan_corpus() {
    replay("idscan", gavel::fuzzing::idscan);
}

#[test]
fn bundle_reader_corpus() {
    replay("bundle_reader", gavel::fuzzing::bundle_reader);
}

#[test]
fn signatures_corpus() {
    replay("signatures", gavel::fuzzing::signatures);
}

#[test]
fn oci_manifest_corpus() {
    replay("oci_manifest", gavel::fuzzing::oci_manifest);
}

#[test]
fn uri_template_corpus() {
    replay("uri_template", gavel::fuzzing::uri_template);
}

#[test]
fn idscan_depth_corpus() {
    replay("idscan_depth", gavel::fuzzing::idscan_depth);
}

#[test]
fn bundle_verified_corpus() {
    replay("bundle_verified", gavel::fuzzing::bundle_verified);
}

#[test]
fn json_lines_corpus() {
    replay("json_lines", gavel::fuzzing::json_lines);
}

//! The fuzz targets (`fuzz/`, run coverage-guided with cargo-fuzz on nightly) replayed on
//! stable over their committed corpus, `fuzz/corpus/<target>/`: the seeds, what the fuzzers
//! kept, and every input that once crashed a target, kept as a regression. A failure here is
//! a target panicking on a file that is committed.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let caught = std::panic::catch_unwind(|| run(&data));
        assert!(caught.is_ok(), "{target} fails on {}", path.display());
        inputs += 1;
    }
    assert!(inputs > 0, "no corpus for {target}");
}

#[test]
fn mqtt_edge() {
    replay("mqtt_edge", broker::fuzzing::mqtt_edge);
}

#[test]
fn request() {
    replay("request", courier_client::protocol::fuzzing::request);
}

#[test]
fn sniff() {
    replay("sniff", media_worker::fuzzing::sniffing);
}

#[test]
fn strip() {
    replay("strip", media_worker::fuzzing::stripping);
}

#[test]
fn image() {
    replay("image", media_worker::fuzzing::image);
}

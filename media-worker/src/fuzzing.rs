//! Media parsing as fuzz targets (`fuzz/fuzz_targets/`, and the corpus replay in
//! `tests/it/fuzz_corpus.rs`). Sniffing and metadata stripping run in the server process on
//! every upload; image decoding runs in a job's confined process.
//! Panics are the failures, and so is a stripped copy that is larger than its input, or one
//! that a second strip would change.

use crate::image::{process_image, ImageLimits};
use crate::sniff::sniff;
use crate::strip::{strip, strippable};
use std::io::Cursor;

/// The upload's type, read from its bytes.
pub fn sniffing(data: &[u8]) {
    let _ = sniff(data);
}

/// Metadata stripping, for what sniffs as a strippable type, as the server runs it.
pub fn stripping(data: &[u8]) {
    let Some(detected) = sniff(data) else { return };
    if !strippable(detected.mime) {
        return;
    }
    let mut out = Vec::new();
    if strip(detected.mime, &mut Cursor::new(data), &mut out).is_ok() {
        assert!(out.len() <= data.len(), "stripping added bytes");
        // A cut-off file keeps what there is (processing calls it truncated); a whole one
        // keeps its type, and stripping it again changes nothing: nothing was left behind.
        if sniff(&out).map(|d| d.mime) == Some(detected.mime) {
            let mut twice = Vec::new();
            strip(detected.mime, &mut Cursor::new(&out), &mut twice).expect("strips again");
            assert!(twice == out, "a second strip removed more");
        }
    }
}

/// The image job's decoding and resizing, under limits small enough for a fuzzer's pace.
pub fn image(data: &[u8]) {
    let limits = ImageLimits {
        max_pixels: 4_000_000,
        max_side: 8192,
        max_alloc: 64 << 20,
        max_scans: 16,
    };
    let dir = std::env::temp_dir().join(format!("courier-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("input");
    if std::fs::write(&path, data).is_ok() {
        let _ = process_image(&path, &limits);
    }
}

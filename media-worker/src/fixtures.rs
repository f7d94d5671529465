//! Hostile files for tests and benchmarks: tiny inputs that declare enormous images.

/// CRC-32 (IEEE), as PNG chunks use it.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (!(crc & 1)).wrapping_add(1));
        }
    }
    !crc
}

/// A ~80-byte PNG declaring `side` × `side` RGB pixels: a decompression bomb needs no more.
pub fn png_bomb(side: u32) -> Vec<u8> {
    let chunk = |out: &mut Vec<u8>, body: &[u8]| {
        out.extend_from_slice(&((body.len() - 4) as u32).to_be_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&crc32(body).to_be_bytes());
    };
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(b"\x08\x02\0\0\0");
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, &ihdr);
    // One IDAT: a zlib stream holding a single stored zero byte.
    chunk(&mut png, b"IDAT\x78\x01\x01\x01\0\xFE\xFF\0\0\x01\0\x01");
    chunk(&mut png, b"IEND");
    png
}

/// A JPEG whose frame header declares `side` × `side` and that has nothing else.
pub fn jpeg_header_only(side: u16) -> Vec<u8> {
    let mut jpeg = b"\xFF\xD8\xFF\xC0\0\x11\x08".to_vec();
    jpeg.extend_from_slice(&side.to_be_bytes());
    jpeg.extend_from_slice(&side.to_be_bytes());
    jpeg.extend_from_slice(b"\x03\x01\x22\0\x02\x11\x01\x03\x11\x01\xFF\xD9");
    jpeg
}

/// Makes `out` with the `ffmpeg` command-line tool (tests need it; CI installs it).
pub fn ffmpeg(args: &[&str], out: &std::path::Path) {
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .arg(out)
        .status()
        .expect("the ffmpeg command-line tool is needed to make test media");
    assert!(status.success(), "ffmpeg {args:?}");
}

/// An H.264 (yuv420p) clip of FFmpeg's `testsrc` pattern at 25 fps, `size` like `640x360`,
/// `secs` long; `extra` output options go before the codec's (metadata, rotation, …).
pub fn h264_clip(size: &str, secs: &str, extra: &[&str], out: &std::path::Path) {
    let src = format!("testsrc=size={size}:rate=25");
    let mut args = vec!["-f", "lavfi", "-i", &src, "-t", secs];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
    ]);
    ffmpeg(&args, out);
}

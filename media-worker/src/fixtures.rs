//! Hostile files for tests and benchmarks: tiny inputs that declare enormous images or cost
//! enormous work, files that are one thing to the sniffer and another to a permissive
//! demuxer, and photos carrying what a camera records about where and by whom.

/// CRC-32 (IEEE), as PNG chunks use it.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
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

/// A progressive greyscale JPEG of `w` × `h` (multiples of 8) with one DC scan and then
/// `scans` AC scans that each skip every block with end-of-band runs: a few bytes per scan,
/// and a full pass over the image for the decoder each time.
pub fn jpeg_scan_bomb(w: u16, h: u16, scans: usize) -> Vec<u8> {
    let blocks = usize::from(w / 8) * usize::from(h / 8);
    let segment = |out: &mut Vec<u8>, marker: u8, payload: &[u8]| {
        out.extend_from_slice(&[0xFF, marker]);
        out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(payload);
    };
    let mut jpeg = vec![0xFF, 0xD8];
    segment(&mut jpeg, 0xDB, &[&[0u8][..], &[1; 64]].concat()); // DQT 0, all ones
    let mut sof = vec![8];
    sof.extend_from_slice(&h.to_be_bytes());
    sof.extend_from_slice(&w.to_be_bytes());
    sof.extend_from_slice(&[1, 1, 0x11, 0]);
    segment(&mut jpeg, 0xC2, &sof); // progressive, one component
                                    // DC table 0: one symbol (category 0), code `0`. AC table 0: EOB14 as `0`, EOB as `10`.
    let mut dht = vec![0x00, 1];
    dht.extend_from_slice(&[0; 15]);
    dht.push(0);
    dht.extend_from_slice(&[0x10, 1, 1]);
    dht.extend_from_slice(&[0; 14]);
    dht.extend_from_slice(&[0xE0, 0x00]);
    segment(&mut jpeg, 0xC4, &dht);
    // Bits, most significant first, with 0xFF stuffed and 1-padding at the end of a scan.
    let scan = |out: &mut Vec<u8>, bits: &mut dyn Iterator<Item = bool>| {
        let (mut byte, mut n) = (0u8, 0);
        let push = |out: &mut Vec<u8>, b: u8| {
            out.push(b);
            if b == 0xFF {
                out.push(0);
            }
        };
        for bit in bits {
            byte = byte << 1 | u8::from(bit);
            n += 1;
            if n == 8 {
                push(out, byte);
                (byte, n) = (0, 0);
            }
        }
        if n > 0 {
            push(out, byte << (8 - n) | ((1 << (8 - n)) - 1));
        }
    };
    segment(&mut jpeg, 0xDA, &[1, 1, 0x00, 0, 0, 0]); // DC first scan
    scan(&mut jpeg, &mut std::iter::repeat_n(false, blocks));
    // Each AC scan: EOB14 runs of 16384 + 16383 = 32767 blocks until every block is skipped.
    let runs = blocks.div_ceil(32_767);
    for _ in 0..scans {
        segment(&mut jpeg, 0xDA, &[1, 1, 0x00, 1, 63, 0]);
        let mut bits =
            (0..runs).flat_map(|_| std::iter::once(false).chain(std::iter::repeat_n(true, 14)));
        scan(&mut jpeg, &mut bits);
    }
    jpeg.extend_from_slice(&[0xFF, 0xD9]);
    jpeg
}

/// An EXIF block (TIFF, little-endian, without the `Exif\0\0` prefix) as a phone writes
/// one: the orientation, a camera serial number (`SERIAL12345`) and a GPS position
/// (`GPS 48.85N 2.35E`).
pub fn camera_exif(orientation: u16) -> Vec<u8> {
    let mut t = b"II\x2a\0\x08\0\0\0".to_vec();
    t.extend_from_slice(&3u16.to_le_bytes());
    let entry = |t: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: u32| {
        t.extend_from_slice(&tag.to_le_bytes());
        t.extend_from_slice(&kind.to_le_bytes());
        t.extend_from_slice(&count.to_le_bytes());
        t.extend_from_slice(&value.to_le_bytes());
    };
    entry(&mut t, 0x0112, 3, 1, u32::from(orientation)); // Orientation
    entry(&mut t, 0xA431, 2, 12, 50); // BodySerialNumber, at 50
    entry(&mut t, 0x8825, 4, 1, 62); // GPS IFD pointer
    t.extend_from_slice(&0u32.to_le_bytes());
    t.extend_from_slice(b"SERIAL12345\0");
    t.extend_from_slice(b"GPS 48.85N 2.35E");
    t
}

/// `jpeg` as a phone would upload it: EXIF ([`camera_exif`]), XMP and a comment after the
/// start marker, and a maker's trailer after the end marker.
pub fn camera_jpeg(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let segment = |out: &mut Vec<u8>, marker: u8, payload: &[u8]| {
        out.extend_from_slice(&[0xFF, marker]);
        out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(payload);
    };
    let mut exif = b"Exif\0\0".to_vec();
    exif.extend_from_slice(&camera_exif(orientation));
    let mut out = vec![0xFF, 0xD8];
    segment(&mut out, 0xE1, &exif);
    segment(
        &mut out,
        0xE1,
        b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>GPS</x:xmpmeta>",
    );
    segment(&mut out, 0xFE, b"taken at home");
    out.extend_from_slice(&jpeg[2..]);
    out.extend_from_slice(b"SEFT trailer with a location");
    out
}

/// Lines of a manifest or playlist that send FFmpeg to `target` (a relative path, an
/// absolute one, or any URL): what a hostile upload hides behind another type's magic.
pub enum Polyglot {
    /// A DASH manifest opening with `<!--ftypjp2 -->`: `ftyp` at offset 4 makes it an MP4.
    DashAsMp4,
    /// An HLS playlist behind an ID3 tag: an MP3 to the sniffer.
    HlsAsMp3,
    /// An ffconcat script behind an ID3 tag.
    ConcatAsMp3,
    /// An HLS playlist behind a Matroska EBML header.
    HlsAsMatroska,
}

/// A file of `kind` pointing at `target`.
pub fn polyglot(kind: Polyglot, target: &str) -> Vec<u8> {
    let dash = format!(
        "<!--ftypjp2 -->\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" \
         profiles=\"urn:mpeg:dash:profile:isoff-on-demand:2011\" type=\"static\" \
         mediaPresentationDuration=\"PT3S\" minBufferTime=\"PT1S\"><Period>\
         <AdaptationSet mimeType=\"video/mp4\"><Representation id=\"1\" bandwidth=\"100000\" \
         width=\"640\" height=\"360\" codecs=\"avc1.64001e\"><BaseURL>{target}</BaseURL>\
         </Representation></AdaptationSet></Period></MPD>\n"
    );
    let hls = format!("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:3,\n{target}\n#EXT-X-ENDLIST\n");
    // An ID3v2.4 tag of 16 padding bytes.
    let id3 = |body: &str| [&b"ID3\x04\0\0\0\0\0\x10"[..], &[0; 16], body.as_bytes()].concat();
    match kind {
        Polyglot::DashAsMp4 => dash.into_bytes(),
        Polyglot::HlsAsMp3 => id3(&hls),
        Polyglot::ConcatAsMp3 => id3(&format!("ffconcat version 1.0\nfile '{target}'\n")),
        Polyglot::HlsAsMatroska => {
            // EBML header: DocType "matroska".
            let mut mkv = b"\x1A\x45\xDF\xA3\x8B\x42\x82\x88matroska".to_vec();
            mkv.extend_from_slice(hls.as_bytes());
            mkv
        }
    }
}

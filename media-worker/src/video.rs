//! Video and audio through FFmpeg (ffmpeg-next against the system libraries): duration,
//! dimensions, rotation and a poster frame at 1 s for videos; duration for audio (voice
//! notes).
//!
//! A file is read with exactly one demuxer, the one its sniffed type names ([`Container`]),
//! through an I/O context of our own over the already opened file: FFmpeg's protocols never
//! see a path or URL, and every nested open a demuxer attempts (a playlist's segment, a
//! manifest's `BaseURL`, a concat script's `file`, an MP4 data reference) is refused. A DASH
//! manifest that calls itself MP4 is read as MP4 — and fails as one.
//!
//! Bounded like images: the stream's pixel count and duration are checked before decoding;
//! decoding is charged for what it really does — frames and pixels decoded, against
//! [`VideoLimits`] — as well as a wall-clock budget and a budget of decode errors; and a
//! truncated file — which can reach end of file without a single error — is caught by
//! comparing how far the packets went with the duration the container declares.

use crate::MediaError;
use ffmpeg_next as ff;
use std::ffi::CStr;
use std::path::Path;
use std::sync::Once;
use std::time::{Duration, Instant};

/// Longest side of the poster frame.
pub const POSTER_SIDE: u32 = 1280;
/// Where the poster is taken from (or the first frame of a shorter clip).
pub const POSTER_AT: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct VideoLimits {
    /// Most pixels per frame (default 3840 × 2160: an 8K clip is refused).
    pub max_pixels: u64,
    /// Longest clip or voice note.
    pub max_duration: Duration,
    /// Wall-clock budget for decoding.
    pub budget: Duration,
    /// Decode and demux errors tolerated before the file counts as corrupt.
    pub max_errors: u32,
    /// Most frames decoded to find the poster (a 960 fps slow-motion clip needs 960).
    pub max_poster_frames: u32,
    /// Most pixels decoded for one preview: the decoding work, whatever the clip claims.
    pub max_decoded_pixels: u64,
}

impl Default for VideoLimits {
    fn default() -> Self {
        Self {
            max_pixels: 3840 * 2160,
            max_duration: Duration::from_secs(30 * 60),
            budget: Duration::from_secs(60),
            max_errors: 20,
            max_poster_frames: 2_000,
            // ~15 min of 1080p at 30 fps, about what the default time budget encodes.
            max_decoded_pixels: 2_000 * 1_000_000 * 30,
        }
    }
}

#[derive(Debug)]
pub struct VideoOutput {
    /// As displayed (rotation applied).
    pub width: u32,
    pub height: u32,
    /// Clockwise degrees the player must rotate the coded picture (0, 90, 180, 270).
    pub rotation: u32,
    pub duration_ms: i64,
    /// JPEG, at most [`POSTER_SIDE`] on the longest side, rotated upright.
    pub poster: Vec<u8>,
}

pub(crate) fn init() -> Result<(), MediaError> {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = ff::init();
        ff::util::log::set_level(ff::util::log::Level::Fatal);
    });
    Ok(())
}

fn corrupt(e: impl std::fmt::Display) -> MediaError {
    MediaError::Corrupt(e.to_string())
}

/// The container a file was sniffed as, and so the only FFmpeg demuxer it is read with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    /// MP4, MOV, 3GP, M4A: FFmpeg's `mov,mp4,m4a,3gp,3g2,mj2`.
    Mp4,
    /// Matroska and WebM: `matroska,webm`.
    Matroska,
    Ogg,
    Mp3,
    Wav,
    Flac,
    Amr,
    Aac,
}

impl Container {
    /// The container of a file sniffed as `mime` ([`crate::sniff`]); `None` for types
    /// FFmpeg does not read here.
    pub fn of_mime(mime: &str) -> Option<Self> {
        Some(match mime {
            "video/mp4" | "video/quicktime" | "video/3gpp" | "audio/mp4" => Self::Mp4,
            "video/webm" | "video/x-matroska" => Self::Matroska,
            "audio/ogg" => Self::Ogg,
            "audio/mpeg" => Self::Mp3,
            "audio/wav" => Self::Wav,
            "audio/flac" => Self::Flac,
            "audio/amr" => Self::Amr,
            "audio/aac" => Self::Aac,
            _ => return None,
        })
    }

    /// FFmpeg's name of the demuxer.
    fn demuxer(self) -> &'static CStr {
        match self {
            Self::Mp4 => c"mov",
            Self::Matroska => c"matroska",
            Self::Ogg => c"ogg",
            Self::Mp3 => c"mp3",
            Self::Wav => c"wav",
            Self::Flac => c"flac",
            Self::Amr => c"amr",
            Self::Aac => c"aac",
        }
    }
}

/// Refuses every stream a demuxer tries to open besides its input (`AVFormatContext.io_open`,
/// which nested contexts inherit).
unsafe extern "C" fn refuse_nested_open(
    _: *mut ff::ffi::AVFormatContext,
    _: *mut *mut ff::ffi::AVIOContext,
    _: *const libc::c_char,
    _: libc::c_int,
    _: *mut *mut ff::ffi::AVDictionary,
) -> libc::c_int {
    -libc::EPERM
}

/// Streams a file may declare: a phone's clip has two or three.
const MAX_STREAMS: i32 = 16;

/// Opens `path` with `container`'s demuxer alone, over our own reads of the file, and reads
/// its stream information. A file that is not that container fails as corrupt.
fn open_input(path: &Path, container: Container) -> Result<ff::format::context::Input, MediaError> {
    use ff::ffi;
    init()?;
    let not_it = |e: ff::Error| {
        MediaError::Corrupt(format!(
            "not a valid {} file: {e}",
            container.demuxer().to_string_lossy()
        ))
    };
    let file = std::fs::File::open(path)?;
    let mut io = ff::format::context::StreamIo::from_read_seek(file).map_err(corrupt)?;
    let mut options = ff::Dictionary::new();
    // Belt and braces: no protocol at all, and MP4's external data references stay off.
    options.set("protocol_whitelist", "none");
    options.set("enable_drefs", "0");
    // SAFETY: the context is allocated here and handed to `Input`, which owns and frees it
    // together with `io`; the demuxer pointer is FFmpeg's static table entry.
    unsafe {
        let fmt = ffi::av_find_input_format(container.demuxer().as_ptr());
        if fmt.is_null() {
            return Err(MediaError::Failed(format!(
                "FFmpeg has no {:?} demuxer",
                container.demuxer()
            )));
        }
        let mut ps = ffi::avformat_alloc_context();
        if ps.is_null() {
            return Err(MediaError::Failed("out of memory".into()));
        }
        (*ps).pb = io.as_mut_ptr();
        (*ps).flags |= ffi::AVFMT_FLAG_CUSTOM_IO as libc::c_int;
        (*ps).io_open = Some(refuse_nested_open);
        (*ps).max_streams = MAX_STREAMS;
        let mut opts = options.disown();
        let opened = ffi::avformat_open_input(&mut ps, c"input".as_ptr(), fmt, &mut opts);
        drop(ff::Dictionary::own(opts));
        if opened < 0 {
            // avformat_open_input freed the context; `io` is ours to drop.
            return Err(not_it(ff::Error::from(opened)));
        }
        let ictx = ff::format::context::Input::wrap_with_custom_io(ps, io);
        match ffi::avformat_find_stream_info(ps, std::ptr::null_mut()) {
            r if r >= 0 => Ok(ictx),
            e => Err(not_it(ff::Error::from(e))),
        }
    }
}

/// The container's duration, if it declares one.
fn declared_duration(ictx: &ff::format::context::Input) -> Option<Duration> {
    let d = ictx.duration();
    (d > 0).then(|| Duration::from_micros(d as u64))
}

/// Duration of an audio file (a voice note), checked against `limits`.
pub fn probe_audio(
    path: &Path,
    container: Container,
    limits: &VideoLimits,
) -> Result<i64, MediaError> {
    let ictx = open_input(path, container)?;
    if ictx.streams().best(ff::media::Type::Audio).is_none() {
        return Err(MediaError::Corrupt("no audio stream".into()));
    }
    let duration = declared_duration(&ictx)
        .ok_or_else(|| MediaError::Corrupt("the file declares no duration".into()))?;
    if duration > limits.max_duration {
        return Err(MediaError::TooLarge(format!(
            "{} s is longer than {} s",
            duration.as_secs(),
            limits.max_duration.as_secs()
        )));
    }
    Ok(duration.as_millis() as i64)
}

/// Clockwise rotation the stream's display matrix asks for, in degrees.
fn rotation_of(stream: &ff::format::stream::Stream) -> u32 {
    for sd in stream.side_data() {
        if sd.kind() == ff::codec::packet::side_data::Type::DisplayMatrix && sd.data().len() >= 36 {
            // SAFETY: a display matrix is nine i32s; FFmpeg reads exactly those.
            let ccw = unsafe { ff::ffi::av_display_rotation_get(sd.data().as_ptr().cast()) };
            if ccw.is_nan() {
                return 0;
            }
            let cw = (-ccw).rem_euclid(360.0);
            return ((cw / 90.0).round() as u32 % 4) * 90;
        }
    }
    0
}

/// An opened video: the demuxer, its best video stream, that stream's time base and rotation,
/// and a decoder for it.
struct Opened {
    ictx: ff::format::context::Input,
    index: usize,
    time_base: ff::Rational,
    rotation: u32,
    decoder: ff::decoder::Video,
}

fn open_video(path: &Path, container: Container) -> Result<Opened, MediaError> {
    let ictx = open_input(path, container)?;
    let stream = ictx
        .streams()
        .best(ff::media::Type::Video)
        .ok_or_else(|| MediaError::Corrupt("no video stream".into()))?;
    let (index, time_base, rotation) = (stream.index(), stream.time_base(), rotation_of(&stream));
    let decoder = ff::codec::context::Context::from_parameters(stream.parameters())
        .map_err(corrupt)?
        .decoder()
        .video()
        .map_err(corrupt)?;
    Ok(Opened {
        ictx,
        index,
        time_base,
        rotation,
        decoder,
    })
}

/// Probes a video and makes its poster frame.
pub fn process_video(
    path: &Path,
    container: Container,
    limits: &VideoLimits,
) -> Result<VideoOutput, MediaError> {
    let started = Instant::now();
    let Opened {
        mut ictx,
        index,
        time_base,
        rotation,
        mut decoder,
    } = open_video(path, container)?;
    let time_base = f64::from(time_base);
    let (cw, ch) = (decoder.width(), decoder.height());
    if cw == 0 || ch == 0 {
        return Err(MediaError::Corrupt("the video has no picture size".into()));
    }
    if u64::from(cw) * u64::from(ch) > limits.max_pixels {
        return Err(MediaError::TooLarge(format!(
            "{cw}×{ch} is over {} pixels per frame",
            limits.max_pixels
        )));
    }
    let declared = declared_duration(&ictx);
    if declared.is_some_and(|d| d > limits.max_duration) {
        return Err(MediaError::TooLarge(format!(
            "longer than {} s",
            limits.max_duration.as_secs()
        )));
    }

    // Decode up to the poster time; then read on (without decoding) to the end to see how
    // far the packets really go.
    let (mut errors, mut decoded) = (0u32, 0u32);
    let mut first: Option<ff::frame::Video> = None;
    let mut poster: Option<ff::frame::Video> = None;
    let mut last_pts = 0f64;
    let mut frame = ff::frame::Video::empty();
    let mut packet = ff::Packet::empty();
    let over_budget = || -> Result<(), MediaError> {
        if started.elapsed() > limits.budget {
            return Err(MediaError::TooLarge(
                "over the processing time budget".into(),
            ));
        }
        Ok(())
    };
    loop {
        over_budget()?;
        match packet.read(&mut ictx) {
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            Err(_) => {
                errors += 1;
                if errors > limits.max_errors {
                    return Err(MediaError::Corrupt("too many read errors".into()));
                }
                continue;
            }
        }
        if packet.stream() != index {
            continue;
        }
        if let Some(pts) = packet.pts().or(packet.dts()) {
            let end = (pts + packet.duration().max(0)) as f64 * time_base;
            last_pts = last_pts.max(end);
        }
        if poster.is_some() {
            continue;
        }
        if decoder.send_packet(&packet).is_err() {
            errors += 1;
        }
        while decoder.receive_frame(&mut frame).is_ok() {
            decoded += 1;
            let t = frame.pts().map_or(0.0, |p| p as f64 * time_base);
            // The first frame stands in when the clip is shorter than the poster time.
            if first.is_none() {
                first = Some(frame.clone());
            }
            // So many frames before the poster time (or timestamps that never get there):
            // the work stops here and the last frame is the poster.
            if t >= POSTER_AT.as_secs_f64() || decoded >= limits.max_poster_frames {
                poster = Some(frame.clone());
                break;
            }
        }
        if errors > limits.max_errors {
            return Err(MediaError::Corrupt("too many decode errors".into()));
        }
    }
    if poster.is_none() && first.is_none() {
        let _ = decoder.send_eof();
        if decoder.receive_frame(&mut frame).is_ok() {
            first = Some(frame.clone());
        }
    }
    let poster = poster
        .or(first)
        .ok_or_else(|| MediaError::Corrupt("no frame could be decoded".into()))?;
    let duration = declared.map(|d| d.as_secs_f64()).unwrap_or(last_pts);
    // A cut-off file ends early: its packets stop well before the declared duration.
    if declared.is_some() && last_pts < duration * 0.9 - 0.5 {
        return Err(MediaError::Corrupt(format!(
            "truncated: the packets end at {last_pts:.1} s of a declared {duration:.1} s"
        )));
    }
    let jpeg = poster_jpeg(&poster, rotation)?;
    let (width, height) = if rotation % 180 == 90 {
        (ch, cw)
    } else {
        (cw, ch)
    };
    Ok(VideoOutput {
        width,
        height,
        rotation,
        duration_ms: (duration * 1000.0).round() as i64,
        poster: jpeg,
    })
}

/// Shorter side of the preview.
pub const PREVIEW_SHORT_SIDE: u32 = 480;

/// Makes a muted 480p H.264 MP4 preview of `path` at `out` (shorter side 480 px, never
/// enlarged; `moov` first so players start before the download ends; the rotation kept as
/// display metadata). Bounded by the same pixel, time and error budgets as [`process_video`].
pub fn make_preview(
    path: &Path,
    container: Container,
    out: &Path,
    limits: &VideoLimits,
) -> Result<(), MediaError> {
    let started = Instant::now();
    let Opened {
        mut ictx,
        index,
        time_base: in_tb,
        rotation,
        mut decoder,
    } = open_video(path, container)?;
    let (w, h) = (decoder.width(), decoder.height());
    if w == 0 || h == 0 || u64::from(w) * u64::from(h) > limits.max_pixels {
        return Err(MediaError::TooLarge(format!("{w}×{h} cannot be previewed")));
    }
    let scale = (f64::from(PREVIEW_SHORT_SIDE) / f64::from(w.min(h))).min(1.0);
    // Even sizes (4:2:0), rounded to the nearest: 1280×720 → 854×480.
    let even = |x: u32| (((f64::from(x) * scale / 2.0).round() as u32) * 2).max(2);
    let (tw, th) = (even(w), even(h));
    let failed = |e: ff::Error| MediaError::Failed(format!("preview: {e}"));
    let codec = ff::encoder::find_by_name("libx264")
        .ok_or_else(|| MediaError::Failed("FFmpeg has no libx264 encoder".into()))?;
    let mut octx = ff::format::output_as(out, "mp4").map_err(failed)?;
    let global_header = octx
        .format()
        .flags()
        .contains(ff::format::Flags::GLOBAL_HEADER);
    let mut enc = ff::codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(failed)?;
    enc.set_width(tw);
    enc.set_height(th);
    enc.set_format(ff::format::Pixel::YUV420P);
    enc.set_time_base(in_tb);
    enc.set_frame_rate(decoder.frame_rate());
    if global_header {
        enc.set_flags(ff::codec::Flags::GLOBAL_HEADER);
    }
    let mut x264 = ff::Dictionary::new();
    x264.set("preset", "veryfast");
    x264.set("crf", "28");
    let mut encoder = enc.open_as_with(codec, x264).map_err(failed)?;
    {
        let mut ost = octx.add_stream(codec).map_err(failed)?;
        ost.set_parameters(&encoder);
        if rotation != 0 {
            // The picture stays as coded; players turn it by the same display matrix. The
            // angle's sign is what FFmpeg 5.1's MP4 muxer needs for the result to show the
            // same way as the source (checked by the upright test below).
            // SAFETY: the stream belongs to `octx`, which outlives this block; FFmpeg sizes
            // and owns the side data; a display matrix is nine i32s.
            unsafe {
                let sd = ff::ffi::av_stream_new_side_data(
                    ost.as_mut_ptr(),
                    ff::ffi::AVPacketSideDataType::AV_PKT_DATA_DISPLAYMATRIX,
                    9 * 4,
                );
                if sd.is_null() {
                    return Err(MediaError::Failed(
                        "preview: no memory for side data".into(),
                    ));
                }
                ff::ffi::av_display_rotation_set(sd.cast(), f64::from(rotation));
            }
        }
    }
    let mut mux = ff::Dictionary::new();
    mux.set("movflags", "+faststart");
    octx.write_header_with(mux).map_err(failed)?;
    let out_tb = octx.stream(0).expect("the stream just added").time_base();
    let mut scaler = scaler(
        decoder.format(),
        (w, h),
        ff::format::Pixel::YUV420P,
        (tw, th),
    )?;

    let (mut errors, mut pixels) = (0u32, 0u64);
    let (mut frame, mut small) = (ff::frame::Video::empty(), ff::frame::Video::empty());
    let mut encoded = ff::Packet::empty();
    let mut packet = ff::Packet::empty();
    let mut drain = |encoder: &mut ff::encoder::Video,
                     octx: &mut ff::format::context::Output|
     -> Result<(), MediaError> {
        while encoder.receive_packet(&mut encoded).is_ok() {
            encoded.set_stream(0);
            encoded.rescale_ts(in_tb, out_tb);
            encoded.write_interleaved(octx).map_err(failed)?;
        }
        Ok(())
    };
    let mut eof = false;
    while !eof {
        if started.elapsed() > limits.budget {
            return Err(MediaError::TooLarge(
                "over the processing time budget".into(),
            ));
        }
        match packet.read(&mut ictx) {
            Ok(()) if packet.stream() == index => {
                if decoder.send_packet(&packet).is_err() {
                    errors += 1;
                }
            }
            Ok(()) => continue,
            Err(ff::Error::Eof) => {
                let _ = decoder.send_eof();
                eof = true;
            }
            Err(_) => errors += 1,
        }
        if errors > limits.max_errors {
            return Err(MediaError::Corrupt("too many decode errors".into()));
        }
        while decoder.receive_frame(&mut frame).is_ok() {
            pixels += u64::from(frame.width()) * u64::from(frame.height());
            if pixels > limits.max_decoded_pixels {
                return Err(MediaError::TooLarge(format!(
                    "over the decoding budget of {} pixels",
                    limits.max_decoded_pixels
                )));
            }
            scaler.run(&frame, &mut small).map_err(corrupt)?;
            small.set_pts(frame.timestamp());
            encoder.send_frame(&small).map_err(failed)?;
            drain(&mut encoder, &mut octx)?;
        }
    }
    encoder.send_eof().map_err(failed)?;
    drain(&mut encoder, &mut octx)?;
    octx.write_trailer().map_err(failed)?;
    Ok(())
}

/// A bilinear scaler from `from` pixels of `size` to `to` pixels of `target`.
pub(crate) fn scaler(
    from: ff::format::Pixel,
    size: (u32, u32),
    to: ff::format::Pixel,
    target: (u32, u32),
) -> Result<ff::software::scaling::Context, MediaError> {
    ff::software::scaling::Context::get(
        from,
        size.0,
        size.1,
        to,
        target.0,
        target.1,
        ff::software::scaling::Flags::BILINEAR,
    )
    .map_err(corrupt)
}

/// The frame as an upright RGB JPEG of at most [`POSTER_SIDE`].
fn poster_jpeg(frame: &ff::frame::Video, rotation: u32) -> Result<Vec<u8>, MediaError> {
    let (w, h) = (frame.width(), frame.height());
    let scale = (f64::from(POSTER_SIDE) / f64::from(w.max(h))).min(1.0);
    let tw = (((f64::from(w) * scale) as u32) & !1).max(2);
    let th = (((f64::from(h) * scale) as u32) & !1).max(2);
    let mut scaler = scaler(frame.format(), (w, h), ff::format::Pixel::RGB24, (tw, th))?;
    let mut rgb = ff::frame::Video::empty();
    scaler.run(frame, &mut rgb).map_err(corrupt)?;
    // Rows are padded to the stride: copy them out tightly.
    let stride = rgb.stride(0);
    let data = rgb.data(0);
    let mut pixels = Vec::with_capacity((tw * th * 3) as usize);
    for row in 0..th as usize {
        pixels.extend_from_slice(&data[row * stride..row * stride + tw as usize * 3]);
    }
    let img = image::RgbImage::from_raw(tw, th, pixels)
        .ok_or_else(|| MediaError::Failed("poster buffer".into()))?;
    let img = match rotation {
        90 => image::imageops::rotate90(&img),
        180 => image::imageops::rotate180(&img),
        270 => image::imageops::rotate270(&img),
        _ => img,
    };
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 80);
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    enc.encode(
        img.as_raw(),
        img.width() as u16,
        img.height() as u16,
        jpeg_encoder::ColorType::Rgb,
    )
    .map_err(|e| MediaError::Failed(format!("JPEG encoding: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Makes a file with the `ffmpeg` command-line tool (required for these tests).
    fn ffmpeg(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
        let out = dir.join(name);
        crate::fixtures::ffmpeg(args, &out);
        out
    }

    fn clip(dir: &Path, name: &str, size: &str, secs: &str, extra: &[&str]) -> PathBuf {
        let out = dir.join(name);
        crate::fixtures::h264_clip(size, secs, extra, &out);
        out
    }

    /// The poster looks like FFmpeg's own rendering of the same moment, not turned 180°.
    fn assert_upright(reference: &Path, poster: &[u8]) {
        let want = image::open(reference).unwrap().into_rgb8();
        let got = image::load_from_memory(poster).unwrap().into_rgb8();
        let diff = |a: &image::RgbImage, b: &image::RgbImage| -> f64 {
            let total: u64 = a
                .as_raw()
                .iter()
                .zip(b.as_raw())
                .map(|(x, y)| u64::from(x.abs_diff(*y)))
                .sum();
            total as f64 / a.as_raw().len() as f64
        };
        let upside_down = image::imageops::rotate180(&got);
        let (d, flipped) = (diff(&want, &got), diff(&want, &upside_down));
        assert!(
            d < 14.0 && d < flipped,
            "not upright: diff {d} (turned 180°: {flipped})"
        );
    }

    #[test]
    fn previews_are_480p_h264_and_start_fast() {
        let dir = tempfile::tempdir().unwrap();
        let limits = VideoLimits::default();
        let hd = clip(dir.path(), "hd.mp4", "1280x720", "2", &[]);
        let out = dir.path().join("p.mp4");
        make_preview(&hd, Container::Mp4, &out, &limits).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        let at = |atom: &[u8]| bytes.windows(4).position(|w| w == atom).unwrap();
        assert!(
            at(b"moov") < at(b"mdat"),
            "faststart: the index comes first"
        );
        assert!(bytes.windows(4).any(|w| w == b"avc1"), "H.264");
        let p = process_video(&out, Container::Mp4, &limits).unwrap();
        assert_eq!((p.width, p.height), (854, 480));
        assert!((1900..=2100).contains(&p.duration_ms), "{}", p.duration_ms);
        assert!(bytes.len() < std::fs::metadata(&hd).unwrap().len() as usize * 2);
    }

    fn dims(jpeg: &[u8]) -> (u32, u32) {
        crate::image::dimensions_of(jpeg).expect("a decodable poster")
    }

    #[test]
    fn probes_and_makes_posters() {
        let dir = tempfile::tempdir().unwrap();
        let limits = VideoLimits::default();
        let mp4 = clip(dir.path(), "a.mp4", "640x360", "3", &[]);
        let out = process_video(&mp4, Container::Mp4, &limits).unwrap();
        assert_eq!((out.width, out.height, out.rotation), (640, 360, 0));
        assert!(
            (2900..=3100).contains(&out.duration_ms),
            "{}",
            out.duration_ms
        );
        assert_eq!(dims(&out.poster), (640, 360));

        // Phones record sideways and say so in the display matrix (set here by a stream copy).
        let src = mp4.display().to_string();
        let turned = ffmpeg(
            dir.path(),
            "r.mp4",
            &["-i", &src, "-c", "copy", "-metadata:s:v:0", "rotate=90"],
        );
        let out = process_video(&turned, Container::Mp4, &limits).unwrap();
        assert_eq!((out.width, out.height), (360, 640));
        assert_eq!(dims(&out.poster), (360, 640));
        // Upright the way FFmpeg's own player shows it: compare with its frame at 1 s.
        let path = turned.display().to_string();
        let reference = ffmpeg(
            dir.path(),
            "ref.png",
            &["-ss", "1", "-i", &path, "-frames:v", "1"],
        );
        assert_upright(&reference, &out.poster);

        // Its preview keeps the rotation: shown upright too.
        let preview = dir.path().join("rp.mp4");
        make_preview(&turned, Container::Mp4, &preview, &limits).unwrap();
        let again = process_video(&preview, Container::Mp4, &limits).unwrap();
        assert_eq!((again.width, again.height), (360, 640));
        assert_upright(&reference, &again.poster);

        // Shorter than the poster time: the first frame.
        let short = clip(dir.path(), "s.mp4", "320x240", "0.4", &[]);
        assert_eq!(
            dims(
                &process_video(&short, Container::Mp4, &limits)
                    .unwrap()
                    .poster
            ),
            (320, 240)
        );

        let m4a = ffmpeg(
            dir.path(),
            "v.m4a",
            &[
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:duration=2",
                "-c:a",
                "aac",
            ],
        );
        let ms = probe_audio(&m4a, Container::Mp4, &limits).unwrap();
        assert!((1900..=2200).contains(&ms), "{ms}");
    }

    #[test]
    fn polyglots_are_read_as_what_they_were_sniffed_as() {
        use crate::fixtures::{polyglot, Polyglot};
        // A victim's clip two directories up, as a job's input sees another blob.
        let dir = tempfile::tempdir().unwrap();
        let victim = clip(dir.path(), "victim.mp4", "640x360", "3", &[]);
        let job = dir.path().join("spool/job");
        std::fs::create_dir_all(&job).unwrap();
        let limits = VideoLimits::default();
        let cases = [
            (
                Polyglot::DashAsMp4,
                "../../victim.mp4".to_owned(),
                "video/mp4",
            ),
            (
                Polyglot::HlsAsMp3,
                "../../victim.mp4".to_owned(),
                "audio/mpeg",
            ),
            (
                Polyglot::HlsAsMp3,
                format!("file:{}", victim.display()),
                "audio/mpeg",
            ),
            (Polyglot::ConcatAsMp3, "victim.mp4".to_owned(), "audio/mpeg"),
            (
                Polyglot::HlsAsMatroska,
                "../../victim.mp4".to_owned(),
                "video/x-matroska",
            ),
        ];
        std::fs::copy(&victim, job.join("victim.mp4")).unwrap();
        for (i, (kind, target, sniffed)) in cases.into_iter().enumerate() {
            let path = job.join(format!("input-{i}"));
            std::fs::write(&path, polyglot(kind, &target)).unwrap();
            let head = std::fs::read(&path).unwrap();
            assert_eq!(
                crate::sniff(&head).map(|d| d.mime),
                Some(sniffed),
                "case {i}"
            );
            let container = Container::of_mime(sniffed).unwrap();
            let r = if sniffed.starts_with("audio") {
                probe_audio(&path, container, &limits).map(|_| ())
            } else {
                process_video(&path, container, &limits).map(|_| ())
            };
            assert!(matches!(r, Err(MediaError::Corrupt(_))), "case {i}: {r:?}");
            let r = make_preview(&path, container, &job.join(format!("out-{i}.mp4")), &limits);
            assert!(matches!(r, Err(MediaError::Corrupt(_))), "case {i}: {r:?}");
        }
        // The cases are real attacks: FFmpeg left to probe follows the first two to the clip.
        for (i, kind) in [Polyglot::DashAsMp4, Polyglot::HlsAsMp3]
            .into_iter()
            .enumerate()
        {
            let path = job.join(format!("probed-{i}"));
            std::fs::write(&path, polyglot(kind, "../../victim.mp4")).unwrap();
            let opened = ff::format::input(&path).expect("FFmpeg follows the reference");
            let video = opened.streams().best(ff::media::Type::Video).unwrap();
            let size = ff::codec::context::Context::from_parameters(video.parameters())
                .unwrap()
                .decoder()
                .video()
                .map(|d| (d.width(), d.height()))
                .unwrap();
            assert_eq!(size, (640, 360), "case {i} read the victim's clip");
        }
    }

    #[test]
    fn hostile_videos_fail_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let limits = VideoLimits::default();
        // An 8K clip is over the pixel limit.
        let big = clip(dir.path(), "8k.mp4", "7680x4320", "0.04", &[]);
        assert!(matches!(
            process_video(&big, Container::Mp4, &limits),
            Err(MediaError::TooLarge(_))
        ));
        // A clip cut to 40 % (index at the front, so it still opens and ends without error).
        let whole = clip(
            dir.path(),
            "w.mp4",
            "320x240",
            "5",
            &["-movflags", "+faststart"],
        );
        let bytes = std::fs::read(&whole).unwrap();
        let cut = dir.path().join("cut.mp4");
        std::fs::write(&cut, &bytes[..bytes.len() * 2 / 5]).unwrap();
        let r = process_video(&cut, Container::Mp4, &limits);
        assert!(
            matches!(r, Err(MediaError::Corrupt(_))),
            "{:?}",
            r.map(|o| o.duration_ms)
        );
        // Random bytes, and a clip over the duration limit.
        let junk = dir.path().join("junk.mp4");
        std::fs::write(&junk, [0x42u8; 4096]).unwrap();
        assert!(matches!(
            process_video(&junk, Container::Mp4, &limits),
            Err(MediaError::Corrupt(_))
        ));
        let short_limit = VideoLimits {
            max_duration: Duration::from_secs(2),
            ..Default::default()
        };
        assert!(matches!(
            process_video(&whole, Container::Mp4, &short_limit),
            Err(MediaError::TooLarge(_))
        ));
    }
}

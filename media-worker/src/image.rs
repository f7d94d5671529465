//! Images (JPEG, PNG, WebP, GIF's first frame) → what a chat screen shows: a 320 px thumbnail
//! (lossy WebP) and a 1280 px preview (JPEG quality 80, 4:2:0), with the EXIF orientation
//! applied and every piece of metadata (EXIF, GPS, ICC, comments) left behind, since both are
//! re-encoded from pixels.
//!
//! Decoding is bounded before it starts: the header's dimensions are checked against
//! [`ImageLimits`], and the decoder's allocation budget is charged with the image's full size
//! up front (`Limits::reserve`), because image 0.25's `into_decoder`/`from_decoder` path does
//! not enforce `max_alloc` by itself. A hostile file fails its own job with an error; it
//! neither aborts the process nor takes unbounded memory.

use crate::{ffjpeg, jpeg_markers, MediaError};
use fast_image_resize as fr;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits};
use std::io::Cursor;
use std::path::Path;

/// Longest side of the thumbnail.
pub const THUMB_SIDE: u32 = 320;
/// Side of the square avatar cut from an image's middle (a profile picture).
pub const AVATAR_SIDE: u32 = 256;
/// Longest side of the preview.
pub const PREVIEW_SIDE: u32 = 1280;
const THUMB_QUALITY: f32 = 75.0;
/// libwebp's speed/size trade-off (0 fastest … 6 smallest; its default is 4). On a 320 px
/// thumbnail 2 takes ~2 ms less than 4 for ~4 % more bytes (docs/benchmarks.md).
const THUMB_METHOD: i32 = 2;
const PREVIEW_QUALITY: u8 = 80;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ImageLimits {
    /// Most pixels (width × height) decoded.
    pub max_pixels: u64,
    /// Longest side accepted.
    pub max_side: u32,
    /// Most bytes the decoder may allocate.
    pub max_alloc: u64,
    /// Most scans a JPEG may have: each costs the decoder a pass over the whole image, and a
    /// few kilobytes can declare thousands (a camera's progressive JPEG has about ten).
    pub max_scans: usize,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_pixels: 100_000_000,
            max_side: 30_000,
            max_alloc: 512 << 20,
            max_scans: 100,
        }
    }
}

/// What an image job makes.
#[derive(Debug)]
pub struct ImageOutput {
    /// As displayed (after the EXIF orientation).
    pub width: u32,
    pub height: u32,
    /// WebP, at most [`THUMB_SIDE`] on the longest side.
    pub thumb: Vec<u8>,
    /// JPEG, at most [`PREVIEW_SIDE`] on the longest side.
    pub preview: Vec<u8>,
    /// WebP, the largest centred square, [`AVATAR_SIDE`] a side (less for a smaller image):
    /// what a profile picture set from this image shows.
    pub avatar: Vec<u8>,
}

fn corrupt(e: impl std::fmt::Display) -> MediaError {
    MediaError::Corrupt(e.to_string())
}

/// Decodes `path` within `limits` and makes the thumbnail and preview.
pub fn process_image(path: &Path, limits: &ImageLimits) -> Result<ImageOutput, MediaError> {
    let (src, (width, height)) = decode(path, limits, PREVIEW_SIDE)?;
    let thumb = webp(&src.fit(THUMB_SIDE)?)?;
    // The preview's pixels are the avatar's source: a square cut from them is still well
    // over 256 px, and resizing it is a fraction of resizing the decoded image.
    let fitted = src.fit(PREVIEW_SIDE)?;
    let avatar = webp(&fitted.square(AVATAR_SIDE)?)?;
    let preview_px = fitted.without_alpha();
    let mut preview = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut preview, PREVIEW_QUALITY);
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    enc.encode(
        &preview_px.data,
        preview_px.w as u16,
        preview_px.h as u16,
        jpeg_encoder::ColorType::Rgb,
    )
    .map_err(|e| MediaError::Failed(format!("JPEG encoding: {e}")))?;
    Ok(ImageOutput {
        width,
        height,
        thumb,
        preview,
        avatar,
    })
}

/// Only the thumbnail (what the benchmark compares with `vipsthumbnail`).
pub fn thumbnail_of(path: &Path, limits: &ImageLimits) -> Result<Vec<u8>, MediaError> {
    webp(&decode(path, limits, THUMB_SIDE)?.0.fit(THUMB_SIDE)?)
}

/// Pixels as a WebP (a thumbnail's quality and speed).
fn webp(px: &Pixels) -> Result<Vec<u8>, MediaError> {
    let enc = if px.alpha {
        webp::Encoder::from_rgba(&px.data, px.w, px.h)
    } else {
        webp::Encoder::from_rgb(&px.data, px.w, px.h)
    };
    let mut config =
        webp::WebPConfig::new().map_err(|()| MediaError::Failed("libwebp configuration".into()))?;
    config.quality = THUMB_QUALITY;
    config.method = THUMB_METHOD;
    let webp = enc
        .encode_advanced(&config)
        .map_err(|e| MediaError::Failed(format!("WebP encoding: {e:?}")))?;
    Ok(webp.to_vec())
}

/// The pixels of `path` as displayed (orientation applied), decoded within `limits`.
///
/// JPEGs are decoded shrunk in the DCT domain (1/2, 1/4 or 1/8) to the smallest size that
/// still covers `want` on its longest side — what makes a 12 MP photo's thumbnail cheap —
/// with FFmpeg's decoder ([`ffjpeg`]; `jpeg-decoder` when FFmpeg refuses), and the size
/// returned is the original's. Other formats are decoded whole.
fn decode(path: &Path, limits: &ImageLimits, want: u32) -> Result<Decoded, MediaError> {
    let reader = ImageReader::open(path)?
        .with_guessed_format()
        .map_err(corrupt)?;
    if reader.format() == Some(image::ImageFormat::Jpeg) {
        let bytes = std::fs::read(path)?;
        if !jpeg_is_complete(&bytes) {
            // A JPEG decoder fills a cut-off image with grey rather than fail.
            return Err(MediaError::Corrupt(
                "the JPEG is truncated (no end marker)".into(),
            ));
        }
        // The decoding work is the pixels times the scans: bound both before decoding.
        let scans = jpeg_markers::scan_count(&bytes).map_err(corrupt)?;
        if scans > limits.max_scans {
            return Err(MediaError::TooLarge(format!(
                "{scans} scans; at most {} are decoded",
                limits.max_scans
            )));
        }
        if let Some(done) = decode_jpeg_scaled(&bytes, limits, want)? {
            return Ok(done);
        }
    }
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let (w, h) = decoder.dimensions();
    check_size(w, h, limits)?;
    let mut budget = Limits::default();
    budget.max_image_width = Some(limits.max_side);
    budget.max_image_height = Some(limits.max_side);
    budget.max_alloc = Some(limits.max_alloc);
    budget
        .reserve(decoder.total_bytes())
        .map_err(|e| MediaError::TooLarge(e.to_string()))?;
    decoder
        .set_limits(budget)
        .map_err(|e| MediaError::TooLarge(e.to_string()))?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    img.apply_orientation(orientation);
    let size = (img.width(), img.height());
    let px = if img.color().has_alpha() {
        Pixels::rgba(img.into_rgba8())
    } else {
        Pixels::rgb(img.into_rgb8())
    };
    Ok((px, size))
}

/// Decoded pixels, and the displayed size of the original image.
type Decoded = (Pixels, (u32, u32));

fn check_size(w: u32, h: u32, limits: &ImageLimits) -> Result<(), MediaError> {
    if w == 0 || h == 0 {
        return Err(MediaError::Corrupt("the image has no pixels".into()));
    }
    if w > limits.max_side || h > limits.max_side || u64::from(w) * u64::from(h) > limits.max_pixels
    {
        return Err(MediaError::TooLarge(format!(
            "{w}×{h} is over the limit ({} pixels, {} per side)",
            limits.max_pixels, limits.max_side
        )));
    }
    Ok(())
}

/// A JPEG decoded at a reduced IDCT scale, orientation applied. `None` for what this path
/// does not handle (CMYK): the caller decodes it whole instead.
fn decode_jpeg_scaled(
    bytes: &[u8],
    limits: &ImageLimits,
    want: u32,
) -> Result<Option<Decoded>, MediaError> {
    let mut dec = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    dec.read_info().map_err(corrupt)?;
    let info = dec.info().ok_or_else(|| corrupt("no JPEG header"))?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    check_size(w, h, limits)?;
    if info.pixel_format == jpeg_decoder::PixelFormat::CMYK32 {
        return Ok(None);
    }
    if u64::from(w) * u64::from(h) * 3 > limits.max_alloc {
        return Err(MediaError::TooLarge(format!(
            "{w}×{h} needs more than {} bytes",
            limits.max_alloc
        )));
    }
    let orientation = dec
        .exif_data()
        .and_then(image::metadata::Orientation::from_exif_chunk)
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let lowres = ffjpeg::lowres_for(w, h, want);
    let decoded = ffjpeg::decode_rgb(bytes, lowres);
    let (sw, sh, rgb) = match decoded {
        Ok(decoded) => decoded,
        Err(e) => {
            tracing::debug!(error = %e, "FFmpeg cannot decode this JPEG; using jpeg-decoder");
            dec.set_max_decoding_buffer_size(limits.max_alloc as usize);
            let side = want.min(u32::from(u16::MAX)) as u16;
            dec.scale(side, side).map_err(corrupt)?;
            let raw = dec.decode().map_err(corrupt)?;
            let out = dec.info().ok_or_else(|| corrupt("no JPEG header"))?;
            let rgb: Vec<u8> = match out.pixel_format {
                jpeg_decoder::PixelFormat::RGB24 => raw,
                jpeg_decoder::PixelFormat::L8 => raw.iter().flat_map(|&l| [l, l, l]).collect(),
                jpeg_decoder::PixelFormat::L16 => raw
                    .chunks_exact(2)
                    .flat_map(|p| [p[0], p[0], p[0]])
                    .collect(),
                jpeg_decoder::PixelFormat::CMYK32 => return Ok(None),
            };
            (u32::from(out.width), u32::from(out.height), rgb)
        }
    };
    let img = image::RgbImage::from_raw(sw, sh, rgb)
        .ok_or_else(|| corrupt("the JPEG decoded to fewer pixels than it declares"))?;
    let mut img = DynamicImage::ImageRgb8(img);
    img.apply_orientation(orientation);
    let turned = matches!(
        orientation,
        image::metadata::Orientation::Rotate90
            | image::metadata::Orientation::Rotate270
            | image::metadata::Orientation::Rotate90FlipH
            | image::metadata::Orientation::Rotate270FlipH
    );
    let size = if turned { (h, w) } else { (w, h) };
    Ok(Some((Pixels::rgb(img.into_rgb8()), size)))
}

/// Whether a JPEG has its end-of-image marker (within the last 64 KiB: some cameras append
/// data after it).
fn jpeg_is_complete(jpeg: &[u8]) -> bool {
    let tail = &jpeg[jpeg.len().saturating_sub(64 * 1024)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Interleaved 8-bit pixels, RGB or RGBA.
struct Pixels {
    alpha: bool,
    w: u32,
    h: u32,
    data: Vec<u8>,
}

impl Pixels {
    fn rgb(img: image::RgbImage) -> Self {
        let (w, h) = img.dimensions();
        Self {
            alpha: false,
            w,
            h,
            data: img.into_raw(),
        }
    }

    fn rgba(img: image::RgbaImage) -> Self {
        let (w, h) = img.dimensions();
        Self {
            alpha: true,
            w,
            h,
            data: img.into_raw(),
        }
    }

    /// A copy scaled to fit `side` × `side` (never enlarged).
    fn fit(&self, side: u32) -> Result<Self, MediaError> {
        let scale = (f64::from(side) / f64::from(self.w.max(self.h))).min(1.0);
        let w = ((f64::from(self.w) * scale).round() as u32).max(1);
        let h = ((f64::from(self.h) * scale).round() as u32).max(1);
        self.resized(w, h, None)
    }

    /// The largest square in the middle, `side` a side at most.
    fn square(&self, side: u32) -> Result<Self, MediaError> {
        let cut = self.w.min(self.h);
        let out = cut.min(side);
        let left = f64::from(self.w - cut) / 2.0;
        let top = f64::from(self.h - cut) / 2.0;
        self.resized(out, out, Some((left, top, f64::from(cut))))
    }

    /// Resized to `w`×`h`, from the `(left, top, side)` square when `crop` is given.
    fn resized(&self, w: u32, h: u32, crop: Option<(f64, f64, f64)>) -> Result<Self, MediaError> {
        let kind = if self.alpha {
            fr::PixelType::U8x4
        } else {
            fr::PixelType::U8x3
        };
        if (w, h) == (self.w, self.h) && crop.is_none() {
            return Ok(Self {
                data: self.data.clone(),
                ..*self
            });
        }
        let src = fr::images::ImageRef::new(self.w, self.h, &self.data, kind)
            .map_err(|e| MediaError::Failed(format!("resize: {e}")))?;
        let mut dst = fr::images::Image::new(w, h, kind);
        let mut options = fr::ResizeOptions::new()
            .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear));
        if let Some((left, top, side)) = crop {
            options = options.crop(left, top, side, side);
        }
        fr::Resizer::new()
            .resize(&src, &mut dst, &options)
            .map_err(|e| MediaError::Failed(format!("resize: {e}")))?;
        Ok(Self {
            alpha: self.alpha,
            w,
            h,
            data: dst.into_vec(),
        })
    }

    /// RGB, transparent parts shown over white (as a chat bubble would).
    fn without_alpha(self) -> Self {
        if !self.alpha {
            return self;
        }
        let data = self
            .data
            .chunks_exact(4)
            .flat_map(|p| {
                let a = u32::from(p[3]);
                let mix = |c: u8| ((u32::from(c) * a + 255 * (255 - a)) / 255) as u8;
                [mix(p[0]), mix(p[1]), mix(p[2])]
            })
            .collect();
        Self {
            alpha: false,
            data,
            ..self
        }
    }
}

/// Width and height of an encoded image (for tests and checks).
pub fn dimensions_of(bytes: &[u8]) -> Option<(u32, u32)> {
    ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()?
        .into_dimensions()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// A `w`×`h` JPEG whose EXIF says "rotate 90° clockwise to display" (orientation 6).
    fn rotated_jpeg(w: u16, h: u16) -> Vec<u8> {
        let mut px = Vec::with_capacity(usize::from(w) * usize::from(h) * 3);
        for y in 0..h {
            for x in 0..w {
                px.extend_from_slice(&[(x % 256) as u8, (y % 256) as u8, 128]);
            }
        }
        let mut out = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
        // Exif, big-endian TIFF, one IFD entry: Orientation (0x0112), SHORT, 1, value 6.
        let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01".to_vec();
        exif.extend_from_slice(b"\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0");
        enc.add_app_segment(1, exif).unwrap();
        enc.encode(&px, w, h, jpeg_encoder::ColorType::Rgb).unwrap();
        out
    }

    #[test]
    fn orients_scales_and_strips() {
        let dir = tempfile::tempdir().unwrap();
        let jpeg = rotated_jpeg(2000, 1000);
        assert!(jpeg.windows(4).any(|w| w == b"Exif"));
        let out =
            process_image(&write(dir.path(), "a.jpg", &jpeg), &ImageLimits::default()).unwrap();
        assert_eq!((out.width, out.height), (1000, 2000), "orientation applied");
        assert_eq!(dimensions_of(&out.thumb), Some((160, 320)));
        assert_eq!(dimensions_of(&out.preview), Some((640, 1280)));
        assert_eq!(dimensions_of(&out.avatar), Some((256, 256)), "a square");
        assert!(out.thumb.starts_with(b"RIFF") && &out.thumb[8..12] == b"WEBP");
        assert!(out.avatar.starts_with(b"RIFF") && &out.avatar[8..12] == b"WEBP");
        assert!(out.preview.starts_with(b"\xFF\xD8\xFF"));
        assert!(
            !out.preview.windows(4).any(|w| w == b"Exif"),
            "metadata stripped"
        );
    }

    #[test]
    fn a_large_photos_thumbnail_comes_from_an_eighth_scale_decode_oriented() {
        let dir = tempfile::tempdir().unwrap();
        // 2 600 px wide: 1/8 (325 px) still covers 320, so it is decoded at 1/8.
        let jpeg = rotated_jpeg(2600, 1400);
        let thumb = thumbnail_of(
            &write(dir.path(), "big.jpg", &jpeg),
            &ImageLimits::default(),
        )
        .unwrap();
        assert_eq!(
            dimensions_of(&thumb),
            Some((172, 320)),
            "orientation applied"
        );
        // The picture survives: red grows left to right in the original, so top to bottom
        // once turned 90° clockwise.
        let img = image::load_from_memory(&thumb).unwrap().into_rgb8();
        let (top, bottom) = (img.get_pixel(86, 10)[0], img.get_pixel(86, 310)[0]);
        assert!(top.abs_diff(bottom) > 30, "{top} {bottom}");
    }

    #[test]
    fn small_images_are_not_enlarged_and_alpha_survives() {
        let dir = tempfile::tempdir().unwrap();
        let mut png = Vec::new();
        image::RgbaImage::from_pixel(40, 30, image::Rgba([255, 0, 0, 128]))
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let out =
            process_image(&write(dir.path(), "a.png", &png), &ImageLimits::default()).unwrap();
        assert_eq!(dimensions_of(&out.thumb), Some((40, 30)));
        assert_eq!(dimensions_of(&out.preview), Some((40, 30)));
        assert_eq!(dimensions_of(&out.avatar), Some((30, 30)));
    }

    #[test]
    fn the_avatar_is_the_middle_square() {
        let dir = tempfile::tempdir().unwrap();
        // Red, green, blue thirds side by side: the avatar is the green one.
        let img = image::RgbImage::from_fn(600, 200, |x, _| match x / 200 {
            0 => image::Rgb([255, 0, 0]),
            1 => image::Rgb([0, 255, 0]),
            _ => image::Rgb([0, 0, 255]),
        });
        let mut png = Vec::new();
        img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let out =
            process_image(&write(dir.path(), "a.png", &png), &ImageLimits::default()).unwrap();
        let avatar = image::load_from_memory(&out.avatar).unwrap().into_rgb8();
        assert_eq!(avatar.dimensions(), (200, 200));
        for (x, y) in [(5, 5), (100, 100), (194, 194)] {
            let p = avatar.get_pixel(x, y);
            assert!(p[1] > 200 && p[0] < 40 && p[2] < 40, "{x},{y}: {p:?}");
        }
    }

    #[test]
    fn a_scan_bomb_fails_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        // ~110 KB declaring 5 000 scans over a 12 MP image: each scan a pass over 187 500
        // blocks. Refused from its structure alone, before any decoder runs.
        let bomb = crate::fixtures::jpeg_scan_bomb(4000, 3000, 5_000);
        assert!(bomb.len() < 200_000, "{} bytes", bomb.len());
        let r = process_image(
            &write(dir.path(), "bomb.jpg", &bomb),
            &ImageLimits::default(),
        );
        let Err(MediaError::TooLarge(why)) = &r else {
            panic!("{:?}", r.map(|o| (o.width, o.height)))
        };
        assert!(why.contains("5001 scans"), "{why}");
        // It is a real JPEG, which a decoder would grind through: a small one decodes.
        let small = crate::fixtures::jpeg_scan_bomb(64, 64, 150);
        let lifted = ImageLimits {
            max_scans: usize::MAX,
            ..Default::default()
        };
        let out = process_image(&write(dir.path(), "small.jpg", &small), &lifted).unwrap();
        assert_eq!((out.width, out.height), (64, 64));
    }

    #[test]
    fn hostile_images_fail_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        // A PNG declaring 65 000 × 65 000 RGB pixels (12 GB decoded), and a JPEG header
        // declaring the same.
        let bomb = crate::fixtures::png_bomb(65_000);
        let r = process_image(
            &write(dir.path(), "bomb.png", &bomb),
            &ImageLimits::default(),
        );
        assert!(
            matches!(r, Err(MediaError::TooLarge(_))),
            "{:?}",
            r.map(|o| (o.width, o.height))
        );
        let huge = crate::fixtures::jpeg_header_only(65_000);
        let r = process_image(
            &write(dir.path(), "huge.jpg", &huge),
            &ImageLimits::default(),
        );
        assert!(r.is_err(), "{:?}", r.map(|o| (o.width, o.height)));
        // Within the side limit but over the allocation budget.
        let tight = ImageLimits {
            max_alloc: 1 << 20,
            ..Default::default()
        };
        let jpeg = rotated_jpeg(1000, 1000);
        let r = process_image(&write(dir.path(), "big.jpg", &jpeg), &tight);
        assert!(
            matches!(r, Err(MediaError::TooLarge(_))),
            "{:?}",
            r.map(|o| (o.width, o.height))
        );
        // Random bytes and a truncated JPEG.
        let r = process_image(
            &write(dir.path(), "x.bin", &[7u8; 500]),
            &ImageLimits::default(),
        );
        assert!(
            matches!(r, Err(MediaError::Corrupt(_))),
            "{:?}",
            r.map(|o| (o.width, o.height))
        );
        let cut = &jpeg[..jpeg.len() / 3];
        let r = process_image(&write(dir.path(), "cut.jpg", cut), &ImageLimits::default());
        assert!(r.is_err(), "{:?}", r.map(|o| (o.width, o.height)));
    }
}

//! JPEG decoding through FFmpeg's MJPEG decoder, shrunk in the DCT domain (`lowres`: 1/2, 1/4
//! or 1/8 of each side). Its entropy decoder is about twice as fast as `jpeg-decoder`'s, which
//! is most of a thumbnail's cost. The caller has checked the header against its limits and
//! reads the orientation itself; anything this path cannot do comes back as an error and the
//! caller decodes another way.

use crate::video::{init, scaler};
use crate::MediaError;
use ffmpeg_next as ff;

/// The largest `lowres` (0–3) whose output still has at least `want` pixels on the longest of
/// `w` × `h`.
pub(crate) fn lowres_for(w: u32, h: u32, want: u32) -> u8 {
    let long = w.max(h);
    (0..=3u8)
        .rev()
        .find(|&k| long.div_ceil(1 << k) >= want)
        .unwrap_or(0)
}

/// Decodes `jpeg` at `1 / 2^lowres` of its size into tightly packed RGB: (width, height, pixels).
pub(crate) fn decode_rgb(jpeg: &[u8], lowres: u8) -> Result<(u32, u32, Vec<u8>), MediaError> {
    let failed = |e: ff::Error| MediaError::Failed(format!("FFmpeg JPEG decoding: {e}"));
    init()?;
    let codec = ff::codec::decoder::find(ff::codec::Id::MJPEG)
        .ok_or_else(|| MediaError::Failed("FFmpeg has no JPEG decoder".into()))?;
    let mut options = ff::Dictionary::new();
    options.set("lowres", &lowres.to_string());
    options.set("threads", "1");
    let mut decoder = ff::codec::context::Context::new_with_codec(codec)
        .decoder()
        .open_as_with(codec, options)
        .and_then(|d| d.video())
        .map_err(failed)?;
    decoder
        .send_packet(&ff::Packet::copy(jpeg))
        .map_err(failed)?;
    decoder.send_eof().map_err(failed)?;
    let mut frame = ff::frame::Video::empty();
    decoder.receive_frame(&mut frame).map_err(failed)?;
    let (w, h) = (frame.width(), frame.height());
    if w == 0 || h == 0 {
        return Err(MediaError::Failed("FFmpeg decoded no pixels".into()));
    }
    let mut rgb = ff::frame::Video::empty();
    scaler(frame.format(), (w, h), ff::format::Pixel::RGB24, (w, h))?
        .run(&frame, &mut rgb)
        .map_err(failed)?;
    // Rows are padded to the stride: copy them out tightly.
    let (stride, data, row) = (rgb.stride(0), rgb.data(0), w as usize * 3);
    let mut pixels = Vec::with_capacity(row * h as usize);
    for y in 0..h as usize {
        pixels.extend_from_slice(&data[y * stride..y * stride + row]);
    }
    Ok((w, h, pixels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_smallest_scale_that_covers_the_target() {
        assert_eq!(lowres_for(4000, 3000, 320), 3); // 500 px
        assert_eq!(lowres_for(4000, 3000, 1280), 1); // 2000 px
        assert_eq!(lowres_for(3000, 4000, 1280), 1);
        assert_eq!(lowres_for(2560, 1920, 1280), 1); // exactly 1280
        assert_eq!(lowres_for(2000, 1500, 1280), 0);
        assert_eq!(lowres_for(200, 100, 320), 0);
    }

    #[test]
    fn decodes_shrunk() {
        let img = image::RgbImage::from_fn(800, 600, |x, _| {
            image::Rgb([if x < 400 { 250 } else { 5 }, 128, 60])
        });
        let mut jpeg = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
        let (w, h, px) = decode_rgb(&jpeg, 2).unwrap();
        assert_eq!((w, h, px.len()), (200, 150, 200 * 150 * 3));
        // Left half red-ish, right half not: the picture, not noise.
        assert!(px[(75 * 200 + 20) * 3] > 200);
        assert!(px[(75 * 200 + 180) * 3] < 50);
        assert!(decode_rgb(b"not a jpeg", 0).is_err());
    }

    /// Encoded by `jpeg-encoder`: progressive, or greyscale.
    fn encoded(progressive: bool, grey: bool) -> Vec<u8> {
        let (w, h) = (640u16, 480u16);
        let px: Vec<u8> = (0..u32::from(w) * u32::from(h))
            .flat_map(|i| {
                let v = if i % u32::from(w) < 320 { 240 } else { 20 };
                if grey {
                    vec![v]
                } else {
                    vec![v, 100, 100]
                }
            })
            .collect();
        let mut out = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut out, 85);
        enc.set_progressive(progressive);
        let color = if grey {
            jpeg_encoder::ColorType::Luma
        } else {
            jpeg_encoder::ColorType::Rgb
        };
        enc.encode(&px, w, h, color).unwrap();
        out
    }

    #[test]
    fn decodes_progressive_and_greyscale_jpegs() {
        for (progressive, grey) in [(true, false), (false, true), (true, true)] {
            let (w, h, px) = decode_rgb(&encoded(progressive, grey), 3).unwrap();
            assert_eq!((w, h), (80, 60), "progressive {progressive}, grey {grey}");
            let at = |x: usize| px[(30 * 80 + x) * 3];
            assert!(
                at(10) > 200 && at(70) < 60,
                "progressive {progressive}, grey {grey}"
            );
        }
    }
}

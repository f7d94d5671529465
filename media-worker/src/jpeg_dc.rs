//! A JPEG at 1/8 of its size from its DC coefficients alone — what a thumbnail of a large
//! photo needs. At 1/8 scale each 8×8 block becomes one pixel, and that pixel is the block's
//! DC coefficient (the inverse DCT of a block keeps only its mean), so nothing but the DC
//! values has to be computed: AC coefficients are stepped over in the entropy-coded data
//! without being dequantised, stored or transformed (one table lookup per coefficient in the
//! common case), and a progressive JPEG is read only up to the end of its first DC scan.
//!
//! Handles Huffman-coded 8-bit JPEGs (baseline, extended, progressive) in greyscale or YCbCr
//! with any sampling factors and restart intervals. Anything else (arithmetic coding, 12-bit,
//! CMYK, Adobe RGB) is `Ok(None)`: the caller decodes another way. Corrupt data is an error;
//! every loop is bounded by the header's block counts, which the caller has checked against
//! its limits, and the planes are 1/64 of the image.

use crate::MediaError;

/// Decodes `jpeg` at 1/8 scale (each side rounded up) into tightly packed RGB:
/// `Some((width, height, pixels))`, or `None` for a kind of JPEG this path does not handle.
pub(crate) fn decode_rgb(jpeg: &[u8]) -> Result<Option<(u32, u32, Vec<u8>)>, MediaError> {
    match Decoder::default().run(jpeg)? {
        Some(frame) => Ok(Some(frame.rgb())),
        None => Ok(None),
    }
}

fn corrupt(what: &str) -> MediaError {
    MediaError::Corrupt(format!("JPEG: {what}"))
}

/// A Huffman table: an 11-bit lookahead table for short codes, canonical decoding for the rest.
#[derive(Clone)]
struct Huffman {
    /// Indexed by the next bits: `len << 8 | symbol`, 0 when the code is longer.
    fast: Box<[u16; 1 << FAST_BITS]>,
    /// For AC tables: indexed by the next bits, for a code and its value bits that fit in
    /// them together: `bits consumed | coefficients advanced << 4 | end-of-block << 9`.
    skip: Box<[u16; 1 << FAST_BITS]>,
    /// Canonical decoding: the largest code of each length (−1 if none), and where that
    /// length's symbols start in `symbols` relative to its first code.
    max_code: [i32; 17],
    offset: [i32; 17],
    symbols: Vec<u8>,
}

const FAST_BITS: u32 = 11;

impl Huffman {
    fn new(counts: &[u8; 16], symbols: &[u8]) -> Result<Self, MediaError> {
        let mut fast = Box::new([0u16; 1 << FAST_BITS]);
        let mut skip = Box::new([0u16; 1 << FAST_BITS]);
        let mut max_code = [-1i32; 17];
        let mut offset = [0i32; 17];
        let mut code: u32 = 0;
        let mut k = 0usize;
        for len in 1..=16u32 {
            let n = u32::from(counts[len as usize - 1]);
            if code + n > (1 << len) {
                return Err(corrupt("bad Huffman table"));
            }
            offset[len as usize] = k as i32 - code as i32;
            for _ in 0..n {
                let sym = symbols[k];
                if len <= FAST_BITS {
                    let shift = FAST_BITS - len;
                    let first = (code << shift) as usize;
                    for e in first..first + (1 << shift) {
                        fast[e] = ((len as u16) << 8) | u16::from(sym);
                        let (run, size) = (u32::from(sym >> 4), u32::from(sym & 15));
                        if len + size <= FAST_BITS {
                            let (advance, eob) = match (run, size) {
                                (_, 0) if run == 15 => (16, 0),
                                (_, 0) => (0, 1),
                                _ => (run + 1, 0),
                            };
                            skip[e] = ((len + size) | advance << 4 | eob << 9) as u16;
                        }
                    }
                }
                code += 1;
                k += 1;
            }
            if n > 0 {
                max_code[len as usize] = code as i32 - 1;
            }
            code <<= 1;
        }
        Ok(Self {
            fast,
            skip,
            max_code,
            offset,
            symbols: symbols.to_vec(),
        })
    }

    #[inline(always)]
    fn decode(&self, bits: &mut Bits) -> Result<u8, MediaError> {
        if bits.count < 16 {
            bits.fill();
        }
        let e = self.fast[bits.peek(FAST_BITS) as usize];
        if e != 0 {
            bits.consume(u32::from(e >> 8));
            return Ok(e as u8);
        }
        let mut code = 0i32;
        for len in 1..=16usize {
            code = (code << 1) | bits.take(1) as i32;
            if code <= self.max_code[len] {
                return Ok(self.symbols[(code + self.offset[len]) as usize]);
            }
        }
        Err(corrupt("bad Huffman code"))
    }
}

/// A scan's entropy-coded data with its 0xFF00 stuffing undone, up to the marker that ends
/// it; the restart markers inside are noted by where they fell. Eight zero bytes follow the
/// data, so the reader can always load eight at once (a cut-off scan reads as zeros, as in
/// other decoders).
struct Segment {
    bytes: Vec<u8>,
    /// Offsets in `bytes` where an RSTn marker stood, in order.
    restarts: Vec<usize>,
    /// Where the ending marker is in the file.
    end: usize,
}

impl Segment {
    fn read(d: &[u8], mut pos: usize) -> Self {
        let mut bytes = Vec::with_capacity(d.len().saturating_sub(pos) + 8);
        let mut restarts = Vec::new();
        let end = loop {
            let Some(ff) = memchr::memchr(0xFF, &d[pos.min(d.len())..]) else {
                bytes.extend_from_slice(&d[pos.min(d.len())..]);
                break d.len();
            };
            bytes.extend_from_slice(&d[pos..pos + ff]);
            pos += ff;
            match d.get(pos + 1) {
                Some(0x00) => {
                    bytes.push(0xFF);
                    pos += 2;
                }
                Some(0xD0..=0xD7) => {
                    restarts.push(bytes.len());
                    pos += 2;
                }
                // Fill bytes before a marker.
                Some(0xFF) => pos += 1,
                _ => break pos,
            }
        };
        bytes.extend_from_slice(&[0; 8]);
        Self {
            bytes,
            restarts,
            end,
        }
    }
}

/// MSB-first bit reader over a [`Segment`]: `acc` holds `count` valid bits at its top.
struct Bits<'a> {
    data: &'a [u8],
    /// Bytes of `data` taken into `acc` so far.
    pos: usize,
    acc: u64,
    count: u32,
    next_restart: usize,
}

impl<'a> Bits<'a> {
    fn new(segment: &'a Segment) -> Self {
        Self {
            data: &segment.bytes,
            pos: 0,
            acc: 0,
            count: 0,
            next_restart: 0,
        }
    }

    /// Tops `acc` up to at least 56 valid bits, branch-free while data lasts.
    #[inline(always)]
    fn fill(&mut self) {
        let at = self.pos.min(self.data.len() - 8);
        let word = u64::from_be_bytes(self.data[at..at + 8].try_into().unwrap());
        let word = if at == self.pos { word } else { 0 };
        self.acc |= word >> self.count;
        self.pos += ((63 - self.count) >> 3) as usize;
        self.count |= 56;
    }

    #[inline(always)]
    fn peek(&self, n: u32) -> u32 {
        (self.acc >> (64 - n)) as u32
    }

    #[inline(always)]
    fn consume(&mut self, n: u32) {
        self.acc <<= n;
        self.count -= n;
    }

    #[inline(always)]
    fn take(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        if self.count < n {
            self.fill();
        }
        let v = self.peek(n);
        self.consume(n);
        v
    }

    /// A signed value of `n` bits (JPEG's "receive and extend").
    fn signed(&mut self, n: u32) -> i32 {
        let v = self.take(n) as i32;
        if n > 0 && v < 1 << (n - 1) {
            v - (1 << n) + 1
        } else {
            v
        }
    }

    /// At a restart: go on from where the next RSTn marker stood.
    fn restart(&mut self, restarts: &[usize]) -> Result<(), MediaError> {
        let at = *restarts
            .get(self.next_restart)
            .ok_or_else(|| corrupt("missing restart marker"))?;
        self.next_restart += 1;
        self.pos = at;
        self.acc = 0;
        self.count = 0;
        Ok(())
    }
}

#[derive(Clone, Copy, Default)]
struct Component {
    id: u8,
    h: u32,
    v: u32,
    quant: usize,
}

#[derive(Default)]
struct Decoder {
    dc_quant: [Option<u16>; 4],
    dc_tables: [Option<Huffman>; 4],
    ac_tables: [Option<Huffman>; 4],
    restart: u32,
    adobe_rgb: bool,
}

/// The DC planes of a frame, one value (0–255) per block of each component.
struct Frame {
    width: u32,
    height: u32,
    hmax: u32,
    vmax: u32,
    comps: Vec<Component>,
    /// Per component: (blocks per row, rows), the padded block grid.
    grids: Vec<(usize, usize)>,
    planes: Vec<Vec<i32>>,
    /// Which components' DC values are complete.
    done: Vec<bool>,
}

impl Decoder {
    fn run(mut self, d: &[u8]) -> Result<Option<Frame>, MediaError> {
        if d.len() < 4 || d[0] != 0xFF || d[1] != 0xD8 {
            return Err(corrupt("no start-of-image marker"));
        }
        let mut pos = 2;
        let mut frame: Option<Frame> = None;
        let mut progressive = false;
        loop {
            // Next marker (fill bytes 0xFF may repeat).
            while pos < d.len() && d[pos] != 0xFF {
                pos += 1;
            }
            while pos < d.len() && d[pos] == 0xFF {
                pos += 1;
            }
            let Some(&marker) = d.get(pos) else {
                return Err(corrupt("ends before its image data"));
            };
            pos += 1;
            if marker == 0xD9 {
                break;
            }
            if (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
                continue;
            }
            let len = usize::from(u16::from_be_bytes([
                *d.get(pos).ok_or_else(|| corrupt("cut short"))?,
                *d.get(pos + 1).ok_or_else(|| corrupt("cut short"))?,
            ]));
            let seg = d
                .get(pos + 2..pos + len)
                .filter(|_| len >= 2)
                .ok_or_else(|| corrupt("segment past the end"))?;
            pos += len;
            match marker {
                0xC0..=0xC2 => {
                    progressive = marker == 0xC2;
                    if frame.is_some() {
                        return Err(corrupt("two frames"));
                    }
                    frame = match self.frame(seg)? {
                        Some(f) => Some(f),
                        None => return Ok(None),
                    };
                }
                // Lossless, hierarchical or arithmetic-coded: not this path's.
                0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return Ok(None),
                0xC4 => self.huffman(seg)?,
                0xDB => self.quant(seg)?,
                0xDD => {
                    let r = seg.get(..2).ok_or_else(|| corrupt("bad DRI"))?;
                    self.restart = u32::from(u16::from_be_bytes([r[0], r[1]]));
                }
                0xEE if seg.starts_with(b"Adobe") && seg.len() >= 12 => {
                    self.adobe_rgb = seg[11] == 0;
                }
                0xDA => {
                    let f = frame
                        .as_mut()
                        .ok_or_else(|| corrupt("scan before the frame"))?;
                    if f.comps.len() == 3 && self.adobe_rgb {
                        return Ok(None);
                    }
                    pos = self.scan(d, pos, seg, f, progressive)?;
                    if f.done.iter().all(|&x| x) && progressive {
                        // Refinement and AC scans add nothing a 1/8 image needs.
                        break;
                    }
                }
                _ => {}
            }
        }
        let f = frame.ok_or_else(|| corrupt("no frame header"))?;
        if !f.done.iter().all(|&x| x) {
            return Err(corrupt("a component has no scan"));
        }
        Ok(Some(f))
    }

    fn frame(&self, seg: &[u8]) -> Result<Option<Frame>, MediaError> {
        if seg.len() < 6 {
            return Err(corrupt("bad frame header"));
        }
        if seg[0] != 8 {
            return Ok(None); // 12-bit
        }
        let height = u32::from(u16::from_be_bytes([seg[1], seg[2]]));
        let width = u32::from(u16::from_be_bytes([seg[3], seg[4]]));
        let n = usize::from(seg[5]);
        if width == 0 || height == 0 {
            return Err(corrupt(
                "no pixels (or a height given later, not supported)",
            ));
        }
        if n != 1 && n != 3 {
            return Ok(None); // CMYK and others
        }
        if seg.len() < 6 + 3 * n {
            return Err(corrupt("bad frame header"));
        }
        let comps: Vec<Component> = (0..n)
            .map(|i| {
                let c = &seg[6 + 3 * i..9 + 3 * i];
                Component {
                    id: c[0],
                    h: u32::from(c[1] >> 4),
                    v: u32::from(c[1] & 15),
                    quant: usize::from(c[2] & 3),
                }
            })
            .collect();
        if comps
            .iter()
            .any(|c| !(1..=4).contains(&c.h) || !(1..=4).contains(&c.v))
        {
            return Err(corrupt("bad sampling factors"));
        }
        let hmax = comps.iter().map(|c| c.h).max().unwrap_or(1);
        let vmax = comps.iter().map(|c| c.v).max().unwrap_or(1);
        let (mcux, mcuy) = (
            width.div_ceil(8 * hmax) as usize,
            height.div_ceil(8 * vmax) as usize,
        );
        let grids: Vec<(usize, usize)> = comps
            .iter()
            .map(|c| (mcux * c.h as usize, mcuy * c.v as usize))
            .collect();
        Ok(Some(Frame {
            width,
            height,
            hmax,
            vmax,
            planes: grids.iter().map(|&(w, h)| vec![0; w * h]).collect(),
            done: vec![false; n],
            comps,
            grids,
        }))
    }

    fn huffman(&mut self, mut seg: &[u8]) -> Result<(), MediaError> {
        while !seg.is_empty() {
            if seg.len() < 17 {
                return Err(corrupt("bad Huffman table"));
            }
            let (class, id) = (seg[0] >> 4, usize::from(seg[0] & 15));
            let counts: [u8; 16] = seg[1..17].try_into().unwrap();
            let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
            let symbols = seg
                .get(17..17 + total)
                .filter(|_| total <= 256 && id < 4 && class < 2)
                .ok_or_else(|| corrupt("bad Huffman table"))?;
            let table = Huffman::new(&counts, symbols)?;
            if class == 0 {
                self.dc_tables[id] = Some(table);
            } else {
                self.ac_tables[id] = Some(table);
            }
            seg = &seg[17 + total..];
        }
        Ok(())
    }

    fn quant(&mut self, mut seg: &[u8]) -> Result<(), MediaError> {
        while !seg.is_empty() {
            let (wide, id) = (seg[0] >> 4 != 0, usize::from(seg[0] & 15));
            let size = if wide { 128 } else { 64 };
            let table = seg
                .get(1..1 + size)
                .filter(|_| id < 4)
                .ok_or_else(|| corrupt("bad quantisation table"))?;
            self.dc_quant[id] = Some(if wide {
                u16::from_be_bytes([table[0], table[1]])
            } else {
                u16::from(table[0])
            });
            seg = &seg[1 + size..];
        }
        Ok(())
    }

    /// Decodes one scan's DC values (stepping over its AC data); returns where parsing goes on.
    fn scan(
        &self,
        d: &[u8],
        pos: usize,
        seg: &[u8],
        f: &mut Frame,
        progressive: bool,
    ) -> Result<usize, MediaError> {
        let n = usize::from(*seg.first().ok_or_else(|| corrupt("bad scan header"))?);
        if n == 0 || n > 4 || seg.len() < 1 + 2 * n + 3 {
            return Err(corrupt("bad scan header"));
        }
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            let (id, tables) = (seg[1 + 2 * i], seg[2 + 2 * i]);
            let c = f
                .comps
                .iter()
                .position(|c| c.id == id)
                .ok_or_else(|| corrupt("scan names an unknown component"))?;
            members.push((c, usize::from(tables >> 4), usize::from(tables & 15)));
        }
        let (ss, se, ah, al) = (
            seg[1 + 2 * n],
            seg[2 + 2 * n],
            seg[3 + 2 * n] >> 4,
            seg[3 + 2 * n] & 15,
        );
        let segment = Segment::read(d, pos);
        if progressive && (ss != 0 || ah != 0) {
            // AC or refinement scans: not needed; step over the data.
            return Ok(segment.end);
        }
        let mut bits = Bits::new(&segment);
        let with_ac = !progressive && se > 0;
        let mut tables = Vec::with_capacity(n);
        for &(c, dc, ac) in &members {
            let q =
                self.dc_quant[f.comps[c].quant].ok_or_else(|| corrupt("no quantisation table"))?;
            let dc = self.dc_tables[dc & 3]
                .as_ref()
                .ok_or_else(|| corrupt("no DC table"))?;
            let ac = if with_ac {
                Some(
                    self.ac_tables[ac & 3]
                        .as_ref()
                        .ok_or_else(|| corrupt("no AC table"))?,
                )
            } else {
                None
            };
            tables.push((c, i32::from(q), dc, ac));
        }
        let mut pred = [0i32; 4];
        // MCUs: interleaved scans cover the MCU grid; a single-component scan covers that
        // component's own blocks, one block per MCU.
        let (units, per_row) = if n == 1 {
            let c = &f.comps[members[0].0];
            let w = (f.width * c.h).div_ceil(f.hmax).div_ceil(8) as usize;
            let h = (f.height * c.v).div_ceil(f.vmax).div_ceil(8) as usize;
            (w * h, w)
        } else {
            let w = f.width.div_ceil(8 * f.hmax) as usize;
            let h = f.height.div_ceil(8 * f.vmax) as usize;
            (w * h, w)
        };
        for unit in 0..units {
            if self.restart > 0 && unit > 0 && unit % self.restart as usize == 0 {
                bits.restart(&segment.restarts)?;
                pred = [0; 4];
            }
            let (ux, uy) = (unit % per_row, unit / per_row);
            for (k, &(c, q, dc, ac)) in tables.iter().enumerate() {
                let comp = f.comps[c];
                let (bw, bh) = if n == 1 {
                    (1, 1)
                } else {
                    (comp.h as usize, comp.v as usize)
                };
                for by in 0..bh {
                    for bx in 0..bw {
                        let size = u32::from(dc.decode(&mut bits)?);
                        if size > 11 {
                            return Err(corrupt("bad DC value"));
                        }
                        pred[k] += bits.signed(size);
                        if let Some(ac) = ac {
                            skip_ac(&mut bits, ac, se)?;
                        }
                        let (x, y) = (ux * bw + bx, uy * bh + by);
                        let (gw, gh) = f.grids[c];
                        if x < gw && y < gh {
                            f.planes[c][y * gw + x] = ((pred[k] << al) * q + 4) >> 3;
                        }
                    }
                }
            }
        }
        for &(c, ..) in &members {
            f.done[c] = true;
        }
        Ok(segment.end)
    }
}

/// Steps over one block's AC coefficients (1..=se).
#[inline]
fn skip_ac(bits: &mut Bits, ac: &Huffman, se: u8) -> Result<(), MediaError> {
    let mut k = 1u32;
    let end = u32::from(se);
    while k <= end {
        if bits.count < 27 {
            bits.fill();
        }
        let e = ac.skip[bits.peek(FAST_BITS) as usize];
        if e != 0 {
            bits.consume(u32::from(e & 15));
            if e >> 9 != 0 {
                return Ok(());
            }
            k += u32::from((e >> 4) & 31);
            continue;
        }
        let rs = ac.decode(bits)?;
        let (run, size) = (u32::from(rs >> 4), u32::from(rs & 15));
        if size == 0 {
            if run != 15 {
                return Ok(()); // end of block
            }
            k += 16;
        } else {
            bits.take(size);
            k += run + 1;
        }
    }
    Ok(())
}

impl Frame {
    /// RGB at ceil(width / 8) × ceil(height / 8), each component's DC plane upsampled to it
    /// (nearest).
    fn rgb(&self) -> (u32, u32, Vec<u8>) {
        let (w, h) = (
            self.width.div_ceil(8) as usize,
            self.height.div_ceil(8) as usize,
        );
        let (hmax, vmax) = (self.hmax as usize, self.vmax as usize);
        // For each component, the block column under each output column.
        let cols: Vec<Vec<usize>> = self
            .comps
            .iter()
            .map(|c| (0..w).map(|x| x * c.h as usize / hmax).collect())
            .collect();
        let row = |c: usize, y: usize| -> &[i32] {
            let (gw, _) = self.grids[c];
            let sy = y * self.comps[c].v as usize / vmax;
            &self.planes[c][sy * gw..(sy + 1) * gw]
        };
        let clamp = |v: i32| (v + 128).clamp(0, 255) as u8;
        let mut out = vec![0u8; w * h * 3];
        for (y, line) in out.chunks_exact_mut(w * 3).enumerate() {
            let luma = row(0, y);
            if self.comps.len() == 1 {
                for (px, &x) in line.chunks_exact_mut(3).zip(&cols[0]) {
                    px.fill(clamp(luma[x]));
                }
                continue;
            }
            let (cb_row, cr_row) = (row(1, y), row(2, y));
            for (x, px) in line.chunks_exact_mut(3).enumerate() {
                let l = luma[cols[0][x]];
                let (cb, cr) = (cb_row[cols[1][x]], cr_row[cols[2][x]]);
                // JFIF's YCbCr → RGB in 16.16 fixed point (values centred on 0).
                px[0] = clamp(l + ((91_881 * cr + 32_768) >> 16));
                px[1] = clamp(l - ((22_554 * cb + 46_802 * cr + 32_768) >> 16));
                px[2] = clamp(l + ((116_130 * cb + 32_768) >> 16));
            }
        }
        (w as u32, h as u32, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A photo-like picture: smooth gradients and sharp edges, in colour.
    fn picture(w: u16, h: u16) -> Vec<u8> {
        let mut px = Vec::with_capacity(usize::from(w) * usize::from(h) * 3);
        for y in 0..u32::from(h) {
            for x in 0..u32::from(w) {
                let edge = if (x / 37 + y / 53) % 2 == 0 { 60 } else { 0 };
                px.extend_from_slice(&[
                    ((x * 255 / u32::from(w)) as u8).saturating_add(edge),
                    (y * 255 / u32::from(h)) as u8,
                    (((x + y) * 3) % 256) as u8,
                ]);
            }
        }
        px
    }

    fn encode(
        w: u16,
        h: u16,
        sampling: jpeg_encoder::SamplingFactor,
        progressive: bool,
        restart: u16,
        grey: bool,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
        enc.set_sampling_factor(sampling);
        enc.set_progressive(progressive);
        if restart > 0 {
            enc.set_restart_interval(restart);
        }
        let px = picture(w, h);
        if grey {
            let l: Vec<u8> = px.chunks(3).map(|p| p[0]).collect();
            enc.encode(&l, w, h, jpeg_encoder::ColorType::Luma).unwrap();
        } else {
            enc.encode(&px, w, h, jpeg_encoder::ColorType::Rgb).unwrap();
        }
        out
    }

    /// Mean absolute difference from FFmpeg's 1/8-scale decode of the same file.
    fn against_ffmpeg(jpeg: &[u8]) -> f64 {
        let (w, h, ours) = decode_rgb(jpeg).unwrap().expect("handled");
        let (fw, fh, theirs) = crate::ffjpeg::decode_rgb(jpeg, 3).unwrap();
        assert_eq!((w, h), (fw, fh));
        let sum: u64 = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| u64::from(a.abs_diff(*b)))
            .sum();
        sum as f64 / ours.len() as f64
    }

    #[test]
    fn matches_a_full_decoder_at_one_eighth() {
        use jpeg_encoder::SamplingFactor as S;
        for (sampling, progressive, restart, grey) in [
            (S::F_2_2, false, 0, false),
            (S::F_1_1, false, 0, false),
            (S::F_2_1, false, 3, false),
            (S::F_2_2, true, 0, false),
            (S::F_2_2, true, 5, false),
            (S::F_1_1, false, 0, true),
            (S::F_1_1, true, 0, true),
        ] {
            // Sides that are not multiples of the MCU, to exercise the padding.
            let jpeg = encode(1203, 797, sampling, progressive, restart, grey);
            let diff = against_ffmpeg(&jpeg);
            assert!(
                diff < 1.0,
                "{sampling:?} progressive {progressive} restart {restart} grey {grey}: {diff}"
            );
        }
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let jpeg = encode(
            400,
            300,
            jpeg_encoder::SamplingFactor::F_2_2,
            false,
            0,
            false,
        );
        assert!(decode_rgb(b"not a jpeg").is_err());
        assert!(decode_rgb(&jpeg[..jpeg.len() / 50]).is_err());
        // Garbage in the entropy-coded data: an error or a picture, never a panic.
        let mut broken = jpeg.clone();
        let at = broken.len() / 2;
        for b in &mut broken[at..at + 200] {
            *b = b.wrapping_mul(31).wrapping_add(7);
        }
        let _ = decode_rgb(&broken);
        for cut in (100..jpeg.len()).step_by(97) {
            let _ = decode_rgb(&jpeg[..cut]);
        }
        // A header declaring 65 000 × 65 000: the planes are 1/64, and the caller checks
        // the size first; here it must just not panic.
        let _ = decode_rgb(&crate::fixtures::jpeg_header_only(65_000));
    }
}

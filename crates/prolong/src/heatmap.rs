//! PNG heatmaps of a document's normalised ΔPPL matrix (DST_ij =
//! (PPL(s_i) − PPL(s_i|s_j)) / PPL(s_i), row i, column j), as the
//! reference draws every k-th document (`imshow`, viridis, LDS in the
//! title).
//!
//! 8-bit RGB PNGs through the `png` crate. There is no font, so the title
//! (id, LDS, colour scale) goes into `tEXt` chunks, and a colour bar is
//! drawn to the right of the matrix.

use crate::{ProlongError, Result};
use std::path::Path;

/// Pixels per matrix cell: the matrix is drawn about 512 px wide, at
/// most 64 px per cell.
pub fn cell_pixels(n: usize) -> usize {
    (512 / n.max(1)).clamp(1, 64)
}

/// Width of the gap and of the colour bar right of the matrix.
const GAP: usize = 8;
const BAR: usize = 16;

/// Cells that were not computed (j ≥ i, or a pair not sampled).
pub const EMPTY: [u8; 3] = [255, 255, 255];

/// Image size `(width, height)` for an `n × n` matrix.
pub fn image_size(n: usize) -> (usize, usize) {
    let side = n.max(1) * cell_pixels(n);
    (side + GAP + BAR, side)
}

/// matplotlib's viridis at nine evenly spaced stops; lightness rises
/// monotonically along it, so larger values always look brighter.
const VIRIDIS: [[u8; 3]; 9] = [
    [0x44, 0x01, 0x54],
    [0x47, 0x2c, 0x7a],
    [0x3b, 0x51, 0x8b],
    [0x2c, 0x71, 0x8e],
    [0x21, 0x90, 0x8d],
    [0x27, 0xad, 0x81],
    [0x5c, 0xc8, 0x63],
    [0xaa, 0xdc, 0x32],
    [0xfd, 0xe7, 0x25],
];

/// Colour of `t` in [0, 1] (clipped; NaN maps to the bottom colour).
pub fn viridis(t: f64) -> [u8; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (VIRIDIS.len() - 1) as f64;
    let k = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - k as f64;
    let (a, b) = (VIRIDIS[k], VIRIDIS[k + 1]);
    std::array::from_fn(|c| (a[c] as f64 + f * (b[c] as f64 - a[c] as f64)).round() as u8)
}

/// The `n × n` DST matrix (row-major, `None` where not computed) from the
/// scored pairs `(i, j)` and their DST values.
pub fn dst_matrix(n: usize, pairs: &[(usize, usize)], dst: &[f64]) -> Vec<Option<f64>> {
    let mut m = vec![None; n * n];
    for (&(i, j), &d) in pairs.iter().zip(dst) {
        if i < n && j < n && d.is_finite() {
            m[i * n + j] = Some(d);
        }
    }
    m
}

/// The colour scale's range: from 0 (a pair that does not help; negative
/// DST is drawn as 0) to the largest DST, at least `floor` so a document
/// without dependencies is not stretched to full brightness.
pub fn scale_max(m: &[Option<f64>], floor: f64) -> f64 {
    m.iter().flatten().copied().fold(floor, f64::max)
}

/// RGB pixels (row-major, 3 bytes each) of the heatmap of `m`.
pub fn render(n: usize, m: &[Option<f64>], vmax: f64) -> Vec<u8> {
    let cell = cell_pixels(n);
    let (w, h) = image_size(n);
    let mut px = vec![255u8; w * h * 3];
    for y in 0..h {
        let i = y / cell;
        for x in 0..w {
            let rgb = if x < n * cell {
                match m.get(i * n + x / cell).copied().flatten() {
                    Some(d) => viridis(d / vmax),
                    None => EMPTY,
                }
            } else if x >= n * cell + GAP {
                // Colour bar: vmax at the top, 0 at the bottom.
                viridis(1.0 - y as f64 / (h.max(2) - 1) as f64)
            } else {
                EMPTY
            };
            px[(y * w + x) * 3..][..3].copy_from_slice(&rgb);
        }
    }
    px
}

/// Writes the heatmap of one document to `path` (atomically: temp file,
/// fsync, rename).
pub fn write_heatmap(
    path: &Path,
    id: &str,
    lds: f64,
    n: usize,
    pairs: &[(usize, usize)],
    dst: &[f64],
    threshold: f64,
) -> Result<()> {
    let m = dst_matrix(n, pairs, dst);
    let vmax = scale_max(&m, threshold.max(1e-6));
    let (w, h) = image_size(n);
    let px = render(n, &m, vmax);
    let text = [
        ("Title", format!("LDS = {lds}")),
        ("Document", id.to_string()),
        (
            "Comment",
            format!(
                "DST = (PPL(s_i) - PPL(s_i|s_j)) / PPL(s_i), row i, column j; \
                 viridis from 0 to {vmax}; white: not computed"
            ),
        ),
    ];
    let png = encode_png(w, h, &px, &text)?;
    frugal_data::atomic::write_bytes(path, &png)
        .map_err(|e| ProlongError::Input(format!("writing {}: {e}", path.display())))
}

/// An 8-bit RGB PNG with the given `tEXt` entries.
pub fn encode_png(w: usize, h: usize, rgb: &[u8], text: &[(&str, String)]) -> Result<Vec<u8>> {
    if rgb.len() != w * h * 3 || w == 0 || h == 0 {
        return Err(ProlongError::Input(format!(
            "heatmap: {} bytes for {w}×{h} RGB",
            rgb.len()
        )));
    }
    let err = |e: png::EncodingError| ProlongError::Input(format!("heatmap: {e}"));
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    for (k, v) in text {
        // tEXt is Latin-1; keep other characters out rather than mis-encode.
        let v: String = v
            .chars()
            .map(|c| if c.is_ascii() { c } else { '?' })
            .collect();
        enc.add_text_chunk(k.to_string(), v).map_err(err)?;
    }
    let mut writer = enc.write_header().map_err(err)?;
    writer.write_image_data(rgb).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(out)
}

/// A file name for document number `ordinal` with id `id`: the number
/// first (sortable, unique), then the id with unsafe characters replaced.
pub fn file_name(ordinal: usize, id: &str) -> String {
    let safe: String = id
        .chars()
        .rev()
        .take(80)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{ordinal:06}-{safe}.png")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn luminance(c: [u8; 3]) -> f64 {
        0.2126 * c[0] as f64 + 0.7152 * c[1] as f64 + 0.0722 * c[2] as f64
    }

    #[test]
    fn colour_scale_is_monotonic_and_clipped() {
        let mut last = -1.0;
        for k in 0..=100 {
            let l = luminance(viridis(k as f64 / 100.0));
            assert!(l > last, "luminance must rise: step {k}: {l} after {last}");
            last = l;
        }
        assert_eq!(viridis(-3.0), VIRIDIS[0]);
        assert_eq!(viridis(f64::NAN), VIRIDIS[0]);
        assert_eq!(viridis(7.0), VIRIDIS[8]);
        assert_eq!(viridis(0.5), VIRIDIS[4]);
    }

    /// Decodes a heatmap with the `png` crate: size, RGB pixels, tEXt entries.
    fn decode(bytes: &[u8]) -> (usize, usize, Vec<u8>, Vec<String>) {
        let mut reader = png::Decoder::new(bytes).read_info().unwrap();
        let mut px = vec![0; reader.output_buffer_size()];
        let frame = reader.next_frame(&mut px).unwrap();
        assert_eq!(
            (frame.color_type, frame.bit_depth),
            (png::ColorType::Rgb, png::BitDepth::Eight)
        );
        px.truncate(frame.buffer_size());
        let texts = reader
            .info()
            .uncompressed_latin1_text
            .iter()
            .map(|t| format!("{}\0{}", t.keyword, t.text))
            .collect();
        (frame.width as usize, frame.height as usize, px, texts)
    }

    #[test]
    fn heatmap_file_has_the_size_and_colours_of_its_matrix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(file_name(3, "docs/a b.txt"));
        assert!(p.ends_with("000003-docs_a_b.txt.png"));
        // 4 chunks; pairs (1,0), (2,0), (3,2) with rising DST; (2,1), (3,0),
        // (3,1) not sampled.
        let pairs = [(1, 0), (2, 0), (3, 2)];
        let dst = [0.05, 0.2, 0.4];
        write_heatmap(&p, "docs/a b.txt", 1.25, 4, &pairs, &dst, 0.1).unwrap();
        let (w, h, px, texts) = decode(&std::fs::read(&p).unwrap());
        assert_eq!((w, h), image_size(4));
        // Cells are capped at 64 px: small matrices are not blown up.
        assert_eq!((w, h), (4 * 64 + GAP + BAR, 256));
        assert!(texts.iter().any(|t| t == "Title\0LDS = 1.25"));
        let at = |i: usize, j: usize| -> [u8; 3] {
            let (y, x) = (i * 64 + 32, j * 64 + 32);
            px[(y * w + x) * 3..][..3].try_into().unwrap()
        };
        // The largest DST is the top of the scale; larger values are brighter.
        assert_eq!(at(3, 2), VIRIDIS[8]);
        assert!(luminance(at(1, 0)) < luminance(at(2, 0)));
        assert!(luminance(at(2, 0)) < luminance(at(3, 2)));
        assert_eq!(at(2, 0), viridis(0.5));
        for (i, j) in [(0, 0), (0, 3), (2, 1), (3, 0), (3, 3)] {
            assert_eq!(at(i, j), EMPTY, "cell ({i},{j}) was not computed");
        }
        // The colour bar runs from the top colour down to the bottom one.
        let bar = |y: usize| -> [u8; 3] { px[(y * w + w - 1) * 3..][..3].try_into().unwrap() };
        assert_eq!(bar(0), VIRIDIS[8]);
        assert_eq!(bar(h - 1), VIRIDIS[0]);
    }

    #[test]
    fn large_matrices_shrink_cells_and_bad_sizes_are_refused() {
        assert_eq!(cell_pixels(256), 2);
        assert_eq!(cell_pixels(1000), 1);
        assert_eq!(image_size(1000).1, 1000);
        assert!(encode_png(2, 2, &[0; 5], &[]).is_err());
        // No computed pair: the scale keeps its floor (nothing is bright).
        let m = dst_matrix(3, &[], &[]);
        assert_eq!(scale_max(&m, 0.1), 0.1);
    }
}

//! Grayscale PNG grids and RGB images, written with flate2 (already a
//! dependency) instead of an image crate: an 8-bit PNG is a header, zlib-compressed
//! rows and CRC-32 checksums.

use crate::{PcmError, Result};
use candle_core::Tensor;
use flate2::write::ZlibEncoder;
use std::io::Write;
use std::path::Path;

/// CRC-32 (ISO-HDLC, as PNG uses it).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Encodes 8-bit grayscale pixels (row-major, `width·height`) as PNG.
pub fn encode_gray(width: usize, height: usize, pixels: &[u8]) -> Result<Vec<u8>> {
    encode(width, height, 1, pixels)
}

/// Encodes 8-bit RGB pixels (row-major, `width·height·3`) as PNG.
pub fn encode_rgb(width: usize, height: usize, pixels: &[u8]) -> Result<Vec<u8>> {
    encode(width, height, 3, pixels)
}

fn encode(width: usize, height: usize, channels: usize, pixels: &[u8]) -> Result<Vec<u8>> {
    if pixels.len() != width * height * channels || width == 0 || height == 0 {
        return Err(PcmError::arg(format!(
            "{} bytes for a {width}×{height} image with {channels} channel(s)",
            pixels.len()
        )));
    }
    let color_type = if channels == 3 { 2 } else { 0 };
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(width as u32).to_be_bytes());
    ihdr.extend_from_slice(&(height as u32).to_be_bytes());
    // 8 bit, grayscale (0) or RGB (2), deflate, no filter, no interlace.
    ihdr.extend_from_slice(&[8, color_type, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    for row in pixels.chunks(width * channels) {
        let io = |e| PcmError::io("<png>", e);
        z.write_all(&[0]).map_err(io)?; // filter type: none
        z.write_all(row).map_err(io)?;
    }
    let idat = z.finish().map_err(|e| PcmError::io("<png>", e))?;
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

/// A grid of images (N, 1, H, W) with values in [-1, 1], `cols` per row,
/// 2-pixel gaps, written atomically to `path`.
pub fn write_grid(images: &Tensor, cols: usize, path: &Path) -> Result<()> {
    let (n, _, h, w) = images.dims4()?;
    if n == 0 {
        return Err(PcmError::arg("no images for the grid"));
    }
    let cols = cols.clamp(1, n);
    let rows = n.div_ceil(cols);
    let gap = 2;
    let (gw, gh) = (cols * (w + gap) + gap, rows * (h + gap) + gap);
    let mut px = vec![0u8; gw * gh];
    let v: Vec<f32> = images.flatten_all()?.to_vec1()?;
    for i in 0..n {
        let (r, c) = (i / cols, i % cols);
        for y in 0..h {
            for x in 0..w {
                let val = v[i * h * w + y * w + x];
                let g = ((val.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
                px[(gap + r * (h + gap) + y) * gw + gap + c * (w + gap) + x] = g;
            }
        }
    }
    let bytes = encode_gray(gw, gh, &px)?;
    frugal_data::atomic::write_bytes(path, &bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn crc_and_png_structure() {
        assert_eq!(crc32(b"IEND"), 0xae42_6082);
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        let png = encode_gray(3, 2, &[0, 128, 255, 1, 2, 3]).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND");
        // IDAT decodes back to the filtered rows.
        let idat_len = u32::from_be_bytes(png[33..37].try_into().unwrap()) as usize;
        assert_eq!(&png[37..41], b"IDAT");
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&png[41..41 + idat_len])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw, vec![0, 0, 128, 255, 0, 1, 2, 3]);
        assert!(encode_gray(2, 2, &[0; 3]).is_err());
        let rgb = encode_rgb(1, 1, &[1, 2, 3]).unwrap();
        assert_eq!(rgb[25], 2, "colour type RGB");
        assert!(encode_rgb(1, 1, &[1, 2]).is_err());
    }
}

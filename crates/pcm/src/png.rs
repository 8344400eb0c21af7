//! Grayscale PNG grids and RGB images, through the `png` crate.

use crate::{PcmError, Result};
use candle_core::Tensor;
use std::path::Path;

/// Encodes 8-bit grayscale pixels (row-major, `width·height`) as PNG.
pub fn encode_gray(width: usize, height: usize, pixels: &[u8]) -> Result<Vec<u8>> {
    encode(width, height, png::ColorType::Grayscale, pixels)
}

/// Encodes 8-bit RGB pixels (row-major, `width·height·3`) as PNG.
pub fn encode_rgb(width: usize, height: usize, pixels: &[u8]) -> Result<Vec<u8>> {
    encode(width, height, png::ColorType::Rgb, pixels)
}

fn encode(width: usize, height: usize, color: png::ColorType, pixels: &[u8]) -> Result<Vec<u8>> {
    let channels = color.samples();
    if pixels.len() != width * height * channels || width == 0 || height == 0 {
        return Err(PcmError::arg(format!(
            "{} bytes for a {width}×{height} image with {channels} channel(s)",
            pixels.len()
        )));
    }
    let err = |e: png::EncodingError| PcmError::arg(format!("PNG encoding: {e}"));
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(err)?;
    writer.write_image_data(pixels).map_err(err)?;
    writer.finish().map_err(err)?;
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

    fn decode(bytes: &[u8]) -> (u32, u32, png::ColorType, Vec<u8>) {
        let mut reader = png::Decoder::new(bytes).read_info().unwrap();
        let mut px = vec![0; reader.output_buffer_size()];
        let frame = reader.next_frame(&mut px).unwrap();
        px.truncate(frame.buffer_size());
        (frame.width, frame.height, frame.color_type, px)
    }

    #[test]
    fn png_round_trips_and_bad_sizes_are_refused() {
        let gray = [0, 128, 255, 1, 2, 3];
        let png = encode_gray(3, 2, &gray).unwrap();
        assert_eq!(
            decode(&png),
            (3, 2, png::ColorType::Grayscale, gray.to_vec())
        );
        let rgb = encode_rgb(1, 1, &[1, 2, 3]).unwrap();
        assert_eq!(decode(&rgb), (1, 1, png::ColorType::Rgb, vec![1, 2, 3]));
        assert!(encode_gray(2, 2, &[0; 3]).is_err());
        assert!(encode_rgb(1, 1, &[1, 2]).is_err());
        assert!(encode_gray(0, 0, &[]).is_err());
    }

    #[test]
    fn grid_places_images_with_gaps() {
        // Two 1×1 images, -1 (black) and 1 (white), side by side: 2-pixel
        // gaps around them make a 8×5 grid.
        let imgs = Tensor::new(&[-1f32, 1.0], &candle_core::Device::Cpu)
            .unwrap()
            .reshape((2, 1, 1, 1))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.png");
        write_grid(&imgs, 2, &path).unwrap();
        let (w, h, _, px) = decode(&std::fs::read(&path).unwrap());
        assert_eq!((w, h), (8, 5));
        assert_eq!(px[2 * 8 + 2], 0);
        assert_eq!(px[2 * 8 + 5], 255);
        assert_eq!(px.iter().filter(|&&p| p == 255).count(), 1);
    }
}

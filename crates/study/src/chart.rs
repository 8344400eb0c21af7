//! Report charts (lines, markers, shaded bands; linear or log axes) drawn
//! with `plotters` into PNG files, with an embedded font so they render the
//! same on a machine without any fonts installed.

use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Style {
    Line,
    Dashed,
    Markers,
    /// A filled polygon: `points` is the outline (see [`Series::band`]).
    Band,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub style: Style,
    /// Index into the palette.
    pub color: usize,
}

impl Series {
    /// A shaded band between `lo` and `hi` over `xs` (all the same length).
    pub fn band(name: impl Into<String>, xs: &[f64], lo: &[f64], hi: &[f64], color: usize) -> Self {
        let mut points: Vec<(f64, f64)> = xs.iter().copied().zip(lo.iter().copied()).collect();
        points.extend(xs.iter().copied().zip(hi.iter().copied()).rev());
        Series {
            name: name.into(),
            points,
            style: Style::Band,
            color,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub log_y: bool,
    pub series: Vec<Series>,
}

/// Drawing failed (a backend or file error), with plotters' message.
#[derive(Debug, thiserror::Error)]
#[error("drawing a chart: {0}")]
pub struct ChartError(String);

fn err(e: impl std::fmt::Display) -> ChartError {
    ChartError(e.to_string())
}

pub const WIDTH: u32 = 900;
pub const HEIGHT: u32 = 560;

const PALETTE: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
];

pub fn palette(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

static FONT: Once = Once::new();

/// plotters' ab_glyph text needs a registered font: DejaVu Sans, compiled in.
fn register_font() {
    FONT.call_once(|| {
        // The bytes are a valid TTF shipped by the `dejavu` crate; a failure
        // here would only mean charts without text, so it is not fatal.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

fn tf(v: f64, log: bool) -> Option<f64> {
    let t = match log {
        true if v > 0.0 => v.log10(),
        true => return None,
        false => v,
    };
    t.is_finite().then_some(t)
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    (lo - pad, hi + pad)
}

fn label(v: f64, log: bool) -> String {
    let x = if log { 10f64.powf(v) } else { v };
    if x != 0.0 && (x.abs() >= 1e4 || x.abs() < 1e-2) {
        format!("{x:.1e}")
    } else {
        format!("{x:.3}")
    }
}

fn axis(label: &str, log: bool) -> String {
    if log {
        format!("{label} (log scale)")
    } else {
        label.to_string()
    }
}

impl Chart {
    /// Points of a series in axis space (log10 on log axes); points that
    /// cannot sit on the axis (≤ 0 on a log axis, NaN) are dropped.
    pub fn axis_points(&self, s: &Series) -> Vec<(f64, f64)> {
        s.points
            .iter()
            .filter_map(|&(x, y)| Some((tf(x, self.log_x)?, tf(y, self.log_y)?)))
            .collect()
    }

    /// Writes the chart as a PNG file of [`WIDTH`] × [`HEIGHT`] pixels.
    pub fn png(&self, path: &Path) -> Result<(), ChartError> {
        let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
        self.draw(&root)?;
        root.present().map_err(err)
    }

    /// Renders into an RGB buffer of [`WIDTH`] × [`HEIGHT`] × 3 bytes.
    pub fn rgb(&self) -> Result<Vec<u8>, ChartError> {
        let mut buf = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(err)?;
        }
        Ok(buf)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), ChartError> {
        register_font();
        root.fill(&WHITE).map_err(err)?;
        let all: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| self.axis_points(s))
            .collect();
        let (x0, x1) = range(all.iter().map(|p| p.0));
        let (y0, y1) = range(all.iter().map(|p| p.1));
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(err)?;
        let (log_x, log_y) = (self.log_x, self.log_y);
        chart
            .configure_mesh()
            .light_line_style(RGBColor(0xf0, 0xf0, 0xf0))
            .x_desc(axis(&self.x_label, log_x))
            .y_desc(axis(&self.y_label, log_y))
            .x_label_formatter(&|v| label(*v, log_x))
            .y_label_formatter(&|v| label(*v, log_y))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(err)?;
        // Bands first, so lines and markers stay visible on top of them.
        let mut order: Vec<&Series> = self.series.iter().collect();
        order.sort_by_key(|s| s.style != Style::Band);
        for s in order {
            let c = palette(s.color);
            let p = self.axis_points(s);
            let anno = match s.style {
                Style::Band => {
                    chart.draw_series(std::iter::once(Polygon::new(p, c.mix(0.18).filled())))
                }
                Style::Line => chart.draw_series(LineSeries::new(p, c.stroke_width(2))),
                Style::Dashed => {
                    chart.draw_series(DashedLineSeries::new(p, 6, 4, c.stroke_width(2)))
                }
                Style::Markers => {
                    chart.draw_series(p.into_iter().map(|xy| Circle::new(xy, 4, c.filled())))
                }
            }
            .map_err(err)?;
            let swatch = if s.style == Style::Band {
                c.mix(0.3).filled()
            } else {
                c.filled()
            };
            anno.label(&s.name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 14, y + 4)], swatch));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(buf: &[u8], c: RGBColor) -> usize {
        buf.chunks(3).filter(|p| p == &[c.0, c.1, c.2]).count()
    }

    fn chart(series: Vec<Series>, log_x: bool) -> Chart {
        Chart {
            title: "a < b".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            log_x,
            log_y: false,
            series,
        }
    }

    #[test]
    fn draws_each_series_in_its_colour() {
        let line = Series {
            name: "line".into(),
            points: vec![(1.0, 1.0), (10.0, 2.0)],
            style: Style::Line,
            color: 0,
        };
        let dots = Series {
            name: "dots".into(),
            points: vec![(3.0, 1.5)],
            style: Style::Markers,
            color: 1,
        };
        let both = chart(vec![line.clone(), dots], false).rgb().unwrap();
        let only_line = chart(vec![line], false).rgb().unwrap();
        assert!(count(&both, palette(0)) > 100, "line pixels");
        assert!(count(&both, palette(1)) > 20, "marker pixels");
        assert_eq!(count(&only_line, palette(1)), 0);
        // Text is rendered (the embedded font): some dark pixels besides the frame.
        assert!(count(&both, BLACK) > 500);
    }

    #[test]
    fn log_axis_drops_points_it_cannot_show() {
        let c = chart(
            vec![Series {
                name: "line".into(),
                points: vec![(1.0, 1.0), (10.0, 2.0), (0.0, 3.0), (f64::NAN, 1.0)],
                style: Style::Line,
                color: 0,
            }],
            true,
        );
        assert_eq!(c.axis_points(&c.series[0]), vec![(0.0, 1.0), (1.0, 2.0)]);
        c.rgb().unwrap();
    }

    #[test]
    fn band_outline_goes_out_along_lo_and_back_along_hi() {
        let b = Series::band("b", &[1.0, 2.0, 3.0], &[0.0, 0.1, 0.2], &[1.0, 1.1, 1.2], 2);
        assert_eq!(
            b.points,
            vec![
                (1.0, 0.0),
                (2.0, 0.1),
                (3.0, 0.2),
                (3.0, 1.2),
                (2.0, 1.1),
                (1.0, 1.0)
            ]
        );
        let buf = chart(vec![b], false).rgb().unwrap();
        // Filled with a light tint of the colour: many non-white, non-black pixels.
        let tinted = buf
            .chunks(3)
            .filter(|p| p[1] > p[0] && p[1] > p[2] && p[1] < 255)
            .count();
        assert!(tinted > 10_000, "{tinted}");
    }

    #[test]
    fn writes_a_png_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.png");
        chart(
            vec![Series {
                name: "l".into(),
                points: vec![(0.0, 0.0), (1.0, 1.0)],
                style: Style::Dashed,
                color: 3,
            }],
            false,
        )
        .png(&path)
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: width and height, big-endian, at bytes 16..24.
        assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), WIDTH);
        assert_eq!(
            u32::from_be_bytes(bytes[20..24].try_into().unwrap()),
            HEIGHT
        );
    }
}

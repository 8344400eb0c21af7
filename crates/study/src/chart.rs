//! Minimal SVG charts (lines and markers, linear or log axes), so reports
//! need no plotting dependency.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Style {
    Line,
    Dashed,
    Markers,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub style: Style,
    /// Index into the palette.
    pub color: usize,
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

const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const W: f64 = 720.0;
const H: f64 = 460.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 180.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;

fn tf(v: f64, log: bool) -> Option<f64> {
    match log {
        true if v > 0.0 => Some(v.log10()),
        true => None,
        false => Some(v),
    }
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
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

impl Chart {
    /// The chart as an SVG document.
    pub fn svg(&self) -> String {
        let pts = |s: &Series| -> Vec<(f64, f64)> {
            s.points
                .iter()
                .filter_map(|&(x, y)| Some((tf(x, self.log_x)?, tf(y, self.log_y)?)))
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect()
        };
        let all: Vec<(f64, f64)> = self.series.iter().flat_map(pts).collect();
        let (x0, x1) = range(all.iter().map(|p| p.0));
        let (y0, y1) = range(all.iter().map(|p| p.1));
        let pw = W - LEFT - RIGHT;
        let ph = H - TOP - BOTTOM;
        let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
        let sy = |y: f64| TOP + ph - (y - y0) / (y1 - y0) * ph;
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>
<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>
"#,
            LEFT + pw / 2.0,
            esc(&self.title)
        );
        for i in 0..=5 {
            let fx = x0 + (x1 - x0) * i as f64 / 5.0;
            let fy = y0 + (y1 - y0) * i as f64 / 5.0;
            let (px, py) = (sx(fx), sy(fy));
            let _ = writeln!(
                s,
                r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#eee"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                TOP + ph,
                TOP + ph + 16.0,
                label(fx, self.log_x)
            );
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + pw,
                LEFT - 5.0,
                py + 4.0,
                label(fy, self.log_y)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            H - 12.0,
            esc(&axis(&self.x_label, self.log_x))
        );
        let _ = writeln!(
            s,
            r#"<text transform="translate(16,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            TOP + ph / 2.0,
            esc(&axis(&self.y_label, self.log_y))
        );
        for (i, se) in self.series.iter().enumerate() {
            let c = PALETTE[se.color % PALETTE.len()];
            let p = pts(se);
            match se.style {
                Style::Line | Style::Dashed => {
                    let d: Vec<String> = p
                        .iter()
                        .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                        .collect();
                    let dash = if se.style == Style::Dashed {
                        r#" stroke-dasharray="5,4""#
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        s,
                        r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="1.6"{dash}/>"#,
                        d.join(" ")
                    );
                }
                Style::Markers => {
                    for &(x, y) in &p {
                        let _ = writeln!(
                            s,
                            r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{c}"/>"#,
                            sx(x),
                            sy(y)
                        );
                    }
                }
            }
            let ly = TOP + 14.0 + 16.0 * i as f64;
            let lx = W - RIGHT + 12.0;
            let _ = writeln!(
                s,
                r#"<rect x="{lx}" y="{:.1}" width="12" height="4" fill="{c}"/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
                ly - 6.0,
                lx + 18.0,
                esc(&se.name)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

fn axis(label: &str, log: bool) -> String {
    if log {
        format!("{label} (log scale)")
    } else {
        label.to_string()
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_series_and_skips_bad_log_points() {
        let c = Chart {
            title: "a < b".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            log_x: true,
            log_y: false,
            series: vec![
                Series {
                    name: "line".into(),
                    points: vec![(1.0, 1.0), (10.0, 2.0), (0.0, 3.0)],
                    style: Style::Line,
                    color: 0,
                },
                Series {
                    name: "dots".into(),
                    points: vec![(100.0, 1.5)],
                    style: Style::Markers,
                    color: 1,
                },
            ],
        };
        let svg = c.svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a &lt; b"));
        assert_eq!(svg.matches("<circle").count(), 1);
        // x = 0 cannot sit on a log axis: two polyline points remain.
        let line = svg.lines().find(|l| l.starts_with("<polyline")).unwrap();
        assert_eq!(line.split(' ').filter(|p| p.contains(',')).count(), 2);
    }
}

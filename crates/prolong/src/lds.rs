//! The long-dependency score from perplexities (ProLong, papers.md §2):
//! dependency strength (DST), distance (DDI), specificity (DSP) and their
//! thresholded sum, LDS. Pure functions over f64, so they are tested on
//! hand-computed matrices.

/// One computed pair: chunk `i` scored after chunk `j` (`j < i`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairPpl {
    pub i: usize,
    pub j: usize,
    pub ppl: f64,
}

/// How the formulas are evaluated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LdsParams {
    /// A pair counts when DST exceeds this (the reference's 0.1).
    pub threshold: f64,
    /// DDI = (i − j) / `distance_scale`, clipped to [0, 1]; the reference
    /// uses window/L − 1 (255), frugal can use the document's N − 1.
    pub distance_scale: f64,
    /// Reproduce the reference's numerics: its 1e-12 smoothing of zero
    /// probabilities in the entropy and NaN → 0.
    pub compat: bool,
}

/// LDS with its parts, for records and heatmaps.
#[derive(Debug, Clone, PartialEq)]
pub struct LdsResult {
    pub lds: f64,
    /// DST per pair, in the order of the input pairs.
    pub dst: Vec<f64>,
    /// DSP per chunk (0 for rows with no computed pair).
    pub dsp: Vec<f64>,
    /// Pairs above the threshold.
    pub counted: usize,
}

/// DST = (PPL(s_i) − PPL(s_i|s_j)) / PPL(s_i).
pub fn dst(single: f64, pair: f64) -> f64 {
    (single - pair) / single
}

/// DDI = clip((i − j) / scale, 0, 1).
pub fn ddi(i: usize, j: usize, scale: f64) -> f64 {
    (i.saturating_sub(j) as f64 / scale).clamp(0.0, 1.0)
}

/// DSP of one row of raw ΔPPL values: 1 − H(softmax(row)) / log K, clipped;
/// 1 for a single value, 0 for none. A flat row (every earlier chunk helps
/// equally, as in repeated text) scores near 0.
pub fn dsp(row: &[f64], compat: bool) -> f64 {
    match row.len() {
        0 => return 0.0,
        1 => return 1.0,
        _ => {}
    }
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut p: Vec<f64> = row.iter().map(|x| (x - max).exp()).collect();
    let sum: f64 = p.iter().sum();
    p.iter_mut().for_each(|x| *x /= sum);
    if compat && p.contains(&0.0) {
        // numpy reference: `x += 1e-12; x /= sum(x)` when a probability
        // underflowed to zero.
        p.iter_mut().for_each(|x| *x += 1e-12);
        let s: f64 = p.iter().sum();
        p.iter_mut().for_each(|x| *x /= s);
    }
    // 0·log 0 = 0 (only reachable outside compat mode).
    let h: f64 = -p
        .iter()
        .filter(|&&x| x > 0.0)
        .map(|x| x * x.ln())
        .sum::<f64>();
    let max_h = (row.len() as f64).ln();
    ((max_h - h) / max_h).clamp(0.0, 1.0)
}

/// LDS = Σ_{computed i>j} 1[DST_ij > threshold] · (DST_ij + DDI_ij) · DSP_i,
/// summed in the reference's order (i, then j ascending).
pub fn lds(single: &[f64], pairs: &[PairPpl], p: &LdsParams) -> LdsResult {
    let n = single.len();
    // Row i's raw ΔPPL values in ascending j, as the reference collects them.
    let mut order: Vec<usize> = (0..pairs.len())
        .filter(|&k| pairs[k].i < n && pairs[k].j < pairs[k].i)
        .collect();
    order.sort_by_key(|&k| (pairs[k].i, pairs[k].j));
    let mut rows: Vec<Vec<f64>> = vec![Vec::new(); n];
    for &k in &order {
        let q = pairs[k];
        rows[q.i].push(single[q.i] - q.ppl);
    }
    let dsp: Vec<f64> = rows.iter().map(|r| dsp(r, p.compat)).collect();
    let mut dst_v = vec![f64::NAN; pairs.len()];
    let (mut total, mut counted) = (0.0, 0);
    for &k in &order {
        let q = pairs[k];
        let d = dst(single[q.i], q.ppl);
        dst_v[k] = d;
        if d > p.threshold {
            total += (d + ddi(q.i, q.j, p.distance_scale)) * dsp[q.i];
            counted += 1;
        }
    }
    if p.compat && total.is_nan() {
        total = 0.0;
    }
    LdsResult {
        lds: total,
        dst: dst_v,
        dsp,
        counted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: LdsParams = LdsParams {
        threshold: 0.1,
        distance_scale: 255.0,
        compat: true,
    };

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn dst_and_ddi() {
        close(dst(10.0, 8.0), 0.2);
        close(dst(10.0, 12.0), -0.2);
        close(ddi(5, 2, 255.0), 3.0 / 255.0);
        close(ddi(300, 0, 255.0), 1.0);
        close(ddi(3, 1, 2.0), 1.0);
    }

    #[test]
    fn dsp_cases() {
        // One computed j: fully specific by definition.
        close(dsp(&[0.3], true), 1.0);
        close(dsp(&[], true), 0.0);
        // A flat row: uniform distribution, entropy log K, DSP 0.
        close(dsp(&[2.0, 2.0, 2.0], true), 0.0);
        // Two values: p = softmax([0, ln 3]) = [1/4, 3/4].
        let h = -(0.25f64 * 0.25f64.ln() + 0.75 * 0.75f64.ln());
        close(dsp(&[0.0, 3f64.ln()], true), (2f64.ln() - h) / 2f64.ln());
        // One dominant value → near 1; an underflowed zero is smoothed in
        // compat mode (1e-12 added) and skipped otherwise.
        let peaked = [0.0, 2000.0];
        let eps = 1e-12 / (1.0 + 2e-12);
        let pc: [f64; 2] = [eps, (1.0 + 1e-12) / (1.0 + 2e-12)];
        let hc = -(pc[0] * pc[0].ln() + pc[1] * pc[1].ln());
        close(dsp(&peaked, true), (2f64.ln() - hc) / 2f64.ln());
        close(dsp(&peaked, false), 1.0);
    }

    #[test]
    fn lds_on_a_hand_computed_matrix() {
        // Three chunks, single PPLs 10, 10, 40.
        // Pairs: (1,0)=8 → ΔPPL 2, DST 0.2; (2,0)=36 → ΔPPL 4, DST 0.1 (not
        // > 0.1, not counted); (2,1)=20 → ΔPPL 20, DST 0.5.
        let single = [10.0, 10.0, 40.0];
        let pairs = [
            PairPpl {
                i: 2,
                j: 1,
                ppl: 20.0,
            },
            PairPpl {
                i: 1,
                j: 0,
                ppl: 8.0,
            },
            PairPpl {
                i: 2,
                j: 0,
                ppl: 36.0,
            },
        ];
        let r = lds(&single, &pairs, &P);
        // Row 1 has one pair: DSP 1. Row 2: softmax([4, 20]).
        let p0 = 1.0 / (1.0 + 16f64.exp());
        let p1 = 1.0 - p0;
        let h = -(p0 * p0.ln() + p1 * p1.ln());
        let dsp2 = (2f64.ln() - h) / 2f64.ln();
        close(r.dsp[0], 0.0);
        close(r.dsp[1], 1.0);
        close(r.dsp[2], dsp2);
        close(r.dst[0], 0.5);
        close(r.dst[1], 0.2);
        close(r.dst[2], 0.1);
        let expected = (0.2 + 1.0 / 255.0) * 1.0 + (0.5 + 1.0 / 255.0) * dsp2;
        close(r.lds, expected);
        assert_eq!(r.counted, 2);
        // With the document's own N − 1 = 2 as the distance scale.
        let own = lds(
            &single,
            &pairs,
            &LdsParams {
                distance_scale: 2.0,
                ..P
            },
        );
        close(own.lds, (0.2 + 0.5) * 1.0 + (0.5 + 0.5) * dsp2);
    }

    #[test]
    fn no_pairs_no_score_and_negative_gains_ignored() {
        let r = lds(&[5.0, 5.0], &[], &P);
        assert_eq!(r.lds, 0.0);
        assert_eq!(r.counted, 0);
        let r = lds(
            &[5.0, 5.0],
            &[PairPpl {
                i: 1,
                j: 0,
                ppl: 6.0,
            }],
            &P,
        );
        assert_eq!(r.lds, 0.0);
        close(r.dst[0], -0.2);
    }
}

//! A safe, single-threaded `C (+)= β·A·B` on f32 slices, for kernels that
//! multiply small blocks inside their own parallel loop (one attention head
//! per rayon task): candle's matmul works on whole tensors, and calling it
//! per block would allocate and dispatch for every one. The product is the
//! `gemm` crate's, the same kernels candle's CPU matmul runs.

/// A matrix view into a slice: element `(r, c)` at `r·row_stride + c·col_stride`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    /// The first `rows × cols` elements of `data` as a row-major matrix.
    pub(crate) fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// `rows × cols` elements of `data`, row `r` starting at `r·row_stride`
    /// (rows of several heads interleaved in one buffer).
    pub(crate) fn strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            row_stride,
            ..Self::rows(data, rows, cols)
        }
    }

    /// The transpose (a view, nothing moves).
    pub(crate) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Whether every element the view addresses lies inside its slice.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// `c = β·a·b`, or `c += β·a·b` with `accumulate`, for a row-major `c` of
/// `a.rows × b.cols` elements at the start of `c`.
///
/// # Panics
/// If the shapes do not agree or a view reaches past its slice: the callers
/// derive every shape from one checked set of dimensions, so a mismatch is
/// a bug in the kernel, not bad input.
pub(crate) fn gemm(c: &mut [f32], a: Mat, b: Mat, beta: f32, accumulate: bool) {
    gemm_strided(c, b.cols, a, b, beta, accumulate)
}

/// [`gemm`] into a `c` whose row `r` starts at `r·ldc` (`ldc ≥ b.cols`).
///
/// # Panics
/// As [`gemm`], and if `ldc < b.cols`.
pub(crate) fn gemm_strided(c: &mut [f32], ldc: usize, a: Mat, b: Mat, beta: f32, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "small_gemm: inner dimensions {k} and {}", b.rows);
    assert!(
        ldc >= n,
        "small_gemm: output row stride {ldc} under {n} columns"
    );
    assert!(
        m == 0 || n == 0 || c.len() >= (m - 1) * ldc + n,
        "small_gemm: output too short"
    );
    assert!(
        a.in_bounds() && b.in_bounds(),
        "small_gemm: view out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for row in c.chunks_mut(ldc).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: the asserts above keep every address the kernel reads inside
    // `a.data` and `b.data` and every one it writes inside `c[..(m−1)·ldc +
    // n]`; the output does not alias the inputs (`&mut` against `&`).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            beta,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: Mat, b: Mat) -> Vec<f32> {
        let at = |m: &Mat, r: usize, c: usize| m.data[r * m.row_stride + c * m.col_stride];
        let mut c = vec![0f32; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                c[i * b.cols + j] = (0..a.cols).map(|l| at(&a, i, l) * at(&b, l, j)).sum();
            }
        }
        c
    }

    /// Every combination of transposed operands, with and without
    /// accumulation, against a triple loop.
    #[test]
    fn matches_a_triple_loop() {
        let x: Vec<f32> = (0..7 * 5)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let y: Vec<f32> = (0..5 * 9)
            .map(|i| ((i * 13 % 7) as f32 - 3.0) / 2.0)
            .collect();
        let yt: Vec<f32> = (0..9 * 5).map(|i| y[(i % 5) * 9 + i / 5]).collect();
        let xt: Vec<f32> = (0..5 * 7).map(|i| x[(i % 7) * 5 + i / 7]).collect();
        let want = naive(Mat::rows(&x, 7, 5), Mat::rows(&y, 5, 9));
        for (a, b) in [
            (Mat::rows(&x, 7, 5), Mat::rows(&y, 5, 9)),
            (Mat::rows(&xt, 5, 7).t(), Mat::rows(&y, 5, 9)),
            (Mat::rows(&x, 7, 5), Mat::rows(&yt, 9, 5).t()),
            (Mat::rows(&xt, 5, 7).t(), Mat::rows(&yt, 9, 5).t()),
        ] {
            let mut c = vec![1f32; 7 * 9];
            gemm(&mut c, a, b, 0.5, true);
            for (got, w) in c.iter().zip(&want) {
                assert!(
                    (got - (1.0 + 0.5 * w)).abs() < 1e-5,
                    "{got} vs {}",
                    1.0 + 0.5 * w
                );
            }
            gemm(&mut c, a, b, 2.0, false);
            for (got, w) in c.iter().zip(&want) {
                assert!((got - 2.0 * w).abs() < 1e-5, "{got} vs {}", 2.0 * w);
            }
        }
    }

    /// Operands and output interleaved with another matrix's rows (as heads
    /// share rows in `[B, T, H, hd]`): the product is the contiguous one, and
    /// the other matrix's elements in the output buffer stay as they were.
    #[test]
    fn strided_views_read_and_write_only_their_rows() {
        let (m, k, n) = (5, 4, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.5).collect();
        // Row r of a at 2r·k + k (the second of two interleaved matrices).
        let mut a2 = vec![f32::NAN; 2 * m * k];
        for (r, row) in a.chunks_exact(k).enumerate() {
            a2[(2 * r + 1) * k..][..k].copy_from_slice(row);
        }
        let want = naive(Mat::rows(&a, m, k), Mat::rows(&b, k, n));
        for (accumulate, k_used) in [(false, k), (true, k), (false, 0)] {
            let mut c = vec![-7f32; 2 * m * n];
            let av = Mat::strided(&a2[k..], m, k_used, 2 * k);
            let bv = Mat::rows(&b, k_used, n);
            gemm_strided(&mut c[n..], 2 * n, av, bv, 1.0, accumulate);
            for (r, pair) in c.chunks_exact(2 * n).enumerate() {
                assert_eq!(
                    pair[..n],
                    [-7.0; 3],
                    "row {r}: the other matrix's row changed"
                );
                for (j, &got) in pair[n..].iter().enumerate() {
                    let w = match (k_used, accumulate) {
                        (0, _) => 0.0,
                        (_, false) => want[r * n + j],
                        (_, true) => want[r * n + j] - 7.0,
                    };
                    assert!((got - w).abs() < 1e-5, "({r}, {j}): {got} vs {w}");
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "output too short")]
    fn a_strided_output_past_its_slice_is_refused() {
        let x = vec![0f32; 9];
        let mut c = vec![0f32; 8];
        let v = Mat::rows(&x, 3, 3);
        gemm_strided(&mut c, 3, v, v, 1.0, false);
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn a_view_past_its_slice_is_refused() {
        let x = vec![0f32; 6];
        let mut c = vec![0f32; 9];
        gemm(&mut c, Mat::rows(&x, 3, 3), Mat::rows(&x, 3, 3), 1.0, false);
    }
}

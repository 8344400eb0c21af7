use super::*;
use crate::fused_linear::linear_to_heads;
use crate::fused_linear::tests::{assert_same, gap, rnd, run, BF16_BOUND, F32_BOUND};
use candle_core::{DType, Device, Var};

/// Rotary tables for head dim `hd` over `positions`.
fn tables(hd: usize, positions: usize) -> RopeTables {
    let half = hd / 2;
    let angles: Vec<f32> = (0..positions)
        .flat_map(|p| (0..half).map(move |i| p as f32 / 10_000f32.powf(i as f32 / half as f32)))
        .collect();
    let a = Tensor::from_vec(angles, (positions, half), &Device::Cpu).unwrap();
    RopeTables::new(&a.cos().unwrap(), &a.sin().unwrap()).unwrap()
}

fn bound(precision: Precision) -> f32 {
    match precision {
        Precision::F32 => F32_BOUND,
        Precision::Bf16 => BF16_BOUND,
    }
}

/// The rotation inside the projection's node runs the same kernels as the
/// two nodes it replaces: output and gradients are bit-identical, in f32
/// and bf16, from position 0 and from a cached prefix.
#[test]
fn rotated_heads_is_projection_then_rope_exactly() {
    let (b, t, d, heads) = (2, 5, 16, 2);
    let rope = tables(d / heads, 12);
    let x = rnd(&[b, t, d], 1);
    let w = (rnd(&[d, d], 2) * 0.3).unwrap();
    for precision in [Precision::F32, Precision::Bf16] {
        let xw = [
            (x.clone(), precision.activation_dtype()),
            (w.clone(), DType::F32),
        ];
        for pos in [0, 7] {
            let one = run(&xw, |t| {
                rotated_heads(&t[0], &t[1], heads, &rope, pos, precision).unwrap()
            });
            let two = run(&xw, |t| {
                let q = linear_to_heads(&t[0], &t[1], heads, precision).unwrap();
                rope.apply(&q, pos).unwrap()
            });
            assert_same(
                &format!("rotated_heads {precision} pos {pos}"),
                &one,
                &two,
                0.0,
            );
        }
    }
}

/// q, k and v in the projection's own order `[B, T, H, hd]` are the
/// heads-first ones transposed, bit for bit, with the same gradients.
#[test]
fn sequence_major_heads_are_the_heads_transposed() {
    let (b, t, d, heads) = (2, 5, 16, 4);
    let rope = tables(d / heads, 12);
    let x = rnd(&[b, t, d], 11);
    let w = (rnd(&[d, d], 12) * 0.3).unwrap();
    let heads_first = |y: Tensor| y.transpose(1, 2).unwrap();
    for precision in [Precision::F32, Precision::Bf16] {
        let xw = [
            (x.clone(), precision.activation_dtype()),
            (w.clone(), DType::F32),
        ];
        let pos = 3;
        let seq = run(&xw, |t| {
            heads_first(rotated_seq_heads(&t[0], &t[1], heads, &rope, pos, precision).unwrap())
        });
        let first = run(&xw, |t| {
            rotated_heads(&t[0], &t[1], heads, &rope, pos, precision).unwrap()
        });
        assert_same(&format!("rotated {precision}"), &seq, &first, 0.0);
        let seq = run(&xw, |t| {
            heads_first(
                crate::fused_linear::linear_to_seq_heads(&t[0], &t[1], heads, precision).unwrap(),
            )
        });
        let first = run(&xw, |t| {
            linear_to_heads(&t[0], &t[1], heads, precision).unwrap()
        });
        assert_same(&format!("v {precision}"), &seq, &first, 0.0);
    }
}

/// The one-node MLP against SwiGLU of two one-node projections: the
/// output is the same; the gradients sum the two projections' `dx` in one
/// add instead of candle's accumulator, so they agree within rounding.
#[test]
fn gated_up_matches_swiglu_of_projections() {
    let x = rnd(&[2, 5, 12], 3);
    let w_gate = (rnd(&[20, 12], 4) * 0.3).unwrap();
    let w_up = (rnd(&[20, 12], 5) * 0.3).unwrap();
    for precision in [Precision::F32, Precision::Bf16] {
        let inputs = [
            (x.clone(), precision.activation_dtype()),
            (w_gate.clone(), DType::F32),
            (w_up.clone(), DType::F32),
        ];
        let one = run(&inputs, |t| {
            gated_up(&t[0], &t[1], &t[2], precision).unwrap()
        });
        let three = run(&inputs, |t| {
            let linear = |w: &Tensor| fused_linear::linear(&t[0], w, precision).unwrap();
            fused::swiglu(&linear(&t[1]), &linear(&t[2])).unwrap()
        });
        assert_eq!(gap(&one.0, &three.0), 0.0, "{precision}: output");
        assert_same(
            &format!("gated_up {precision}"),
            &one,
            &three,
            bound(precision),
        );
        // Without anything to differentiate no projections are kept, and
        // the value is the same.
        let plain = gated_up(
            &x.to_dtype(precision.activation_dtype()).unwrap(),
            &w_gate,
            &w_up,
            precision,
        )
        .unwrap();
        assert_eq!(gap(&plain, &one.0), 0.0, "{precision}: untracked");
    }
}

/// Each is one node: only its input and weights are recorded below it.
#[test]
fn one_graph_node_each() {
    let x = Var::from_tensor(&rnd(&[2, 3, 8], 7)).unwrap();
    let w = Var::from_tensor(&rnd(&[8, 8], 8)).unwrap();
    let w2 = Var::from_tensor(&rnd(&[8, 8], 9)).unwrap();
    let q = rotated_heads(
        x.as_tensor(),
        w.as_tensor(),
        2,
        &tables(4, 3),
        0,
        Precision::F32,
    )
    .unwrap();
    assert_eq!(q.sorted_nodes().len(), 3, "q, x, w");
    let h = gated_up(x.as_tensor(), w.as_tensor(), w2.as_tensor(), Precision::F32).unwrap();
    assert_eq!(h.sorted_nodes().len(), 4, "h, x, w_gate, w_up");
}

#[test]
fn bad_inputs_are_errors() {
    let err = |r: Result<Tensor>| r.unwrap_err().to_string();
    let x = rnd(&[2, 3, 8], 1);
    let w = rnd(&[8, 8], 2);
    let rope = tables(4, 4);
    let e = err(rotated_heads(&x, &w, 2, &rope, 2, Precision::F32));
    assert!(e.contains("exceed the table"), "{e}");
    let e = err(rotated_heads(
        &rnd(&[3, 8], 1),
        &w,
        2,
        &rope,
        0,
        Precision::F32,
    ));
    assert!(e.contains("rank"), "{e}");
    let e = err(gated_up(&x, &w, &rnd(&[6, 8], 3), Precision::F32));
    assert!(e.contains("differ"), "{e}");
    let e = err(gated_up(&x, &rnd(&[8, 5], 3), &w, Precision::F32));
    assert!(e.contains("against weight"), "{e}");
}

/// A second backward through the same graph is an error (the kept
/// projections were freed by the first), not a panic or a wrong gradient.
#[test]
fn second_backward_is_an_error() {
    let x = Var::from_tensor(&rnd(&[2, 3, 8], 1)).unwrap();
    let (wg, wu) = (rnd(&[6, 8], 2), rnd(&[6, 8], 3));
    let loss = gated_up(x.as_tensor(), &wg, &wu, Precision::F32)
        .unwrap()
        .sum_all()
        .unwrap();
    assert!(loss.backward().is_ok());
    let e = loss.backward().unwrap_err().to_string();
    assert!(e.contains("nothing saved"), "{e}");
}

use super::*;
use crate::fused_check::{randn, rel_gap_above};
use crate::llama::linear_act;
use candle_core::{Device, Var};

pub(crate) const F32_BOUND: f32 = 1e-5;
/// One bf16 step (2⁻⁸ of a value) relative to the largest value, twice:
/// both sides round, and dW sums in another order.
pub(crate) const BF16_BOUND: f32 = 8e-3;

pub(crate) fn rnd(shape: &[usize], seed: u64) -> Tensor {
    randn(shape, seed).unwrap()
}

pub(crate) fn gap(a: &Tensor, b: &Tensor) -> f32 {
    let (a, b) = (
        a.to_dtype(DType::F32).unwrap(),
        b.to_dtype(DType::F32).unwrap(),
    );
    rel_gap_above(&a, &b, f32::MIN_POSITIVE).unwrap()
}

/// Runs `f` on fresh variables holding `inputs` (each cast to the dtype
/// given beside it inside the graph), then backward from `Σ out·r` for a
/// fixed random `r`: the output and every input's gradient.
pub(crate) fn run(
    inputs: &[(Tensor, DType)],
    f: impl Fn(&[Tensor]) -> Tensor,
) -> (Tensor, Vec<Tensor>) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|(t, _)| Var::from_tensor(t).unwrap())
        .collect();
    let cast: Vec<Tensor> = vars
        .iter()
        .zip(inputs)
        .map(|(v, (_, dtype))| v.as_tensor().to_dtype(*dtype).unwrap())
        .collect();
    let out = f(&cast);
    let r = rnd(out.dims(), 99).to_dtype(out.dtype()).unwrap();
    let loss = (out.clone() * r)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let g = vars
        .iter()
        .map(|v| grads.get(v.as_tensor()).unwrap().clone())
        .collect();
    (out, g)
}

pub(crate) fn assert_same(
    what: &str,
    a: &(Tensor, Vec<Tensor>),
    b: &(Tensor, Vec<Tensor>),
    bound: f32,
) {
    assert_eq!(a.0.dims(), b.0.dims(), "{what}: shape");
    assert_eq!(a.0.dtype(), b.0.dtype(), "{what}: dtype");
    let g = gap(&a.0, &b.0);
    assert!(g <= bound, "{what}: output gap {g}");
    for (i, (ga, gb)) in a.1.iter().zip(&b.1).enumerate() {
        let g = gap(ga, gb);
        assert!(g <= bound, "{what}: gradient {i} gap {g}");
    }
}

/// Each op against the composite tensor ops it replaces (the model's
/// unfused path), in f32 and in emulated bf16: outputs and the gradients
/// of the activation, the weight and the residual.
#[test]
fn projections_match_composite_ops() {
    let (b, t, d, heads) = (2, 5, 12, 3);
    let hd = d / heads;
    let x = rnd(&[b, t, d], 1);
    let w = (rnd(&[d, d], 2) * 0.3).unwrap();
    let w_up = (rnd(&[20, d], 3) * 0.3).unwrap();
    let res = rnd(&[b, t, d], 4);
    let split = |y: Tensor| {
        y.reshape((b, t, heads, hd))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
    };
    let merge = |y: &Tensor| y.transpose(1, 2).unwrap().reshape((b, t, d)).unwrap();
    let x_heads = split(x.clone());
    for precision in [Precision::F32, Precision::Bf16] {
        let act = precision.activation_dtype();
        let bound = match precision {
            Precision::F32 => F32_BOUND,
            Precision::Bf16 => BF16_BOUND,
        };
        let xw = [(x.clone(), act), (w_up.clone(), DType::F32)];
        let fused = run(&xw, |t| linear(&t[0], &t[1], precision).unwrap());
        let plain = run(&xw, |t| linear_act(&t[0], &t[1], precision).unwrap());
        assert_same(&format!("linear {precision}"), &fused, &plain, bound);

        let xw = [(x.clone(), act), (w.clone(), DType::F32)];
        let fused = run(&xw, |t| {
            linear_to_heads(&t[0], &t[1], heads, precision).unwrap()
        });
        let plain = run(&xw, |t| split(linear_act(&t[0], &t[1], precision).unwrap()));
        assert_same(
            &format!("linear_to_heads {precision}"),
            &fused,
            &plain,
            bound,
        );

        let widen = |y: Tensor| y.to_dtype(DType::F32).unwrap();
        for (what, a) in [("flat", &x), ("heads", &x_heads)] {
            let inputs = [
                (res.clone(), DType::F32),
                (a.clone(), act),
                (w.clone(), DType::F32),
            ];
            let fused = run(&inputs, |t| {
                residual_linear(&t[0], &t[1], &t[2], precision).unwrap()
            });
            let plain = run(&inputs, |t| {
                let a = if t[1].rank() == 4 {
                    merge(&t[1])
                } else {
                    t[1].clone()
                };
                (&t[0] + widen(linear_act(&a, &t[2], precision).unwrap())).unwrap()
            });
            assert_eq!(fused.0.dtype(), DType::F32);
            assert_same(
                &format!("residual_linear {what} {precision}"),
                &fused,
                &plain,
                bound,
            );
        }
    }
}

/// The bf16 path really rounds: its output differs from f32's, by no more
/// than bf16's precision.
#[test]
fn bf16_differs_from_f32_within_rounding() {
    let x = rnd(&[4, 16], 5);
    let w = rnd(&[8, 16], 6);
    let f = linear(&x, &w, Precision::F32).unwrap();
    let h = linear(&x, &w, Precision::Bf16).unwrap();
    assert_eq!(h.dtype(), DType::BF16);
    let g = gap(&f, &h);
    assert!(g > 0.0 && g < 2e-2, "{g}");
}

/// A projection is one node of the graph: only its input, its weight and
/// (for the residual form) the residual are recorded below it.
#[test]
fn one_graph_node_per_projection() {
    let x = Var::from_tensor(&rnd(&[2, 3, 8], 7)).unwrap();
    let w = Var::from_tensor(&rnd(&[8, 8], 8)).unwrap();
    let res = Var::from_tensor(&rnd(&[2, 3, 8], 9)).unwrap();
    let q = linear_to_heads(x.as_tensor(), w.as_tensor(), 2, Precision::F32).unwrap();
    assert_eq!(q.sorted_nodes().len(), 3, "q, x, w");
    let y = residual_linear(res.as_tensor(), &q, w.as_tensor(), Precision::F32).unwrap();
    // y, q, and the three variables (w once).
    assert_eq!(y.sorted_nodes().len(), 5);
}

#[test]
fn bad_inputs_are_errors() {
    let dev = &Device::Cpu;
    let x = rnd(&[2, 3, 8], 1);
    let err = |r: Result<Tensor>| r.unwrap_err().to_string();
    let e = err(linear(&x, &rnd(&[4, 7], 2), Precision::F32));
    assert!(e.contains("against weight [4, 7]"), "{e}");
    let half_w = rnd(&[4, 8], 2).to_dtype(DType::BF16).unwrap();
    let e = err(linear(&x, &half_w, Precision::Bf16));
    assert!(e.contains("contiguous f32"), "{e}");
    let e = err(linear_to_heads(&x, &rnd(&[9, 8], 3), 2, Precision::F32));
    assert!(e.contains("2 heads"), "{e}");
    let e = err(residual_linear(
        &Tensor::zeros((2, 3, 5), DType::F32, dev).unwrap(),
        &x,
        &rnd(&[4, 8], 3),
        Precision::F32,
    ));
    assert!(e.contains("residual"), "{e}");
    let scalar = Tensor::new(1f32, dev).unwrap();
    assert!(linear(&scalar, &rnd(&[4, 1], 3), Precision::F32).is_err());
}

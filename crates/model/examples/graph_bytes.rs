//! The autograd graph of one training step, counted on the CPU: how many
//! nodes it has and how many bytes candle's backward spends on bookkeeping.
//!
//! candle's backward starts each node's gradient as `zeros_like` and adds
//! every contribution into it, so each node of the graph costs at least a
//! memset (write its bytes) and an add (read twice, write once) on top of
//! the backward math: 4 × its bytes of memory traffic, and two kernel
//! launches on a GPU. This prints that floor for a model and batch, so the
//! cost of a graph's shape can be reasoned about without a GPU.
//!
//! ```sh
//! cargo run --release -p frugal-model --example graph_bytes -- \
//!     [BATCH] [SEQ] [f32|bf16] [composite]
//! ```
//! It also prints what is left of that traffic when the backward runs on a
//! [`frugal_model::tape`] (the training step's default where it applies):
//! the adds for tensors with more than one consumer.
//!
//! The model is the 162 M configuration of `bench/gpu.sh` (d 768, 12
//! layers, 12 heads, FFN 2048, vocabulary 50304, untied). Activation bytes
//! are linear in the batch, so a small batch can be scaled to a large one.

use candle_core::{DType, Device, Tensor};
use frugal_model::{Llama, LlamaConfig, ParamStore, Precision};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or(default.to_string());
    let batch: usize = arg(0, "1").parse()?;
    let seq: usize = arg(1, "512").parse()?;
    let precision: Precision = arg(2, "bf16").parse()?;
    let composite = arg(3, "") == "composite";

    let mut c = LlamaConfig::new(50304, 768, 12, 12);
    c.ffn_hidden = 2048;
    c.max_seq_len = seq;
    c.tie_embeddings = false;
    let params = ParamStore::init(&c, &Device::Cpu, 0)?;
    let mut model = Llama::new(&c, &params)?.with_precision(precision);
    model.set_fused(!composite)?;
    let ids: Vec<u32> = (0..batch * seq)
        .map(|i| (i * 7919 % 50304) as u32)
        .collect();
    let ids = Tensor::from_vec(ids, (batch, seq), &Device::Cpu)?;
    let loss = model.loss(&ids, &ids)?;

    let nodes = loss.sorted_nodes();
    let bytes = |t: &Tensor| (t.elem_count() * t.dtype().size_in_bytes()) as u64;
    let is_var = |t: &Tensor| t.is_variable();
    let (mut act, mut weights) = (0u64, 0u64);
    for t in &nodes[1..] {
        // The loss itself starts as ones; every other node as zeros.
        match is_var(t) {
            true => weights += bytes(t),
            false => act += bytes(t),
        }
    }
    let dtypes = |d: DType| nodes.iter().filter(|t| t.dtype() == d).count();
    let gb = |b: u64| b as f64 / 1e9;
    println!(
        "{} nodes ({} f32, {} bf16) for batch {batch} x {seq}, {precision}, {}",
        nodes.len(),
        dtypes(DType::F32),
        dtypes(DType::BF16),
        if composite { "composite ops" } else { "fused" }
    );
    println!(
        "gradient bookkeeping (4 x bytes per node): activations {:.2} GB, weights {:.2} GB, total {:.2} GB",
        gb(4 * act),
        gb(4 * weights),
        gb(4 * (act + weights))
    );
    drop(nodes);
    drop(loss);
    // The same step on the tape (what `Llama::loss_and_grads` runs): only
    // the sums of several contributions remain.
    if !composite {
        let (loss, tape) =
            frugal_model::tape::record(|| model.loss(&ids, &ids).map_err(|e| e.into_candle()))?;
        println!(
            "on the tape: {} nodes, sums of gradients {:.2} GB",
            tape.len(),
            gb(tape.accumulation_bytes())
        );
        drop(loss);
    }
    Ok(())
}

//! Launchers for the CUDA versions of the fused kernels (`kernels/fused.cu`,
//! compiled to PTX by build.rs). Each function is the `cuda_fwd` of the
//! matching custom op in [`crate::fused`] and computes exactly what its
//! `cpu_fwd` does, on contiguous data: activations f32 or bf16 (the
//! `_bf16` kernels), everything else f32.
//!
//! They are used on a GPU only when `FRUGAL_CUDA_FUSED=1` (see
//! [`crate::fused::use_fused`]): no GPU has run them yet, so the plain candle
//! ops stay the default until `tests/cuda_fused.rs` has passed on a card.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaView, DevicePtr, DeviceRepr, LaunchArgs, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaDevice, CudaStorage, DType, Layout, Result, Shape, Storage, Tensor};
use half::bf16;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/fused.ptx"));
const MODULE: &str = "frugal_fused";
/// Threads per block of the row kernels (the `BLOCK` of fused.cu).
const BLOCK: u32 = 256;
/// Rows per partial sum of the RMSNorm weight gradient (at least).
const DW_CHUNK: usize = 64;
/// CUDA's largest grid y dimension.
const MAX_GRID_Y: usize = 65_535;

fn view<'a, T: candle_core::cuda_backend::CudaDType + DeviceRepr>(
    s: &'a CudaStorage,
    l: &Layout,
    what: &str,
) -> Result<CudaView<'a, T>> {
    let data = s.as_cuda_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(data.slice(a..b)),
        None => candle_core::bail!("{what}: input must be contiguous"),
    }
}

/// One block per row.
fn per_row(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// A grid-stride launch over `n` elements (capped grid, the loop covers the rest).
fn elementwise(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(BLOCK as usize).clamp(1, 65_535) as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// CUDA caps a grid's y dimension at 65 535 blocks, and a launch past it
/// fails with an opaque "invalid argument"; name the dimension instead.
fn grid_y(n: usize, what: &str) -> Result<u32> {
    if n > MAX_GRID_Y {
        candle_core::bail!(
            "{what}: {n} blocks along grid y exceed CUDA's limit of {MAX_GRID_Y}; \
             use a smaller batch"
        );
    }
    Ok(n as u32)
}

fn alloc(dev: &CudaDevice, n: usize) -> Result<CudaSlice<f32>> {
    // SAFETY: every element is written by the kernel launched next.
    unsafe { dev.alloc::<f32>(n) }
}

fn wrap(dst: CudaSlice<f32>, dev: &CudaDevice) -> CudaStorage {
    CudaStorage::wrap_cuda_slice(dst, dev.clone())
}

/// An activation input: f32, or bf16 under mixed precision.
enum Act<'a> {
    F32(CudaView<'a, f32>),
    Bf16(CudaView<'a, bf16>),
}

impl<'a> Act<'a> {
    fn of(s: &'a CudaStorage, l: &Layout, what: &str) -> Result<Self> {
        match s.dtype() {
            DType::F32 => Ok(Self::F32(view(s, l, what)?)),
            DType::BF16 => Ok(Self::Bf16(view(s, l, what)?)),
            other => candle_core::bail!("{what}: expected f32 or bf16, got {other:?}"),
        }
    }
    fn dtype(&self) -> DType {
        match self {
            Self::F32(_) => DType::F32,
            Self::Bf16(_) => DType::BF16,
        }
    }
    fn push<'b>(&'b self, b: &mut LaunchArgs<'b>) {
        match self {
            Self::F32(v) => b.arg(v),
            Self::Bf16(v) => b.arg(v),
        };
    }
}

/// Activation inputs of one kernel share one dtype (the kernel is picked by it).
fn same_dtype(what: &str, acts: &[&Act]) -> Result<DType> {
    let dtype = acts[0].dtype();
    if acts.iter().any(|a| a.dtype() != dtype) {
        candle_core::bail!("{what}: activations of mixed dtypes");
    }
    Ok(dtype)
}

/// The kernel for activations of `dtype`: `name`, or `name_bf16`.
fn kernel(name: &str, dtype: DType) -> String {
    match dtype {
        DType::BF16 => format!("{name}_bf16"),
        _ => name.to_string(),
    }
}

/// A kernel's output buffer in the activation dtype.
enum Buf {
    F32(CudaSlice<f32>),
    Bf16(CudaSlice<bf16>),
}

impl Buf {
    fn alloc(dev: &CudaDevice, dtype: DType, n: usize) -> Result<Self> {
        // SAFETY: every element is written by the kernel launched next.
        match dtype {
            DType::BF16 => Ok(Self::Bf16(unsafe { dev.alloc::<bf16>(n) }?)),
            _ => Ok(Self::F32(alloc(dev, n)?)),
        }
    }
    fn push<'b>(&'b self, b: &mut LaunchArgs<'b>) {
        match self {
            Self::F32(v) => b.arg(v),
            Self::Bf16(v) => b.arg(v),
        };
    }
    fn wrap(self, dev: &CudaDevice) -> CudaStorage {
        match self {
            Self::F32(v) => wrap(v, dev),
            Self::Bf16(v) => CudaStorage::wrap_cuda_slice(v, dev.clone()),
        }
    }
}

pub fn rms_norm(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    eps: f32,
    out: DType,
) -> Result<(CudaStorage, Shape)> {
    let dev = s1.device();
    let (x, w) = (
        view::<f32>(s1, l1, "rms_norm")?,
        view::<f32>(s2, l2, "rms_norm")?,
    );
    let d = l2.shape().elem_count();
    let n = l1.shape().elem_count();
    let y = Buf::alloc(dev, out, n)?;
    let f = dev.get_or_load_custom_func(&kernel("rms_norm_rows", out), MODULE, PTX)?;
    let mut b = f.builder();
    b.arg(&x);
    b.arg(&w);
    y.push(&mut b);
    candle_core::builder_arg!(b, d as i32, eps);
    // SAFETY: argument types and order match the kernel's signature.
    unsafe { b.launch(per_row(n / d)) }.w()?;
    Ok((y.wrap(dev), l1.shape().clone()))
}

/// RMSNorm's input gradient; with `acc` (f32, x's shape), `acc + dx`.
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_bwd_x(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
    acc: Option<(&CudaStorage, &Layout)>,
    eps: f32,
) -> Result<(CudaStorage, Shape)> {
    let dev = s1.device();
    let x = view::<f32>(s1, l1, "rms bwd")?;
    let w = view::<f32>(s2, l2, "rms bwd")?;
    let g = Act::of(s3, l3, "rms bwd")?;
    let acc = match acc {
        Some((s, l)) if l.shape() == l1.shape() => Some(view::<f32>(s, l, "rms bwd sum")?),
        Some((_, l)) => {
            candle_core::bail!("rms bwd: a sum of {:?} for x {:?}", l.shape(), l1.shape())
        }
        None => None,
    };
    let d = l2.shape().elem_count();
    let n = l1.shape().elem_count();
    let dx = alloc(dev, n)?;
    let name = match acc {
        Some(_) => "rms_norm_bwd_x_add_rows",
        None => "rms_norm_bwd_x_rows",
    };
    let f = dev.get_or_load_custom_func(&kernel(name, g.dtype()), MODULE, PTX)?;
    let mut b = f.builder();
    b.arg(&x);
    b.arg(&w);
    g.push(&mut b);
    if let Some(acc) = &acc {
        b.arg(acc);
    }
    b.arg(&dx);
    candle_core::builder_arg!(b, d as i32, eps);
    // SAFETY: as above.
    unsafe { b.launch(per_row(n / d)) }.w()?;
    Ok((wrap(dx, dev), l1.shape().clone()))
}

/// dw = Σ_rows g∘x·r: per-row 1/rms, per-chunk column sums, then the sum
/// of the chunks in order (deterministic, like the CPU kernel).
pub fn rms_norm_bwd_w(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    eps: f32,
    d: usize,
) -> Result<(CudaStorage, Shape)> {
    let dev = s1.device();
    let x = view::<f32>(s1, l1, "rms bwd")?;
    let g = Act::of(s2, l2, "rms bwd")?;
    let rows = l1.shape().elem_count() / d;
    let inv = alloc(dev, rows)?;
    let f = dev.get_or_load_custom_func("rms_inv_rows", MODULE, PTX)?;
    let mut b = f.builder();
    b.arg(&x);
    b.arg(&inv);
    candle_core::builder_arg!(b, d as i32, eps);
    // SAFETY: as above.
    unsafe { b.launch(per_row(rows)) }.w()?;

    // Longer chunks past 65 535 · 64 rows keep the chunk count within grid y.
    let chunk = DW_CHUNK.max(rows.div_ceil(MAX_GRID_Y));
    let chunks = rows.div_ceil(chunk).max(1);
    let partial = alloc(dev, chunks * d)?;
    let cols = d.div_ceil(BLOCK as usize) as u32;
    let f =
        dev.get_or_load_custom_func(&kernel("rms_norm_bwd_w_partial", g.dtype()), MODULE, PTX)?;
    let mut b = f.builder();
    b.arg(&x);
    g.push(&mut b);
    b.arg(&inv);
    b.arg(&partial);
    candle_core::builder_arg!(b, rows as i32, d as i32, chunk as i32);
    let cfg = LaunchConfig {
        grid_dim: (cols, grid_y(chunks, "rms norm weight gradient")?, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: as above.
    unsafe { b.launch(cfg) }.w()?;

    let dw = alloc(dev, d)?;
    let f = dev.get_or_load_custom_func("sum_columns", MODULE, PTX)?;
    let mut b = f.builder();
    b.arg(&partial);
    b.arg(&dw);
    candle_core::builder_arg!(b, chunks as i32, d as i32);
    let cfg = LaunchConfig {
        grid_dim: (cols, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: as above.
    unsafe { b.launch(cfg) }.w()?;
    Ok((wrap(dw, dev), Shape::from(d)))
}

pub fn causal_softmax(s: &CudaStorage, l: &Layout, scale: f32) -> Result<(CudaStorage, Shape)> {
    let dev = s.device();
    let x = Act::of(s, l, "causal_softmax")?;
    let dims = l.dims();
    let (t, n) = (dims[dims.len() - 2], dims[dims.len() - 1]);
    let len = l.shape().elem_count();
    let y = Buf::alloc(dev, x.dtype(), len)?;
    let f = dev.get_or_load_custom_func(&kernel("causal_softmax_rows", x.dtype()), MODULE, PTX)?;
    let mut b = f.builder();
    x.push(&mut b);
    y.push(&mut b);
    candle_core::builder_arg!(b, t as i32, n as i32, scale);
    // SAFETY: as above.
    unsafe { b.launch(per_row(len / n)) }.w()?;
    Ok((y.wrap(dev), l.shape().clone()))
}

pub fn softmax_bwd(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    scale: f32,
) -> Result<(CudaStorage, Shape)> {
    let dev = s1.device();
    let p = Act::of(s1, l1, "softmax bwd")?;
    let g = Act::of(s2, l2, "softmax bwd")?;
    let dtype = same_dtype("softmax bwd", &[&p, &g])?;
    let n = *l1.dims().last().unwrap_or(&1);
    let len = l1.shape().elem_count();
    let dx = Buf::alloc(dev, dtype, len)?;
    let f = dev.get_or_load_custom_func(&kernel("softmax_bwd_rows", dtype), MODULE, PTX)?;
    let mut b = f.builder();
    p.push(&mut b);
    g.push(&mut b);
    dx.push(&mut b);
    candle_core::builder_arg!(b, n as i32, scale);
    // SAFETY: as above.
    unsafe { b.launch(per_row(len / n)) }.w()?;
    Ok((dx.wrap(dev), l1.shape().clone()))
}

pub fn swiglu(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
) -> Result<(CudaStorage, Shape)> {
    let dev = s1.device();
    let a = Act::of(s1, l1, "swiglu")?;
    let bv = Act::of(s2, l2, "swiglu")?;
    let dtype = same_dtype("swiglu", &[&a, &bv])?;
    let n = l1.shape().elem_count();
    let y = Buf::alloc(dev, dtype, n)?;
    let f = dev.get_or_load_custom_func(&kernel("swiglu", dtype), MODULE, PTX)?;
    let mut b = f.builder();
    a.push(&mut b);
    bv.push(&mut b);
    y.push(&mut b);
    candle_core::builder_arg!(b, n);
    // SAFETY: as above.
    unsafe { b.launch(elementwise(n)) }.w()?;
    Ok((y.wrap(dev), l1.shape().clone()))
}

#[allow(clippy::too_many_arguments)]
pub fn swiglu_bwd(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
) -> Result<(CudaStorage, Shape)> {
    let dev = s1.device();
    let a = Act::of(s1, l1, "swiglu bwd")?;
    let bv = Act::of(s2, l2, "swiglu bwd")?;
    let g = Act::of(s3, l3, "swiglu bwd")?;
    let dtype = same_dtype("swiglu bwd", &[&a, &bv, &g])?;
    let n = l1.shape().elem_count();
    let out = Buf::alloc(dev, dtype, 2 * n)?;
    let f = dev.get_or_load_custom_func(&kernel("swiglu_bwd", dtype), MODULE, PTX)?;
    let mut b = f.builder();
    a.push(&mut b);
    bv.push(&mut b);
    g.push(&mut b);
    out.push(&mut b);
    candle_core::builder_arg!(b, n);
    // SAFETY: as above.
    unsafe { b.launch(elementwise(n)) }.w()?;
    Ok((out.wrap(dev), Shape::from((2, n))))
}

/// `cos`/`sin` are the device tables `[positions, half]`, contiguous; the
/// kernel reads the rows for positions `pos..pos+t` in place. `x` holds rows
/// of `hd`, `per_pos` consecutive rows sharing a position.
#[allow(clippy::too_many_arguments)]
pub fn rope(
    s: &CudaStorage,
    l: &Layout,
    (t, per_pos, hd): (usize, usize, usize),
    cos: &Tensor,
    sin: &Tensor,
    half: usize,
    pos: usize,
    sign: f32,
) -> Result<(CudaStorage, Shape)> {
    let dev = s.device();
    let x = Act::of(s, l, "rope")?;
    let (cs, cl) = cos.storage_and_layout();
    let (ss, sl) = sin.storage_and_layout();
    let (Storage::Cuda(cs), Storage::Cuda(ss)) = (&*cs, &*ss) else {
        candle_core::bail!("rope: the tables are not on the GPU");
    };
    let rows = |o: usize| o + pos * half..o + (pos + t) * half;
    let c = cs.as_cuda_slice::<f32>()?.slice(rows(cl.start_offset()));
    let sn = ss.as_cuda_slice::<f32>()?.slice(rows(sl.start_offset()));
    let n = l.shape().elem_count();
    let rows = n / hd;
    let y = Buf::alloc(dev, x.dtype(), n)?;
    let f = dev.get_or_load_custom_func(&kernel("rope", x.dtype()), MODULE, PTX)?;
    let mut b = f.builder();
    x.push(&mut b);
    b.arg(&c);
    b.arg(&sn);
    y.push(&mut b);
    candle_core::builder_arg!(b, rows, t as i32, per_pos as i32, half as i32, sign);
    // SAFETY: as above.
    unsafe { b.launch(elementwise(rows * half)) }.w()?;
    Ok((y.wrap(dev), l.shape().clone()))
}

/// Target ids as the CPU kernel accepts them: u32 or i64.
enum Targets<'a> {
    U32(CudaView<'a, u32>),
    I64(CudaView<'a, i64>),
}

impl<'a> Targets<'a> {
    fn of(s: &'a CudaStorage, l: &Layout) -> Result<Self> {
        match s.dtype() {
            DType::U32 => Ok(Self::U32(view(s, l, "cross_entropy targets")?)),
            DType::I64 => Ok(Self::I64(view(s, l, "cross_entropy targets")?)),
            other => candle_core::bail!("cross_entropy: targets must be u32 or i64, got {other:?}"),
        }
    }
    /// The kernel name's suffix.
    fn suffix(&self) -> &'static str {
        match self {
            Self::U32(_) => "u32",
            Self::I64(_) => "i64",
        }
    }
    fn push<'b>(&'b self, b: &mut LaunchArgs<'b>) {
        match self {
            Self::U32(v) => b.arg(v),
            Self::I64(v) => b.arg(v),
        };
    }
}

pub fn cross_entropy(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
) -> Result<(CudaStorage, Shape)> {
    let dev = s1.device();
    let x = Act::of(s1, l1, "cross_entropy")?;
    let v = l1.dims()[1];
    let rows = l2.shape().elem_count();
    let loss = alloc(dev, rows)?;
    // Out-of-range targets are not checked on the device (the CPU kernel
    // checks them); the trainer's targets come from the tokenizer's range.
    let y = Targets::of(s2, l2)?;
    let name = kernel(&format!("cross_entropy_rows_{}", y.suffix()), x.dtype());
    let f = dev.get_or_load_custom_func(&name, MODULE, PTX)?;
    let mut b = f.builder();
    x.push(&mut b);
    y.push(&mut b);
    b.arg(&loss);
    candle_core::builder_arg!(b, v as i32);
    // SAFETY: as above.
    unsafe { b.launch(per_row(rows)) }.w()?;
    Ok((wrap(loss, dev), Shape::from(rows)))
}

#[allow(clippy::too_many_arguments)]
pub fn cross_entropy_bwd(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
) -> Result<(CudaStorage, Shape)> {
    let dev = s1.device();
    let x = Act::of(s1, l1, "cross_entropy bwd")?;
    let g = view::<f32>(s3, l3, "cross_entropy bwd")?;
    let v = l1.dims()[1];
    let rows = l2.shape().elem_count();
    let dx = Buf::alloc(dev, x.dtype(), l1.shape().elem_count())?;
    let y = Targets::of(s2, l2)?;
    let name = kernel(&format!("cross_entropy_bwd_rows_{}", y.suffix()), x.dtype());
    let f = dev.get_or_load_custom_func(&name, MODULE, PTX)?;
    let mut b = f.builder();
    x.push(&mut b);
    y.push(&mut b);
    b.arg(&g);
    dx.push(&mut b);
    candle_core::builder_arg!(b, v as i32);
    // SAFETY: as above.
    unsafe { b.launch(per_row(rows)) }.w()?;
    Ok((dx.wrap(dev), l1.shape().clone()))
}

/// `ADAMW_ELEMS` of fused.cu: elements per block of `adamw_multi`.
const ADAMW_ELEMS: usize = 2048;
/// 8-byte words per row of `adamw_multi`'s table (`AdamWChunk`).
const ADAMW_ROW: usize = 6;

/// Every update of [`crate::fused_adamw::update_in_place`] (checked there:
/// f32, contiguous, one CUDA device) as one launch of `adamw_multi`, which
/// reads a table of device pointers built here.
///
/// The kernel writes parameters and moments through pointers taken under
/// candle's read locks: candle has no public write lock for a tensor's
/// storage, and the launch is ordered on the device's one stream after every
/// op that produced or read these tensors and before any that follows, which
/// is all the exclusivity GPU memory needs (the host never touches it).
pub fn adamw_multi(updates: &[crate::fused_adamw::AdamWUpdate<'_>]) -> Result<()> {
    let Some(first) = updates.first() else {
        return Ok(());
    };
    let dev = first.param.device().as_cuda_device()?;
    let stream = dev.cuda_stream();
    let locked: Vec<_> = updates
        .iter()
        .map(|u| [u.param, u.grad, u.moments].map(|t| t.storage_and_layout()))
        .collect();
    let mut table: Vec<u64> = Vec::with_capacity(ADAMW_ROW * updates.len());
    let mut syncs = Vec::with_capacity(3 * updates.len());
    let mut blocks = 0u64;
    let mut written = std::collections::HashSet::new();
    for (u, tensors) in updates.iter().zip(&locked) {
        let n = u.param.elem_count();
        if n == 0 {
            continue;
        }
        let mut ptrs = [0u64; 3];
        for (ptr, (storage, layout)) in ptrs.iter_mut().zip(tensors) {
            let Storage::Cuda(s) = &**storage else {
                candle_core::bail!("adamw: a tensor is not on the GPU");
            };
            let Some((offset, _)) = layout.contiguous_offsets() else {
                candle_core::bail!("adamw: a tensor is not contiguous");
            };
            let (base, sync) = s.as_cuda_slice::<f32>()?.device_ptr(&stream);
            *ptr = base + (offset * std::mem::size_of::<f32>()) as u64;
            syncs.push(sync);
        }
        // Two rows writing one buffer would race (and update it twice).
        if !written.insert(ptrs[0]) || !written.insert(ptrs[2]) {
            candle_core::bail!("adamw: a parameter or its moments appear twice in one step");
        }
        table.extend_from_slice(&ptrs);
        table.extend_from_slice(&[n as u64, blocks, u.step.decay.to_bits() as u64]);
        blocks += n.div_ceil(ADAMW_ELEMS) as u64;
    }
    let rows = table.len() / ADAMW_ROW;
    if rows == 0 {
        return Ok(());
    }
    let Ok(grid) = u32::try_from(blocks) else {
        candle_core::bail!("adamw: {blocks} blocks are more than one launch takes");
    };
    let table = dev.clone_htod(&table)?;
    let f = dev.get_or_load_custom_func("adamw_multi", MODULE, PTX)?;
    let mut b = f.builder();
    b.arg(&table);
    let s = first.step;
    candle_core::builder_arg!(b, rows as i32, s.b1, s.b2, s.bc2_sqrt, s.step_size, s.eps);
    let cfg = LaunchConfig {
        grid_dim: (grid, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: argument types and order match the kernel's signature; the
    // table's rows are laid out as its `AdamWChunk` and point at live f32
    // buffers of the sizes given, which the locks above keep alive.
    unsafe { b.launch(cfg) }.w()?;
    drop(syncs);
    Ok(())
}

// -------------------------- attention (kernels/attention.cu, attention_tc.cu)

const ATTENTION_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/attention.ptx"));
const ATTENTION_MODULE: &str = "frugal_attention";
const ATTENTION_TC_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/attention_tc.ptx"));
const ATTENTION_TC_MODULE: &str = "frugal_attention_tc";
/// `FA_ROWS` and `FA_MAXD` of attention.cu: rows (warps) per block, largest head dim.
const FA_ROWS: usize = 8;
const FA_MAXD: usize = crate::fused_attention::CUDA_F32_MAX_HD;
/// attention_tc.cu: `TC_WARPS` warps of 16 rows per block; `TC_MAXD`.
const TC_WARPS: usize = 4;
const TC_MAXD: usize = crate::fused_attention::CUDA_BF16_MAX_HD;

/// The kernels for one activation dtype: f32 (SIMT) or bf16 (tensor cores).
struct AttentionKernels {
    module: &'static str,
    ptx: &'static str,
    prefix: &'static str,
    /// Rows (queries, or keys) per block, and threads per block.
    rows: usize,
    threads: u32,
}

impl AttentionKernels {
    fn of(d: &crate::fused_attention::Dims, dtype: DType) -> Result<Self> {
        match dtype {
            DType::F32 if d.hd <= FA_MAXD => Ok(Self {
                module: ATTENTION_MODULE,
                ptx: ATTENTION_PTX,
                prefix: "flash_",
                rows: FA_ROWS,
                threads: 32 * FA_ROWS as u32,
            }),
            DType::BF16 if d.hd.is_multiple_of(16) && d.hd <= TC_MAXD => Ok(Self {
                module: ATTENTION_TC_MODULE,
                ptx: ATTENTION_TC_PTX,
                prefix: "flash_tc_",
                rows: 16 * TC_WARPS,
                threads: 32 * TC_WARPS as u32,
            }),
            DType::F32 | DType::BF16 => candle_core::bail!(
                "flash attention: head dim {} is not supported by the CUDA kernels for {dtype:?} \
                 (f32: up to {FA_MAXD}; bf16: multiples of 16 up to {TC_MAXD})",
                d.hd
            ),
            other => candle_core::bail!("flash attention: expected f32 or bf16, got {other:?}"),
        }
    }

    /// The full name of this set's kernel `name`.
    fn name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// One block per `self.rows` rows of each head.
    fn per_rows(&self, rows: usize, bh: usize) -> Result<LaunchConfig> {
        Ok(LaunchConfig {
            grid_dim: (
                rows.div_ceil(self.rows) as u32,
                grid_y(bh, "flash attention (batch × heads)")?,
                1,
            ),
            block_dim: (self.threads, 1, 1),
            shared_mem_bytes: 0,
        })
    }
}

/// The q, k, v (y, dy) activations of one call, of one dtype.
fn attention_inputs<'a>(
    inputs: &[(&'a CudaStorage, &Layout)],
    what: &str,
) -> Result<(Vec<Act<'a>>, DType)> {
    let acts = inputs
        .iter()
        .map(|(s, l)| Act::of(s, l, what))
        .collect::<Result<Vec<_>>>()?;
    let dtype = same_dtype(what, &acts.iter().collect::<Vec<_>>())?;
    Ok((acts, dtype))
}

/// The output `y` of `fused_attention`'s op, in q's layout, for the dims
/// `d` the op checked.
#[allow(clippy::too_many_arguments)]
pub fn flash_attention(
    d: &crate::fused_attention::Dims,
    sq: &CudaStorage,
    lq: &Layout,
    sk: &CudaStorage,
    lk: &Layout,
    sv: &CudaStorage,
    lv: &Layout,
    scale: f32,
) -> Result<(CudaStorage, Shape)> {
    let dev = sq.device();
    let (acts, dtype) = attention_inputs(&[(sq, lq), (sk, lk), (sv, lv)], "flash attention")?;
    let kernels = AttentionKernels::of(d, dtype)?;
    let y = Buf::alloc(dev, dtype, d.bh * d.t * d.hd)?;
    let f = dev.get_or_load_custom_func(&kernels.name("fwd"), kernels.module, kernels.ptx)?;
    let mut b = f.builder();
    for a in &acts {
        a.push(&mut b);
    }
    y.push(&mut b);
    candle_core::builder_arg!(b, d.t as i32, d.s as i32, d.hd as i32, d.nh as i32, scale);
    // SAFETY: argument types and order match the kernel's signature.
    unsafe { b.launch(kernels.per_rows(d.t, d.bh)?) }.w()?;
    Ok((y.wrap(dev), lq.shape().clone()))
}

/// The packed `[BH·T + 2·BH·S, hd]` gradients (dq, then dk, then dv) of
/// `fused_attention`'s backward op,
/// from (q, k, v, y, dy): per-row statistics, then dq by query rows and
/// dk, dv by key rows (no atomics, so the result is deterministic).
pub fn flash_attention_bwd(
    d: &crate::fused_attention::Dims,
    inputs: [(&CudaStorage, &Layout); 5],
    scale: f32,
) -> Result<(CudaStorage, Shape)> {
    let [(sq, lq), _, _, (_, ly), (_, lg)] = inputs;
    let dev = sq.device();
    if ly.dims() != lq.dims() || lg.dims() != lq.dims() {
        candle_core::bail!("flash attention bwd: y and dy must have q's shape");
    }
    let (acts, dtype) = attention_inputs(&inputs, "flash attention bwd")?;
    let [q, k, v, y, dy] = &acts[..] else {
        unreachable!("five inputs")
    };
    let kernels = AttentionKernels::of(d, dtype)?;
    let (t, s, hd, nh) = (d.t as i32, d.s as i32, d.hd as i32, d.nh as i32);

    let stats = alloc(dev, 2 * d.bh * d.t)?;
    let f = dev.get_or_load_custom_func(&kernels.name("stats"), kernels.module, kernels.ptx)?;
    let mut b = f.builder();
    for a in [q, k, y, dy] {
        a.push(&mut b);
    }
    b.arg(&stats);
    candle_core::builder_arg!(b, t, s, hd, nh, scale);
    // SAFETY: as above.
    unsafe { b.launch(kernels.per_rows(d.t, d.bh)?) }.w()?;

    let rows = d.bh * (d.t + 2 * d.s);
    let out = Buf::alloc(dev, dtype, rows * d.hd)?;
    for (name, launch_rows) in [("bwd_dq", d.t), ("bwd_dkv", d.s)] {
        let f = dev.get_or_load_custom_func(&kernels.name(name), kernels.module, kernels.ptx)?;
        let mut b = f.builder();
        for a in [q, k, v, dy] {
            a.push(&mut b);
        }
        b.arg(&stats);
        out.push(&mut b);
        candle_core::builder_arg!(b, t, s, hd, nh, scale);
        // SAFETY: as above; dq writes every row of the dq part, dkv every
        // row of the dk and dv parts.
        unsafe { b.launch(kernels.per_rows(launch_rows, d.bh)?) }.w()?;
    }
    Ok((out.wrap(dev), Shape::from((rows, d.hd))))
}

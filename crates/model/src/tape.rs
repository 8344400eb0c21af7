//! A backward pass for the training step that does not go through candle's
//! `GradStore`: the forward records its nodes on a tape, the backward runs
//! them in reverse and accumulates each gradient by *moving* the first
//! contribution into place.
//!
//! Why: candle's `Tensor::backward` gives every node input a zero tensor and
//! then adds the contribution into it (`or_insert` + `add`), even when the
//! input has a single consumer, as nearly every activation here has. That is
//! four times the bytes of every activation and every weight per step in
//! memsets and adds (docs/gpu.md, "bookkeeping floor"), and two launches per
//! node on a GPU. The training graph of the fused Llama is made only of
//! frugal's custom ops (whose `bwd` the tape calls directly), one embedding
//! lookup, a reshape, a mean and (under bf16) one cast per weight, so it can
//! be replayed without candle's autograd. Sums are formed in the same order
//! as candle forms them, so the gradients are bit-identical to
//! `loss.backward()` (tested in `llama::tests`).
//!
//! Two things only a tape can do: a weight's bf16 cast is a node of its own
//! whose output the projection's forward and backward share ([`to_dtype`];
//! off the tape the projection casts it again in its backward), and an op whose input
//! already holds a gradient can add its own in the same kernel ([`BwdInto`],
//! RMSNorm on the residual stream) instead of a separate add.
//!
//! Recording is scoped to one thread ([`record`]): the fused wrappers
//! ([`crate::fused_linear::linear`] and the others) call [`op2`]/[`op3`],
//! which apply the op to detached inputs and log it while a recording is on,
//! and are plain `apply_op2`/`apply_op3` otherwise. An input that is neither
//! a variable nor the output of a recorded node is an error, not a silently
//! missing gradient: it means an op outside the tape sits on the path.

use candle_core::backprop::GradStore;
use candle_core::{CustomOp2, CustomOp3, Result, Shape, Tensor, TensorId};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

type Op2 = Arc<Box<dyn CustomOp2 + Send + Sync>>;
type Op3 = Arc<Box<dyn CustomOp3 + Send + Sync>>;

/// A two-input op whose backward can add its first input's gradient to the
/// sum that input already holds in the same kernel, instead of a separate
/// add that reads both and writes a third tensor. RMSNorm's does: its input
/// is the residual stream, whose other consumer (the residual add after the
/// sublayer) runs its backward first.
pub(crate) trait BwdInto: Send + Sync {
    /// `[sum + d(a), d(b)]`, the values `bwd` and a separate add would give.
    fn bwd_into(&self, a: &Tensor, b: &Tensor, g: &Tensor, sum: Tensor) -> Result<[Tensor; 2]>;
}

/// One recorded node. Inputs are kept detached (as the op saw them), keyed
/// by the id the gradient belongs to: the variable's own id for weights.
enum Node {
    Op2 {
        op: Op2,
        /// The same op, where its backward can take the sum ([`op2_into`]).
        into: Option<Arc<dyn BwdInto>>,
        inputs: [Tensor; 2],
        keys: [TensorId; 2],
        out: Tensor,
    },
    Op3 {
        op: Op3,
        inputs: [Tensor; 3],
        keys: [TensorId; 3],
        out: Tensor,
    },
    /// Rows `ids` of `table`, reshaped to `out`'s shape.
    Embedding {
        table: TensorId,
        table_like: Tensor,
        ids: Tensor,
        out: TensorId,
    },
    Reshape {
        input: TensorId,
        shape: Shape,
        out: TensorId,
    },
    /// A cast of `input_like` (a weight cast once for both passes).
    Cast {
        input: TensorId,
        input_like: Tensor,
        out: TensorId,
    },
    MeanAll {
        input: TensorId,
        shape: Shape,
        out: TensorId,
    },
}

impl Node {
    /// The id of the node's output, whose gradient it takes.
    fn out_id(&self) -> TensorId {
        match self {
            Node::Op2 { out, .. } | Node::Op3 { out, .. } => out.id(),
            Node::Embedding { out, .. }
            | Node::Reshape { out, .. }
            | Node::Cast { out, .. }
            | Node::MeanAll { out, .. } => *out,
        }
    }

    /// The inputs a gradient flows to, by key, where they are kept (a
    /// reshape's and a mean's pass the same gradient on).
    fn inputs(&self) -> Vec<(TensorId, &Tensor)> {
        match self {
            Node::Op2 { inputs, keys, .. } => keys.iter().copied().zip(inputs).collect(),
            Node::Op3 { inputs, keys, .. } => keys.iter().copied().zip(inputs).collect(),
            Node::Embedding {
                table, table_like, ..
            } => vec![(*table, table_like)],
            Node::Cast {
                input, input_like, ..
            } => vec![(*input, input_like)],
            Node::Reshape { .. } | Node::MeanAll { .. } => Vec::new(),
        }
    }
}

#[derive(Default)]
struct Recording {
    nodes: Vec<Node>,
    produced: HashSet<TensorId>,
    /// > 0 inside [`untaped`]: helper computations of a node's wrapper.
    untaped: usize,
}

thread_local! {
    static RECORDING: RefCell<Option<Recording>> = const { RefCell::new(None) };
}

/// The nodes of one recorded forward.
pub struct Tape {
    nodes: Vec<Node>,
}

/// Ends the recording when [`record`] returns, by value or by error.
struct Stop;

impl Drop for Stop {
    fn drop(&mut self) {
        RECORDING.with(|r| r.borrow_mut().take());
    }
}

/// Runs `f` with this thread's recording on and returns its result with the
/// tape of what it computed.
pub fn record<R>(f: impl FnOnce() -> Result<R>) -> Result<(R, Tape)> {
    RECORDING.with(|r| {
        let mut r = r.borrow_mut();
        if r.is_some() {
            candle_core::bail!("tape: a recording is already running on this thread");
        }
        *r = Some(Recording::default());
        Ok(())
    })?;
    let _stop = Stop;
    let value = f()?;
    let recording = RECORDING.with(|r| r.borrow_mut().take());
    let nodes = recording.map(|r| r.nodes).unwrap_or_default();
    Ok((value, Tape { nodes }))
}

/// Whether the ops called now are recorded.
pub(crate) fn recording() -> bool {
    RECORDING.with(|r| r.borrow().as_ref().is_some_and(|r| r.untaped == 0))
}

/// Whether a node applied to `inputs` now will need its backward: candle
/// tracks one of them, or the tape is recording.
pub(crate) fn needs_backward(inputs: &[&Tensor]) -> bool {
    recording() || inputs.iter().any(|t| t.track_op())
}

/// Runs `f` (a wrapper's helper computations on detached inputs, which are
/// not nodes of the graph) without recording.
pub(crate) fn untaped<R>(f: impl FnOnce() -> Result<R>) -> Result<R> {
    let set = |delta: isize| {
        RECORDING.with(|r| {
            if let Some(r) = r.borrow_mut().as_mut() {
                r.untaped = r.untaped.saturating_add_signed(delta);
            }
        })
    };
    set(1);
    let out = f();
    set(-1);
    out
}

/// The key of a recorded node's input, checking that the gradient can reach
/// it: a variable, or the output of an earlier node.
fn key(t: &Tensor, what: &str) -> Result<TensorId> {
    if t.is_variable() {
        return Ok(t.id());
    }
    let known = RECORDING.with(|r| {
        r.borrow()
            .as_ref()
            .is_some_and(|r| r.produced.contains(&t.id()))
    });
    if !known {
        candle_core::bail!(
            "tape: an input of {what} is neither a variable nor the output of a recorded op \
             (an op outside the tape is on the gradient path)"
        );
    }
    Ok(t.id())
}

fn push(node: Node) {
    RECORDING.with(|r| {
        if let Some(r) = r.borrow_mut().as_mut() {
            r.produced.insert(node.out_id());
            r.nodes.push(node);
        }
    })
}

/// `a.apply_op2(b, op)`, recorded while a recording is on.
pub(crate) fn op2<C: CustomOp2 + Send + Sync + 'static>(
    a: &Tensor,
    b: &Tensor,
    op: C,
) -> Result<Tensor> {
    record_op2(a, b, op, None)
}

/// [`op2`] for an op whose backward adds into the sum its first input's
/// gradient already has ([`BwdInto`]).
pub(crate) fn op2_into<C: CustomOp2 + BwdInto + Clone + 'static>(
    a: &Tensor,
    b: &Tensor,
    op: C,
) -> Result<Tensor> {
    let into: Arc<dyn BwdInto> = Arc::new(op.clone());
    record_op2(a, b, op, Some(into))
}

fn record_op2<C: CustomOp2 + Send + Sync + 'static>(
    a: &Tensor,
    b: &Tensor,
    op: C,
    into: Option<Arc<dyn BwdInto>>,
) -> Result<Tensor> {
    if !recording() {
        return a.apply_op2(b, op);
    }
    let keys = [key(a, op.name())?, key(b, op.name())?];
    let op: Op2 = Arc::new(Box::new(op));
    let inputs = [a.detach(), b.detach()];
    let out = untaped(|| inputs[0].apply_op2_arc(&inputs[1], op.clone()))?;
    push(Node::Op2 {
        op,
        into,
        inputs,
        keys,
        out: out.clone(),
    });
    Ok(out)
}

/// `a.apply_op3(b, c, op)`, recorded while a recording is on.
pub(crate) fn op3<C: CustomOp3 + Send + Sync + 'static>(
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    op: C,
) -> Result<Tensor> {
    if !recording() {
        return a.apply_op3(b, c, op);
    }
    let keys = [key(a, op.name())?, key(b, op.name())?, key(c, op.name())?];
    let op: Op3 = Arc::new(Box::new(op));
    let inputs = [a.detach(), b.detach(), c.detach()];
    let out = untaped(|| inputs[0].apply_op3_arc(&inputs[1], &inputs[2], op.clone()))?;
    push(Node::Op3 {
        op,
        inputs,
        keys,
        out: out.clone(),
    });
    Ok(out)
}

/// Rows `ids` (any shape) of `table [V, d]`, shaped `[ids.., d]`.
pub(crate) fn embedding(table: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let mut shape = ids.dims().to_vec();
    shape.push(table.dim(1)?);
    let flat = ids.flatten_all()?;
    if !recording() {
        return table.index_select(&flat, 0)?.reshape(shape);
    }
    let key = key(table, "the embedding")?;
    let table_like = table.detach();
    let out = table_like.index_select(&flat, 0)?.reshape(shape)?;
    let node = Node::Embedding {
        table: key,
        table_like,
        ids: flat,
        out: out.id(),
    };
    push(node);
    Ok(out)
}

/// `t.reshape(shape)`, recorded while a recording is on.
pub(crate) fn reshape<S: candle_core::shape::ShapeWithOneHole>(
    t: &Tensor,
    shape: S,
) -> Result<Tensor> {
    if !recording() {
        return t.reshape(shape);
    }
    let input = key(t, "a reshape")?;
    let out = t.detach().reshape(shape)?;
    let node = Node::Reshape {
        input,
        shape: t.shape().clone(),
        out: out.id(),
    };
    push(node);
    Ok(out)
}

/// `t.to_dtype(dtype)`, recorded while a recording is on. Its backward
/// casts the gradient back to `t`'s dtype, a no-op where the consumer
/// already gives it so (the projections give f32 weight gradients for a
/// bf16 weight operand).
pub(crate) fn to_dtype(t: &Tensor, dtype: candle_core::DType) -> Result<Tensor> {
    if !recording() {
        return t.to_dtype(dtype);
    }
    let input = key(t, "a cast")?;
    let input_like = t.detach();
    let out = input_like.to_dtype(dtype)?;
    push(Node::Cast {
        input,
        input_like,
        out: out.id(),
    });
    Ok(out)
}

/// `t.mean_all()`, recorded while a recording is on.
pub(crate) fn mean_all(t: &Tensor) -> Result<Tensor> {
    if !recording() {
        return t.mean_all();
    }
    let input = key(t, "a mean")?;
    let out = t.detach().mean_all()?;
    let node = Node::MeanAll {
        input,
        shape: t.shape().clone(),
        out: out.id(),
    };
    push(node);
    Ok(out)
}

/// Adds `grad` into the gradient of `key`, moving it into place when it is
/// the first (candle would add it to zeros: the same value).
fn accumulate(
    grads: &mut HashMap<TensorId, Tensor>,
    key: TensorId,
    grad: Option<Tensor>,
) -> Result<()> {
    let Some(grad) = grad else { return Ok(()) };
    match grads.remove(&key) {
        Some(sum) => grads.insert(key, sum.add(&grad)?),
        None => grads.insert(key, grad),
    };
    Ok(())
}

impl Tape {
    /// The number of recorded nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Bytes of memory traffic the backward spends on sums of gradients,
    /// and on the zeros an embedding table's rows are added into when it
    /// has no other gradient. A separate add reads two tensors and writes
    /// one, for every contribution after a tensor's first (in the order the
    /// backward meets them); a sum folded into a backward kernel
    /// ([`BwdInto`]) costs one read. candle's backward spends 4 × the bytes
    /// of every node input instead (a memset, then an add for each
    /// contribution).
    pub fn accumulation_bytes(&self) -> u64 {
        let bytes = |t: &Tensor| (t.elem_count() * t.dtype().size_in_bytes()) as u64;
        let mut has_grad = HashSet::new();
        let mut total = 0;
        for node in self.nodes.iter().rev() {
            let folds = matches!(node, Node::Op2 { into: Some(_), .. });
            for (k, (key, t)) in node.inputs().into_iter().enumerate() {
                let first = has_grad.insert(key);
                total += match node {
                    Node::Embedding { .. } if first => bytes(t),
                    _ if first => 0,
                    _ if folds && k == 0 => bytes(t),
                    _ => 3 * bytes(t),
                };
            }
        }
        total
    }

    /// The gradients of `scale · output` (a scalar the tape computed) with
    /// respect to every variable on its path, as candle's `backward` gives
    /// them. Each node's saved tensors are freed as soon as it has run.
    pub fn backward(mut self, output: &Tensor, scale: f64) -> Result<GradStore> {
        if self.nodes.last().map(Node::out_id) != Some(output.id()) {
            candle_core::bail!(
                "tape: the output is not the last recorded op's (nothing would get a gradient)"
            );
        }
        let mut grads = HashMap::new();
        grads.insert(output.id(), output.ones_like()?.affine(scale, 0.0)?);
        while let Some(node) = self.nodes.pop() {
            match node {
                Node::Op2 {
                    op,
                    into,
                    inputs,
                    keys,
                    out,
                } => {
                    let Some(g) = grads.remove(&out.id()) else {
                        continue;
                    };
                    let g = g.contiguous()?;
                    let sum = match into {
                        Some(into) => grads.remove(&keys[0]).map(|sum| (into, sum)),
                        None => None,
                    };
                    if let Some((into, sum)) = sum {
                        let [ga, gb] = into.bwd_into(&inputs[0], &inputs[1], &g, sum)?;
                        grads.insert(keys[0], ga);
                        accumulate(&mut grads, keys[1], Some(gb))?;
                        continue;
                    }
                    let (ga, gb) = op.bwd(&inputs[0], &inputs[1], &out, &g)?;
                    accumulate(&mut grads, keys[0], ga)?;
                    accumulate(&mut grads, keys[1], gb)?;
                }
                Node::Op3 {
                    op,
                    inputs,
                    keys,
                    out,
                } => {
                    let Some(g) = grads.remove(&out.id()) else {
                        continue;
                    };
                    let (ga, gb, gc) =
                        op.bwd(&inputs[0], &inputs[1], &inputs[2], &out, &g.contiguous()?)?;
                    accumulate(&mut grads, keys[0], ga)?;
                    accumulate(&mut grads, keys[1], gb)?;
                    accumulate(&mut grads, keys[2], gc)?;
                }
                Node::Embedding {
                    table,
                    table_like,
                    ids,
                    out,
                } => {
                    let Some(g) = grads.remove(&out) else {
                        continue;
                    };
                    let g = g.reshape((ids.elem_count(), table_like.dim(1)?))?;
                    // As candle's index_select backward: rows added into the
                    // gradient the table already has (the tied head's).
                    let sum = match grads.remove(&table) {
                        Some(sum) => sum,
                        None => table_like.zeros_like()?,
                    };
                    grads.insert(table, sum.index_add(&ids, &g, 0)?);
                }
                Node::Reshape { input, shape, out } => {
                    let Some(g) = grads.remove(&out) else {
                        continue;
                    };
                    accumulate(&mut grads, input, Some(g.reshape(shape)?))?;
                }
                Node::Cast {
                    input,
                    input_like,
                    out,
                } => {
                    let Some(g) = grads.remove(&out) else {
                        continue;
                    };
                    let g = g.to_dtype(input_like.dtype())?;
                    accumulate(&mut grads, input, Some(g))?;
                }
                Node::MeanAll { input, shape, out } => {
                    let Some(g) = grads.remove(&out) else {
                        continue;
                    };
                    let n = shape.elem_count() as f64;
                    let g = g.affine(1.0 / n, 0.0)?.broadcast_as(shape)?;
                    accumulate(&mut grads, input, Some(g))?;
                }
            }
        }
        let mut store = GradStore::default();
        for (id, g) in grads {
            store.insert_id(id, g);
        }
        Ok(store)
    }
}

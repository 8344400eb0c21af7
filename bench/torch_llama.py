#!/usr/bin/env python3
"""PyTorch reference of frugal's Llama model and training step.

Trains the frugal architecture on random tokens and prints ONE JSON line:

    {"impl": "torch", "params": ..., "tokens_per_s": ..., "step_ms_median": ...,
     "loss_first": ..., "loss_last": ..., "threads": ..., "torch": "2.11.0..."}

Same interface as `frugal bench train`:

    python bench/torch_llama.py --vocab 8192 --d-model 192 --layers 8 --heads 6 \
        --batch 8 --seq 256 --steps 6 --warmup 2 --threads 2 --seed 0

The model matches frugal exactly (crates/model): Hugging Face Llama parameter
names, output head tied to the embedding, no biases, RMSNorm eps 1e-5 in f32,
RoPE (rotate_half convention, theta 10000), optional grouped-query attention,
causal softmax attention scaled by 1/sqrt(head_dim), SwiGLU MLP with hidden
8/3·d rounded up to a multiple of 256 unless given.  Init: normal(0, 0.02) for
the embedding and every Linear, o_proj/down_proj 0.02/sqrt(2·layers), norms 1.

Training step: mean next-token cross-entropy, backward, global grad-norm clip
at 1.0, AdamW (betas 0.9/0.95, eps 1e-8, weight decay 0.1 on 2-D Linear
weights only, none on the embedding and norms).

Data: one batch of B×(T+1) uniform random tokens drawn from a generator
seeded with --seed, reused every step (--data fixed, the default, so the loss
falls and shows the step learns) or a fresh batch per step (--data fresh).
Inputs are tokens[:, :T], targets tokens[:, 1:]: a step processes B·T tokens.

Timing: every step (zero_grad, forward, backward, clip, optimizer step) is
timed with a monotonic clock (after a device synchronise on CUDA); the first
--warmup steps are dropped and step_ms_median is the median of the --steps
timed ones; tokens_per_s = B·T / median step time.  loss_first is the loss
of the very first step (warmup included), loss_last that of the final step.

Other modes: --check-hf compares this model's logits and loss with Hugging
Face's LlamaForCausalLM holding the same weights; --init-from FILE starts from
a safetensors file with Hugging Face names (e.g. a frugal export);
--save FILE writes the initial weights the same way.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import cuda_stubs  # noqa: E402  (scripts/cuda_stubs.py)


def swiglu_hidden(d_model):
    """8/3·d rounded up to a multiple of 256 (frugal's swiglu_hidden)."""
    h = -(-8 * d_model // 3)
    return -(-h // 256) * 256


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vocab", type=int, required=True)
    p.add_argument("--d-model", type=int, required=True)
    p.add_argument("--layers", type=int, required=True)
    p.add_argument("--heads", type=int, required=True)
    p.add_argument("--kv-heads", type=int, default=None, help="default: --heads")
    p.add_argument("--ffn", type=int, default=None, help="default: 8/3·d rounded up to 256")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--threads", type=int, default=None, help="default: OMP_NUM_THREADS or 2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--dtype", choices=["f32", "bf16"], default="f32",
                   help="bf16 = autocast to bfloat16 (parameters and optimizer stay f32)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--untied", action="store_true", help="separate output head (frugal's --untied)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--data", choices=["fixed", "fresh"], default="fixed")
    p.add_argument("--attn", choices=["sdpa", "math"], default="sdpa",
                   help="sdpa = F.scaled_dot_product_attention (fused); math = explicit softmax(QK^T)V")
    p.add_argument("--init-from", default=None, help="safetensors file with HF names")
    p.add_argument("--save", default=None, help="write the initial weights (safetensors) and exit")
    p.add_argument("--check-hf", action="store_true",
                   help="compare logits/loss with transformers' LlamaForCausalLM and exit")
    a = p.parse_args(argv)
    if a.kv_heads is None:
        a.kv_heads = a.heads
    if a.ffn is None:
        a.ffn = swiglu_hidden(a.d_model)
    if a.threads is None:
        a.threads = int(os.environ.get("OMP_NUM_THREADS", "2") or 2)
    if a.d_model % a.heads or (a.d_model // a.heads) % 2 or a.heads % a.kv_heads:
        p.error("need d_model % heads == 0, even head_dim, heads % kv_heads == 0")
    if a.steps < 1 or a.warmup < 0:
        p.error("need --steps >= 1 and --warmup >= 0")
    return a


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    cuda_stubs.ensure_path()
    # OpenMP reads these once, at start-up: set them before importing torch.
    # PASSIVE stops idle OpenMP threads from spinning on the only other vCPU.
    os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("MKL_NUM_THREADS", str(ARGS.threads))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


# --------------------------------------------------------------- model ----
class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        # Hugging Face's LlamaRMSNorm: normalise in f32, scale after the cast back.
        dtype = x.dtype
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(dtype)


def rope_tables(seq, head_dim, theta, device):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim))
    t = torch.arange(seq, device=device, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)  # [T, head_dim]
    return emb.cos(), emb.sin()


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x, cos, sin):
    # x: [B, H, T, hd]; cos/sin: [T, hd]
    return x * cos + rotate_half(x) * sin


class Attention(nn.Module):
    def __init__(self, d, heads, kv_heads, attn="sdpa"):
        super().__init__()
        self.heads, self.kv_heads, self.hd = heads, kv_heads, d // heads
        self.attn = attn
        self.q_proj = nn.Linear(d, heads * self.hd, bias=False)
        self.k_proj = nn.Linear(d, kv_heads * self.hd, bias=False)
        self.v_proj = nn.Linear(d, kv_heads * self.hd, bias=False)
        self.o_proj = nn.Linear(heads * self.hd, d, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.heads, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.kv_heads, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.kv_heads, self.hd).transpose(1, 2)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        rep = self.heads // self.kv_heads
        if rep > 1:  # query head h uses kv head h // rep (HF repeat_kv)
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        if self.attn == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = (q @ k.transpose(-2, -1)) / math.sqrt(self.hd)
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            s = s.masked_fill(mask, float("-inf"))
            y = torch.softmax(s.float(), dim=-1).to(q.dtype) @ v
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.gate_proj = nn.Linear(d, hidden, bias=False)
        self.up_proj = nn.Linear(d, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg["d_model"], cfg["rms_eps"])
        self.self_attn = Attention(cfg["d_model"], cfg["heads"], cfg["kv_heads"], cfg["attn"])
        self.post_attention_layernorm = RMSNorm(cfg["d_model"], cfg["rms_eps"])
        self.mlp = MLP(cfg["d_model"], cfg["ffn"])

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nn.Module):
    """Holds `embed_tokens`, `layers`, `norm`: the `model.` prefix of HF names."""

    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocab"], cfg["d_model"])
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg["layers"]))
        self.norm = RMSNorm(cfg["d_model"], cfg["rms_eps"])


class FrugalLlama(nn.Module):
    def __init__(self, vocab, d_model, layers, heads, kv_heads=None, ffn=None,
                 rope_theta=10000.0, rms_eps=1e-5, attn="sdpa", tied=True):
        super().__init__()
        self.cfg = dict(vocab=vocab, d_model=d_model, layers=layers, heads=heads,
                        kv_heads=kv_heads or heads, ffn=ffn or swiglu_hidden(d_model),
                        rope_theta=rope_theta, rms_eps=rms_eps, attn=attn)
        self.model = Decoder(self.cfg)
        # Untied: a separate head, HF's name for it (frugal's --untied).
        self.lm_head = None if tied else nn.Linear(d_model, vocab, bias=False)
        self._rope = {}

    def reset_parameters(self, seed):
        g = torch.Generator().manual_seed(seed)
        std = 0.02
        resid_std = 0.02 / math.sqrt(2 * self.cfg["layers"])
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("layernorm.weight") or name == "model.norm.weight":
                    p.fill_(1.0)
                else:
                    s = resid_std if ("o_proj" in name or "down_proj" in name) else std
                    p.copy_(torch.empty(p.shape).normal_(0.0, s, generator=g))

    def rope(self, T, device):
        key = (T, str(device))
        if key not in self._rope:
            hd = self.cfg["d_model"] // self.cfg["heads"]
            self._rope[key] = rope_tables(T, hd, self.cfg["rope_theta"], device)
        return self._rope[key]

    def forward(self, ids):
        cos, sin = self.rope(ids.shape[1], ids.device)
        x = self.model.embed_tokens(ids)
        for blk in self.model.layers:
            x = blk(x, cos, sin)
        x = self.model.norm(x)
        head = self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        return x @ head.t()


def param_count(model):
    return sum(p.numel() for p in model.parameters())  # a tied embedding once


def make_optimizer(model, lr, weight_decay):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        # Linear weights only: 2-D and not the (tied) embedding.
        (decay if p.dim() == 2 and "embed_tokens" not in name else no_decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.95), eps=1e-8)


def lm_loss(logits, targets):
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))


# ------------------------------------------------------------- helpers ----
def load_hf_names(model, path):
    from safetensors.torch import load_file

    sd = load_file(path)
    sd.pop("lm_head.weight", None)  # tied: ignore an explicit copy
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise SystemExit(f"{path}: missing {missing}, unexpected {unexpected}")


def save_hf_names(model, path):
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, path)


def check_hf(model, args):
    """Logits and loss of this model vs transformers' LlamaForCausalLM."""
    from transformers import LlamaConfig, LlamaForCausalLM

    c = model.cfg
    hf_cfg = LlamaConfig(
        vocab_size=c["vocab"], hidden_size=c["d_model"], intermediate_size=c["ffn"],
        num_hidden_layers=c["layers"], num_attention_heads=c["heads"],
        num_key_value_heads=c["kv_heads"], hidden_act="silu",
        max_position_embeddings=max(2048, args.seq), rms_norm_eps=c["rms_eps"],
        rope_theta=c["rope_theta"], tie_word_embeddings=True, attention_bias=False,
        mlp_bias=False, torch_dtype="float32")
    hf = LlamaForCausalLM(hf_cfg).eval()
    missing, unexpected = hf.load_state_dict(model.state_dict(), strict=False)
    missing = [m for m in missing if m != "lm_head.weight"]
    assert not missing and not unexpected, (missing, unexpected)
    hf.tie_weights()
    g = torch.Generator().manual_seed(args.seed + 1)
    toks = torch.randint(0, c["vocab"], (2, args.seq + 1), generator=g)
    model.eval()
    with torch.no_grad():
        ours = model(toks[:, :-1])
        theirs = hf(toks[:, :-1]).logits
    diff = (ours - theirs).abs().max().item()
    l1, l2 = lm_loss(ours, toks[:, 1:]).item(), lm_loss(theirs, toks[:, 1:]).item()
    ok = diff < 1e-4 and abs(l1 - l2) < 1e-5
    print(json.dumps({"check": "hf", "ok": ok, "max_abs_logit_diff": diff,
                      "loss_ours": l1, "loss_hf": l2, "transformers":
                      __import__("transformers").__version__}))
    return ok


# ---------------------------------------------------------------- main ----
def _vm_kb(field):
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def main(args):
    rss_import_kb = _vm_kb("VmHWM")  # torch's CUDA build costs ~0.5 GB before any tensor
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    model = FrugalLlama(args.vocab, args.d_model, args.layers, args.heads,
                        args.kv_heads, args.ffn, attn=args.attn, tied=not args.untied)
    model.reset_parameters(args.seed)
    if args.init_from:
        load_hf_names(model, args.init_from)
    if args.save:
        save_hf_names(model, args.save)
        return 0
    if args.check_hf:
        return 0 if check_hf(model, args) else 1
    model.to(device)
    model.train()
    opt = make_optimizer(model, args.lr, args.weight_decay)
    params = [p for p in model.parameters()]
    # Fill the RoPE cache before the first call: otherwise the compiled graph's
    # guard on the (then empty) cache fails on the second step and torch.compile
    # recompiles inside the timed steps when --warmup is 1.
    model.rope(args.seq, device)
    fwd = torch.compile(model) if args.compile else model

    B, T = args.batch, args.seq
    g = torch.Generator().manual_seed(args.seed)
    n_batches = 1 if args.data == "fixed" else args.warmup + args.steps
    batches = [torch.randint(0, args.vocab, (B, T + 1), generator=g).to(device)
               for _ in range(n_batches)]
    autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16)
                if args.dtype == "bf16" else None)

    def step(tokens):
        opt.zero_grad(set_to_none=True)
        if autocast is not None:
            with autocast:
                logits = fwd(tokens[:, :-1])
        else:
            logits = fwd(tokens[:, :-1])
        loss = lm_loss(logits, tokens[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss

    times, losses = [], []
    for i in range(args.warmup + args.steps):
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        loss = step(batches[i % n_batches])
        if cuda:
            torch.cuda.synchronize(device)
        dt = time.perf_counter() - t0
        losses.append(loss.item())
        if i >= args.warmup:
            times.append(dt)

    med = statistics.median(times)
    out = {
        "impl": "torch",
        "params": param_count(model),
        "tokens_per_s": B * T / med,
        "step_ms_median": med * 1e3,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "threads": args.threads,
        "torch": torch.__version__,
        # extras (not in frugal's interface)
        "step_ms_min": min(times) * 1e3,
        "steps": args.steps,
        "warmup": args.warmup,
        "batch": B,
        "seq": T,
        "dtype": args.dtype,
        "device": str(device),
        "compile": bool(args.compile),
        "rss_import_kb": rss_import_kb,
        "peak_rss_kb": _vm_kb("VmHWM"),
        "config": {k: model.cfg[k] for k in ("vocab", "d_model", "layers", "heads", "kv_heads", "ffn")},
    }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))

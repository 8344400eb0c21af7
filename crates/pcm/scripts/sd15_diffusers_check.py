"""Compares frugal's `sd15::generate` with diffusers on the same tiny random SD.

    cargo test -p frugal-pcm --features sd15 --test sd15 tiny   # with FRUGAL_KEEP_SD15_FIXTURE=DIR
    cargo run -p frugal-pcm --features sd15 --example sd15_dump -- DIR/sd DIR/sd/lora.safetensors DIR/ours_tcd.safetensors tcd 4
    python crates/pcm/scripts/sd15_diffusers_check.py DIR/sd DIR/sd/lora.safetensors DIR/ours_tcd.safetensors tcd 4

With a sixth argument `f16` (frugal's dump made with `... tcd 4 f16`), diffusers also runs the text
encoder and the UNet in float16 (LoRA fused in float32 first, as frugal merges it), and the script
prints how far frugal's f16 latents and diffusers' own f16 latents are from diffusers' f32 ones.

diffusers' StableDiffusionPipeline loads the same UNet, VAE and text encoder, loads the kohya LoRA
with `load_lora_weights` (its own key conversion and alpha/rank scaling), and samples from frugal's
initial noise with TCDScheduler (eta 0) or DDIMScheduler (trailing, set_alpha_to_one=False).
Prints the largest difference of the final latents.
"""
import sys

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, TCDScheduler, UNet2DConditionModel
from safetensors.torch import load_file
from transformers import CLIPTextConfig, CLIPTextModel

sd, lora, ours, sampler, steps = sys.argv[1:6]
dtype = sys.argv[6] if len(sys.argv) > 6 else "f32"
steps = int(steps)
torch.manual_seed(0)
unet = UNet2DConditionModel.from_pretrained(sd, subfolder="unet")
vae = AutoencoderKL.from_pretrained(sd, subfolder="vae")
text = CLIPTextModel.from_pretrained(sd, subfolder="text_encoder")
common = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
if sampler == "tcd":
    sched = TCDScheduler(**common, timestep_spacing="trailing")
else:
    sched = DDIMScheduler(**common, timestep_spacing="trailing", set_alpha_to_one=False, clip_sample=False)
pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=None, unet=unet, scheduler=sched,
                               safety_checker=None, feature_extractor=None, requires_safety_checker=False)
pipe.load_lora_weights(load_file(lora))
pipe.fuse_lora(lora_scale=1.0)
# "a photo of a cat" in the test's word-level tokenizer, BOS … EOS, padded with EOS to 8.
ids = torch.tensor([[0, 3, 4, 5, 3, 6, 1, 1]])
with torch.no_grad():
    emb = text(ids)[0]
t = load_file(ours)
kwargs = dict(eta=0.0) if sampler == "tcd" else {}


def run(embeds=None, noise=None):
    embeds = emb if embeds is None else embeds
    noise = t["noise"] if noise is None else noise
    with torch.no_grad():
        return pipe(prompt_embeds=embeds, num_inference_steps=steps, guidance_scale=1.0, latents=noise.clone(),
                    output_type="latent", height=16, width=16, **kwargs).images


def rel_l2(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


out = run()
print("timesteps", [int(x) for x in pipe.scheduler.timesteps])
if dtype == "f16":
    # frugal's dump is f16 here: compare both f16 runs with diffusers' f32 latents.
    unet.to(torch.float16)
    text.to(torch.float16)
    with torch.no_grad():
        emb16 = text(ids)[0]
    out16 = run(emb16, t["noise"].half()).float()
    ours16 = t["latents"]
    print(f"relative L2 from diffusers f32: frugal f16 {rel_l2(ours16, out):.3e}, diffusers f16 {rel_l2(out16, out):.3e}")
    print(f"relative L2 frugal f16 - diffusers f16: {rel_l2(ours16, out16):.3e}")
    sys.exit(0)
d = (out - t["latents"]).abs().max().item()
print(f"max |latents(diffusers) - latents(frugal)| = {d:.3e} (scale {t['latents'].abs().max().item():.3f})")
# The VAE decode of frugal's own latents, as diffusers' pipeline post-processes it (8-bit).
with torch.no_grad():
    img = vae.decode(t["latents"] / vae.config.scaling_factor).sample
img = ((img / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)[0].permute(1, 2, 0)
dp = (img.int() - t["rgb"].int()).abs()
print(f"decoded RGB: max |Δ| {dp.max().item()} levels, {(dp > 0).float().mean().item() * 100:.1f} % of values differ")
# The same without the LoRA: shows the comparison would see a LoRA that was not applied.
pipe.unfuse_lora()
pipe.unload_lora_weights()
d0 = (run() - t["latents"]).abs().max().item()
print(f"without the LoRA in diffusers: max difference {d0:.3e}")

#!/usr/bin/env python3
"""PureFlux's own golden-set generator for FLUX.2 [klein] (see tools/golden/README.md).

Builds a small random FLUX.2 [klein] model in the real Hugging Face layout with diffusers' and transformers' own
classes, runs each component and the whole pipeline once on the CPU in float32, captures the intermediates with forward
hooks, and writes the file kinds of tests/golden:

  OUT/model/                          the random snapshot (model_index.json, transformer/, text_encoder/, vae/, scheduler/)
  OUT/text_encoder_forward.safetensors Qwen3 forward as Flux2KleinPipeline._get_qwen3_prompt_embeds runs it
  OUT/transformer_forward.safetensors  one Flux2Transformer2DModel forward
  OUT/vae_forward.safetensors          AutoencoderKLFlux2 decode and encode, per block
  OUT/pipeline_h{H}_w{W}.safetensors   Flux2KleinPipeline.__call__ end to end, per step
  OUT/scheduler.json                   the klein pipeline's sigmas / timesteps / mu for several sizes
  OUT/manifest.json                    every file, every tensor's shape and dtype, the parameters, notes and versions

Nothing here computes model math by hand: every tensor comes out of the libraries' modules (hooks only copy what they
see). Run `python3 tools/golden/make_klein_golden.py --out DIR`, then `pureflux verify DIR`.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import platform
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

import diffusers
import transformers
from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel
from diffusers.models.transformers import transformer_flux2
from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu, retrieve_timesteps
from transformers import Qwen3Config, Qwen3ForCausalLM

# ----------------------------------------------------------------------------------------------------------------------
# Parameters. PRESETS["public"] has the sizes of the public set (tests/golden/README.md, "Tiny model vs. real klein");
# every architectural flag is klein 4B's. Edit or add a preset (or pass --params FILE.json) for experiments.

PRESETS = {
    "public": {
        "transformer": {
            "patch_size": 1, "in_channels": 128, "out_channels": None, "num_layers": 2, "num_single_layers": 2,
            "attention_head_dim": 32, "num_attention_heads": 2, "joint_attention_dim": 192,
            "timestep_guidance_channels": 256, "mlp_ratio": 3.0, "axes_dims_rope": [8, 8, 8, 8], "rope_theta": 2000,
            "eps": 1e-6, "guidance_embeds": False,
        },
        "text_encoder": {
            "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 4,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "max_position_embeddings": 40960,
            "rms_norm_eps": 1e-6, "rope_theta": 1e6, "tie_word_embeddings": True, "attention_bias": False,
            "use_sliding_window": False, "max_window_layers": 4, "bos_token_id": 997, "eos_token_id": 998,
            "hidden_act": "silu",
        },
        "vae": {
            "in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"] * 4,
            "up_block_types": ["UpDecoderBlock2D"] * 4, "block_out_channels": [4, 8, 16, 16],
            "decoder_block_out_channels": None, "layers_per_block": 2, "act_fn": "silu", "latent_channels": 32,
            "norm_num_groups": 2, "sample_size": 1024, "force_upcast": True, "use_quant_conv": True,
            "use_post_quant_conv": True, "mid_block_add_attention": True, "batch_norm_eps": 1e-4,
            "batch_norm_momentum": 0.1, "patch_size": [2, 2],
        },
        # The real klein scheduler config.
        "scheduler": {
            "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5,
            "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096, "invert_sigmas": False,
            "shift_terminal": None, "use_karras_sigmas": False, "use_exponential_sigmas": False,
            "use_beta_sigmas": False, "time_shift_type": "exponential", "stochastic_sampling": False,
        },
        "is_distilled": True,
        "text_len": 16,                 # max_sequence_length of the tiny runs (klein: 512)
        "text_pad": 5,                  # right padding inside text_len
        "text_pad_token_id": 999,       # stands in for <|endoftext|> (151643) in a 1000-token vocabulary
        "transformer_latent_hw": [8, 8],
        "transformer_timestep": 0.9,
        "vae_latent_hw": [8, 8],
        "pipeline_sizes": [[64, 64], [64, 96]],  # [height, width]
        "pipeline_steps": 4,
        "scheduler_cases": [[4, 256, 256], [4, 512, 512], [4, 1024, 1024], [8, 512, 768], [28, 1024, 1024]],  # steps, w, h
    },
}


def text_layers(num_hidden_layers: int) -> list[int]:
    """The hidden states klein stacks: after layers L/4, L/2, 3L/4 (9, 18, 27 for the 36-layer Qwen3 4B)."""
    return [num_hidden_layers // 4, num_hidden_layers // 2, 3 * num_hidden_layers // 4]


# ----------------------------------------------------------------------------------------------------------------------
# Random weights. Library constructors leave some tensors constant (norm scales of 1, BatchNorm statistics 0 / 1), which
# would hide a swapped scale or a skipped statistic; every floating tensor is redrawn from one seeded generator, in
# sorted name order, so the same seed and torch version give the same weights.

def randomize(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in sorted(list(module.named_parameters()) + list(module.named_buffers())):
            if not t.is_floating_point():
                continue
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "running_var":
                t.copy_(0.5 + torch.rand(t.shape, generator=g))                  # positive
            elif leaf == "running_mean":
                t.copy_(0.2 * torch.randn(t.shape, generator=g))
            elif t.ndim >= 2:
                fan_in = math.prod(t.shape[1:])
                t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(fan_in))  # unit-variance activations
            elif leaf == "weight":
                t.copy_(1.0 + 0.1 * torch.randn(t.shape, generator=g))           # norm scales near 1
            else:
                t.copy_(0.05 * torch.randn(t.shape, generator=g))                # biases


# ----------------------------------------------------------------------------------------------------------------------
# Capturing. A Capture collects named tensors (detached float32 / int64 copies, batch kept) in insertion order.

class Capture:
    def __init__(self):
        self.tensors: dict[str, torch.Tensor] = {}
        self._handles = []

    def put(self, name: str, value) -> None:
        if isinstance(value, (tuple, list)):
            value = value[0]
        if hasattr(value, "sample") and not isinstance(value, torch.Tensor):
            value = value.sample
        t = torch.as_tensor(value).detach().cpu().contiguous()
        if t.dtype in (torch.bool, torch.int32, torch.int16, torch.uint8):
            t = t.to(torch.int64)
        self.tensors[name] = t.clone()

    def output(self, name: str, module: torch.nn.Module, pick=None) -> None:
        """Records the module's output (its first element when it returns a tuple, or pick(output))."""
        def hook(_m, _args, out):
            self.put(name, pick(out) if pick else out)
        self._handles.append(module.register_forward_hook(hook))

    def outputs_each_call(self, names: list[str], module: torch.nn.Module) -> None:
        """Records the module's output under names[i] on its i-th call (e.g. pos_embed: image ids, then text ids)."""
        calls = [0]

        def hook(_m, _args, out):
            if calls[0] < len(names):
                cos, sin = out
                self.put(names[calls[0]] + ".cos", cos)
                self.put(names[calls[0]] + ".sin", sin)
            calls[0] += 1
        self._handles.append(module.register_forward_hook(hook))

    # A hook that returns something replaces the module's inputs or output: these wrappers always return None.
    def pre(self, module: torch.nn.Module, fn) -> None:
        """fn(args, kwargs) before every call of the module."""
        def hook(_m, args, kwargs):
            fn(args, kwargs)
        self._handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))

    def after(self, module: torch.nn.Module, fn) -> None:
        """fn(args, kwargs, output) after every call of the module."""
        def hook(_m, args, kwargs, out):
            fn(args, kwargs, out)
        self._handles.append(module.register_forward_hook(hook, with_kwargs=True))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


@contextmanager
def attention_calls(record):
    """Routes diffusers' attention dispatch for FLUX.2 through record(query, key, output) ([B, S, heads, head_dim],
    after RoPE; the output before the output projection). The call itself is the library's."""
    original = transformer_flux2.dispatch_attention_fn

    def wrapped(query, key, value, *args, **kwargs):
        out = original(query, key, value, *args, **kwargs)
        record(query, key, out)
        return out
    transformer_flux2.dispatch_attention_fn = wrapped
    try:
        yield
    finally:
        transformer_flux2.dispatch_attention_fn = original


class StubTokenizer:
    """Stands in for Qwen2TokenizerFast inside Flux2KleinPipeline._get_qwen3_prompt_embeds: the chat template and the
    tokenizer call return fixed ids, so the pipeline's own prompt path runs on a vocabulary without a tokenizer."""

    def __init__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        self.input_ids, self.attention_mask = input_ids, attention_mask

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True, **kwargs):
        return messages[0]["content"]

    def __call__(self, text, return_tensors="pt", padding="max_length", truncation=True, max_length=None, **kwargs):
        if max_length is not None and max_length != self.input_ids.shape[1]:
            raise ValueError(f"stub tokenizer holds {self.input_ids.shape[1]} ids; max_sequence_length was {max_length}")
        return {"input_ids": self.input_ids.clone(), "attention_mask": self.attention_mask.clone()}


# ----------------------------------------------------------------------------------------------------------------------
# The model

def build_models(p: dict, seed: int):
    transformer = Flux2Transformer2DModel(**p["transformer"]).eval()
    randomize(transformer, seed + 1)

    te_cfg = Qwen3Config(**p["text_encoder"])
    try:
        text_encoder = Qwen3ForCausalLM._from_config(te_cfg, attn_implementation="sdpa")
    except (TypeError, AttributeError, ValueError):
        te_cfg._attn_implementation = "sdpa"
        text_encoder = Qwen3ForCausalLM(te_cfg)
    text_encoder = text_encoder.float().eval()
    randomize(text_encoder, seed + 2)
    if getattr(te_cfg, "tie_word_embeddings", False):
        text_encoder.tie_weights()

    vae = AutoencoderKLFlux2(**p["vae"]).eval()
    randomize(vae, seed + 3)

    scheduler = FlowMatchEulerDiscreteScheduler(**p["scheduler"])
    return transformer, text_encoder, vae, scheduler


def save_snapshot(out: Path, p: dict, transformer, text_encoder, vae, scheduler) -> None:
    model = out / "model"
    transformer.save_pretrained(model / "transformer")
    text_encoder.save_pretrained(model / "text_encoder")
    vae.save_pretrained(model / "vae")
    scheduler.save_pretrained(model / "scheduler")
    # Written by hand: a tokenizer is listed, as in the real repo, but a random 1000-token vocabulary has none (the
    # golden files carry token ids instead).
    index = {
        "_class_name": "Flux2KleinPipeline",
        "_diffusers_version": diffusers.__version__,
        "is_distilled": bool(p["is_distilled"]),
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "Qwen3ForCausalLM"],
        "tokenizer": ["transformers", "Qwen2TokenizerFast"],
        "transformer": ["diffusers", "Flux2Transformer2DModel"],
        "vae": ["diffusers", "AutoencoderKLFlux2"],
    }
    (model / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def make_pipeline(p, transformer, text_encoder, vae, scheduler, tokenizer):
    pipe = Flux2KleinPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                              transformer=transformer, is_distilled=bool(p["is_distilled"]))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def prompt_ids(p: dict, gen: torch.Generator):
    """[1, text_len] ids: random real tokens (below the special ids) right-padded with text_pad_token_id; mask 1/0."""
    n, pad = p["text_len"], p["text_pad"]
    special = min(p["text_encoder"].get("bos_token_id", 997), p["text_encoder"].get("eos_token_id", 998), p["text_pad_token_id"])
    real = torch.randint(0, special, (1, n - pad), generator=gen, dtype=torch.int64)
    ids = torch.cat([real, torch.full((1, pad), p["text_pad_token_id"], dtype=torch.int64)], dim=1)
    mask = torch.cat([torch.ones(1, n - pad, dtype=torch.int64), torch.zeros(1, pad, dtype=torch.int64)], dim=1)
    return ids, mask


# ----------------------------------------------------------------------------------------------------------------------
# The files

def text_encoder_forward(p, text_encoder, tokenizer) -> tuple[dict, torch.Tensor]:
    cap = Capture()
    ids, mask = tokenizer.input_ids, tokenizer.attention_mask
    cap.put("inputs.input_ids", ids)
    cap.put("inputs.attention_mask", mask)
    core = text_encoder.model
    cap.output("embed_tokens", core.embed_tokens)
    cap.after(core.rotary_emb, lambda a, k, o: (cap.put("rope.cos", o[0]), cap.put("rope.sin", o[1])))

    def layer0_inputs(args, kwargs):
        m = kwargs.get("attention_mask")
        if m is not None:
            # 1 = attend. transformers hands SDPA a boolean mask (True = attend) or an additive one (0 = attend).
            cap.put("layer.0.in.attention_mask_bool", m if m.dtype == torch.bool else (m == 0))
        pos = kwargs.get("position_ids")
        cap.put("layer.0.in.position_ids", pos if pos is not None else torch.arange(ids.shape[1]).unsqueeze(0))
    layer0 = core.layers[0]
    cap.pre(layer0, layer0_inputs)
    cap.output("layer.0.input_layernorm", layer0.input_layernorm)
    attn = layer0.self_attn
    for name in ("q_proj", "q_norm", "k_proj", "k_norm", "v_proj", "o_proj"):
        cap.output(f"layer.0.attn.{name}", getattr(attn, name))
    cap.output("layer.0.attn.out", attn)
    cap.output("layer.0.post_attention_layernorm", layer0.post_attention_layernorm)
    cap.output("layer.0.mlp", layer0.mlp)
    for i, layer in enumerate(core.layers):
        cap.output(f"layer.{i}.out", layer)
    cap.output("final_norm", core.norm)

    hidden = {}  # the pipeline keeps only the stacked layers: take every hidden state from the model's output
    cap.after(text_encoder, lambda a, k, o: hidden.update(enumerate(o.hidden_states)))
    try:
        with torch.no_grad():
            # The pipeline's own prompt path (chat template + tokenizer stubbed, layers stacked by the pipeline).
            embeds = Flux2KleinPipeline._get_qwen3_prompt_embeds(
                text_encoder=text_encoder, tokenizer=tokenizer, prompt="golden", dtype=torch.float32,
                device=torch.device("cpu"), max_sequence_length=p["text_len"],
                hidden_states_layers=tuple(text_layers(p["text_encoder"]["num_hidden_layers"])))
    finally:
        cap.remove()
    for i in sorted(hidden):
        cap.put(f"hidden_states.{i}", hidden[i])
    cap.put("prompt_embeds", embeds)
    cap.put("text_ids", Flux2KleinPipeline._prepare_text_ids(embeds))
    return cap.tensors, embeds


def transformer_forward(p, transformer, prompt_embeds, gen) -> dict:
    cap = Capture()
    h, w = p["transformer_latent_hw"]
    c = p["transformer"]["in_channels"]
    hidden = torch.randn(1, h * w, c, generator=gen)
    timestep = torch.tensor([p["transformer_timestep"]], dtype=torch.float32)
    img_ids = Flux2KleinPipeline._prepare_latent_ids(torch.zeros(1, c, h, w))
    txt_ids = Flux2KleinPipeline._prepare_text_ids(prompt_embeds)
    for name, t in (("inputs.hidden_states", hidden), ("inputs.encoder_hidden_states", prompt_embeds),
                    ("inputs.timestep", timestep), ("inputs.img_ids", img_ids), ("inputs.txt_ids", txt_ids)):
        cap.put(name, t)

    tg = transformer.time_guidance_embed
    cap.output("temb.time_proj", tg.time_proj)
    cap.output("temb.linear_1", tg.timestep_embedder.linear_1)
    cap.output("temb.out", tg)
    cap.output("mod.double_img", transformer.double_stream_modulation_img)
    cap.output("mod.double_txt", transformer.double_stream_modulation_txt)
    cap.output("mod.single", transformer.single_stream_modulation)
    cap.output("embed.x", transformer.x_embedder)
    cap.output("embed.context", transformer.context_embedder)
    cap.outputs_each_call(["rope.img", "rope.txt"], transformer.pos_embed)  # the model embeds image ids, then text ids

    active = [None]  # the block whose attention calls are recorded

    def record_attention(q, k, out):
        if active[0] is not None:
            cap.put(f"{active[0]}.attn.q_rope", q)
            cap.put(f"{active[0]}.attn.k_rope", k)
            cap.put(f"{active[0]}.attn.sdpa_out", out)

    def enter(prefix):
        def fn(_args, kwargs):
            active[0] = prefix
            if prefix == "double.0":
                cos, sin = kwargs["image_rotary_emb"]
                cap.put("rope.concat.cos", cos)
                cap.put("rope.concat.sin", sin)
        return fn

    def leave(_a, _k, _o):
        active[0] = None

    for i, block in enumerate(transformer.transformer_blocks):
        cap.after(block, lambda a, k, o, i=i: (cap.put(f"double.{i}.txt", o[0]), cap.put(f"double.{i}.img", o[1])))
    b0 = transformer.transformer_blocks[0]
    cap.pre(b0, enter("double.0"))
    cap.after(b0, leave)
    cap.output("double.0.norm1", b0.norm1)
    cap.after(b0.attn, lambda a, k, o: (cap.put("double.0.attn.img", o[0]), cap.put("double.0.attn.txt", o[1])))
    cap.output("double.0.ff", b0.ff)
    cap.output("double.0.ff_context", b0.ff_context)
    # QK-normed q/k: the text rows come from the added-stream norms, concatenated [text; image] as the processor does.
    parts = {}
    for key, module in (("q_img", b0.attn.norm_q), ("k_img", b0.attn.norm_k), ("q_txt", b0.attn.norm_added_q), ("k_txt", b0.attn.norm_added_k)):
        cap.after(module, lambda a, k, o, key=key: parts.__setitem__(key, o.detach().clone()))

    s0 = transformer.single_transformer_blocks[0]
    for i, block in enumerate(transformer.single_transformer_blocks):
        cap.output(f"single.{i}", block)
    cap.pre(s0, enter("single.0"))
    cap.after(s0, leave)
    cap.output("single.0.attn.to_qkv_mlp_proj", s0.attn.to_qkv_mlp_proj)
    cap.output("single.0.attn", s0.attn)
    cap.output("single.0.attn.q_normed", s0.attn.norm_q)
    cap.output("single.0.attn.k_normed", s0.attn.norm_k)
    cap.output("norm_out", transformer.norm_out)
    cap.output("proj_out", transformer.proj_out)

    try:
        with torch.no_grad(), attention_calls(record_attention):
            out = transformer(hidden_states=hidden, encoder_hidden_states=prompt_embeds, timestep=timestep,
                              img_ids=img_ids, txt_ids=txt_ids, guidance=None, return_dict=False)[0]
    finally:
        cap.remove()
    cap.put("double.0.attn.q_normed", torch.cat([parts["q_txt"], parts["q_img"]], dim=1))
    cap.put("double.0.attn.k_normed", torch.cat([parts["k_txt"], parts["k_img"]], dim=1))
    cap.put("output", out)
    return cap.tensors


def vae_forward(p, vae, pipe, gen) -> dict:
    cap = Capture()
    h, w = p["vae_latent_hw"]
    lc = p["vae"]["latent_channels"]
    z = torch.randn(1, lc, h, w, generator=gen)
    cap.put("dec.input", z)
    dec = vae.decoder
    if vae.post_quant_conv is not None:
        cap.output("dec.post_quant_conv", vae.post_quant_conv)
    cap.output("dec.conv_in", dec.conv_in)
    cap.output("dec.mid.resnet0", dec.mid_block.resnets[0])
    if dec.mid_block.attentions and dec.mid_block.attentions[0] is not None:
        cap.output("dec.mid.attn0", dec.mid_block.attentions[0])
    cap.output("dec.mid", dec.mid_block)
    for i, up in enumerate(dec.up_blocks):
        cap.output(f"dec.up.{i}.resnet0", up.resnets[0])
        cap.output(f"dec.up.{i}", up)
    cap.output("dec.conv_norm_out", dec.conv_norm_out)
    cap.output("dec.conv_out", dec.conv_out)
    try:
        with torch.no_grad():
            cap.put("dec.output", vae.decode(z).sample)
    finally:
        cap.remove()

    size = 8 * h  # the image the latent grid stands for
    x = torch.rand(1, p["vae"]["in_channels"], size, size, generator=gen) * 2 - 1
    cap.put("enc.input", x)
    enc = vae.encoder
    cap.output("enc.conv_in", enc.conv_in)
    for i, down in enumerate(enc.down_blocks):
        cap.output(f"enc.down.{i}", down)
    cap.output("enc.mid", enc.mid_block)
    cap.output("enc.conv_out", enc.conv_out)
    if vae.quant_conv is not None:
        cap.output("enc.quant_conv", vae.quant_conv)
    try:
        with torch.no_grad():
            cap.put("enc.latent_mean", vae.encode(x).latent_dist.mode())
    finally:
        cap.remove()
    with torch.no_grad():
        cap.put("enc.pipeline_image_latents", pipe._encode_vae_image(x, generator=None))
    cap.put("bn.running_mean", vae.bn.running_mean)
    cap.put("bn.running_var", vae.bn.running_var)
    return cap.tensors


def pipeline_run(p, pipe, tokenizer, height: int, width: int, gen) -> tuple[dict, dict]:
    cap = Capture()
    steps = p["pipeline_steps"]
    cap.put("inputs.input_ids", tokenizer.input_ids)
    cap.put("inputs.attention_mask", tokenizer.attention_mask)
    c = p["transformer"]["in_channels"]
    noise = torch.randn(1, c, height // 16, width // 16, generator=gen)
    cap.put("inputs.initial_noise", noise)

    calls = [0]

    def transformer_in(_args, kwargs):
        i = calls[0]
        if i == 0:
            cap.put("prompt_embeds", kwargs["encoder_hidden_states"])
            cap.put("text_ids", kwargs["txt_ids"])
            cap.put("latent_ids", kwargs["img_ids"])
        cap.put(f"step.{i}.transformer_in.hidden_states", kwargs["hidden_states"])
        cap.put(f"step.{i}.transformer_in.timestep", kwargs["timestep"])

    def transformer_out(_args, _kwargs, out):
        cap.put(f"step.{calls[0]}.noise_pred", out[0])
        calls[0] += 1
    cap.pre(pipe.transformer, transformer_in)
    cap.after(pipe.transformer, transformer_out)

    def on_step_end(_pipe, i, t, kwargs):
        cap.put(f"step.{i}.latents_after", kwargs["latents"])
        cap.put(f"step.{i}.t", torch.as_tensor(t, dtype=torch.float32).reshape(1))
        return {}

    decode = pipe.vae.decode

    def decode_recording(z, *a, **k):
        cap.put("latents_for_vae", z)
        out = decode(z, *a, **k)
        cap.put("decoded_image", out[0] if isinstance(out, tuple) else out.sample)
        return out
    pipe.vae.decode = decode_recording
    try:
        with torch.no_grad():
            image = pipe(prompt="golden", height=height, width=width, num_inference_steps=steps, guidance_scale=1.0,
                         latents=noise, output_type="pt", return_dict=False, max_sequence_length=p["text_len"],
                         text_encoder_out_layers=tuple(text_layers(p["text_encoder"]["num_hidden_layers"])),
                         callback_on_step_end=on_step_end, callback_on_step_end_tensor_inputs=["latents"])[0]
    finally:
        del pipe.vae.decode
        cap.remove()
    cap.put("timesteps", pipe.scheduler.timesteps.to(torch.float32))
    cap.put("sigmas", pipe.scheduler.sigmas.to(torch.float32))
    cap.put("final_latents_packed", cap.tensors[f"step.{steps - 1}.latents_after"])
    cap.put("image_pt", image)
    seq = (height // 16) * (width // 16)
    info = {"height": str(height), "width": str(width), "num_inference_steps": str(steps), "image_seq_len": str(seq),
            "mu": repr(compute_empirical_mu(seq, steps))}
    return cap.tensors, info


def scheduler_cases(p) -> dict:
    cases = []
    for steps, width, height in p["scheduler_cases"]:
        sched = FlowMatchEulerDiscreteScheduler(**p["scheduler"])
        hp, wp = height // 16, width // 16  # 2 * (h // (8 * 2)) latent rows, packed 2x2
        seq = hp * wp
        sig_lin = np.linspace(1.0, 1 / steps, steps)
        mu = compute_empirical_mu(seq, steps)
        timesteps, _ = retrieve_timesteps(sched, steps, torch.device("cpu"), sigmas=sig_lin, mu=mu)
        ts = timesteps.to(torch.float32)
        sigmas = sched.sigmas.to(torch.float32)
        t_in = ts / 1000                      # what the pipeline passes to the transformer
        t_emb = t_in * 1000                   # what the transformer embeds
        cases.append({
            "num_inference_steps": steps, "width": width, "height": height, "latent_packed_hw": [hp, wp],
            "image_seq_len": seq, "sigmas_linspace_float64": sig_lin.tolist(), "mu": mu,
            "timesteps": ts.tolist(), "sigmas": sigmas.tolist(), "transformer_timestep_input": t_in.tolist(),
            "timestep_embedding_input": t_emb.tolist(), "euler_dt": (sigmas[1:] - sigmas[:-1]).tolist(),
        })
    return {
        "description": "Flux2KleinPipeline timestep logic: sigmas=np.linspace(1, 1/steps, steps); "
                       "mu=compute_empirical_mu(image_seq_len, steps); retrieve_timesteps(scheduler, steps, sigmas=sigmas, mu=mu). "
                       "All listed float values are float32 values written as JSON doubles (exact), except "
                       "sigmas_linspace_float64 and mu which are float64.",
        "diffusers_version": diffusers.__version__,
        "scheduler_config": p["scheduler"],
        "vae_scale_factor": 2 ** (len(p["vae"]["block_out_channels"]) - 1),
        "euler_step": "latents_next = latents + (sigmas[i+1] - sigmas[i]) * noise_pred  (computed in float32)",
        "cases": cases,
    }


NOTES = {
    "text_encoder_forward.safetensors": {
        "description": "Qwen3ForCausalLM (random) forward as used by Flux2KleinPipeline._get_qwen3_prompt_embeds",
        "hidden_states_note": "hidden_states.0 = embedding output; hidden_states.i (1<=i<L) = output of decoder layer i-1; "
                              "hidden_states.L = final RMSNorm(output of last layer); layer.{i}.out = raw output of decoder layer i",
        "prompt_embeds_note": "stack(hidden_states[k] for k in out_layers, dim=1) -> permute(0,2,1,3) -> reshape(B, L, n*hidden)",
        "attn_implementation": "sdpa",
    },
    "transformer_forward.safetensors": {
        "description": "Flux2Transformer2DModel (random) single forward pass, batch 1",
        "timestep_note": "inputs.timestep is what the pipeline passes (t/1000); the model multiplies by 1000 internally",
        "rope_note": "rope.img.* = pos_embed(img_ids[0]); rope.txt.* = pos_embed(txt_ids[0]); rope.concat = cat([txt, img]) as given to every block",
        "block_note": "double.{i}.txt / double.{i}.img = (encoder_hidden_states, hidden_states) after block i; single.{i} = "
                      "concatenated [txt; img] stream after single block i; norm_out/proj_out on image tokens only",
        "attn_internals_note": "{double,single}.0.attn.q_normed/k_normed: [B, S_txt+S_img, H, D] after QK RMSNorm, txt tokens "
                               "first (before RoPE); *_rope: after RoPE; sdpa_out: [B, S, H, D] attention output before the output projection",
    },
    "vae_forward.safetensors": {
        "description": "AutoencoderKLFlux2 (random): decode (dec.*) and encode (enc.*) with per-block outputs",
        "enc_note": "enc.latent_mean = encode(x).latent_dist.mode(); enc.pipeline_image_latents = Flux2KleinPipeline._encode_vae_image "
                    "(patchify 2x2 -> 4*latent_channels, BN-normalise)",
    },
    "pipeline": {
        "description": "End-to-end Flux2KleinPipeline.__call__ with the random components (guidance_scale=1.0: no CFG), prompt "
                       "encoded by the pipeline's own _get_qwen3_prompt_embeds through a stub tokenizer returning inputs.input_ids/attention_mask",
        "step_note": "step.{i}.transformer_in.timestep is the value given to the transformer (t/1000); step.{i}.latents_after = "
                     "scheduler.step(noise_pred, t, latents) (packed [1, seq, C])",
        "final_note": "latents_for_vae = unpatchify(unpack(final_latents_packed) * sqrt(bn.running_var + eps) + bn.running_mean); "
                      "decoded_image = vae.decode(latents_for_vae); image_pt = pipeline output_type='pt'",
    },
}


def dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


def write_tensors(path: Path, tensors: dict, notes: dict) -> dict:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"golden_notes": json.dumps(notes, sort_keys=True)})
    return {k: [list(v.shape), dtype_name(v)] for k, v in tensors.items()}


def versions() -> dict:
    v = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
         "diffusers": diffusers.__version__, "transformers": transformers.__version__}
    sources = {}
    for dist in ("diffusers", "transformers", "huggingface_hub", "safetensors"):
        try:
            d = importlib.metadata.distribution(dist)
            entry = {"version": d.version}
            direct = d.read_text("direct_url.json")  # pip writes the git commit of a git+https install here
            if direct:
                info = json.loads(direct)
                entry["url"] = info.get("url")
                if "vcs_info" in info:
                    entry["commit"] = info["vcs_info"].get("commit_id")
            sources[dist] = entry
        except importlib.metadata.PackageNotFoundError:
            pass
    v["sources"] = sources
    return v


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="directory to write the golden set into (created; must be empty)")
    ap.add_argument("--preset", default="public", choices=sorted(PRESETS), help="sizes and cases (default: the public set's)")
    ap.add_argument("--params", type=Path, help="JSON object merged over the preset (top-level keys replace, component "
                                                "configs are updated key by key)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the weights, inputs and noise (default 0)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps the reduction order fixed)")
    args = ap.parse_args(argv)

    p = json.loads(json.dumps(PRESETS[args.preset]))
    if args.params:
        extra = json.loads(args.params.read_text())
        for k, v in extra.items():
            if k in ("transformer", "text_encoder", "vae", "scheduler") and isinstance(v, dict):
                p[k].update(v)
            else:
                p[k] = v
    layers = text_layers(p["text_encoder"]["num_hidden_layers"])
    joint = len(layers) * p["text_encoder"]["hidden_size"]
    if p["transformer"]["joint_attention_dim"] != joint:
        sys.exit(f"transformer.joint_attention_dim must be {len(layers)} x text_encoder.hidden_size = {joint} (klein stacks layers {layers})")

    out: Path = args.out
    if out.exists() and any(out.iterdir()):
        sys.exit(f"{out}: exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    transformer, text_encoder, vae, scheduler = build_models(p, args.seed)
    save_snapshot(out, p, transformer, text_encoder, vae, scheduler)
    ids, mask = prompt_ids(p, gen)
    tokenizer = StubTokenizer(ids, mask)
    pipe = make_pipeline(p, transformer, text_encoder, vae, scheduler, tokenizer)

    files, notes = {}, {}
    te, embeds = text_encoder_forward(p, text_encoder, tokenizer)
    notes["text_encoder_forward.safetensors"] = dict(NOTES["text_encoder_forward.safetensors"], text_encoder_out_layers=str(layers))
    files["text_encoder_forward.safetensors"] = write_tensors(out / "text_encoder_forward.safetensors", te, notes["text_encoder_forward.safetensors"])
    print(f"text_encoder_forward: {len(te)} tensors")

    tr = transformer_forward(p, transformer, embeds, gen)
    notes["transformer_forward.safetensors"] = dict(NOTES["transformer_forward.safetensors"], config=json.dumps(p["transformer"]),
                                                    latent_grid_hw=str(p["transformer_latent_hw"]))
    files["transformer_forward.safetensors"] = write_tensors(out / "transformer_forward.safetensors", tr, notes["transformer_forward.safetensors"])
    print(f"transformer_forward: {len(tr)} tensors")

    va = vae_forward(p, vae, pipe, gen)
    notes["vae_forward.safetensors"] = dict(NOTES["vae_forward.safetensors"], config=json.dumps(p["vae"]), bn_eps=str(p["vae"]["batch_norm_eps"]))
    files["vae_forward.safetensors"] = write_tensors(out / "vae_forward.safetensors", va, notes["vae_forward.safetensors"])
    print(f"vae_forward: {len(va)} tensors")

    sched = scheduler_cases(p)
    (out / "scheduler.json").write_text(json.dumps(sched, indent=1) + "\n")
    files["scheduler.json"] = [f"{c['num_inference_steps']}x{c['width']}x{c['height']}" for c in sched["cases"]]
    print(f"scheduler.json: {len(sched['cases'])} cases")

    for height, width in p["pipeline_sizes"]:
        name = f"pipeline_h{height}_w{width}.safetensors"
        tensors, info = pipeline_run(p, pipe, tokenizer, height, width, gen)
        notes[name] = dict(NOTES["pipeline"], **info, text_encoder_out_layers=str(layers))
        files[name] = write_tensors(out / name, tensors, notes[name])
        print(f"{name}: {len(tensors)} tensors")

    params = {k: v for k, v in p.items() if k not in ("scheduler",)}
    params["seed"] = args.seed
    params["text_encoder_out_layers"] = layers
    manifest = {"preset": args.preset, "seed": args.seed, "generator": "tools/golden/make_klein_golden.py",
                "versions": versions(), "params": params, "files": files, "notes": notes}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {out} ({len(files)} files); check it with: pureflux verify {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

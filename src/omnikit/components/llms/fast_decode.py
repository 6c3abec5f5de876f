"""A lean decode path for the frozen LLM at inference: its own copy of the weights in the inference dtype, a
pre-allocated KV cache, and a forward pass written as few tensor operations as it takes.

Why: a cached decode step of a small LLM on a CPU reads every weight once, so its floor is the time to stream the
weights' bytes through memory. Hugging Face's generic forward adds per-token work on top (a growing
``DynamicCache`` concatenated every step, masks, rotary tables, many small ops) and runs in the training dtype.
This module keeps only what one step needs:

* **weights** converted once to the inference dtype (``bfloat16`` halves the bytes a step reads; ``float32``
  keeps them as they are); q/k/v and gate/up fused into one matrix each, the attention scale folded into the
  query rows, and the query/key rows of every head reordered so that rotary embedding is one complex multiply
  (the same reordering of queries and keys leaves every attention score unchanged);
* **the residual stream in float32**: norms, rotary embedding, attention and the residual adds run in float32
  on vectors of the hidden size (cheap); only the matrix products read the inference dtype;
* **a pre-allocated KV cache** (:class:`KVCache`, float32) that grows in blocks of :data:`BLOCK` positions, so a
  step writes one position in place and allocates nothing that grows with the conversation;
* **greedy-safe logits**: the LM head runs in the inference dtype, then the few largest logits are recomputed
  exactly (float32 hidden state times the weight rows) so that rounding of the logits does not pick the token.

Supported: the Llama family as transformers implements it (``llama``, ``qwen2``, ``mistral`` without a sliding
window, ``gemma``). :func:`unsupported_reason` says why another model is not; the caller then keeps the Hugging
Face path. :meth:`FastDecoder.check_against` compares the two on a short sequence before the fast path is used.

The training weights are not touched: the fingerprint, ``forward_train`` and every gradient stay on the original
module.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from omnikit.components.llms import kernels as kernels_mod

BLOCK = 256
"""KV-cache capacity grows in blocks of this many positions (one allocation and copy per block, never per token)."""

REFINE_TOP = 16
"""Logits recomputed exactly in float32 after a reduced-precision LM head (the candidates for the arg-max)."""

SUPPORTED_TYPES = ("llama", "qwen2", "mistral", "gemma")


@dataclass
class KVCache:
    """Keys and values of one conversation, pre-allocated: ``k``/``v`` are ``(layers, kv_heads, capacity, head_dim)``
    float32, ``ks``/``vs`` their per-layer views. ``length`` positions are filled.

    Keys hold the fast decoder's reordered head dimensions, so a cache belongs to the :class:`FastDecoder` that
    filled it.
    """

    k: Tensor
    v: Tensor
    length: int = 0
    ks: list[Tensor] = field(default_factory=list, repr=False)
    vs: list[Tensor] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.ks, self.vs = list(self.k.unbind(0)), list(self.v.unbind(0))

    @property
    def capacity(self) -> int:
        return int(self.k.shape[2])

    def reserve(self, total: int) -> None:
        """Make room for ``total`` positions (whole blocks; copies the filled part once per growth)."""
        if total <= self.capacity:
            return
        cap = BLOCK * math.ceil(total / BLOCK)
        layers, heads, _, dim = self.k.shape
        k = self.k.new_zeros(layers, heads, cap, dim)
        v = self.v.new_zeros(layers, heads, cap, dim)
        k[:, :, : self.length] = self.k[:, :, : self.length]
        v[:, :, : self.length] = self.v[:, :, : self.length]
        self.k, self.v = k, v
        self.__post_init__()

    def __deepcopy__(self, memo: dict[int, Any]) -> KVCache:
        """A fork: the filled positions copied once into a cache of the same capacity."""
        k = torch.zeros_like(self.k)
        v = torch.zeros_like(self.v)
        k[:, :, : self.length] = self.k[:, :, : self.length]
        v[:, :, : self.length] = self.v[:, :, : self.length]
        return KVCache(k, v, self.length)


def _text_config(model: Any) -> Any:
    cfg = model.config
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def unsupported_reason(model: Any) -> str | None:
    """None when :class:`FastDecoder` can run ``model`` (a transformers causal LM), else why not."""
    cfg = _text_config(model)
    kind = getattr(cfg, "model_type", None)
    if kind not in SUPPORTED_TYPES:
        return f"model_type {kind!r} is not one of {SUPPORTED_TYPES}"
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
        return "sliding-window attention"
    base = getattr(model, model.base_model_prefix, None)
    if base is None or not hasattr(base, "layers") or not hasattr(base, "rotary_emb"):
        return "no decoder layers / rotary embedding where the Llama family keeps them"
    if any(p.is_meta for p in model.parameters()):
        return "weights on the meta device"
    return None


def _interleave(rows: Tensor, heads: int, head_dim: int) -> Tensor:
    """Reorder each head's output rows from halves ``[a..., b...]`` to pairs ``[a0, b0, a1, b1, ...]``.

    Rotary embedding rotates (a_j, b_j) by an angle: with the pairs adjacent it is one complex multiply.
    """
    shape = rows.shape
    return rows.reshape(heads, 2, head_dim // 2, *shape[1:]).transpose(1, 2).reshape(shape)


def _eps(norm: Any) -> float:
    for name in ("variance_epsilon", "eps"):
        if hasattr(norm, name):
            return float(getattr(norm, name))
    raise ValueError(f"cannot read the epsilon of {type(norm).__name__}")



def _activation_name(act: Any) -> str | None:
    """``silu`` or ``gelu_tanh`` when the MLP activation computes one of them (checked on values), else None."""
    probe = torch.linspace(-6, 6, 97)
    with torch.no_grad():
        got = act(probe)
    for name, ref in (("silu", F.silu(probe)), ("gelu_tanh", F.gelu(probe, approximate="tanh"))):
        if torch.allclose(got, ref, atol=1e-5, rtol=1e-4):
            return name
    return None


def quantize_rows(weight: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric int8 per output row: ``weight ≈ q * scale[:, None]`` (weight-only quantisation)."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q.contiguous(), scale.contiguous()


class StepMatrix:
    """One weight matrix of the decode step, stored in the inference dtype: ``y = W x (+ b)`` for one float32
    vector ``x``, float32 out. Uses :mod:`~omnikit.components.llms.kernels` (weights repacked for them) when
    they are loaded and the width is a multiple of 16, else torch's own product."""

    def __init__(self, weight: Tensor, bias: Tensor | None, dtype: torch.dtype, kernels: Any) -> None:
        self.rows, self.cols = (int(n) for n in weight.shape)
        self.dtype = dtype
        self.scale: Tensor | None = None
        if dtype == torch.int8:
            stored, self.scale = quantize_rows(weight)
        else:
            stored = weight.detach().to(dtype).contiguous()
        self.bias = None if bias is None else bias.detach().float().contiguous()
        usable = kernels is not None and kernels.supports(dtype) and self.cols % kernels_mod.COL_CHUNK == 0
        self.kernels = kernels if usable else None
        self.weight = kernels_mod.pack(stored) if usable else stored  # packed (flat) for the kernels

    @property
    def nbytes(self) -> int:
        """Bytes read per product (padding rows included; scales for int8)."""
        extra = 0 if self.scale is None else self.scale.numel() * 4
        return self.weight.numel() * self.weight.element_size() + extra

    def dense(self) -> Tensor:
        """The float32 ``(rows, cols)`` matrix this stands for (as rounded or quantised)."""
        w = kernels_mod.unpack(self.weight, self.rows, self.cols) if self.kernels is not None else self.weight
        w = w.float()
        return w if self.scale is None else w * self.scale[:, None]

    def __call__(self, x: Tensor, out: Tensor | None = None) -> Tensor:
        """``x`` (cols,) float32 contiguous -> (rows,) float32 (written into ``out`` when given)."""
        if self.kernels is not None:
            if out is None:
                out = torch.empty(self.rows, dtype=torch.float32, device=x.device)
            return self.kernels.gemv(self.weight, self.rows, self.cols, x, out, self.bias, self.scale)
        if self.scale is not None:
            y = torch.ops.aten._weight_int8pack_mm(x[None], self.weight, self.scale)[0]
        else:
            y = F.linear(x.to(self.dtype), self.weight).float()
        return y if self.bias is None else y + self.bias


class _Scratch(threading.local):
    """Per-thread output buffers of the step matrices (reused every step: no allocation per matrix product)."""

    def __init__(self) -> None:
        self.buffers: dict[tuple[str, int], Tensor] = {}


class FastDecoder:
    """The frozen LLM's forward pass for inference (see the module docstring).

    ``forward(embeds (n, H), cache) -> hidden (n, H)`` (float32, after the final norm) appends the n positions to
    ``cache``: one position (a decode step) runs on the inference-dtype copies (:class:`StepMatrix`); several
    (a prefill: system prompt, user turn, audio chunk) run as matrix-matrix products on the model's own weights,
    which are compute-bound and fastest in their own dtype. ``logits(hidden (H,)) -> (V,)`` float32.
    """

    def __init__(self, model: Any, dtype: torch.dtype, use_kernels: bool = True) -> None:
        reason = unsupported_reason(model)
        if reason:
            raise ValueError(f"fast decode path unavailable: {reason}")
        cfg = _text_config(model)
        base = getattr(model, model.base_model_prefix)
        first = base.layers[0].self_attn
        self.dtype = dtype
        self.device = next(model.parameters()).device
        self.kernels = kernels_mod.load() if use_kernels and self.device.type == "cpu" else None
        self.hidden_size = int(cfg.hidden_size)
        self.heads = int(cfg.num_attention_heads)
        self.kv_heads = int(cfg.num_key_value_heads)
        self.head_dim = int(getattr(first, "head_dim", None) or self.hidden_size // self.heads)
        self.groups = self.heads // self.kv_heads
        self.scale = float(getattr(first, "scaling", self.head_dim**-0.5))
        self.softcap = getattr(cfg, "final_logit_softcapping", None)
        gemma = cfg.model_type == "gemma"  # RMSNorm weight applied as (1 + w)
        self._rotary = base.rotary_emb
        self._rope: Tensor | None = None  # (positions, head_dim // 2) complex64
        self._scratch = _Scratch()
        hd, nq, nkv = self.head_dim, self.heads, self.kv_heads

        def norm_weight(norm: Any) -> Tensor:
            w = norm.weight.detach().float()
            return (1.0 + w) if gemma else w.clone()

        def step(weight: Tensor, bias: Tensor | None = None) -> StepMatrix:
            return StepMatrix(weight, bias, dtype, self.kernels)

        self.layers: list[dict[str, Any]] = []
        with torch.no_grad():
            for layer in base.layers:
                att, mlp = layer.self_attn, layer.mlp
                if any(getattr(lin, "bias", None) is not None
                       for lin in (att.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj)):
                    raise ValueError("fast decode path unavailable: biases outside q/k/v")
                wq = _interleave(att.q_proj.weight.detach().float() * self.scale, nq, hd)
                wk = _interleave(att.k_proj.weight.detach().float(), nkv, hd)
                bias = None
                if att.q_proj.bias is not None:
                    bias = torch.cat([_interleave(att.q_proj.bias.detach().float() * self.scale, nq, hd),
                                      _interleave(att.k_proj.bias.detach().float(), nkv, hd),
                                      att.v_proj.bias.detach().float()])
                gate_up = torch.cat([mlp.gate_proj.weight.detach(), mlp.up_proj.weight.detach()])
                self.layers.append({
                    "norm1": norm_weight(layer.input_layernorm),
                    "norm2": norm_weight(layer.post_attention_layernorm),
                    "eps": _eps(layer.input_layernorm),
                    "act": mlp.act_fn,
                    # decode step: inference-dtype copies, q/k/v and gate/up fused
                    "qkv": step(torch.cat([wq, wk, att.v_proj.weight.detach().float()]), bias),
                    "o": step(att.o_proj.weight),
                    "gate_up": step(gate_up),
                    "down": step(mlp.down_proj.weight),
                    # prefill: the model's own modules
                    "ref": (att.q_proj, att.k_proj, att.v_proj, att.o_proj, mlp.gate_proj, mlp.up_proj,
                            mlp.down_proj),
                })
                del wq, wk, gate_up
            self.final_norm = norm_weight(base.norm)
            self.final_eps = _eps(base.norm)
            self.head_ref = model.get_output_embeddings().weight  # the model's own LM head (exact refinement)
            self.lm_head = step(self.head_ref)
        self.intermediate = self.layers[0]["gate_up"].rows // 2
        self.program = self._compile_step(_activation_name(base.layers[0].mlp.act_fn))

    def _compile_step(self, act: str | None) -> kernels_mod.StepProgram | None:
        """The whole step as one C call when the kernels run every matrix (else the torch loop in ``_step``)."""
        mats = [layer[k] for layer in self.layers for k in ("qkv", "o", "gate_up", "down")]
        if self.kernels is None or act is None or self.head_dim % 2 or any(m.kernels is None for m in mats):
            return None
        tables = [
            {"qkv": w["qkv"].weight, "o": w["o"].weight, "gate_up": w["gate_up"].weight, "down": w["down"].weight,
             "qkv_bias": w["qkv"].bias, "qkv_scale": w["qkv"].scale, "o_scale": w["o"].scale,
             "gate_up_scale": w["gate_up"].scale, "down_scale": w["down"].scale,
             "norm1": w["norm1"], "norm2": w["norm2"]}
            for w in self.layers
        ]
        return kernels_mod.StepProgram(
            self.kernels, tables, hidden=self.hidden_size, heads=self.heads, kv_heads=self.kv_heads,
            head_dim=self.head_dim, inter=self.intermediate, act=act, dtype=self.dtype, eps=self.layers[0]["eps"],
            final_norm=self.final_norm, final_eps=self.final_eps,
        )

    # ------------------------------------------------------------------ sizes
    def weight_bytes(self) -> int:
        """Bytes one decode step reads from the weights (every matrix once, the LM head included)."""
        total = self.lm_head.nbytes
        for layer in self.layers:
            total += sum(layer[key].nbytes for key in ("qkv", "o", "gate_up", "down"))
        return total

    def new_cache(self, capacity: int = BLOCK) -> KVCache:
        shape = (len(self.layers), self.kv_heads, capacity, self.head_dim)
        return KVCache(torch.zeros(shape, device=self.device), torch.zeros(shape, device=self.device), 0)

    # ------------------------------------------------------------------ forward
    def _rope_table(self, end: int) -> Tensor:
        if self._rope is None or self._rope.shape[0] < end:
            cap = BLOCK * math.ceil(end / BLOCK)
            pos = torch.arange(cap, device=self.device)[None]
            probe = torch.zeros(1, device=self.device, dtype=torch.float32)
            with torch.no_grad():
                cos, sin = self._rotary(probe, pos)
            half = self.head_dim // 2
            self._rope = torch.complex(cos[0, :, :half].float(), sin[0, :, :half].float()).contiguous()
        return self._rope

    def _buffer(self, name: str, size: int) -> Tensor:
        key = (name, size)
        buf = self._scratch.buffers.get(key)
        if buf is None:
            buf = self._scratch.buffers[key] = torch.empty(size, dtype=torch.float32, device=self.device)
        return buf

    @torch.no_grad()
    def forward(self, embeds: Tensor, cache: KVCache) -> Tensor:
        """Run ``(n, H)`` input embeddings on top of ``cache``; returns ``(n, H)`` float32 final-norm hidden states."""
        embeds = embeds.reshape(-1, self.hidden_size)
        cache.reserve(cache.length + embeds.shape[0])
        if embeds.shape[0] == 1:
            return self._step(embeds[0], cache)[None]
        x = self._prefill(embeds, cache)
        return F.rms_norm(x, (self.hidden_size,), self.final_norm, self.final_eps)

    def _step(self, embed: Tensor, cache: KVCache) -> Tensor:
        """One position on the inference-dtype matrices; returns the (H,) final-norm hidden state."""
        pos = cache.length
        end = pos + 1
        x = embed.to(self.device, torch.float32, copy=True).contiguous()
        rope = self._rope_table(end)[pos]  # (hd/2,) complex
        if self.program is not None:  # one C call for the whole layer stack
            out = torch.empty(self.hidden_size, dtype=torch.float32, device=self.device)
            scratch = self._buffer("step", self.program.scratch_floats + cache.capacity)
            self.program(x, out, cache.k, cache.v, pos, rope, scratch)
            cache.length = end
            return out
        hd, nq, nkv, size = self.head_dim, self.heads, self.kv_heads, self.hidden_size
        qk_rows = (nq + nkv) * hd
        for i, w in enumerate(self.layers):
            h = F.rms_norm(x, (size,), w["norm1"], w["eps"])
            qkv = w["qkv"](h, self._buffer("qkv", w["qkv"].rows))
            qk = torch.view_as_real(torch.view_as_complex(qkv[:qk_rows].view(nq + nkv, hd // 2, 2)) * rope)
            cache.ks[i][:, pos] = qk[nq:].view(nkv, hd)
            cache.vs[i][:, pos] = qkv[qk_rows:].view(nkv, hd)
            q = qk[:nq].view(nkv, self.groups, hd)
            att = torch.softmax(q @ cache.ks[i][:, :end].transpose(1, 2), dim=-1) @ cache.vs[i][:, :end]
            x.add_(w["o"](att.view(nq * hd), self._buffer("o", size)))
            h = F.rms_norm(x, (size,), w["norm2"], w["eps"])
            gu = w["gate_up"](h, self._buffer("gate_up", w["gate_up"].rows))
            x.add_(w["down"](w["act"](gu[: self.intermediate]) * gu[self.intermediate :], self._buffer("down", size)))
        cache.length = end
        return F.rms_norm(x, (size,), self.final_norm, self.final_eps)

    def _prefill(self, embeds: Tensor, cache: KVCache) -> Tensor:
        """Several positions as matrix-matrix products on the model's own weights; returns (n, H) residuals."""
        start, n = cache.length, embeds.shape[0]
        end = start + n
        x = embeds.to(self.device, torch.float32, copy=True)
        rope = self._rope_table(end)[start:end].unsqueeze(1)  # (n, 1, hd/2)
        mask = torch.ones(n, end, dtype=torch.bool, device=self.device).tril(start)  # causal in the block
        hd, nq, nkv, size = self.head_dim, self.heads, self.kv_heads, self.hidden_size

        def lin(module: Any, h: Tensor) -> Tensor:
            return F.linear(h.to(module.weight.dtype), module.weight, module.bias).float()

        def rotate(t: Tensor, heads: int) -> Tensor:  # (n, heads*hd) halves -> interleaved pairs, rotated
            pairs = t.view(n, heads, 2, hd // 2).transpose(2, 3).contiguous()
            return torch.view_as_real(torch.view_as_complex(pairs) * rope).reshape(n, heads, hd)

        for i, w in enumerate(self.layers):
            q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj = w["ref"]
            h = F.rms_norm(x, (size,), w["norm1"], w["eps"])
            q = rotate(lin(q_proj, h) * self.scale, nq)
            cache.ks[i][:, start:end] = rotate(lin(k_proj, h), nkv).transpose(0, 1)
            cache.vs[i][:, start:end] = lin(v_proj, h).view(n, nkv, hd).transpose(0, 1)
            att = F.scaled_dot_product_attention(
                q.transpose(0, 1)[None], cache.ks[i][None, :, :end], cache.vs[i][None, :, :end],
                attn_mask=mask, scale=1.0, enable_gqa=True,
            )
            x = x + lin(o_proj, att[0].transpose(0, 1).reshape(n, nq * hd))
            h = F.rms_norm(x, (size,), w["norm2"], w["eps"])
            x = x + lin(down_proj, w["act"](lin(gate_proj, h)) * lin(up_proj, h))
        cache.length = end
        return x

    @torch.no_grad()
    def logits(self, hidden: Tensor) -> Tensor:
        """``(V,)`` float32 logits of one hidden state; after a reduced-precision LM head the :data:`REFINE_TOP`
        largest are recomputed with the model's own LM-head rows, so rounding does not choose the token."""
        hidden = hidden.to(self.device, torch.float32).reshape(-1).contiguous()
        logits = self.lm_head(hidden)
        if self.lm_head.dtype != self.head_ref.dtype:
            top = torch.topk(logits, min(REFINE_TOP, logits.numel())).indices
            logits[top] = self.head_ref[top].float() @ hidden
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    # ------------------------------------------------------------------ self-check
    @torch.no_grad()
    def check_against(self, model: Any, embeds: Tensor, atol: float) -> float:
        """Largest difference (relative to the largest value) between this path and ``model``'s own forward on
        ``(n, H)`` embeddings fed as a prefill and two single steps; ``ValueError`` above ``atol``."""
        base = getattr(model, model.base_model_prefix)
        ref = base(inputs_embeds=embeds[None].to(next(model.parameters()).dtype), use_cache=False)
        ref = ref.last_hidden_state[0].float()
        cache = self.new_cache()
        split = max(1, embeds.shape[0] - 2)
        parts = [self.forward(embeds[:split], cache)]
        parts += [self.forward(embeds[j : j + 1], cache) for j in range(split, embeds.shape[0])]
        err = float(((torch.cat(parts) - ref).abs().max() / ref.abs().max().clamp_min(1.0)).item())
        if not err <= atol:
            raise ValueError(f"fast decode path differs from the model's own forward ({err:.2e} > {atol:.0e})")
        return err

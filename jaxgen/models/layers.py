"""Blocks shared by the UNet and the VAE, named as diffusers names them.

Submodule names follow the PyTorch attribute paths with list indices joined
by an underscore (`resnets.0` -> `resnets_0`), so loading weights is a rename
and a transpose (see jaxgen.weights.convert).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = jnp.dtype | type

ATTENTION_IMPLEMENTATIONS = (None, "xla", "cudnn")
# Read while tracing: a compiled program keeps the choice made when it was traced.
_IMPLEMENTATION: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "attention_implementation", default=None)
_RECORD: contextvars.ContextVar[list | None] = contextvars.ContextVar("attention_record",
                                                                       default=None)


def group_norm(groups: int, eps: float, name: str, dtype: Dtype) -> nn.GroupNorm:
    # use_fast_variance=False: E[x^2]-E[x]^2 loses digits that parity with PyTorch needs.
    return nn.GroupNorm(
        num_groups=groups, epsilon=eps, use_fast_variance=False, dtype=dtype, name=name
    )


def layer_norm(eps: float, name: str, dtype: Dtype) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=eps, use_fast_variance=False, dtype=dtype, name=name)


def conv(features: int, kernel: int, name: str, dtype: Dtype, stride: int = 1,
         padding: int | None = None) -> Conv2d:
    """A PyTorch-style Conv2d: symmetric integer padding, kernel // 2 by default."""
    p = kernel // 2 if padding is None else padding
    return Conv2d(features, kernel, stride, p, dtype=dtype, name=name)


class Conv2d(nn.Module):
    """nn.Conv's parameters ("kernel" HWIO, "bias") and result, computed as patches x kernel
    matrix where XLA's CPU convolution is slow (see use_matmul)."""

    features: int
    kernel: int
    stride: int = 1
    padding: int = 0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, s, p = self.kernel, self.stride, self.padding
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (k, k, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        if use_matmul(x.shape, k, s, p):
            y = _patches_matmul(x, kernel, s, p)
        else:
            y = jax.lax.conv_general_dilated(x, kernel, (s, s), ((p, p), (p, p)),
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + bias


def use_matmul(shape: tuple[int, ...], kernel: int, stride: int, padding: int) -> bool:
    """On CPU, a conv with few output positions and many channels is faster as one matmul:
    XLA turns a 3x3 conv at 2x2 into a kernel-reversed Eigen conv, and at <= 8x8 with >= 512
    channels the matmul wins too (the figures: docs/benchmarks.md)."""
    if jax.default_backend() != "cpu":
        return False
    _, h, w, cin = shape
    out = ((h + 2 * padding - kernel) // stride + 1) * ((w + 2 * padding - kernel) // stride + 1)
    return out <= 4 or (out <= 64 and cin >= 512)


def _patches_matmul(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    k = kernel.shape[0]
    n, h, w, c = x.shape
    ho, wo = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    taps = [x[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride, :]
            for i in range(k) for j in range(k)]  # (kh, kw, cin) order, as the HWIO kernel
    patches = jnp.concatenate(taps, axis=-1).reshape(n * ho * wo, k * k * c)
    return (patches @ kernel.reshape(k * k * c, -1)).reshape(n, ho, wo, -1)


def gelu_exact(x: jax.Array) -> jax.Array:
    # PyTorch's nn.GELU() and F.gelu default to the erf form; flax's default is tanh.
    return jax.nn.gelu(x, approximate=False)


def timestep_embedding(timesteps: jax.Array, dim: int, flip_sin_to_cos: bool,
                       freq_shift: float, max_period: float = 10000.0) -> jax.Array:
    """Sinusoidal embedding of (possibly fractional) timesteps, as diffusers' Timesteps."""
    half = dim // 2
    exponent = -math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - freq_shift)
    args = timesteps.astype(jnp.float32)[:, None] * jnp.exp(exponent)[None, :]
    sin, cos = jnp.sin(args), jnp.cos(args)
    emb = jnp.concatenate([cos, sin] if flip_sin_to_cos else [sin, cos], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


class TimestepEmbedding(nn.Module):
    features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Dense(self.features, dtype=self.dtype, name="linear_1")(x)
        return nn.Dense(self.features, dtype=self.dtype, name="linear_2")(nn.silu(x))


class Attention(nn.Module):
    """Multi-head attention with diffusers' to_q/to_k/to_v/to_out.0 projections."""

    heads: int
    dim_head: int
    out_dim: int
    qkv_bias: bool = False
    upcast: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array | None = None) -> jax.Array:
        return project_attend(x, x if context is None else context, self.heads, self.dim_head,
                              self.out_dim, self.qkv_bias, self.upcast, self.dtype)


def project_attend(x: jax.Array, context: jax.Array, heads: int, dim_head: int, out_dim: int,
                   qkv_bias: bool, upcast: bool, dtype: Dtype) -> jax.Array:
    """Projections + attention, declared in the CALLING compact module (its param scope)."""
    inner = heads * dim_head
    q = nn.Dense(inner, use_bias=qkv_bias, dtype=dtype, name="to_q")(x)
    k = nn.Dense(inner, use_bias=qkv_bias, dtype=dtype, name="to_k")(context)
    v = nn.Dense(inner, use_bias=qkv_bias, dtype=dtype, name="to_v")(context)
    out = attend(q, k, v, heads, upcast=upcast)
    return nn.Dense(out_dim, dtype=dtype, name="to_out_0")(out)


def attend(q: jax.Array, k: jax.Array, v: jax.Array, heads: int, *, upcast: bool = False,
           causal: bool = False) -> jax.Array:
    """Scaled dot-product attention over [B, T, heads*dim] projections."""
    b, tq, inner = q.shape
    tk = k.shape[1]
    dtype = q.dtype
    split = [t.reshape(b, n, heads, inner // heads) for t, n in ((q, tq), (k, tk), (v, tk))]
    if upcast:
        split = [t.astype(jnp.float32) for t in split]
    out = _dot_product_attention(*split, causal=causal)
    return out.reshape(b, tq, inner).astype(dtype)


@contextlib.contextmanager
def attention_implementation(name: str | None) -> Iterator[None]:
    """Trace attention with `name`: None/"xla" (XLA's matmuls) or "cudnn" (fused kernel, used
    per layer where the head dim and dtype fit, XLA elsewhere)."""
    if name not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(f"attention {name!r}: must be one of {ATTENTION_IMPLEMENTATIONS}")
    token = _IMPLEMENTATION.set(name)
    try:
        yield
    finally:
        _IMPLEMENTATION.reset(token)


@contextlib.contextmanager
def record_attention() -> Iterator[list[tuple[str, int]]]:
    """Collect (implementation, head dim) of every attention layer traced inside the block."""
    record: list[tuple[str, int]] = []
    token = _RECORD.set(record)
    try:
        yield record
    finally:
        _RECORD.reset(token)


def cudnn_fits(head_dim: int, dtype: Dtype) -> bool:
    # cuDNN's fused attention: half precision, head dim a multiple of 8 and at most 128
    # (SD 1.5's 160 at the coarsest level falls back to XLA).
    return head_dim % 8 == 0 and head_dim <= 128 and jnp.dtype(dtype) in (jnp.bfloat16,
                                                                          jnp.float16)


def _dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, causal: bool) -> jax.Array:
    head_dim, chosen = q.shape[-1], "xla"
    out = None
    if _IMPLEMENTATION.get() == "cudnn" and cudnn_fits(head_dim, q.dtype):
        try:
            out = jax.nn.dot_product_attention(q, k, v, is_causal=causal, implementation="cudnn")
            chosen = "cudnn"
        except (RuntimeError, ValueError, NotImplementedError):  # no cuDNN, or shapes it rejects
            out = None
    if out is None:
        out = jax.nn.dot_product_attention(q, k, v, is_causal=causal)
    record = _RECORD.get()
    if record is not None:
        record.append((chosen, head_dim))
    return out


class ResnetBlock2D(nn.Module):
    out_channels: int
    groups: int = 32
    eps: float = 1e-5
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array | None = None) -> jax.Array:
        h = nn.silu(group_norm(self.groups, self.eps, "norm1", self.dtype)(x))
        h = conv(self.out_channels, 3, "conv1", self.dtype)(h)
        if temb is not None:
            t = nn.Dense(self.out_channels, dtype=self.dtype, name="time_emb_proj")(nn.silu(temb))
            h = h + t[:, None, None, :]
        h = nn.silu(group_norm(self.groups, self.eps, "norm2", self.dtype)(h))
        h = conv(self.out_channels, 3, "conv2", self.dtype)(h)
        if x.shape[-1] != self.out_channels:
            x = conv(self.out_channels, 1, "conv_shortcut", self.dtype, padding=0)(x)
        return x + h


class Downsample2D(nn.Module):
    channels: int
    # The VAE encoder pads only right/bottom and convolves unpadded (diffusers padding=0).
    asymmetric_pad: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.asymmetric_pad:
            x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
            return conv(self.channels, 3, "conv", self.dtype, stride=2, padding=0)(x)
        return conv(self.channels, 3, "conv", self.dtype, stride=2, padding=1)(x)


class Upsample2D(nn.Module):
    channels: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)  # nearest-neighbour 2x
        return conv(self.channels, 3, "conv", self.dtype)(x)


class GEGLU(nn.Module):
    features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.Dense(self.features * 2, dtype=self.dtype, name="proj")(x)
        h, gate = jnp.split(h, 2, axis=-1)
        return h * gelu_exact(gate)


class FeedForward(nn.Module):
    dim: int
    mult: int = 4
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = GEGLU(self.dim * self.mult, dtype=self.dtype, name="net_0")(x)
        return nn.Dense(self.dim, dtype=self.dtype, name="net_2")(x)


class BasicTransformerBlock(nn.Module):
    dim: int
    heads: int
    dim_head: int
    upcast_attention: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array) -> jax.Array:
        def attn(name: str) -> Attention:
            return Attention(self.heads, self.dim_head, self.dim, upcast=self.upcast_attention,
                             dtype=self.dtype, name=name)

        x = x + attn("attn1")(layer_norm(1e-5, "norm1", self.dtype)(x))
        x = x + attn("attn2")(layer_norm(1e-5, "norm2", self.dtype)(x), context)
        return x + FeedForward(self.dim, dtype=self.dtype, name="ff")(
            layer_norm(1e-5, "norm3", self.dtype)(x))


class Transformer2DModel(nn.Module):
    heads: int
    dim_head: int
    num_layers: int = 1
    groups: int = 32
    use_linear_projection: bool = False
    upcast_attention: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        inner = self.heads * self.dim_head
        residual = x
        x = group_norm(self.groups, 1e-6, "norm", self.dtype)(x)
        if self.use_linear_projection:
            x = nn.Dense(inner, dtype=self.dtype, name="proj_in")(x.reshape(b, h * w, c))
        else:
            x = conv(inner, 1, "proj_in", self.dtype, padding=0)(x).reshape(b, h * w, inner)
        for i in range(self.num_layers):
            x = BasicTransformerBlock(inner, self.heads, self.dim_head, self.upcast_attention,
                                      dtype=self.dtype, name=f"transformer_blocks_{i}")(x, context)
        if self.use_linear_projection:
            x = nn.Dense(c, dtype=self.dtype, name="proj_out")(x).reshape(b, h, w, c)
        else:
            x = conv(c, 1, "proj_out", self.dtype, padding=0)(x.reshape(b, h, w, inner))
        return x + residual

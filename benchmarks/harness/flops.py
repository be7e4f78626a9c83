"""FLOPs per image: XLA's own count of the compiled programs, and an analytic UNet count.

XLA's cost analysis counts a while loop's body once, so the whole program's count is
text encoder + ONE guided UNet step + VAE decode; the per-image total is assembled from the
parts: text(2 prompts) + steps x UNet(2 latents, guided) + VAE decode.
The analytic count walks the UNet config the way jaxgen.models.unet builds it and counts
2 FLOPs per multiply-add of every conv, linear and attention matmul (norms, activations and
softmax are left out: they are <1% of the work).
"""

from __future__ import annotations

from jaxgen.models import UNetConfig
from jaxgen.models.config import per_block


def conv(hw: int, k: int, cin: int, cout: int) -> float:
    return 2.0 * hw * k * k * cin * cout


def linear(tokens: int, din: int, dout: int) -> float:
    return 2.0 * tokens * din * dout


def resnet(hw: int, cin: int, cout: int, temb: int) -> float:
    f = conv(hw, 3, cin, cout) + conv(hw, 3, cout, cout) + linear(1, temb, cout)
    return f + (conv(hw, 1, cin, cout) if cin != cout else 0.0)


def transformer(hw: int, ch: int, layers: int, text_len: int, text_dim: int) -> float:
    """Transformer2DModel: proj_in/out, then per layer self-attn, cross-attn, GEGLU FF."""
    inner = ch
    per_layer = (
        4 * linear(hw, inner, inner) + 4.0 * hw * hw * inner  # self: q,k,v,out + QK^T, PV
        + 2 * linear(hw, inner, inner) + 2 * linear(text_len, text_dim, inner)  # cross: q,out,k,v
        + 4.0 * hw * text_len * inner  # cross QK^T, PV
        + linear(hw, inner, 8 * inner) + linear(hw, 4 * inner, inner))  # GEGLU in, out
    return 2 * linear(hw, ch, inner) + layers * per_layer


def unet_flops(cfg: UNetConfig, height: int, width: int, text_len: int) -> float:
    """FLOPs of one UNet evaluation of ONE latent of height x width (latent pixels)."""
    n = len(cfg.block_out_channels)
    layers = per_block(cfg.layers_per_block, n)
    depth = per_block(cfg.transformer_layers_per_block, n)
    chans, temb, d = cfg.block_out_channels, 4 * cfg.block_out_channels[0], cfg.cross_attention_dim
    hw = height * width
    total = conv(hw, cfg.conv_in_kernel, cfg.in_channels, chans[0]) + linear(1, chans[0], temb) \
        + linear(1, temb, temb)
    skips, ch = [chans[0]], chans[0]
    for b, kind in enumerate(cfg.down_block_types):
        for _ in range(layers[b]):
            total += resnet(hw, ch, chans[b], temb)
            ch = chans[b]
            if kind.startswith("CrossAttn"):
                total += transformer(hw, ch, depth[b], text_len, d)
            skips.append(ch)
        if b < n - 1:
            hw //= 4
            total += conv(hw, 3, ch, ch)  # stride 2: counted at the output size
            skips.append(ch)
    total += 2 * resnet(hw, ch, ch, temb) + transformer(hw, ch, depth[-1], text_len, d)
    for u, kind in enumerate(cfg.up_block_types):
        b = n - 1 - u
        for _ in range(layers[b] + 1):
            total += resnet(hw, ch + skips.pop(), chans[b], temb)
            ch = chans[b]
            if kind.startswith("CrossAttn"):
                total += transformer(hw, ch, depth[b], text_len, d)
        if u < n - 1:
            hw *= 4
            total += conv(hw, 3, ch, ch)
    return total + conv(hw, cfg.conv_out_kernel, ch, cfg.out_channels)


def attention_matmul_flops(cfg: UNetConfig, height: int, width: int, text_len: int) -> float:
    """The part of unet_flops in attention QK^T and PV matmuls (grows with resolution^2)."""
    n = len(cfg.block_out_channels)
    layers = per_block(cfg.layers_per_block, n)
    depth = per_block(cfg.transformer_layers_per_block, n)
    total, hw = 0.0, height * width
    for b, kind in enumerate(cfg.down_block_types):
        if kind.startswith("CrossAttn"):
            total += layers[b] * depth[b] * 4.0 * hw * (hw + text_len) * cfg.block_out_channels[b]
        hw //= 4 if b < n - 1 else 1
    total += depth[-1] * 4.0 * hw * (hw + text_len) * cfg.block_out_channels[-1]
    for u, kind in enumerate(cfg.up_block_types):
        b = n - 1 - u
        if kind.startswith("CrossAttn"):
            total += (layers[b] + 1) * depth[b] * 4.0 * hw * (hw + text_len) \
                * cfg.block_out_channels[b]
        hw *= 4 if u < n - 1 else 1
    return total

"""Probes of Stable Diffusion XL at its real size (docs/sdxl.md)."""

"""jaxgen: prompt manifests in, image datasets out, with Flax latent diffusion on JAX."""

from typing import Any

__version__ = "0.1.0"
__all__ = ["generate"]


def __getattr__(name: str) -> Any:
    # Lazy: `import jaxgen` stays cheap for the CLI and Beam workers until JAX is needed.
    if name == "generate":
        from jaxgen.api import generate

        return generate
    raise AttributeError(f"module 'jaxgen' has no attribute {name!r}")

"""jaxgen: prompt manifests in, image datasets out, with Flax latent diffusion on JAX."""

__version__ = "0.1.0"

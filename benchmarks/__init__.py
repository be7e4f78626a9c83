"""Benchmarks of jaxgen against diffusers, run from the repo root as `python -m benchmarks.NAME`."""

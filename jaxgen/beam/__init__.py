"""Beam building blocks: the dataset pipeline's PTransforms and a RunInference handler.

Names are imported on first use: `apache_beam.ml.inference` imports torch when it is
installed, a second and hundreds of MB per process, which a dataset pipeline's workers do not need.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "GenerationModelHandler": "jaxgen.beam.inference",
    "pipeline_options": "jaxgen.beam.pipeline",
    "run_pipeline": "jaxgen.beam.pipeline",
    "profile_flags": "jaxgen.beam.profiles",
    "GenerateShards": "jaxgen.beam.transforms",
    "PlanShards": "jaxgen.beam.transforms",
    "ReadManifest": "jaxgen.beam.transforms",
    "ReportPlan": "jaxgen.beam.transforms",
    "WriteSummary": "jaxgen.beam.transforms",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'jaxgen.beam' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)

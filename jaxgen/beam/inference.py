"""A RunInference ModelHandler for generation requests, for users' own Beam pipelines.

Beam has no JAX ModelHandler; this one loads a jaxgen generator from a picklable spec
(once per worker process, through RunInference's own model sharing) and calls its
`generate` on each batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from apache_beam.ml.inference.base import ModelHandler

from jaxgen.requests import GenerationRequest, validate_request

if TYPE_CHECKING:
    from jaxgen.engine.types import GeneratedImage


class GenerationModelHandler(ModelHandler[GenerationRequest, "GeneratedImage", Any]):
    """RunInference handler: GenerationRequest in, one GeneratedImage per image out.

    `spec` is a picklable GeneratorSpec (`build()` loads and compiles the model); its
    generator must have `model_name`, `model_hash` and `generate(requests)`. Batching
    keyword arguments (min_batch_size, max_batch_size, large_model, model_copies, ...) go
    to Beam's ModelHandler. A request with num_images = n gives n outputs, so the output
    is not one-to-one with the input; use it unkeyed (KeyedModelHandler pairs keys with
    outputs by position). Requests without a seed get whatever seed the generator picks;
    set seeds for reproducible output.

    Example::

        import apache_beam as beam
        from apache_beam.ml.inference.base import RunInference
        from jaxgen.beam import GenerationModelHandler
        from jaxgen.requests import GenerationRequest

        handler = GenerationModelHandler(spec, max_batch_size=8)
        with beam.Pipeline(runner="FnApiRunner") as p:
            (
                p
                | beam.Create([GenerationRequest("a red circle", seed=1, height=64, width=64)])
                | RunInference(handler)
                | beam.Map(lambda g: (g.request.prompt, g.index, g.image.shape))
                | beam.Map(print)
            )
    """

    def __init__(self, spec: Any, *, size_multiple: int = 8, **kwargs: Any):
        super().__init__(**kwargs)
        self._spec = spec
        self._size_multiple = size_multiple

    def load_model(self) -> Any:
        return self._spec.build()

    def run_inference(
        self,
        batch: Sequence[GenerationRequest],
        model: Any,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[GeneratedImage]:
        requests = [validate_request(r, size_multiple=self._size_multiple) for r in batch]
        return list(model.generate(requests))

    def get_num_bytes(self, batch: Sequence[GenerationRequest]) -> int:
        return sum(len(r.prompt.encode()) + len(r.negative_prompt.encode()) for r in batch)

    def get_metrics_namespace(self) -> str:
        return "jaxgen"

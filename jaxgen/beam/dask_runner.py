"""Beam's DaskRunner with two fixes jaxgen's pipeline needs (`--runner DaskRunner` is this one).

1. A ParDo bundle gets its own output list. Beam's translation (2.78) gives every run of
   a ParDo's partition function the same list, so a ParDo run twice in one worker process
   (a side input read by two transforms, two partitions on one worker) returns the
   outputs of the earlier runs again: a singleton side input of two equal Plans.
2. `--dask_npartitions N` also spreads the input of each GroupByKey over N partitions.
   Beam applies it to Create only, and dask's task shuffle keeps its input's partition
   count, so a one-file manifest grouped into shards was one task on one worker.

Its result closes the dask client when the job ends. Everything else is Beam's: see
docs/scaling.md for what the Dask runner does not support.
"""

from __future__ import annotations

import contextlib
from typing import Any

import apache_beam as beam
from apache_beam.runners.common import DoFnInvoker, _OutputHandler
from apache_beam.runners.dask import dask_runner, transform_evaluator
from apache_beam.runners.dask.overrides import _GroupByKeyOnly
from apache_beam.runners.runner import PipelineState


def _run_bundle(items: Any, window_fn: Any, signature: Any, invoker_kwargs: dict) -> list:
    receivers = transform_evaluator.OneReceiver()  # this bundle's outputs, and only them
    handler = _OutputHandler(
        window_fn=window_fn, main_receivers=receivers[None], tagged_receivers=receivers,
        per_element_output_counter=None, output_batch_converter=None,
        process_yields_batches=False, process_batch_yields_elements=False)
    invoker = DoFnInvoker.create_invoker(signature, handler, **invoker_kwargs)
    invoker.invoke_setup()
    invoker.invoke_start_bundle()
    for item in items:
        invoker.invoke_process(item)
    invoker.invoke_finish_bundle()
    results = [v.value for v in receivers.values]
    invoker.invoke_teardown()
    return results


class _ParDo(transform_evaluator.ParDo):
    def apply(self, input_bag: Any, side_inputs: Any = None) -> Any:
        transform = self.transform
        args, kwargs = transform.raw_side_inputs
        main_input = next(iter(self.applied.main_inputs.values()))
        window_fn = getattr(getattr(main_input, "windowing", None), "windowfn", None)
        invoker_kwargs = dict(
            context=transform_evaluator.DoFnContext(transform.label, state=None),
            side_inputs=side_inputs, input_args=list(args), input_kwargs=kwargs,
            user_state_context=None, bundle_finalizer_param=beam.DoFn.BundleFinalizerParam())
        signature = transform_evaluator.DoFnSignature(transform.fn)
        return input_bag.map(transform_evaluator.get_windowed_value, window_fn).map_partitions(
            _run_bundle, window_fn, signature, invoker_kwargs)


class _GroupByKey(transform_evaluator.GroupByKey):
    def apply(self, input_bag: Any, side_inputs: Any = None) -> Any:
        n = self.bag_kwargs.get("npartitions")
        if n and input_bag.npartitions < n:
            input_bag = input_bag.repartition(npartitions=n)
        return super().apply(input_bag, side_inputs)


class _Result(dask_runner.DaskRunnerResult):
    """Beam's result, closing its dask client once the job has ended: an open one lingers
    in the calling process and, once the cluster is gone, logs reconnect tracebacks."""

    def wait_until_finish(self, duration: Any = None) -> str:
        try:
            return super().wait_until_finish(duration)
        finally:
            if PipelineState.is_terminal(self.state):
                with contextlib.suppress(OSError, TimeoutError):  # the scheduler is gone
                    self.client.close(timeout=10)


class DaskRunner(dask_runner.DaskRunner):
    """Beam's DaskRunner, translating ParDo and GroupByKey as the module docstring says."""

    def run_pipeline(self, pipeline: Any, options: Any) -> Any:
        table = transform_evaluator.TRANSLATIONS
        saved = dict(table)
        # The visitor reads Beam's module-level table while building the graph; restored
        # right after, so Beam's own DaskRunner is unchanged in this process.
        table[beam.ParDo], table[_GroupByKeyOnly] = _ParDo, _GroupByKey
        try:
            result = super().run_pipeline(pipeline, options)
            return _Result(result.client, result.futures)
        finally:
            table.clear()
            table.update(saved)

"""One system under test in its own process, driven line by line over stdin/stdout.

    python benchmarks/harness/worker.py SYSTEM CONFIG_JSON     (SYSTEM: jaxgen | diffusers | peak)

Its own process so that ru_maxrss is that system's peak alone; driven by the parent so that
the two systems' repeats interleave (each waits on stdin while the other runs). Requests are
JSON lines {"op": ..., ...}; each reply is one line starting with REPLY, other output is noise
from the libraries. `python benchmarks/harness/worker.py warmstart CONFIG_JSON` is a one-shot
process that times a fresh start (import, load, first image) against a filled compile cache.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

START = time.perf_counter()  # before the heavy imports: a warm start counts them
REPLY = "@@bench "


def main() -> None:
    system, config = sys.argv[1], json.loads(sys.argv[2])
    count = "--xla_force_host_platform_device_count"
    # the parent's device count (pytest's 8 simulated devices, say) must not leak in
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(count)]
    flags.append(config.get("xla_flags") or "")
    if config.get("host_devices", 1) > 1:
        flags.append(f"{count}={config['host_devices']}")
    os.environ["XLA_FLAGS"] = " ".join(f for f in flags if f)  # before the first jax import
    sys.path.insert(0, config["repo"])
    if system.startswith("train_"):
        from benchmarks.harness import train_systems as systems
    else:
        from benchmarks.harness import systems
    runner = systems.make(system, config)
    if system == "warmstart":
        _reply(runner.first_image(START))
        return
    _reply({"ready": True, "load_s": time.perf_counter() - START})
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        result = {} if op == "stats" else getattr(runner, op)(**request)
        result["loadavg"] = os.getloadavg()[0]
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        _reply(result)


def _reply(payload: dict) -> None:
    sys.stdout.write(REPLY + json.dumps(payload) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

"""The machine fusecc compiles for, as the passes that shape kernels see it.

A :class:`Target` is built once per compile: :func:`host_target` from the CPU the environment chooses
(``FUSECC_CPU``, ``FUSECC_CPU_FEATURES``, else this host), :func:`named_target` from an LLVM CPU name
(``fusecc-opt --target=znver3``). It holds what the loops phase needs: the vector width and register count
(from the CPU's features), the data caches (always this host's, read from sysfs: code compiled for another
CPU is still blocked for the caches it will most likely run next to), and the threads a run uses by default.

Passes take these as ordinary options (``plan-contractions{vector-width=8,...}``), so a pipeline printed in a
reproducer or a dump replays the same schedules anywhere: :meth:`Target.configure` writes them into every pass
of a pipeline that declares an option of the same name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """A CPU name and LLVM feature string, and what the passes read of them."""

    cpu: str
    features: str = dataclasses.field(repr=False)
    #: float32 lanes of the widest SIMD register
    vector_width: int
    vector_registers: int
    l1_bytes: int
    l2_bytes: int
    l3_bytes: int
    #: threads a run uses unless told otherwise
    threads: int

    def pass_options(self) -> dict[str, int]:
        """The options a pass may declare to learn the target, by option name."""
        return {"vector-width": self.vector_width, "vector-registers": self.vector_registers,
                "l1-bytes": self.l1_bytes, "l2-bytes": self.l2_bytes, "threads": self.threads}

    def configure(self, pipeline: str) -> str:
        """``pipeline`` with the target's options given to each pass that declares them, unless the pipeline
        already sets them (an override kept for experiments)."""
        import fusecc.lowering  # noqa: F401  (registers the loops phase's passes, whose options are looked up)
        from fusecc.passes.manager import parse_pipeline

        return ",".join(p.describe() for p in parse_pipeline(pipeline, self.pass_options()))


def _target(cpu: str, features: str, threads: int | None, cache: bool) -> Target:
    from fusecc.codegen import pool
    from fusecc.codegen.caches import host_caches
    from fusecc.codegen.target import required_features

    required = required_features(cpu, features)
    caches = host_caches()
    width = 16 if "avx512f" in required else 8 if "avx" in required else 4
    return Target(cpu, features, width, 32 if "avx512f" in required else 16, caches.l1, caches.l2, caches.l3,
                  threads or pool.default_threads(cache))


def host_target(threads: int | None = None, cache: bool = True) -> Target:
    """The target the environment chooses (``FUSECC_CPU`` and ``FUSECC_CPU_FEATURES``, else this host), run
    by ``threads`` threads (default: the thread pool's, see ``runtime/threadpool.h``, which asking builds
    unless the compile cache holds it; ``cache=False`` leaves the cache alone)."""
    from fusecc.codegen.target import host_cpu_features, host_cpu_name, check_environment_target

    check_environment_target()
    return _target(host_cpu_name(), host_cpu_features(), threads, cache)


def named_target(cpu: str, threads: int | None = None, cache: bool = True) -> Target:
    """The CPU LLVM knows as ``cpu`` (``host``: :func:`host_target`), with that CPU's default features."""
    if cpu == "host":
        return host_target(threads, cache)
    from fusecc.codegen.cpu import check_target

    check_target(cpu, "", cpu_source="--target")
    return _target(cpu, "", threads, cache)

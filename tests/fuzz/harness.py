"""One fuzzing process: `python -m tests.fuzz.harness TARGET [libFuzzer flags...]`, started by
tests/fuzz/run.py with the sanitizer runtime preloaded; imports the debug build, then the target."""

from __future__ import annotations

import sys
from pathlib import Path

WARM_UP_SEEDS = 20


def main() -> None:
    from tests.fuzz.debug_build import use_debug_modules
    from tests.fuzz.targets import TARGETS

    target = TARGETS[sys.argv[1]]
    use_debug_modules()
    import atheris

    if target.instrument:
        with atheris.instrument_imports(include=list(target.instrument)):
            module = target.module()
    else:
        module = target.module()
    from ngfw._fastpath import engine

    assert "build/debug" in engine.__file__, engine.__file__
    # lazy imports and caches fill on the first inputs: done here, their one-time allocations are not
    # taken for an input's leak (libFuzzer checks leaks of inputs that allocate more than they free)
    seeds = Path(__file__).resolve().parent / "seeds" / target.name
    for seed in sorted(seeds.iterdir())[:WARM_UP_SEEDS] if seeds.is_dir() else []:
        module.one_input(seed.read_bytes())
    atheris.Setup([sys.argv[0], *sys.argv[2:]], module.one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

"""Run a fuzz target on the sanitizer build: `python -m tests.fuzz.run TARGET|all --seconds N`.

Builds the debug extension when a fastpath source changed (tests/fuzz/debug_build.py), runs libFuzzer
through atheris in a child process with the ASan runtime preloaded, and writes what it reached to
build/fuzz/TARGET/last_run.json (and one line per run to build/fuzz/runs.jsonl). Every input that
crashed, hung, leaked or ran out of memory is copied to tests/fuzz/regressions/TARGET/, where
tests/unit/test_fuzz_regressions.py replays it on the normal build and every later run of the target
replays it under the sanitizers first. Exit status: 0 no finding, 1 findings, 2 the run could not be made.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fuzz.debug_build import REPO, BuildError, build_modules, build_runtime
from tests.fuzz.targets import TARGETS

OUT = REPO / "build" / "fuzz"
SEEDS = REPO / "tests" / "fuzz" / "seeds"
REGRESSIONS = REPO / "tests" / "fuzz" / "regressions"
FINDING_KINDS = ("crash", "timeout", "leak", "oom", "slow-unit")
HANG_SECONDS = 10
MAX_RESTARTS = 20
STATUS = re.compile(r"#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)/\S+.*?exec/s: (\d+) rss: (\d+)Mb")


def sanitizer_env(runtime: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LD_PRELOAD=str(runtime),
        # every Python object in its own malloc block, so ASan sees past the end of a bytes object too
        PYTHONMALLOC="malloc",
        PYTHONPATH=str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
        # libFuzzer's per-input leak check (-detect_leaks) runs LSan when an input left more blocks than it
        # freed; a 64 MB quarantine (of 256) keeps a rule compiler's churn from reading as a 2 GB RSS "oom"
        ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1:detect_stack_use_after_return=0:"
        "quarantine_size_mb=64:handle_segv=1:handle_abort=1:symbolize=1",
        UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1",
        LSAN_OPTIONS=f"suppressions={REPO / 'tests' / 'fuzz' / 'lsan.supp'}:print_suppressions=0",
    )
    return env


def run_target(
    name: str, seconds: int, log_dir: Path, runtime: Path, keep_going: bool = False, seed: int = 0
) -> dict[str, object]:
    """Fuzz `name` for `seconds`; with `keep_going`, a finding restarts libFuzzer on the grown corpus until the
    time is used (at most MAX_RESTARTS times), so one long run collects every bug it can reach."""
    target = TARGETS[name]
    work = OUT / name
    corpus, artifacts = work / "corpus", work / "artifacts"
    for d in (corpus, artifacts):
        d.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in artifacts.iterdir()}
    seeds = SEEDS / name
    log = log_dir / f"{name}.log"
    # the inputs that found bugs run first, under the sanitizers: the normal build cannot see an over-read
    found = REGRESSIONS / name
    started = time.monotonic()
    executions = 0
    failed_exits = []
    log.write_text("")
    for _ in range(MAX_RESTARTS + 1):
        left = seconds - round(time.monotonic() - started)
        if left < 5:
            break
        args = [
            sys.executable,
            "-m",
            "tests.fuzz.harness",
            name,
            str(corpus),
            *(str(d) for d in (seeds, found) if d.is_dir()),
            f"-max_total_time={left}",
            f"-timeout={HANG_SECONDS}",
            "-rss_limit_mb=2048",
            f"-max_len={target.max_len}",
            f"-artifact_prefix={artifacts}/",
            "-print_final_stats=1",
            f"-detect_leaks={int(target.leak_check)}",
            *([f"-seed={seed}"] if seed else []),
        ]
        with open(log, "a") as out:
            done = subprocess.run(
                args, cwd=REPO, env=sanitizer_env(runtime), stdout=out, stderr=subprocess.STDOUT, timeout=left + 600
            )
        segment = log.read_text(errors="replace").rsplit("INFO: Running with", 1)[-1]
        ran = re.findall(r"stat::number_of_executed_units:\s+(\d+)", segment) or [
            m[0] for m in STATUS.findall(segment)[-1:]
        ]
        executions += int(ran[-1]) if ran else 0
        # libFuzzer's per-input alarm can go off while the interpreter is torn down after a run that ended
        # on time ("Done N runs"): not a hang of any input
        if done.returncode == 0 or (done.returncode == -signal.SIGALRM and "\nDone " in segment):
            break
        failed_exits.append(done.returncode)
        if not keep_going:
            break
    elapsed = time.monotonic() - started
    text = log.read_text(errors="replace")
    status = STATUS.findall(text)
    last = status[-1] if status else None
    findings = []
    for path in sorted(artifacts.iterdir()):
        if path.name in before or not path.name.startswith(FINDING_KINDS):
            continue
        kind = path.name.split("-")[0]
        data = path.read_bytes()
        keep = REGRESSIONS / name / f"{kind}-{hashlib.sha1(data).hexdigest()[:16]}"
        keep.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, keep)
        findings.append(str(keep.relative_to(REPO)))
    if len(failed_exits) > len(findings):
        findings.append(f"exits {failed_exits} for {len(findings)} artifacts: see {log}")
    record: dict[str, object] = {
        "target": name,
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "seconds": round(elapsed),
        "executions": executions,
        "exec_per_second": round(executions / max(elapsed, 1)),
        "coverage_edges": int(last[2]) if last else 0,
        "features": int(last[3]) if last else 0,
        "corpus": int(last[4]) if last else 0,
        "peak_rss_mb": max([int(m[6]) for m in status] or [0]),
        "findings": findings,
        "log": str(log),
    }
    (work / "last_run.json").write_text(json.dumps(record, indent=1) + "\n")
    with open(OUT / "runs.jsonl", "a") as runs:
        runs.write(json.dumps(record) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=[*TARGETS, "all"])
    parser.add_argument("--seconds", type=int, default=60, help="how long to fuzz (each target, with `all`)")
    parser.add_argument("--keep-going", action="store_true", help="after a finding, go on fuzzing until the time is up")
    parser.add_argument("--seed", type=int, default=0, help="libFuzzer's random seed (0: a new one each run)")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    try:
        print("fuzz: building the debug extension (build/debug/) if a fastpath source changed", flush=True)
        build_modules(OUT / "debug_build.log")
        runtime = build_runtime()
    except BuildError as exc:
        print(f"fuzz: {exc}", file=sys.stderr)
        return 2
    names = list(TARGETS) if args.target == "all" else [args.target]
    found = False
    for name in names:
        r = run_target(name, args.seconds, OUT, runtime, args.keep_going, args.seed)
        print(
            f"fuzz {name}: {r['seconds']} s, {r['executions']} executions ({r['exec_per_second']}/s), "
            f"{r['coverage_edges']} edges, {r['features']} features, corpus {r['corpus']}, "
            f"{len(r['findings'])} findings" + "".join(f"\n  {f}" for f in r["findings"]),
            flush=True,
        )
        found = found or bool(r["findings"])
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

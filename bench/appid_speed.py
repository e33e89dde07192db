#!/usr/bin/env python3
"""App-ID speed: `ngfw replay --json` against nDPI's `ndpiReader` on the same captures.

    python bench/appid_speed.py [--corpus /work/shared/corpus/appid] [--ngfw "ngfw replay"]
                                [--ndpi ndpiReader] [--reps 5] [--per-file] [--many 408] [--alternate]
                                [--json out.json]

Each tool runs as one process over the whole corpus (ndpiReader reads a playlist file: `-i` with
a text file of capture paths, `-q` so it only classifies and prints nothing per flow), N times;
the medians of wall-clock time are compared. Both numbers include process start-up (Python's and
nDPI's protocol setup): that is what a user running either tool pays. `--many N` runs both tools over N
files instead, the corpus's captures copied round-robin into a temporary directory: what nDPI's regression
suite (408 small files besides the shared ones) looks like, where the per-file cost dominates. `--per-file` also times
one ndpiReader process per capture, for reference. `--alternate` runs one of each at every repetition
instead of all of ngfw's then all of ndpiReader's, so that on a shared machine both see the same load; the
medians of each process's CPU time are printed too. ndpiReader comes from the Debian package
libndpi-bin (deploy/packages-lab.txt).
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from ngfw.corpus import corpus

DEFAULT_CORPUS = corpus("appid")
PCAP_SUFFIXES = (".pcap", ".pcapng", ".cap")


def corpus_pcaps(corpus: Path) -> list[Path]:
    directory = corpus / "pcaps" if (corpus / "pcaps").is_dir() else corpus
    return sorted(p for p in directory.iterdir() if p.suffix in PCAP_SUFFIXES and p.is_file())


def many_copy(directory: Path, index: int, source: Path) -> Path:
    target = directory / f"{index:04d}-{source.name}"
    shutil.copyfile(source, target)
    return target


CPU_TIMES: dict[str, list[float]] = {}  # per tool (argv[0]), the CPU seconds of each run, for --alternate


def timed(argv: Sequence[str]) -> float:
    """Wall-clock seconds of one run; a failing run aborts the benchmark (its time means nothing)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU_TIMES.setdefault(argv[0], []).append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    if done.returncode != 0:
        sys.stderr.write(done.stderr.decode(errors="replace")[-2000:])
        raise SystemExit(f"{argv[0]} exited with {done.returncode}")
    return elapsed


def median_of(reps: int, run: Callable[[], float]) -> tuple[float, list[float]]:
    times = [run() for _ in range(reps)]
    return statistics.median(times), times


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--ngfw", default="ngfw replay")
    parser.add_argument("--ndpi", default="ndpiReader")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--per-file", action="store_true", help="also time one ndpiReader process per capture")
    parser.add_argument(
        "--many",
        type=int,
        default=0,
        metavar="N",
        help="replay N files: the corpus's captures copied round-robin (many small files)",
    )
    parser.add_argument(
        "--alternate",
        action="store_true",
        help="run the two tools one after the other at each repetition and report CPU time too "
        "(on a shared machine both then see the same load)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    pcaps = corpus_pcaps(args.corpus)
    copies: tempfile.TemporaryDirectory[str] | None = None
    if args.many:
        copies = tempfile.TemporaryDirectory(prefix="appid-many-")
        pcaps = [many_copy(Path(copies.name), i, pcaps[i % len(pcaps)]) for i in range(args.many)]
    if shutil.which(args.ndpi) is None:
        raise SystemExit(f"{args.ndpi} not found: apt-get install -y libndpi-bin")
    ngfw_command = shlex.split(args.ngfw)
    if shutil.which(ngfw_command[0]) is None:
        raise SystemExit(
            f"{ngfw_command[0]} not found: activate the project's virtualenv or give --ngfw "
            f'"{sys.executable} -m ngfw replay"'
        )
    ngfw_argv = [*ngfw_command, "--json", *map(str, pcaps)]

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as playlist:
        playlist.write("".join(f"{p}\n" for p in pcaps))
    try:
        timed(ngfw_argv)  # warm the page cache (and any import caches) for both tools alike
        timed([args.ndpi, "-i", playlist.name, "-q"])
        CPU_TIMES.clear()
        if args.alternate:
            pairs = [(timed(ngfw_argv), timed([args.ndpi, "-i", playlist.name, "-q"])) for _ in range(args.reps)]
            ngfw_times, ndpi_times = [a for a, _ in pairs], [b for _, b in pairs]
            ngfw_median, ndpi_median = statistics.median(ngfw_times), statistics.median(ndpi_times)
        else:
            ngfw_median, ngfw_times = median_of(args.reps, lambda: timed(ngfw_argv))
            ndpi_median, ndpi_times = median_of(args.reps, lambda: timed([args.ndpi, "-i", playlist.name, "-q"]))
        ngfw_cpu = statistics.median(CPU_TIMES[ngfw_argv[0]])
        ndpi_cpu = statistics.median(CPU_TIMES[args.ndpi])
        per_file: tuple[float, list[float]] | None = None
        if args.per_file:
            per_file = median_of(args.reps, lambda: sum(timed([args.ndpi, "-i", str(p), "-q"]) for p in pcaps))
    finally:
        Path(playlist.name).unlink(missing_ok=True)
        if copies is not None:
            copies.cleanup()

    ratio = ngfw_median / ndpi_median if ndpi_median else float("inf")
    lines = [
        f"## App-ID speed: {len(pcaps)} captures, median of {args.reps}",
        "",
        "| tool | median s | runs s |",
        "|---|---:|---|",
        f"| `{args.ngfw} --json` (one process) | {ngfw_median:.3f} | {', '.join(f'{t:.3f}' for t in ngfw_times)} |",
        f"| `{args.ndpi} -i playlist -q` (one process) | {ndpi_median:.3f} | {', '.join(f'{t:.3f}' for t in ndpi_times)} |",
    ]
    if per_file:
        lines.append(
            f"| `{args.ndpi} -i FILE -q` (one process per capture) | {per_file[0]:.3f} | {', '.join(f'{t:.3f}' for t in per_file[1])} |"
        )
    lines += [
        "",
        f"ngfw / ndpiReader = **{ratio:.2f}x** (below 1: ngfw is faster); CPU time {ngfw_cpu:.3f} s / "
        f"{ndpi_cpu:.3f} s = {ngfw_cpu / ndpi_cpu if ndpi_cpu else float('inf'):.2f}x",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    if args.json:
        result = {
            "captures": len(pcaps),
            "many": bool(args.many),
            "reps": args.reps,
            "ngfw_median_s": ngfw_median,
            "ngfw_runs_s": ngfw_times,
            "ndpi_median_s": ndpi_median,
            "ndpi_runs_s": ndpi_times,
            "ratio": ratio,
            "alternate": args.alternate,
            "ngfw_cpu_median_s": ngfw_cpu,
            "ndpi_cpu_median_s": ndpi_cpu,
        }
        if per_file:
            result["ndpi_per_file_median_s"] = per_file[0]
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A signature set through control: pack, push (control checks and parses it), fetch and verify on a host, compile.

    .venv/bin/python bench/signature_push.py [PATH] [--json]     # PATH: rule file or directory (ET Open)

One machine: `ngfw control` (SQLite store) in this process on 127.0.0.1; a host's side is what its
agent does (`ControlClient.signature_set`, `SignatureCache.add`: decompress, sha256, unpack) and
then the dataplane's compile of the cached files (`load_signature_sets`, strict, as a bundle's set).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ngfw.compiler.signature_archive import SignatureCache, compress, decompress, pack_path, sha256
from ngfw.control.auth import TokenFile, add_token
from ngfw.control.client import ControlClient
from ngfw.control.server import ControlServer
from ngfw.control.service import Control
from ngfw.control.store import open_store
from ngfw.dataplane.threats import load_signature_sets

DEFAULT_SET = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "et-open"


def measure(path: Path) -> dict[str, float | int | str]:
    with tempfile.TemporaryDirectory(prefix="ngfw-sigpush-") as tmp:
        work = Path(tmp)
        admin = add_token(work / "tokens.json", "admin", "security-admin")
        host = add_token(work / "tokens.json", "host-a", "dataplane:host-a")
        store = open_store(f"sqlite:///{work}/control.db")
        server = ControlServer(Control(store), TokenFile(work / "tokens.json"), "127.0.0.1", 0)
        server.start()
        try:
            out: dict[str, float | int | str] = {"set": str(path)}
            started = time.perf_counter()
            archive = pack_path(path)
            digest = sha256(archive)
            out["pack_seconds"] = time.perf_counter() - started
            started = time.perf_counter()
            body = compress(archive)
            out["gzip_seconds"] = time.perf_counter() - started
            out["archive_bytes"], out["compressed_bytes"] = len(archive), len(body)
            started = time.perf_counter()
            _, meta = ControlClient(server.url, admin, timeout=600).push_signature_set(digest, body)
            out["push_seconds"] = time.perf_counter() - started
            out["files"], out["rules"], out["skipped"] = len(meta["files"]), meta["rules"], meta["skipped"]
            cache = SignatureCache(work / "cache")
            started = time.perf_counter()
            data = ControlClient(server.url, host, timeout=600).signature_set(digest)
            out["fetch_seconds"] = time.perf_counter() - started
            started = time.perf_counter()
            cache.add(digest, decompress(data))
            out["verify_seconds"] = time.perf_counter() - started
            started = time.perf_counter()
            loaded = load_signature_sets([("et", str(cache.files_of(digest)))], strict=True)
            out["compile_seconds"] = time.perf_counter() - started
            out["loaded"] = loaded.loaded
            return out
        finally:
            server.stop()
            store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", default=str(DEFAULT_SET))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(Path(args.path))
    result["machine"] = f"{platform.node()} {platform.machine()}"
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(
        f"{result['set']}: {result['files']} files, {result['rules']} rules ({result['skipped']} skipped), archive "
        f"{int(result['archive_bytes']) / 1e6:.1f} MB, gzip {int(result['compressed_bytes']) / 1e6:.1f} MB"
    )
    print(
        f"operator: pack + sha256 {result['pack_seconds']:.2f} s, gzip {result['gzip_seconds']:.2f} s, push "
        f"(control decompresses, verifies, parses every rule, stores) {result['push_seconds']:.2f} s"
    )
    print(
        f"host: fetch {result['fetch_seconds']:.2f} s, decompress + verify + unpack "
        f"{result['verify_seconds']:.2f} s, compile {result['compile_seconds']:.2f} s ({result['loaded']} signatures)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A static HTTP server that can pace its answers: `GET /FILE?rate=BYTES_PER_SECOND` sends FILE at that rate.

The lab's db1 serves with it (`python -m ngfw.lab.paced_http PORT --bind ADDR --directory DIR`). A client's
`--limit-rate` only slows its reads; once a flow is forwarded by the kernel (flow bypass) the sender's
socket buffers fill at line rate and a small file ends long before a test's load was meant to. The sender
pacing itself keeps a download running for as long as it was asked to run.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import time
from collections.abc import Sequence
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

CHUNK = 16384


class PacedHandler(SimpleHTTPRequestHandler):
    def copyfile(self, source, outputfile) -> None:
        rate = _rate(self.path)
        if rate <= 0:
            shutil.copyfileobj(source, outputfile)
            return
        started = time.monotonic()
        sent = 0
        while chunk := source.read(CHUNK):
            outputfile.write(chunk)
            sent += len(chunk)
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _rate(path: str) -> int:
    values = parse_qs(urlsplit(path).query).get("rate", [])
    try:
        return int(values[0]) if values else 0
    except ValueError:
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--directory", default=".")
    args = parser.parse_args(argv)
    handler = functools.partial(PacedHandler, directory=args.directory)
    with ThreadingHTTPServer((args.bind, args.port), handler) as server:
        server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

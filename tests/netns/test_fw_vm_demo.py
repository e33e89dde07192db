"""`ngfw demo --fw-vm`: the demo's real clients through ngfw running as a VM -- the image of deploy/vm/,
booted under QEMU (TCG where KVM cannot boot a guest: minutes), configured by its NoCloud seed, its two
NICs on TAPs in the lab's bridges. Every verdict as with the dataplane in a namespace.

Marked `slow` (5-6 minutes on 2 cores, most of it the TCG boot): it runs with the suite and in CI; `-m "not slow"` leaves it out.
The packaged unit itself is tested at native speed in a container (test_deploy_units_live.py)."""

from __future__ import annotations

import io
import os
import re
import time

import pytest

from ngfw.lab.artifacts import ensure_vm_image
from ngfw.lab.demo import run_demo
from ngfw.lab.lock import claim_prefix, release
from ngfw.lab.topology import lab_exists

pytestmark = [pytest.mark.vm, pytest.mark.image, pytest.mark.slow]


def test_demo_passes_every_verdict_through_the_ngfw_vm() -> None:
    ensure_vm_image()
    prefix, lock = claim_prefix(f"nv{(os.getpid() + i) % 1000}" for i in range(1000))
    out = io.StringIO()
    started = time.monotonic()
    try:
        status = run_demo(prefix=prefix, fw_vm=True, out=out)
    finally:
        release(lock)
    text = out.getvalue()
    print(text)
    assert status == 0, text
    rows = [line for line in text.splitlines() if re.match(r"\s+\d\s+web\d", line)]
    assert len(rows) == 5 and all(line.rstrip().endswith("ok") for line in rows), text
    assert "the firewall is the ngfw VM" in text
    boot = float(re.search(r"ngfw VM enforcing (\d+\.\d+) s after QEMU started", text).group(1))
    print(f"boot-to-enforcing {boot:.1f} s; demo {time.monotonic() - started:.0f} s in all")
    # the EVE records came from the VM's own log
    assert re.search(r"records: .*drop \d+", text) and re.search(r"alert \d+", text)
    assert not lab_exists(prefix)

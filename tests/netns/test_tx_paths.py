"""The packet loop's two ways of sending (root; see conftest): a turn of a few small frames is sent by the loop
itself, a saturated or bulk turn is handed to the TX thread (woken from its sleep when it has one). Whichever
sends, a flow's frames leave in the order they came, and none is lost on an idle machine's path."""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from pathlib import Path

import pytest

from ngfw.lab.netns import socket_in
from tests.support.netns import metric

ALLOW_ALL = Path(__file__).resolve().parents[2] / "rules" / "examples" / "allow-all.yaml"
PORT = 9100
ROUNDS = 60
BURST = 40  # datagrams per burst: 40 small ones stay under the hand-over size, 40 large ones exceed it


def _bursts() -> list[bytes]:
    """Alternating bursts of small (64-byte) and large (1,400-byte) datagrams, each carrying its sequence number."""
    out = []
    seq = 0
    for r in range(ROUNDS):
        size = 64 if r % 2 == 0 else 1400
        for _ in range(BURST):
            out.append(struct.pack("!I", seq) + b"\0" * (size - 4))
            seq += 1
    return out


@pytest.mark.parametrize(
    "options",
    [[], ["--idle-spin-us", "0"]],
    ids=["tx-thread-spinning", "tx-thread-woken-each-time"],
)
def test_frames_keep_their_order_whichever_thread_sends(lab, start_dataplane, ns_run, options) -> None:
    # no flow bypass: the kernel would forward the flow past the loop once its verdict is final
    dp = start_dataplane(ALLOW_ALL, extra_args=["--no-bypass", *options])
    # neighbours resolved first: the kernel would hold the first datagrams while it asks
    assert ns_run(lab.web1.ns, ["ping", "-c", "1", "-W", "2", lab.srv.ipv4]).returncode == 0
    datagrams = _bursts()
    with (
        contextlib.closing(socket_in(lab.srv.ns, socket.AF_INET, socket.SOCK_DGRAM)) as rx,
        contextlib.closing(socket_in(lab.web1.ns, socket.AF_INET, socket.SOCK_DGRAM)) as tx,
    ):
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        rx.bind((lab.srv.ipv4, PORT))
        rx.settimeout(2.0)
        tx.connect((lab.srv.ipv4, PORT))
        before = dp.metrics_text()
        for i in range(0, len(datagrams), BURST):
            for d in datagrams[i : i + BURST]:
                tx.send(d)
            time.sleep(0.002)  # the loop ends its turn between bursts: each burst is one way of sending
        received = []
        with contextlib.suppress(TimeoutError):
            while len(received) < len(datagrams):
                received.append(struct.unpack("!I", rx.recv(2048)[:4])[0])
    after = dp.metrics_text()
    assert received == sorted(received), "frames were reordered between the loop's and the TX thread's sends"
    assert len(received) == len(datagrams), f"{len(datagrams) - len(received)} of {len(datagrams)} datagrams lost"
    sent_up = metric(after, "ngfw_port_tx_packets_total", port=lab.fw_up) - metric(
        before, "ngfw_port_tx_packets_total", port=lab.fw_up
    )
    assert sent_up >= len(datagrams)
    assert metric(after, "ngfw_drops_total", reason="tx_ring_full") == 0

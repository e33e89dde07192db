#!/usr/bin/env bash
# A NoCloud seed for the ngfw VM: which NIC (by MAC) faces the VMs' bridge and which the uplink, and a
# policy or a control URL and token. `deploy/vm/make-seed.sh --help`; docs/deploy.md.
# Example: deploy/vm/make-seed.sh --vm-side-mac 52:54:00:00:00:01 --uplink-mac 52:54:00:00:00:02 \
#              --policy rules/examples/lab.yaml -o seed.img
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-$here/.venv/bin/python}"
[ -x "$python" ] || python=python3
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" exec "$python" -m ngfw.vm.seed "$@"

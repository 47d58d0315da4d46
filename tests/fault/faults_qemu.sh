#!/bin/bash
# The fault suite's qemu (TCG) subset (docs/faults.md, QFAULTS in
# faults.sh): part of `make test`; skipped (77) without a built guest image
# or qemu-system-x86_64.
exec env FAULT_QEMU=1 bash "$(dirname "$0")/faults.sh"

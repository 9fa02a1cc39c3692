#!/usr/bin/env bash
# Re-splits ../shared/tools/fa4-wheels.sh's output into three carries of <= 43 MB, because a device
# call carries 64 MiB with the tree (~23 MB) and the CuTe DSL library wheel is ~120 MB:
#   .fa4a/part.aa   .fa4c/part.ab   .fa4b/part.ac + the other wheels, install.sh, env.sh
# On the GPU machine: call 1 (carry .fa4a) `mkdir -p /tmp/fa4 && cp .fa4a/part.aa /tmp/fa4/`, call 2
# (carry .fa4c) `cp .fa4c/part.ab /tmp/fa4/`, call 3 (carry .fa4b) `source .fa4b/install.sh && ...`.
# Run after `bash ../shared/tools/fa4-wheels.sh`, from the repository root.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
grep -qx "/.fa4c/" .git/info/exclude 2>/dev/null || echo "/.fa4c/" >> .git/info/exclude
big=/tmp/fa4-big.whl
# the parts in name order: fa4-wheels.sh's two (.fa4b/part.ab; a .fa4c left from before is stale), or
# an earlier split's three
if [ -e .fa4b/part.ab ]; then parts=(.fa4a/part.aa .fa4b/part.ab); else parts=(.fa4a/part.aa .fa4c/part.ab .fa4b/part.ac); fi
cat "${parts[@]}" > "$big"
rm -f "${parts[@]}" && rm -rf .fa4c && mkdir -p .fa4c
split -b 43000000 "$big" /tmp/fa4-part.
mv /tmp/fa4-part.aa .fa4a/part.aa && mv /tmp/fa4-part.ab .fa4c/part.ab && mv /tmp/fa4-part.ac .fa4b/part.ac
[ ! -e /tmp/fa4-part.ad ] || { echo "the wheel needs a fourth part" >&2; exit 1; }
rm -f "$big"
sed -i 's|cat /tmp/fa4/part.aa "$here/part.ab"|cat /tmp/fa4/part.aa /tmp/fa4/part.ab "$here/part.ac"|' .fa4b/install.sh
grep -q 'part.ac' .fa4b/install.sh || { echo "install.sh not rewritten" >&2; exit 1; }
du -sh .fa4a .fa4c .fa4b

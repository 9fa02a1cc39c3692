#!/usr/bin/env bash
# Render a report's HTML in headless Chromium, as a reader's browser would (issue 25):
#   bash scripts/render_report_html.sh REPORT_DIR [WIDTH]
# Writes REPORT_DIR/rendered.png (the page's first 9000 px at WIDTH, default 1300, scaled to half) and
# prints the page's console errors and any <img> the rendered DOM holds without a source. Needs
# `chromium` (Debian: apt-get install chromium) and Pillow (matplotlib's dependency) for the scaling.
set -euo pipefail
dir=${1:?usage: render_report_html.sh REPORT_DIR [WIDTH]}
width=${2:-1300}
html="$(cd "$dir" && pwd)/report.html"
[ -f "$html" ] || { echo "no report.html in $dir" >&2; exit 2; }
command -v chromium > /dev/null || { echo "chromium is not installed (apt-get install chromium)" >&2; exit 2; }
tmp=$(mktemp -d)
flags=(--headless --disable-gpu --no-sandbox --hide-scrollbars --enable-logging=stderr --v=0)
chromium "${flags[@]}" --window-size="$width,9000" --screenshot="$tmp/page.png" "file://$html" 2> "$tmp/log" || true
chromium "${flags[@]}" --dump-dom "file://$html" > "$tmp/dom.html" 2>> "$tmp/log" || true
grep -i "console" "$tmp/log" | grep -iv "dbus" || echo "console: no messages"
python3 - "$tmp/dom.html" "$tmp/page.png" "$dir/rendered.png" <<'PY'
import re, sys
from PIL import Image
dom = open(sys.argv[1], encoding="utf-8", errors="replace").read()
imgs = re.findall(r"<img\b[^>]*>", dom)
empty = [i for i in imgs if not re.search(r'src="[^"]+"', i)]
print(f"rendered DOM: {len(dom)} characters, {len(imgs)} images, {len(empty)} without a source")
im = Image.open(sys.argv[2])
small = im.convert("RGB").resize((im.width // 2, im.height // 2))
small.quantize(colors=128).save(sys.argv[3], optimize=True)  # a palette keeps the file small
print(f"wrote {sys.argv[3]} ({im.width // 2} x {im.height // 2})")
PY
rm -rf "$tmp"

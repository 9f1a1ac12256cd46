#!/usr/bin/env bash
# Render the HTML crawl report of a database and take a screenshot of it with headless Chromium,
# so a person can look at the report without a browser session.
#
#   bench/report_screenshot.sh DB OUT.png [WIDTH,HEIGHT]
#
# Writes OUT.html (the report itself, self-contained) next to OUT.png. WIDTH,HEIGHT defaults
# to 1200,2400; use 375,3000 for a phone. DARK=1 renders the dark colour scheme.
# Needs Debian's chromium (apt-get install -y chromium) or chromium/google-chrome on PATH.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 DB OUT.png [WIDTH,HEIGHT]" >&2
    exit 2
fi
db=$1
png=$2
size=${3:-1200,2400}
html=${png%.png}.html
python=${PYTHON:-python3}

browser=""
for name in chromium chromium-browser google-chrome; do
    if command -v "$name" >/dev/null 2>&1; then browser=$(command -v "$name"); break; fi
done
if [[ -z $browser ]]; then
    echo "$0: no chromium on PATH (apt-get install -y chromium)" >&2
    exit 1
fi

"$python" - "$db" "$html" <<'EOF'
import sys
from pathlib import Path

from crawler.report import build_report, render_html

Path(sys.argv[2]).write_text(render_html(build_report(Path(sys.argv[1]))), encoding="utf-8")
EOF

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
extra=()
if [[ ${DARK:-0} == 1 ]]; then extra+=(--force-dark-mode); fi
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$profile" "${extra[@]}" \
    --screenshot="$(realpath -m "$png")" --window-size="$size" \
    "file://$(realpath "$html")" >/dev/null 2>&1
test -s "$png"
echo "report: $html"
echo "screenshot: $png"

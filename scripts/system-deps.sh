#!/usr/bin/env bash
# System packages the tests need: Chromium (browser tests drive Debian's /usr/bin/chromium) and promtool (the
# alert rules are checked and unit-tested with it; Debian ships it in the `prometheus` package).
# Fast and silent when both are already there; otherwise one `apt-get update` and one quiet install.
set -eu
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
echo "system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { "${sudo[@]}" apt-get update -qq && \
       "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "system-deps: apt-get could not install ${missing[*]}" >&2
  exit 1
fi
for tool in chromium promtool; do
  command -v "$tool" >/dev/null 2>&1 || { echo "system-deps: $tool is still missing after install" >&2; exit 1; }
done
echo "system-deps: chromium and promtool are installed"

# Sourced by the scripts in scripts/: creates the project's virtualenv on first use and keeps it
# in step with pyproject.toml. Needs only Python >= 3.11 with venv and pip.
# Usage: ensure_venv [EXTRA]   (EXTRA: an optional-dependencies group of pyproject.toml, e.g. test)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${CACHING_PROXY_VENV:-$ROOT/.venv}"

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "caching-proxy: Python 3.11 or newer is required (set PYTHON=/path/to/python3)" >&2
  return 1
}

ensure_venv() {
  local extra="${1:-}"
  local want stamp spec
  want="$(cat "$ROOT/pyproject.toml" | cksum | cut -d' ' -f1)"
  stamp="$VENV/.installed${extra:+-$extra}"
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  local python
  python="$(find_python)" || exit 1
  echo "caching-proxy: setting up $VENV${extra:+ with the $extra tools} (first run only, about a minute)..." >&2
  if [ ! -x "$VENV/bin/python" ]; then
    "$python" -m venv "$VENV" || { echo "caching-proxy: cannot create $VENV (is python3-venv installed?)" >&2; exit 1; }
  fi
  spec="$ROOT${extra:+[$extra]}"
  local log="$VENV/install.log"
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -q -e "$spec" >"$log" 2>&1; then
    cat "$log" >&2
    echo "caching-proxy: installing into $VENV failed (log above)" >&2
    exit 1
  fi
  # The proxy runs under python -O, which reads only .opt-1.pyc files: compiled here once, so
  # that start-up (2.5 s of imports compiled from source, 0.9 s from bytecode) does not depend
  # on the environment letting Python write them (PYTHONDONTWRITEBYTECODE, a read-only tree).
  "$VENV/bin/python" -O -m compileall -q -j 0 "$VENV/lib" "$ROOT/addons" >>"$log" 2>&1 || true
  echo "$want" >"$stamp"
  # the test set includes everything the proxy needs
  [ -n "$extra" ] && echo "$want" >"$VENV/.installed"
  return 0
}

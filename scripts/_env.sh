# Sourced by the scripts: creates/updates the project's virtualenv from requirements.lock
# (hash-pinned) and puts it first on PATH. Idempotent and quick when nothing changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export UV_PYTHON_DOWNLOADS=never
if ! command -v uv >/dev/null 2>&1; then
  echo "==> installing uv (the installer used for the locked environment)" >&2
  python3 -m pip install --quiet "uv==0.13.8"
fi
VENV="$ROOT/.venv"
STAMP="$VENV/.lock-sha"
want="$(sha256sum requirements.lock pyproject.toml clients/python/pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  echo "==> preparing .venv from requirements.lock" >&2
  [ -x "$VENV/bin/python" ] || uv venv --quiet --python python3 "$VENV"
  VIRTUAL_ENV="$VENV" uv pip sync --quiet --require-hashes requirements.lock
  # The client distribution (clients/python) and the server (the root), both editable.
  VIRTUAL_ENV="$VENV" uv pip install --quiet --no-deps -e clients/python -e .
  echo "$want" > "$STAMP"
fi
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"

# Node tools (buf) from package-lock.json.
ensure_node_tools() {
  if [ ! -x node_modules/.bin/buf ] || [ package-lock.json -nt node_modules/.stamp ]; then
    echo "==> installing node tools (buf) from package-lock.json" >&2
    npm ci --silent >/dev/null
    touch node_modules/.stamp
  fi
}

# Sourced by scripts/trial and scripts/test: find Python >= 3.12 and make the virtualenv.
# Django 6 needs Python 3.12+; many machines have it as python3.13 / python3.12 (or under pyenv).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"

find_python() {
  local candidate
  for candidate in python3.13 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  for candidate in "$HOME"/.pyenv/versions/3.13*/bin/python3 "$HOME"/.pyenv/versions/3.12*/bin/python3 \
    /usr/local/bin/python3.13 /usr/local/bin/python3.12 /usr/bin/python3.13 /usr/bin/python3.12; do
    if [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  echo "error: Python 3.12 or newer is required (Django 6). Install python3.13 and retry." >&2
  return 1
}

ensure_venv() {
  local extras="$1" stamp="$VENV/.installed-$1"
  if [ ! -x "$VENV/bin/python" ]; then
    local py
    py="$(find_python)"
    echo "==> Creating virtualenv with $("$py" --version) in $VENV"
    "$py" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
  fi
  # Reinstall only when pyproject.toml changed since the last install.
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "==> Installing the project ($extras)"
    if [ "$extras" = "dev" ]; then
      "$VENV/bin/pip" install --quiet --disable-pip-version-check -e "$ROOT[dev]"
    else
      "$VENV/bin/pip" install --quiet --disable-pip-version-check -e "$ROOT"
    fi
    touch "$stamp"
  fi
}

#!/usr/bin/env bash
# One entry point for the whole study.
#
#   ./run_all.sh [PROFILE] [--data-root DIR] [--only STAGE] [--force]   regenerate results/PROFILE/ (default profile: default)
#   ./run_all.sh PROFILE --work-root DIR   (or REIDLIB_WORK_ROOT=DIR)    checkpoints, features, caches in DIR/PROFILE/, not work/
#   ./run_all.sh --test                                                 set up the env, run the test suite (what CI runs)
#   ./run_all.sh --setup                                                only create/update .venv
#   ./run_all.sh lab                                                    open JupyterLab on notebooks/ in the project env
#
# The environment lives in .venv (created from requirements.txt when missing or when requirements.txt changed).
set -euo pipefail
export REIDLIB_CALLER_CWD="$PWD"   # paths given on the command line are relative to where you called from
cd "$(dirname "$0")"
ROOT=$PWD
VENV=${REIDLIB_VENV:-$ROOT/.venv}
export HF_HUB_OFFLINE=1
export PYTHONUNBUFFERED=1

find_python() {
  for py in "${PYTHON:-}" python3.11 python3 python; do
    [ -n "$py" ] || continue
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  echo "run_all.sh: need Python >= 3.10 (3.11 recommended); set PYTHON=/path/to/python" >&2
  return 1
}

setup_env() {
  local stamp="$VENV/.requirements.sha256" want
  want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    local py; py=$(find_python)
    echo "[setup] creating $VENV with $($py --version 2>&1)"
    "$py" -m venv "$VENV"
  fi
  echo "[setup] installing pinned dependencies (first time: about 2-3.5 minutes, several GB for the torch wheels)"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r requirements.txt
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
}

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  --setup) setup_env; exit 0 ;;
  --test)
    shift
    setup_env
    exec "$VENV/bin/python" -m pytest tests notebooks --nbval-lax --nbval-current-env "$@" ;;
  lab)
    shift
    setup_env
    exec "$VENV/bin/jupyter" lab --notebook-dir="$ROOT" "$@" ;;
esac

setup_env
exec "$VENV/bin/python" -m reidlib.pipeline run "$@"

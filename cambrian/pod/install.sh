#!/usr/bin/env bash
# Installs the project's dependencies with one extra into VENV, once: VENV is named by the
# pyproject hash, so a VM reinstalls only when the dependencies change. Run from the code dir:
#     bash cambrian/pod/install.sh ~/cambrian/venv-HASH tpu
# uv provides Python 3.11 where the image has an older one (TPU VM images ship 3.10).
set -euo pipefail
venv=$1
extra=$2
if [ -f "$venv/.installed" ]; then
  echo "cambrian: $venv is installed (cached)"
  exit 0
fi
uv=$(command -v uv || true)
if [ -z "$uv" ]; then
  python3 -m pip install --user --quiet uv
  uv=$HOME/.local/bin/uv
fi
log=$venv.log
echo "cambrian: installing .[$extra] into $venv (log: $log)"
rm -rf "$venv"
if ! { "$uv" venv --python 3.11 "$venv" &&
       "$uv" pip install --python "$venv/bin/python" -r pyproject.toml --extra "$extra"; } \
     > "$log" 2>&1; then
  tail -n 30 "$log"
  echo "cambrian: install failed on $(hostname); full log in $log" >&2
  exit 1
fi
touch "$venv/.installed"
echo "cambrian: $venv installed"

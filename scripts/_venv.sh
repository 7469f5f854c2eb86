# Sourced by scripts/demo and scripts/test: make .venv (or $VENV) with the
# package and its test and bench extras installed, pinned by constraints.txt (or
# $CONSTRAINTS, e.g. constraints-oldest.txt for Zope 5.8 + waitress 2.0).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
CONSTRAINTS=${CONSTRAINTS:-constraints.txt}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "collective.futures needs Python 3.10 or newer; $PYTHON is $("$PYTHON" -V 2>&1)" >&2
    exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV with $("$PYTHON" -V)"
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.collective.futures-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ "$CONSTRAINTS" -nt "$stamp" ]; then
    echo "installing collective.futures and its test requirements into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        -c "$CONSTRAINTS" -e '.[test,bench]'
    touch "$stamp"
fi

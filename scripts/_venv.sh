# Sourced by the scripts in this folder. make_venv VENV CONSTRAINTS EXTRAS
# [REQUIREMENT...] creates VENV if needed and installs the package with
# EXTRAS (and any further requirements), pinned by CONSTRAINTS; it skips
# the install when nothing changed since the last one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "collective.futures needs Python 3.11 or newer; $PYTHON is $("$PYTHON" -V 2>&1)" >&2
    exit 2
fi

make_venv() {
    local venv=$1 constraints=$2 extras=$3
    shift 3
    if [ ! -x "$venv/bin/python" ]; then
        echo "creating $venv with $("$PYTHON" -V)"
        "$PYTHON" -m venv "$venv"
    fi
    local stamp="$venv/.collective.futures-installed"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ "$constraints" -nt "$stamp" ]; then
        echo "installing collective.futures[$extras] $* into $venv (pinned by $constraints)"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
        "$venv/bin/python" -m pip install -q --disable-pip-version-check \
            -c "$constraints" -e ".[$extras]" "$@"
        touch "$stamp"
    fi
}

# The main environment: Zope + waitress (or $CONSTRAINTS, e.g.
# constraints-oldest.txt for Zope 5.8 + waitress 2.0, in $VENV).
VENV=${VENV:-.venv}
CONSTRAINTS=${CONSTRAINTS:-constraints.txt}

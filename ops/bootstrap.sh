# Sourced (not run) by ops/run and ops/test, from the repository root and under
# `set -euo pipefail`: make sure .venv exists and holds the project with its dev extra,
# then put it first on PATH. Installing takes a while, so it happens only when
# pyproject.toml changed since the last success. PYTHON picks the interpreter that
# creates .venv (default python3; the project needs 3.11).

if [[ ! -x .venv/bin/python ]]; then
    echo "== creating .venv"
    "${PYTHON:-python3}" -m venv .venv
fi

# The stamp is written only after pip succeeded, so a failed install is retried next time.
stamp=.venv/.exchange-core-pyproject.sha256
want=$(.venv/bin/python -c 'import hashlib; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest())')
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
    echo "== pip install -e '.[dev]'"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
    echo "$want" >"$stamp"
fi
unset stamp want

export VIRTUAL_ENV="$PWD/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"

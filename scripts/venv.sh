# Sourced: makes $VENV, a virtualenv with scripts/requirements-test.txt installed
# (re-installed only when that file changes).
VENV=${KMS_AUDIT_VENV:-$HOME/.cache/kms-audit-venv}
req=scripts/requirements-test.txt
stamp="$VENV/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [[ ! -x "$VENV/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    echo "$want" > "$stamp"
fi
echo "venv $VENV: $("$VENV/bin/python" --version), $("$VENV/bin/pip" freeze | grep -Ei '^(moto|cfn-lint)=' | tr '\n' ' ')"

# Sourced (after scripts/venv.sh): starts moto's server (S3, SQS, SNS) on a free loopback
# port, stops it when the sourcing shell exits, and exports its URL as
# KMS_AUDIT_TEST_S3_ENDPOINT for the tests.
port=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
moto_log=$(mktemp -t kms-audit-moto.XXXXXX.log)
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$moto_log" 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    if "$VENV/bin/python" -c "import urllib.request, sys; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/', timeout=1)" 2>/dev/null; then
        break
    fi
    if ! kill -0 "$moto_pid" 2>/dev/null; then
        echo "moto server failed to start:" >&2; cat "$moto_log" >&2; exit 1
    fi
    sleep 0.2
done
export KMS_AUDIT_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
echo "moto server $KMS_AUDIT_TEST_S3_ENDPOINT (pid $moto_pid, log $moto_log)"

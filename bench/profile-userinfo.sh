#!/usr/bin/env bash
# Callgrind profile of N userinfo calls against the release binary (instruction counts, not
# seconds: repeatable on a shared machine). Needs valgrind and a release build:
#   cargo build --release --bins && N=400 bench/profile-userinfo.sh
# The annotated top of the profile goes to /tmp/profile-userinfo.txt.
set -euo pipefail
BIN="${BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/portcullis}"
N=${N:-400}
work=$(mktemp -d); cd "$work"
export PORTCULLIS_LISTEN=127.0.0.1:18181 PORTCULLIS_ISSUER=http://127.0.0.1:18181
export PORTCULLIS_DATABASE__URL="sqlite://$work/pc.db" PORTCULLIS_MASTER_KEY_FILE="$work/m.key"
export PORTCULLIS_MANAGEMENT__LISTEN=127.0.0.1:18182 PORTCULLIS_RATE_LIMITS__ENABLED=false
export PORTCULLIS_LOG__LEVEL=warn PORTCULLIS_MAIL__OUTBOX_DIR="$work/outbox"
$BIN client create --name app --first-party --grant authorization_code --grant refresh_token \
  --redirect-uri http://localhost:3000/cb --scope "openid profile email offline_access roles" --json > client.json
echo 'profile run phrase' | $BIN user create --email p@example.com --password-stdin >/dev/null
$BIN serve > /dev/null 2>&1 &  # warm start: keys exist after this
pid=$!; for _ in $(seq 50); do curl -fs http://127.0.0.1:18181/health/ready >/dev/null && break; sleep 0.1; done
kill $pid; wait $pid 2>/dev/null || true
valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" $BIN serve > /dev/null 2>&1 &
pid=$!
for _ in $(seq 600); do curl -fs http://127.0.0.1:18181/health/ready >/dev/null && break; sleep 0.2; done
token=$(curl -fs http://127.0.0.1:18181/auth/login -H 'content-type: application/json' \
  -d '{"email":"p@example.com","password":"profile run phrase"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')
callgrind_control -z $pid >/dev/null 2>&1 || true
for _ in $(seq $N); do curl -fs -o /dev/null -H "Authorization: Bearer $token" http://127.0.0.1:18181/userinfo; done
kill -INT $pid; wait $pid 2>/dev/null || true
sleep 1
callgrind_annotate --inclusive=yes "$work/cg.out" 2>/dev/null | head -70 > /tmp/profile-userinfo.txt
echo "$work"

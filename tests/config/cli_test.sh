#!/bin/sh
# Runs the zero-config binary itself: exit codes, stdout JSON, stderr paths, --help.
# usage: cli_test.sh ZERO_CONFIG_BINARY CONFIGS_DIR (tests/configs)
set -u
exe=$1
configs=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# A good file: exit 0, the effective config as JSON on stdout.
"$exe" check "$configs/zero2_fp16_adam_warmup.json" --world-size 2 >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] || fail "good config: exit $rc (stderr: $(cat "$tmp/err"))"
grep -q '"train_batch_size": 32,' "$tmp/out" || fail "good config: train_batch_size missing from the JSON"
grep -q '"gradient_accumulation_steps": 4,' "$tmp/out" || fail "good config: derived gradient_accumulation_steps missing"
grep -q '"reduce_bucket_size": 50000000,' "$tmp/out" || fail "good config: reduce_bucket_size missing"
head -c 1 "$tmp/out" | grep -q '{' || fail "good config: stdout does not start with {"
if command -v python3 >/dev/null 2>&1; then
  python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$tmp/out" || fail "good config: stdout is not valid JSON"
fi
[ ! -s "$tmp/err" ] || fail "good config: unexpected stderr: $(cat "$tmp/err")"

# Every config fixture, with world size 2 and with none.
for f in "$configs"/*.json; do
  "$exe" check "$f" --world-size=2 >/dev/null 2>"$tmp/err" || fail "$f --world-size=2 refused: $(cat "$tmp/err")"
  "$exe" check "$f" >/dev/null 2>"$tmp/err" || fail "$f without --world-size refused: $(cat "$tmp/err")"
  grep -q 'note:' "$tmp/err" || fail "$f without --world-size: no note about the world size"
done

# A bad file: exit 2, nothing on stdout, every problem with its dotted path on stderr.
cat >"$tmp/bad.json" <<'JSON'
{
  "train_batch_size": 8,
  "zero_optimization": {"stage": "two", "offload_optimizer": {"device": "gpu"}},
  "optimiser": {}
}
JSON
"$exe" check "$tmp/bad.json" --world-size 2 >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] || fail "bad config: exit $rc, expected 2"
[ ! -s "$tmp/out" ] || fail "bad config: stdout not empty"
grep -q 'bad.json:3:34: error: zero_optimization.stage: expected an integer 0..3, got "two"' "$tmp/err" \
  || fail "bad config: stage problem missing: $(cat "$tmp/err")"
grep -q 'error: zero_optimization.offload_optimizer.device: expected one of' "$tmp/err" \
  || fail "bad config: device problem missing"
grep -q 'error: optimiser: unknown key; did you mean "optimizer"?' "$tmp/err" || fail "bad config: suggestion missing"
[ "$(grep -c 'zero_optimization.stage: expected' "$tmp/err")" -eq 1 ] || fail "bad config: a problem printed twice"

# Syntax error: exit 2 with line and column.
printf '{"train_batch_size": 8,}' >"$tmp/syntax.json"
"$exe" check "$tmp/syntax.json" >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] || fail "syntax error: exit $rc, expected 2"
grep -q "syntax.json:1:24: error: trailing comma" "$tmp/err" || fail "syntax error text: $(cat "$tmp/err")"

# Unsupported only: exit 2 too. Missing file: exit 2.
printf '{"train_batch_size": 8, "sparse_gradients": true}' >"$tmp/unsup.json"
"$exe" check "$tmp/unsup.json" >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" -eq 2 ] || fail "unsupported: exit $rc, expected 2"
grep -q "unsupported: sparse_gradients" "$tmp/err" || fail "unsupported text: $(cat "$tmp/err")"
"$exe" check "$tmp/missing.json" >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" -eq 2 ] || fail "missing file: exit $rc, expected 2"

# Warnings go to stderr and do not fail.
printf '{"train_batch_size": 8, "tensorboard": {"enabled": true}}' >"$tmp/warn.json"
"$exe" check "$tmp/warn.json" --world-size 1 >"$tmp/out" 2>"$tmp/err"; rc=$?
[ "$rc" -eq 0 ] || fail "warning only: exit $rc"
grep -q "warning: accepted but ignored, outside libzero's scope (see docs/config.md): tensorboard" "$tmp/err" \
  || fail "warning text: $(cat "$tmp/err")"

# --help documents it; bad command lines exit 2.
"$exe" --help >"$tmp/out" 2>&1; rc=$?
[ "$rc" -eq 0 ] || fail "--help: exit $rc"
grep -q -- "--world-size N" "$tmp/out" || fail "--help does not document --world-size"
grep -q "zero-config check FILE" "$tmp/out" || fail "--help does not document check"
"$exe" check --help >/dev/null 2>&1 || fail "check --help: nonzero exit"
for args in "" "check" "frob x.json" "check a.json b.json" "check a.json --world-size" \
            "check a.json --world-size 0" "check a.json --world-size two" "check a.json --bogus"; do
  # shellcheck disable=SC2086
  "$exe" $args >/dev/null 2>"$tmp/err"; rc=$?
  [ "$rc" -eq 2 ] || fail "bad command line '$args': exit $rc, expected 2"
  grep -q "usage: zero-config" "$tmp/err" || fail "bad command line '$args': no usage on stderr"
done

if [ "$failures" -ne 0 ]; then
  echo "$failures failure(s)"
  exit 1
fi
echo "zero-config CLI: all checks passed"

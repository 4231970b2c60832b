#!/usr/bin/env bash
# The whole suite twice at once, one pass per core: on SQLite, and on PostgreSQL + Redis
# (throwaway servers from with-services.sh). Each pass writes its own log, in its own
# temporary directory; both logs are printed when both have finished, and the exit status
# is the first failing pass's.
# Usage: scripts/test-both.sh PYTEST [ARGS...]
set -uo pipefail
pytest=("$@")
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

"${pytest[@]}" -q -p no:cacheprovider --basetemp="$logs/sqlite-tmp" >"$logs/sqlite.log" 2>&1 &
sqlite_pid=$!
"$(dirname "$0")/with-services.sh" "${pytest[@]}" -q -p no:cacheprovider \
  --basetemp="$logs/postgres-tmp" >"$logs/postgres.log" 2>&1 &
postgres_pid=$!

# Progress while both run: each pass's latest line, once a minute.
while kill -0 "$sqlite_pid" 2>/dev/null || kill -0 "$postgres_pid" 2>/dev/null; do
  sleep 60
  for pass in sqlite postgres; do
    printf '%s: %s\n' "$pass" "$(tail -c 200 "$logs/$pass.log" | tr '\r' '\n' | tail -n 1)"
  done
done
wait "$sqlite_pid"; sqlite_rc=$?
wait "$postgres_pid"; postgres_rc=$?

echo "== tests on SQLite (exit $sqlite_rc) =="
cat "$logs/sqlite.log"
echo "== tests on PostgreSQL + Redis (exit $postgres_rc) =="
cat "$logs/postgres.log"
[ "$sqlite_rc" = 0 ] || exit "$sqlite_rc"
exit "$postgres_rc"

#!/usr/bin/env bash
# The whole test suite (make test): the images build in the background while the tests that do not need
# them run, then the container tests (one at a time: they share the stack's ports and names) run beside
# those, so one command sets up everything the tests need. On a fresh machine the build takes about 10
# minutes; with the images already built, `make images` takes seconds.
# Arguments go to pytest (make test ARGS="-k gate").
set -uo pipefail
cd "$(dirname "$0")/../.."
mkdir -p build
log=build/images.log
make --no-print-directory images >"$log" 2>&1 &
images=$!
pytest() {  # exit 5 (nothing selected, e.g. by -k) is not a failure
  .venv/bin/pytest -q "$@"
  local rc=$?
  [ "$rc" -eq 5 ] && return 0
  return "$rc"
}
status=0
# two pytest workers (pytest-xdist), a test file each at a time: much of a test's time is one process
# starting, importing TensorFlow or waiting on a server, so two share the two cores well (README "Tests")
workers=${CXR_TEST_WORKERS:-2}
pytest -m "not container" -n "$workers" --dist loadfile --durations=30 "$@" &
tests=$!
# the container tests start once the images are built, beside the rest (the last of which mostly wait on
# servers); their output is printed when both are done. They use the stack's fixed ports (5000, 8080,
# 9000, 15432), the other tests ports the kernel hands out and the host's PostgreSQL on 5432
containers=""
if wait "$images"; then
  grep '^built ' "$log" || true
  pytest -m container "$@" >build/container-tests.log 2>&1 &
  containers=$!
else
  tail -40 "$log"
  echo "make images failed (the log above, all of it in $log); the container tests need the images." >&2
  status=1
fi
wait "$tests" || status=1
if [ -n "$containers" ]; then
  wait "$containers" || status=1
  echo "container tests (build/container-tests.log):"
  cat build/container-tests.log
fi
exit "$status"

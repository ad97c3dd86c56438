#!/bin/bash
# scripts/fuzz-all.sh - run every Go fuzz target of the module, one after the
# other, each for FUZZTIME (default 10m), and print one line per target with
# its executions and whether it found a failure. Not part of CI: at 10 minutes
# a target, the 40-odd targets take about seven hours.
#
# A finding is written by Go into the package's testdata/fuzz/<Target>/ (a
# new file there, listed at the end): commit it with the fix, and it becomes a
# seed that `go test` runs every time.
#
# Env:
#   FUZZTIME=10m         how long each target runs (a Go duration, or Nx)
#   FUZZ_ONLY=REGEXP     only targets whose "package.FuzzName" matches
#   FUZZ_PARALLEL=N      fuzzing workers per target (go test -parallel; default 1,
#                        gentle on a shared machine; more finds more per minute)
#   FUZZ_LOG=DIR         where each target's full output goes (default a temp dir)
# Exit status: 0 when no target failed, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi
FUZZTIME=${FUZZTIME:-10m}
FUZZ_ONLY=${FUZZ_ONLY:-.}
FUZZ_PARALLEL=${FUZZ_PARALLEL:-1}
FUZZ_LOG=${FUZZ_LOG:-$(mktemp -d /tmp/prhelper-fuzz.XXXXXX)}
mkdir -p "$FUZZ_LOG"

# every package's fuzz targets, as "import/path FuzzName", from the test files
# (func FuzzX(f *testing.F) at the start of a line; faster than go test -list,
# which builds every test binary)
module=$(go list -m)
targets=$(grep -rlE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' . | sort | while read -r file; do
	dir=$(dirname "$file")
	pkg=$module${dir#.}
	grep -oE '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' "$file" | sed -E "s|^func (Fuzz[A-Za-z0-9_]*).*|$pkg \1|"
done)
n=$(echo "$targets" | grep -c . || true)
echo "[fuzz] $n targets, $FUZZTIME each, -parallel=$FUZZ_PARALLEL, logs in $FUZZ_LOG"
before=$(git ls-files --others --exclude-standard -- '*/testdata/fuzz/*' | sort)
failed=0 ran=0 total=0
printf '%-58s %14s %10s %s\n' target executions "new corpus" result
while read -r pkg name; do
	[ -n "$pkg" ] || continue
	short=${pkg#github.com/prhelper/prhelper/}.$name
	echo "$short" | grep -Eq -- "$FUZZ_ONLY" || continue
	log=$FUZZ_LOG/$(echo "$short" | tr '/' '_').log
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -parallel "$FUZZ_PARALLEL" "$pkg" > "$log" 2>&1
	rc=$?
	# the last progress line: "fuzz: elapsed: 10s, execs: 123456 (12345/sec), new interesting: 3 (total: 40)"
	last=$(grep -E '^fuzz: elapsed: .*execs: ' "$log" | tail -1)
	execs=$(echo "$last" | sed -nE 's/.*execs: ([0-9]+).*/\1/p')
	interesting=$(echo "$last" | sed -nE 's/.*new interesting: ([0-9]+).*/\1/p')
	result=ok
	if [ $rc != 0 ]; then
		result="FAIL (see $log)"
		failed=$((failed + 1))
	fi
	ran=$((ran + 1))
	total=$((total + ${execs:-0}))
	printf '%-58s %14s %10s %s\n' "$short" "${execs:-?}" "${interesting:-?}" "$result"
done <<< "$targets"
after=$(git ls-files --others --exclude-standard -- '*/testdata/fuzz/*' | sort)
new=$(comm -13 <(echo "$before") <(echo "$after") | grep . || true)
echo "[fuzz] $ran targets run, $total executions, $failed failed"
if [ -n "$new" ]; then
	echo "[fuzz] new failing inputs (commit them with the fix):"
	echo "$new" | sed 's/^/  /'
fi
[ $failed = 0 ]

#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Sums test cases over all meson tests (doctest and pytest summaries, else one per test) into one line.

Arguments: meson test logs, each PATH or PREFIX=PATH (the sanitized build's tests show as asan-unit,
asan-host-...); a log that is missing (its build failed) counts as one failed test.

Every Python suite (conformance, service, devices, kshim, python) is pytest; the unit suite is doctest.
Every summary line in a test's output counts (the vm test runs several suites), so a test that shows
another pytest run's output (tests/python runs a user's test file) quotes it behind "| "."""
import json
import re
import sys

DOCTEST = re.compile(r"\[doctest\] test cases:\s*(\d+) \|\s*(\d+) passed \|\s*(\d+) failed \|\s*(\d+) skipped")
# "===== 3 passed, 1 skipped in 2.1s =====" (or without the rules under -q)
PYTEST = re.compile(r"^=*\s*((?:\d+ \w+(?:, )?)+) in [\d.]+s(?: \([^)]*\))?\s*=*$", re.M)



def pytest_counts(line):
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for n, word in re.findall(r"(\d+) (passed|failed|skipped|error|errors|xfailed|xpassed)", line):
        key = {"error": "failed", "errors": "failed", "xfailed": "skipped", "xpassed": "passed"}.get(word, word)
        counts[key] += int(n)
    return counts


def main(logs):
    passed = failed = skipped = 0
    entries = []
    for arg in logs:
        prefix, _, path = arg.rpartition("=")
        try:
            with open(path) as f:
                entries += [dict(json.loads(line), name=prefix + json.loads(line).get("name", "?"))
                            for line in f if line.strip()]
        except FileNotFoundError:
            entries.append({"name": f"{prefix}tests: no test log ({path}), the build or the run failed",
                            "result": "FAIL"})
    for e in entries:
        out = (e.get("stdout") or "") + (e.get("stderr") or "")
        result = e.get("result", "")
        p = fl = s = 0
        found = False
        for m in DOCTEST.finditer(out):
            found = True
            p += int(m.group(2))
            fl += int(m.group(3))
            s += int(m.group(4))
        for m in PYTEST.finditer(out):
            c = pytest_counts(m.group(1))
            if sum(c.values()):
                found = True
                p += c["passed"]
                fl += c["failed"]
                s += c["skipped"]
        if not found:
            if result in ("OK", "EXPECTEDFAIL"):
                p = 1
            elif result == "SKIP":
                s = 1
            else:
                fl = 1
        elif result not in ("OK", "EXPECTEDFAIL", "SKIP") and fl == 0:
            # The runner's cases passed but the test failed around them (a kernel warning, a timeout).
            fl = 1
        print(f"  {e.get('name', '?')}: {result}: {p} passed, {fl} failed, {s} skipped", file=sys.stderr)
        passed += p
        failed += fl
        skipped += s
    print(f"{passed} passed, {failed} failed, {skipped} skipped")


if __name__ == "__main__":
    main(sys.argv[1:] or ["build/meson-logs/testlog.json"])

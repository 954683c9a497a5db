# SPDX-License-Identifier: MIT
# The rng model against rngtest (rng-tools5): FIPS 140-2 tests on 1 MB of its output.

import re
import shutil

import pytest

from devemu_testlib import run, unique

MB = 1_000_000
FIPS_BLOCK_BITS = 20000
# rngtest keeps the first 32 bits for the continuous-run test's seed.
BLOCKS_IN_1MB = (MB * 8 - 32) // FIPS_BLOCK_BITS

pytestmark = pytest.mark.skipif(shutil.which("rngtest") is None, reason="rngtest (rng-tools5) is not installed")


def rngtest_1mb(node):
    """head -c 1000000 NODE | rngtest -c 400: (exit status, {counter: value}, output)."""
    r = run(f"head -c {MB} {node} | rngtest -c 400", shell=True, timeout=300)
    out = r.stdout + r.stderr
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^rngtest: (.+?): (\d+)$", out, re.M)}
    return r.returncode, counts, out


def test_rngtest_passes_a_seeded_stream(devemud):
    name = unique("rng")
    d = devemud((name, "rng,seed=1"))
    rc, counts, out = rngtest_1mb(d.node(name))
    assert "entropy source drained" in out  # 1 MB gives fewer than 400 blocks
    assert counts["bits received from input"] == MB * 8, out
    assert counts["FIPS 140-2 successes"] == BLOCKS_IN_1MB, out
    assert counts["FIPS 140-2 failures"] == 0, out
    for test in ("Monobit", "Poker", "Runs", "Long run", "Continuous run"):
        assert counts[f"FIPS 140-2(2001-10-10) {test}"] == 0, out
    assert rc == 0, out


def test_rngtest_on_the_getrandom_keyed_stream_fails_no_more_than_chance_allows(devemud):
    # FIPS 140-2 flags about 1 in 1250 blocks of an ideal source (urandom does the same), so 399
    # blocks show a failure about a third of the time; 4 or more would happen by chance < 0.1%.
    name = unique("rng")
    d = devemud((name, "rng"))
    rc, counts, out = rngtest_1mb(d.node(name))
    assert counts["bits received from input"] == MB * 8, out
    assert counts["FIPS 140-2 successes"] + counts["FIPS 140-2 failures"] == BLOCKS_IN_1MB, out
    assert counts["FIPS 140-2 failures"] <= 3, out

"""Runs the reliability suites (called by tests/reliability/run) and prints
the figures: per part, submitted / delivered / duplicates / bounced / lost,
then the outcome of every case, then "N passed, M failed" as last line."""
import argparse
import json
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

QUICK = ["test_faults", "test_crash", "test_exhaustion", "test_load"]


def main():
    ap = argparse.ArgumentParser(description="relayq reliability tests")
    ap.add_argument("--soak", action="store_true", help="add the 10,000-message soak")
    ap.add_argument("--only", action="append", default=[],
                    help="run only this module or test (e.g. test_faults.FaultTable)")
    ap.add_argument("--report", help="write the figures and outcomes to this JSON file")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()

    import common
    if not os.access(common.RELAYQ, os.X_OK):
        print("relayq binary not found at %s (set RELAYQ)" % common.RELAYQ, file=sys.stderr)
        print("0 passed, 1 failed")
        return 99
    names = a.only or QUICK + (["soak"] if a.soak else [])
    suite = unittest.defaultTestLoader.loadTestsFromNames(names)
    t0 = time.monotonic()
    result = unittest.TextTestRunner(verbosity=2 if a.verbose else 1,
                                     stream=sys.stdout).run(suite)
    took = time.monotonic() - t0

    print("\n== figures (%s, %.0fs)" % (common.RELAYQ, took))
    keys = ("submitted", "delivered", "duplicates", "bounced", "lost")
    print("%-17s" % "part" + "".join("%11s" % k for k in keys) + "  other")
    for part, c in common.FIGURES.items():
        other = ", ".join("%s=%d" % (k, v) for k, v in sorted(c.items()) if k not in keys)
        print("%-17s" % part + "".join("%11d" % c.get(k, 0) for k in keys) + "  " + other)
    if a.verbose:
        print("\n== outcomes")
        for part, case, text in common.OUTCOMES:
            print("%-17s %-34s %s" % (part, case, text))
    if a.report:
        with open(a.report, "w") as f:
            json.dump({"relayq": common.RELAYQ, "seconds": round(took),
                       "figures": {p: dict(c) for p, c in common.FIGURES.items()},
                       "outcomes": common.OUTCOMES}, f, indent=1)

    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    passed = (result.testsRun - failed - len(result.skipped)
              - len(result.expectedFailures))
    print("(%d skipped, %d expected failures: known relayq bugs)"
          % (len(result.skipped), len(result.expectedFailures)))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

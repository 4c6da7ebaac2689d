#!/usr/bin/python3
"""Run the integration suite and print one summary line with the counts.

Usage: /usr/bin/python3 tests/integration/run.py [-v] [--json FILE] [MODULE ...]

MODULE is a test module name such as test_http (default: every test_*.py in
this folder). ZNP_BIN, ZNP_TEST_VALGRIND and the other variables that
harness.py documents pass through. The last line reads
"integration: N passed, N failed, N skipped"; the exit status is 1 when a
test failed or errored.
"""

import argparse
import glob
import json
import os
import sys
import time
import unittest

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


class TimingResult(unittest.TextTestResult):
    """A text result that also records each test's outcome and duration."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.records = []
        self._started = {}

    def startTest(self, test):
        self._started[test.id()] = time.monotonic()
        super().startTest(test)

    def _record(self, test, outcome):
        began = self._started.pop(test.id(), time.monotonic())
        self.records.append({"test": test.id(), "outcome": outcome, "seconds": round(time.monotonic() - began, 3)})

    def addSuccess(self, test):
        super().addSuccess(test)
        self._record(test, "passed")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, "failed")

    def addError(self, test, err):
        super().addError(test, err)
        self._record(test, "error")

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._record(test, "skipped")

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._record(test, "passed")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._record(test, "failed")


def main(argv):
    parser = argparse.ArgumentParser(description="Run znp's integration tests.")
    parser.add_argument("modules", nargs="*", help="test modules to run, e.g. test_http (default: all)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every test name")
    parser.add_argument("--json", metavar="FILE", help="write the per-test outcomes and durations to FILE")
    args = parser.parse_args(argv)

    sys.path.insert(0, REPO)
    from tests.integration import harness
    if not os.access(harness.ZNP_BIN, os.X_OK):
        print("integration: %s is not an executable; build znp or set ZNP_BIN" % harness.ZNP_BIN, file=sys.stderr)
        return 1
    names = args.modules or sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(HERE, "test_*.py")))
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for name in names:
        name = name[:-3] if name.endswith(".py") else name
        suite.addTests(loader.loadTestsFromName("tests.integration." + name))

    began = time.monotonic()
    runner = unittest.TextTestRunner(verbosity=2 if args.verbose else 1, resultclass=TimingResult, stream=sys.stderr)
    result = runner.run(suite)
    elapsed = time.monotonic() - began

    # Errors in setUpModule/tearDownModule have no test record; count them as failures.
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = sum(1 for r in result.records if r["outcome"] == "passed")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"passed": passed, "failed": failed, "skipped": skipped, "seconds": round(elapsed, 1),
                       "tests": result.records}, f, indent=1)
    slowest = sorted(result.records, key=lambda r: -r["seconds"])[:5]
    if slowest:
        print("slowest: " + ", ".join("%s %.1fs" % (r["test"].split(".", 2)[-1], r["seconds"]) for r in slowest))
    print("integration: %d test(s) in %.0f s" % (result.testsRun, elapsed))
    print("integration: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    if result.testsRun == 0:
        print("integration: no test ran", file=sys.stderr)
        return 1
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

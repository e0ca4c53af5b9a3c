"""scikit-learn's own MLP tests, run against nbnet's estimators.

Copies sklearn/neural_network/tests/test_mlp.py from the installed scikit-learn, points its one
import of the estimators at nbnet.sklearn, runs it with pytest and prints how many pass:

    python bench/sklearn_tests.py                 # every test
    python bench/sklearn_tests.py -k lbfgs        # extra arguments go to pytest

Two of the tests need pandas (`pip install pandas`); without it they are skipped.

Exits 0 when at least --need tests pass (default: every test but the ones EXPECTED_FAILURES
names, which the README explains), else 1.
"""

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import sklearn

IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor"
# Tests that fail against nbnet, each for the reason given (the README repeats them).
EXPECTED_FAILURES = {}
CONFTEST = """import os

import pytest


@pytest.fixture
def global_random_seed():
    return int(os.environ.get("SKLEARN_TESTS_GLOBAL_RANDOM_SEED", 42))
"""


def swapped_copy(folder):
    """test_mlp.py of the installed scikit-learn, importing nbnet's estimators, written into folder."""
    source = Path(sklearn.__file__).parent / "neural_network" / "tests" / "test_mlp.py"
    text = source.read_text()
    if IMPORT not in text:
        raise SystemExit(f"{source} no longer has the line {IMPORT!r}: update bench/sklearn_tests.py")
    path = Path(folder) / "test_mlp_nbnet.py"
    path.write_text(text.replace(IMPORT, "from nbnet.sklearn import MLPClassifier, MLPRegressor"))
    # the one fixture the tests take from scikit-learn's own conftest.py (its default seed, 42)
    (Path(folder) / "conftest.py").write_text(CONFTEST)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--need", type=int, default=None, help="passes needed for exit 0")
    arguments, pytest_arguments = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as folder:
        path = swapped_copy(folder)
        result = subprocess.run([sys.executable, "-m", "pytest", str(path), "-q", "-p", "no:cacheprovider", "-rf",
                                 "-n", "2", *pytest_arguments], cwd=folder, capture_output=True, text=True)
    print(result.stdout[-20000:])
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|error)", result.stdout.splitlines()[-1])}
    passed, total = counts.get("passed", 0), sum(counts.values())
    print(f"scikit-learn {sklearn.__version__} test_mlp.py against nbnet.sklearn: {passed} of {total} passed")
    need = arguments.need if arguments.need is not None else total - len(EXPECTED_FAILURES)
    return 0 if passed >= need else 1


if __name__ == "__main__":
    sys.exit(main())

"""The order make test's workers take the slow files in (tests/conftest.py) names files that exist: a file
renamed or removed would drop out of it unnoticed and run last."""

from tests.conftest import SLOW_FIRST
from tests.helpers import REPO


def test_each_slow_file_is_there_once():
    assert [path for path in SLOW_FIRST if not (REPO / "tests" / path).is_file()] == []
    assert len(set(SLOW_FIRST)) == len(SLOW_FIRST)

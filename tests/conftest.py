import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from toycost import ToyCost  # noqa: E402


@pytest.fixture
def toy() -> ToyCost:
    return ToyCost()

"""The rate tests written before the rules' vocabulary keep their spelling (``feedback_rank=``, ``wiring=``,
``feedback_learning="kolen_pollack"``): they check that the deprecated keywords still work, unchanged, for this
release. Their DeprecationWarning is expected there and silenced; ``test_rules_vocabulary.py`` checks that it is
raised and what it says."""
from __future__ import annotations

import pytest

_EXPECTED = "ignore:.*deprecated and will be removed in the next release:DeprecationWarning"


def pytest_collection_modifyitems(config, items):
    # (a conftest's hook sees every collected item, doctests included: select by node id)
    for item in items:
        path = item.nodeid.split("::")[0]
        if path.startswith("tests/rate/") and not path.endswith(("test_rules_vocabulary.py", "test_twin.py")):
            item.add_marker(pytest.mark.filterwarnings(_EXPECTED))

"""A lost executor on a real standalone cluster: the fit resumes by itself on a new executor."""
from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.cluster


def test_fit_recovers_from_a_killed_executor_by_itself(standalone_cluster, tmp_path):
    result = standalone_cluster.submit("tests/cluster/fit_with_executor_loss.py",
                                       "--store", str(tmp_path / "store"), timeout=420)
    out = result.stdout
    outcome = json.loads(re.search(r"^RESULT (.*)$", out, re.M).group(1))
    assert outcome["killed"], out
    assert re.search(r"^sparkdl: .* in epoch 2; retry 1/2 from the last checkpoint$", out,
                     re.M), out
    # epochs 1-5 exactly once
    assert outcome["history"] == outcome["run_history"] == [1, 2, 3, 4, 5]
    # it trained on to the noise floor (0.01), as the same fit uninterrupted does in 5 epochs;
    # the resumed run sees epochs in another shuffle order, so allow up to three times that
    assert outcome["mse"] < 0.03, outcome

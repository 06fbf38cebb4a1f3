"""A lost executor on a real standalone cluster: the fit resumes by itself on a new executor
(cluster_app.py's second part). The app's executors have task GPUs, so the new executor must
get its worker's GPU again; no test kills an executor without GPUs."""
from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.cluster


def test_fit_recovers_from_a_killed_executor_by_itself(cluster_app):
    out, outcome = cluster_app.stdout, cluster_app.part("recovery")
    assert cluster_app.returncode == 0, cluster_app.report  # the last part: the app then ended
    assert outcome["killed"], out
    assert re.search(r"^sparkdl: .* in epoch 2; retry 1/2 from the last checkpoint$", out,
                     re.M), out
    # epochs 1-5 exactly once
    assert outcome["history"] == outcome["run_history"] == [1, 2, 3, 4, 5]
    # it trained on to the noise floor (0.01), as the same fit uninterrupted does in 5 epochs;
    # the resumed run sees epochs in another shuffle order, so allow up to three times that
    assert outcome["mse"] < 0.03, outcome

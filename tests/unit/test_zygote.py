"""Ranks forked from a worker's zygote: own environment, output, random state and exit code."""
from __future__ import annotations

import os
import sys
import time

import cloudpickle
import pytest

from sparkdl.launch.zygote import PRELOAD_ENV, RANK_NAME, zygote


def _rank_body(tag):
    import random

    import psutil
    print(f"hello from {tag}")
    return (os.environ["RANK_TAG"], "xml.dom.minidom" in sys.modules, random.random(),
            psutil.Process().name())


def _fork(tmp_path, name, fn, *args, env=None, start_env=None):
    payload, result = tmp_path / f"{name}.pkl", tmp_path / f"{name}.out"
    payload.write_bytes(cloudpickle.dumps((fn, args, {})))
    start_env = start_env or {**os.environ, PRELOAD_ENV: "xml.dom.minidom"}
    return zygote(start_env).fork(str(payload), str(result), {**start_env, **(env or {})}), result


def _finish(proc):
    output = proc.stdout.read()
    return proc.wait(), output


def test_each_rank_gets_its_env_output_and_fresh_random_state_and_preloaded_modules(tmp_path):
    seen = []
    for rank in range(2):
        proc, result = _fork(tmp_path, f"r{rank}", _rank_body, rank, env={"RANK_TAG": str(rank)})
        assert _finish(proc) == (0, f"hello from {rank}\n")
        seen.append(cloudpickle.loads(result.read_bytes()))
    assert [s[0] for s in seen] == ["0", "1"]
    assert all(s[1] for s in seen)  # imported once in the zygote, not by the rank
    assert seen[0][2] != seen[1][2]  # forked ranks do not repeat each other's random numbers
    assert {s[3] for s in seen} == {RANK_NAME}  # what ps and psutil show


def test_exit_codes_and_a_killed_rank_are_reported_and_the_zygote_serves_on(tmp_path):
    proc, _ = _fork(tmp_path, "exit", sys.exit, 3)
    assert _finish(proc) == (3, "")
    proc, _ = _fork(tmp_path, "raise", int, "not a number")
    code, output = _finish(proc)
    assert code == 1 and "ValueError: invalid literal for int()" in output
    proc, _ = _fork(tmp_path, "sleep", time.sleep, 60)
    proc.kill()
    assert _finish(proc)[0] == -9
    proc, result = _fork(tmp_path, "after", abs, -4)
    assert _finish(proc)[0] == 0 and cloudpickle.loads(result.read_bytes()) == 4


def test_a_changed_start_environment_or_a_dead_zygote_gets_a_new_one(tmp_path):
    env = {**os.environ, PRELOAD_ENV: ""}
    first = zygote(env)
    assert zygote(dict(env)) is first
    second = zygote({**env, "TF_ENABLE_ONEDNN_OPTS": "0"})  # read at import: a new zygote
    assert second is not first and not first.alive()
    second.proc.kill()
    second.proc.wait()
    third = zygote({**env, "TF_ENABLE_ONEDNN_OPTS": "0"})
    assert third is not second and third.alive()
    with pytest.raises(RuntimeError, match="zygote process .* stopped answering"):
        third.proc.kill()
        third.proc.wait()
        third.reply()

"""Checkpoints are atomic and resume ignores partial writes; the rendezvous serves only its job."""
from __future__ import annotations

import socket
import urllib.error
import urllib.request

import numpy as np
import pytest

from sparkdl import Store
from sparkdl.launch.rendezvous import JobRendezvous, slot_plan
from sparkdl.train.checkpoint import Checkpoint, load_latest_checkpoint, save_checkpoint


def test_resume_ignores_a_half_written_checkpoint(tmp_path):
    store = Store.create(str(tmp_path))
    save_checkpoint(store, "r", Checkpoint(epoch=2, weights=[np.ones(3)], optimizer=[],
                                           history={"epoch": [1, 2]}))
    # a crash while writing epoch 3 leaves only a hidden temporary file behind
    ckpt_dir = store.checkpoint_dir("r")
    with open(f"{store.local_path(ckpt_dir)}/.epoch-00003.ckpt.tmp-deadbeef", "wb") as f:
        f.write(b"partial")
    latest = load_latest_checkpoint(store, "r")
    assert latest.epoch == 2 and latest.history == {"epoch": [1, 2]}


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    store = Store.create(str(tmp_path))
    for epoch in range(1, 5):
        save_checkpoint(store, "r", Checkpoint(epoch=epoch, weights=[], optimizer=[]))
    assert store.listdir(store.checkpoint_dir("r")) == ["epoch-00003.ckpt", "epoch-00004.ckpt"]
    assert load_latest_checkpoint(store, "r").epoch == 4
    assert load_latest_checkpoint(store, "other") is None


def _get(port: int) -> int:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/global/key", timeout=5).status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_rendezvous_refuses_hosts_outside_its_job_and_closes_its_port():
    with JobRendezvous(slot_plan(["203.0.113.9", "203.0.113.9"])) as other_job:
        assert _get(other_job.port) == 403  # 127.0.0.1 is not a host of that job
    with JobRendezvous(slot_plan(["127.0.0.1", "127.0.0.1"])) as own_job:
        assert _get(own_job.port) == 404  # a job host: served (no such key yet)
        port = own_job.port
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)

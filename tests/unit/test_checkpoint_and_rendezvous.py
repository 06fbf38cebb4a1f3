"""Checkpoints are atomic and resume ignores partial writes; the rendezvous serves only its job."""
from __future__ import annotations

import socket
import urllib.error
import urllib.request

import numpy as np
import pytest

from sparkdl import Store
from sparkdl.launch.rendezvous import JobRendezvous, rendezvous_secret, slot_plan
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


def _request(port: int, path: str, method: str = "GET", body: bytes | None = None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    try:
        return urllib.request.urlopen(request, timeout=5).status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_rendezvous_refuses_hosts_outside_its_job_and_closes_its_port():
    secret = rendezvous_secret("job")
    with JobRendezvous(slot_plan(["203.0.113.9", "203.0.113.9"]), secret) as other_job:
        # 127.0.0.1 is not a host of that job
        assert _request(other_job.port, f"/{secret}:{other_job.port}/global/key") == 403
    with JobRendezvous(slot_plan(["127.0.0.1", "127.0.0.1"]), secret) as own_job:
        # a job host with the secret: served (no such key yet)
        assert _request(own_job.port, f"/{secret}:{own_job.port}/global/key") == 404
        port = own_job.port
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_rendezvous_answers_only_requests_with_the_job_secret():
    secret = rendezvous_secret("job")
    with JobRendezvous(slot_plan(["127.0.0.1", "127.0.0.1"]), secret) as job:
        port = job.port
        assert _request(port, f"/{secret}:{port}/global/0", "PUT", b"address") == 200
        assert _request(port, f"/{secret}:{port}/global/0") == 200
        for path in ("/global/0", f"/{rendezvous_secret('other')}:{port}/global/0",
                     f"/{secret[:-1]}:{port}/global/0"):
            assert _request(port, path) == 403, path
            assert _request(port, path, "PUT", b"forged") == 403, path

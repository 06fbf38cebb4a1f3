"""Launcher pieces that need no Spark: slot plan, failure text, the driver channel."""
from __future__ import annotations

import contextlib
import threading
import time

from sparkdl.launch.channel import MAX_LINE_BYTES, ChannelClient, DriverChannel
from sparkdl.launch.driver import _DRAIN_MAX_S, _BarrierJob
from sparkdl.launch.rendezvous import horovod_env, slot_plan
from sparkdl.launch.task import describe_failure


def test_local_ranks_are_counted_per_host_and_cross_ranks_per_local_rank():
    plan = slot_plan(["a", "b", "a", "c", "b", "a"])
    assert [s.rank for s in plan] == [0, 1, 2, 3, 4, 5]
    assert [s.local_rank for s in plan] == [0, 0, 1, 0, 1, 2]
    assert [s.local_size for s in plan] == [3, 2, 3, 1, 2, 3]
    # local rank 0 lives on a, b, c; local rank 1 on a, b; local rank 2 only on a
    assert [(s.cross_rank, s.cross_size) for s in plan] == [(0, 3), (1, 3), (0, 2), (2, 3),
                                                            (1, 2), (0, 1)]


def test_horovod_env_uses_gloo_and_the_rendezvous_address():
    env = horovod_env(slot_plan(["h", "h"])[1], "10.0.0.1", 4242, iface="lo", secret="s3")
    assert env["HOROVOD_RANK"] == "1" and env["HOROVOD_SIZE"] == "2"
    assert env["HOROVOD_LOCAL_RANK"] == "1" and env["HOROVOD_LOCAL_SIZE"] == "2"
    assert env["HOROVOD_CONTROLLER"] == env["HOROVOD_CPU_OPERATIONS"] == "gloo"
    # Horovod appends ":<port>/<scope>/<key>": the secret leads every request's path
    assert env["HOROVOD_GLOO_RENDEZVOUS_ADDR"] == "10.0.0.1:4242/s3"
    assert env["HOROVOD_GLOO_RENDEZVOUS_PORT"] == "4242"
    assert env["HOROVOD_GLOO_IFACE"] == "lo"


def test_failure_text_names_rank_signal_and_last_lines():
    assert "rank 2 on h was killed by signal SIGKILL" in describe_failure(2, "h", -9, ["x"])
    assert "rank 2 on h was killed by signal 35" in describe_failure(2, "h", -35, ["x"])
    text = describe_failure(0, "h", 1, ["Traceback", "ValueError: bad"])
    assert "exited with code 1" in text and "ValueError: bad" in text


def test_channel_accepts_only_clients_with_the_job_secret():
    with DriverChannel(advertise_host="127.0.0.1") as channel:
        intruder = ChannelClient(channel.address, "wrong-secret", rank=5)
        intruder.send("failed", message="spoofed")
        client = ChannelClient(channel.address, channel.secret, rank=1)
        client.send("message", payload={"epoch": 1})
        msg = channel.get(timeout=5)
        assert msg == {"type": "message", "rank": 1, "payload": {"epoch": 1}}
        time.sleep(0.2)
        assert channel.get(timeout=0.2) is None  # the intruder's message never arrives
        client.close()
        intruder.close()


def test_a_task_gets_what_another_publishes_and_a_rerun_stage_forgets_it():
    with DriverChannel(advertise_host="127.0.0.1") as channel:
        zero = ChannelClient(channel.address, channel.secret, rank=0)
        one = ChannelClient(channel.address, channel.secret, rank=1)
        zero.send("started")
        one.send("started")
        assert one.lookup("rendezvous", timeout=0.2) is None  # nothing published in time
        threading.Timer(0.3, zero.publish, ("rendezvous", "10.0.0.1:4000")).start()
        assert one.lookup("rendezvous", timeout=30) == "10.0.0.1:4000"  # waited for it
        assert one.lookup("rendezvous", timeout=30) == "10.0.0.1:4000"
        # Spark runs the barrier stage again: its rank 1 must not get the last rank 0's address
        rerun = ChannelClient(channel.address, channel.secret, rank=1)
        rerun.send("started")
        assert rerun.lookup("rendezvous", timeout=0.3) is None
        for client in (zero, one, rerun):
            client.close()


def test_a_waiting_lookup_ends_when_the_job_ends():
    channel = DriverChannel(advertise_host="127.0.0.1").__enter__()
    client = ChannelClient(channel.address, channel.secret, rank=1)
    threading.Timer(0.3, channel.__exit__, (None, None, None)).start()
    start = time.monotonic()
    assert client.lookup("rendezvous", timeout=60) is None
    assert time.monotonic() - start < 30
    client.close()


def _closed_by_server(sock, within: float) -> bool:
    """True when the server closes `sock` (recv returns b'') within `within` seconds."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_channel_drops_oversized_lines_and_keeps_serving():
    import socket

    with DriverChannel(advertise_host="127.0.0.1", hello_timeout=5.0) as channel:
        host, port = channel.address.rsplit(":", 1)
        flood = socket.create_connection((host, int(port)))
        flood.sendall(b"x" * (2 * MAX_LINE_BYTES))  # no newline: never a whole line
        assert _closed_by_server(flood, within=5.0)
        flood.close()
        client = ChannelClient(channel.address, channel.secret, rank=0)
        client.send("message", payload="big" * (MAX_LINE_BYTES // 2))  # over the limit: dropped
        client.send("message", payload="small")
        assert channel.get(timeout=5) == {"type": "message", "rank": 0, "payload": "small"}
        client.close()


def test_channel_times_out_peers_that_never_authenticate():
    import socket

    with DriverChannel(advertise_host="127.0.0.1", hello_timeout=0.5) as channel:
        host, port = channel.address.rsplit(":", 1)
        silent = socket.create_connection((host, int(port)))
        t0 = time.monotonic()
        assert _closed_by_server(silent, within=5.0)
        assert time.monotonic() - t0 < 3.0
        silent.close()
        # an authenticated rank may stay silent longer than the hello timeout
        client = ChannelClient(channel.address, channel.secret, rank=1)
        time.sleep(1.0)
        client.send("message", payload=1)
        assert channel.get(timeout=5) == {"type": "message", "rank": 1, "payload": 1}
        client.close()


def test_channel_ends_a_hello_that_trickles_in_past_the_timeout():
    """The hello timeout is one deadline for the whole line, not one per byte received."""
    import socket

    with DriverChannel(advertise_host="127.0.0.1", hello_timeout=0.5) as channel:
        host, port = channel.address.rsplit(":", 1)
        slow = socket.create_connection((host, int(port)))
        t0 = time.monotonic()
        with contextlib.suppress(OSError):  # the server closes it: a send then fails
            for byte in b'{"secret": "' + b"x" * 40:
                slow.send(bytes([byte]))
                time.sleep(0.1)
        assert _closed_by_server(slow, within=2.0)
        assert time.monotonic() - t0 < 3.0  # 4 s of bytes, ended at about 0.5 s
        slow.close()


def test_channel_listens_only_on_the_driver_address():
    with DriverChannel(advertise_host="127.0.0.1") as channel:
        assert channel.bound_host == "127.0.0.1"


def test_reports_still_coming_do_not_hold_the_driver_after_a_failure():
    """500 queued reports and a callback taking 20 ms each: 10 s to drain them all."""
    seen = []
    job = _BarrierJob(None, 2, b"", {}, "test", stall_timeout=None, use_gpu=None)
    with DriverChannel(advertise_host="127.0.0.1") as channel:
        client = ChannelClient(channel.address, channel.secret, rank=1)
        for step in range(500):
            client.send("message", payload=step)
        while channel._server.inbox.qsize() < 500:
            time.sleep(0.01)

        def slow_callback(rank, payload):
            seen.append(payload)
            time.sleep(0.02)

        start = time.monotonic()
        job._drain(channel, slow_callback, settle=0.2)
        elapsed = time.monotonic() - start
        client.close()
    assert elapsed < 0.2 + _DRAIN_MAX_S + 2.0
    assert seen == list(range(len(seen))) and len(seen) > 5  # in order, the first ones handled

"""Horovod's Gloo rendezvous for one barrier job: the slot plan and a job-scoped HTTP server.

Rank 0's task hosts horovod's own rendezvous HTTP server; it answers only the job's hosts, only
requests carrying the job's secret, and lives exactly as long as the job's rank 0.

Horovod's Gloo client sends no header we control; it builds its URLs as
``http://<ADDR>:<PORT>/<scope>/<key>`` from HOROVOD_GLOO_RENDEZVOUS_ADDR. An ADDR of
``host:port/<secret>`` makes every request's path ``/<secret>:<port>/<scope>/<key>``.
"""
from __future__ import annotations

import hashlib
import hmac
import socket
import threading
from collections.abc import Sequence

from horovod.runner.common.util.hosts import SlotInfo
from horovod.runner.http.http_server import RendezvousHandler, RendezvousHTTPServer

# How often the server checks for a stop, so also how long stopping it waits: Horovod's own
# RendezvousServer polls every 0.5 s, which rank 0's task waited for after every job.
_SERVE_POLL_S = 0.05


def slot_plan(hosts: Sequence[str]) -> list[SlotInfo]:
    """One SlotInfo per rank (rank = index in `hosts`); local ranks are counted per host."""
    order: list[str] = []
    local_ranks: list[int] = []
    per_host: dict[str, int] = {}
    for host in hosts:
        if host not in per_host:
            order.append(host)
            per_host[host] = 0
        local_ranks.append(per_host[host])
        per_host[host] += 1
    plan = []
    for rank, host in enumerate(hosts):
        local_rank = local_ranks[rank]
        # Horovod's cross communicator joins the ranks that share a local rank, one per host.
        cross_hosts = [h for h in order if per_host[h] > local_rank]
        plan.append(SlotInfo(hostname=host, rank=rank, local_rank=local_rank,
                             cross_rank=cross_hosts.index(host), size=len(hosts),
                             local_size=per_host[host], cross_size=len(cross_hosts)))
    return plan


def rendezvous_secret(job_secret: str) -> str:
    """The rendezvous path secret every task of a job derives from the job's channel secret."""
    return hashlib.sha256(f"sparkdl-rendezvous:{job_secret}".encode()).hexdigest()[:32]


def horovod_env(slot: SlotInfo, rendezvous_addr: str, rendezvous_port: int,
                iface: str | None, secret: str) -> dict[str, str]:
    """The environment that makes `hvd.init()` join this job over Gloo, its requests to the
    rendezvous carrying `secret` in their path."""
    env = {
        "HOROVOD_RANK": slot.rank, "HOROVOD_SIZE": slot.size,
        "HOROVOD_LOCAL_RANK": slot.local_rank, "HOROVOD_LOCAL_SIZE": slot.local_size,
        "HOROVOD_CROSS_RANK": slot.cross_rank, "HOROVOD_CROSS_SIZE": slot.cross_size,
        "HOROVOD_HOSTNAME": slot.hostname,
        "HOROVOD_GLOO_RENDEZVOUS_ADDR": f"{rendezvous_addr}:{rendezvous_port}/{secret}",
        "HOROVOD_GLOO_RENDEZVOUS_PORT": rendezvous_port,
        "HOROVOD_CONTROLLER": "gloo", "HOROVOD_CPU_OPERATIONS": "gloo",
        "HOROVOD_GLOO_TIMEOUT_SECONDS": 60,
    }
    if iface:
        env["HOROVOD_GLOO_IFACE"] = iface
    return {k: str(v) for k, v in env.items()}


def _resolve(host: str) -> set[str]:
    try:
        return {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return {host}


def _handler_for(allowed: frozenset[str], secret: str) -> type[RendezvousHandler]:
    class JobRendezvousHandler(RendezvousHandler):
        """Horovod's handler, refusing clients that are not hosts of this job or do not send
        its secret; the secret is taken off the path before Horovod reads it."""

        def parse_request(self) -> bool:
            if not super().parse_request():
                return False
            if self.client_address[0] not in allowed:
                self.send_error(403, "not a host of this sparkdl job")
                return False
            head, _, rest = self.path.lstrip("/").partition("/")
            if not hmac.compare_digest(head.split(":", 1)[0].encode(), secret.encode()):
                self.send_error(403, "missing or wrong job secret")
                return False
            self.path = "/" + rest
            return True

    return JobRendezvousHandler


class JobRendezvous:
    """Horovod's rendezvous HTTP server on a random port, initialised with this job's slot plan."""

    def __init__(self, plan: Sequence[SlotInfo], secret: str) -> None:
        allowed: set[str] = set()
        for slot in plan:
            allowed |= _resolve(slot.hostname)
        self._plan = list(plan)
        self._handler = _handler_for(frozenset(allowed), secret)
        self._httpd: RendezvousHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    def __enter__(self) -> JobRendezvous:
        self._httpd = RendezvousHTTPServer(("", 0), self._handler, 0)
        self._httpd.init(self._plan)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": _SERVE_POLL_S}, daemon=True,
                                        name="sparkdl-rendezvous")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._thread.join()
        self._httpd.server_close()  # release the port now, not at garbage collection

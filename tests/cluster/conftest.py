"""A real Spark standalone cluster (master + two 1-core workers on 127.0.0.1) for the session.

Each worker offers one GPU through a discovery script reporting a fake address (worker 1: "0",
worker 2: "1"), as Spark's own tests do: applications that ask for GPUs get them scheduled,
the others are unaffected.

`standalone_cluster` starts it with scripts/cluster.sh on free ports in a fresh state dir,
`submit()`s example scripts to it with spark-submit, and on teardown stops it and asserts that no
process it started (daemons, executors, their Python workers and ranks) is left.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from ports import free_port

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO / "scripts" / "cluster.sh"
PYTHON = sys.executable  # the venv's python: drivers and executors must run the same stack
WORKERS = 2
UP_TIMEOUT_S = 60
TAIL_LINES = 40
# executors with one GPU each, tasks asking for one
GPU_CONF = {"spark.executor.resource.gpu.amount": "1", "spark.task.resource.gpu.amount": "1"}


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _spark_home() -> str:
    import pyspark

    return str(Path(pyspark.__file__).parent)


def _spark_submit() -> str:
    venv_bin = Path(PYTHON).parent / "spark-submit"
    return str(venv_bin if venv_bin.exists() else Path(_spark_home()) / "bin" / "spark-submit")


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    """The last lines of `text` without Spark's INFO chatter."""
    kept = [line for line in text.splitlines() if " INFO " not in line]
    return "\n".join(kept[-lines:]) or "(empty)"


@dataclass
class StandaloneCluster:
    """A running cluster: its master URL and a spark-submit helper bound to it."""

    master_url: str
    ui_url: str
    state_dir: Path
    env: dict[str, str] = field(repr=False)

    def submit(self, script: str | Path, *args: str, timeout: float = 120.0, check: bool = True,
               conf: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """spark-submit `script args...` (relative paths from the repo root) to this cluster.

        With check, a non-zero exit fails the test with the tails of the driver's stdout/stderr
        and of the executors' logs; a run past `timeout` seconds always does, after its whole
        process group is killed. Note: spark-submit merges the Python driver's stderr (prints,
        tracebacks) into its stdout; Spark's own log goes to stderr.
        """
        cmd = self._command(conf, str(REPO / script), *map(str, args))
        # Own session: a timeout kills the driver JVM and its Python together.
        proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            pytest.fail(f"spark-submit {script} ran past {timeout:g}s\n"
                        + self.report(stdout, stderr))
        result = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
        if check and result.returncode != 0:
            pytest.fail(f"spark-submit {script} exited with code {result.returncode}\n"
                        + self.report(stdout, stderr))
        return result

    def _command(self, conf: dict[str, str] | None, *target: str) -> list[str]:
        """spark-submit to this cluster with the drivers' settings, then `target`."""
        settings = {
            "spark.pyspark.python": PYTHON,
            "spark.pyspark.driver.python": PYTHON,
            "spark.executor.memory": "1g",
            "spark.driver.memory": "1g",
            "spark.driver.host": "127.0.0.1",
            "spark.ui.enabled": "false",
            **(conf or {}),
        }
        cmd = [_spark_submit(), "--master", self.master_url]
        for key, value in settings.items():
            cmd += ["--conf", f"{key}={value}"]
        return cmd + list(target)

    @contextlib.contextmanager
    def connect_server(self, conf: dict[str, str] | None = None,
                       timeout: float = 90.0) -> Iterator[str]:
        """A Spark Connect server (a driver of this cluster) on a free port; yields its
        sc:// URL once it accepts connections, and stops it after."""
        port = free_port()
        cmd = self._command({"spark.connect.grpc.binding.address": "127.0.0.1",
                             "spark.connect.grpc.binding.port": str(port), **(conf or {})},
                            "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
                            "spark-internal")
        log = self.state_dir / f"connect-{port}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while not _accepts(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the Spark Connect server did not listen on {port} within "
                                f"{timeout:g}s:\n{_tail(log.read_text(errors='replace'))}")
                time.sleep(0.5)
            yield f"sc://127.0.0.1:{port}"
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def status(self) -> dict:
        """The master's JSON status (workers, active and completed applications)."""
        with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=5) as response:
            return json.load(response)

    def executor_logs(self) -> str:
        """The tails of the executor logs of the latest application (rank output goes there)."""
        apps = sorted(self.state_dir.glob("worker-*/app-*"), key=lambda p: p.name)
        if not apps:
            return "(no executor logs)"
        latest = apps[-1].name
        parts = []
        for log in sorted(self.state_dir.glob(f"worker-*/{latest}/*/stderr")):
            parts.append(f"--- {log.relative_to(self.state_dir)} ---\n"
                         + _tail(log.read_text(errors="replace")))
        return "\n".join(parts) or "(no executor logs)"

    def report(self, stdout: str, stderr: str) -> str:
        """The tails of the driver's stdout and stderr and of the executors' logs."""
        return (f"--- driver stdout ---\n{_tail(stdout)}\n--- driver stderr ---\n{_tail(stderr)}\n"
                f"{self.executor_logs()}")


def _cluster_script(command: str, env: dict[str, str], timeout: float
                    ) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER_SCRIPT), command], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def _started_processes(state_dir: Path) -> list[psutil.Process]:
    """The daemons named by the script's pid files and every process under them now."""
    procs = []
    for pid_file in state_dir.glob("*.pid"):
        try:
            proc = psutil.Process(int(pid_file.read_text().split()[0]))
            if str(state_dir) in " ".join(proc.cmdline()):  # not a pid reused since
                procs += [proc, *proc.children(recursive=True)]
        except (ValueError, IndexError, psutil.Error):
            continue
    return procs


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _processes_in(state_dir: Path) -> list[psutil.Process]:
    """Live processes whose command line or working directory is inside the state dir."""
    needle = str(state_dir)
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmdline = " ".join(proc.info["cmdline"] or [])
        if needle in cmdline or needle in (proc.info["cwd"] or ""):
            found.append(proc)
    return found


def _describe(procs: list[psutil.Process]) -> str:
    lines = []
    for proc in procs:
        try:
            lines.append(f"  pid {proc.pid}: {' '.join(proc.cmdline())[:200]}")
        except psutil.Error:
            lines.append(f"  pid {proc.pid}")
    return "\n".join(lines)


@pytest.fixture(scope="session")
def standalone_cluster(tmp_path_factory) -> Iterator[StandaloneCluster]:
    """A master and two workers (1 core, 2g each) on free ports; torn down without leftovers."""
    state_dir = tmp_path_factory.mktemp("sparkdl-cluster")
    master_port, ui_port = free_port(), free_port()
    env = {
        **os.environ,
        "SPARK_HOME": _spark_home(),
        "SPARK_CONF_DIR": str(state_dir / "conf"),  # created empty by the script
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": PYTHON,
        "PYSPARK_DRIVER_PYTHON": PYTHON,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "SPARKDL_PYTHON": PYTHON,
        "SPARKDL_CLUSTER_DIR": str(state_dir),
        "SPARKDL_MASTER_PORT": str(master_port),
        "SPARKDL_MASTER_UI_PORT": str(ui_port),
        "SPARKDL_WORKER_UI_PORT": "0",
        "SPARKDL_WORKERS": str(WORKERS),
        "SPARKDL_WORKER_GPUS": "1",
        "SPARKDL_CLUSTER_TIMEOUT": str(UP_TIMEOUT_S),
    }
    started = time.monotonic()
    up = _cluster_script("up", env, timeout=UP_TIMEOUT_S + 30)
    try:
        assert up.returncode == 0, (f"scripts/cluster.sh up failed ({up.returncode}):\n"
                                    f"{up.stdout}\n{up.stderr}")
        master_url = up.stdout.strip().splitlines()[-1]
        assert master_url == f"spark://127.0.0.1:{master_port}", up.stdout
        print(f"\nstandalone cluster up in {time.monotonic() - started:.1f}s at {master_url}")
        yield StandaloneCluster(master_url=master_url, ui_url=f"http://127.0.0.1:{ui_port}",
                                state_dir=state_dir, env=env)
    finally:
        _stop_and_check(state_dir, env)


@dataclass
class AppRun:
    """cluster_app.py's driver output and exit code."""

    stdout: str
    report: str  # the tails of the driver's and executors' logs
    returncode: int

    def part(self, name: str) -> dict:
        """The result the app printed for part `name`; fails the test when it printed none."""
        prefix = f"RESULT {name} "
        lines = [line for line in self.stdout.splitlines() if line.startswith(prefix)]
        if not lines:
            pytest.fail(f"cluster_app.py printed no {name} result (exit code "
                        f"{self.returncode})\n{self.report}")
        return json.loads(lines[-1][len(prefix):])


@pytest.fixture(scope="session")
def cluster_app(standalone_cluster, tmp_path_factory) -> AppRun:
    """tests/cluster/cluster_app.py spark-submitted once with task GPUs, for the GPU and the
    executor-loss tests; each test fails on its own part only."""
    out = standalone_cluster.submit("tests/cluster/cluster_app.py", "--store",
                                    str(tmp_path_factory.mktemp("cluster-app")), timeout=600,
                                    check=False, conf=GPU_CONF)
    return AppRun(out.stdout, standalone_cluster.report(out.stdout, out.stderr), out.returncode)


def _stop_and_check(state_dir: Path, env: dict[str, str]) -> None:
    """`cluster.sh down`, then assert nothing it started is left (killing any leftover first)."""
    started = _started_processes(state_dir)
    down = _cluster_script("down", env, timeout=60)
    _, alive = psutil.wait_procs(started, timeout=10)
    leftovers = [p for p in alive if _running(p)]
    strays = [p for p in _processes_in(state_dir) if p not in leftovers]
    for proc in leftovers + strays:  # never leave them behind, even when the check fails
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    assert down.returncode == 0, f"scripts/cluster.sh down failed:\n{down.stdout}\n{down.stderr}"
    assert not leftovers and not strays, (
        f"processes the cluster started survived `down` (now killed):\n{_describe(leftovers)}\n"
        f"processes running in {state_dir} after `down` (now killed):\n{_describe(strays)}")

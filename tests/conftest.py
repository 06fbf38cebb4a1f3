"""Shared fixtures: one local[2] SparkSession for the whole run, a Spark Connect session served
by it (same executors), a temporary Store root, and an S3-API server."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest
from ports import free_port

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# MLflow's telemetry thread sets and pops an environment variable while requests iterates
# os.environ for proxies, a race that fails a tracking call with KeyError; nothing here is online
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Every JVM the tests start (drivers, executors, the cluster's daemons, Connect servers) lives a
# minute or two: the C1 compiler alone and the serial GC halve their CPU on a 2-core machine,
# where C2's compiles and G1's threads otherwise take it from the ranks
os.environ["JAVA_TOOL_OPTIONS"] = " ".join(filter(None, [
    os.environ.get("JAVA_TOOL_OPTIONS"), "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that run Spark applications of their own (`cluster`, `own_spark`) first, Spark
    Connect tests last. Spark retires a Python worker after a minute without a task, and with it
    the ranks' preloaded TensorFlow; Connect's tasks run in Python workers of their own. So the
    shared session's next fit after a test of another kind paid for new ones."""
    items.sort(key=lambda item: 0 if (item.get_closest_marker("cluster")
                                      or item.get_closest_marker("own_spark"))
               else 2 if _uses_connect(item) else 1)


def _uses_connect(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return "connect" in item.fixturenames or (
        callspec is not None and "connect" in callspec.id.split("-"))


@pytest.fixture(scope="session")
def spark():
    import pyspark
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    if int(pyspark.__version__.split(".")[0]) >= 4:  # pyspark 3.5 ships no Connect server
        builder = (builder.config("spark.plugins",
                                  "org.apache.spark.sql.connect.SparkConnectPlugin")
                   .config("spark.connect.grpc.binding.address", "127.0.0.1")
                   .config("spark.connect.grpc.binding.port", str(free_port())))
    session = (
        builder.master("local[2]")
        .appName("sparkdl-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.memory", "2g")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def _connect_session(spark):
    """One Spark Connect client for the run, closed before its server stops: pyspark 4.3's
    client otherwise retries its exit-time cleanup call against the stopped server for minutes."""
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    port = spark.conf.get("spark.connect.grpc.binding.port")
    session = ConnectSession.builder.remote(f"sc://127.0.0.1:{port}").getOrCreate()
    yield session
    session.stop()


@pytest.fixture()
def connect(_connect_session, monkeypatch):
    """A Spark Connect session (what Databricks serverless gives users) to the server that the
    classic session runs. pyspark's functions follow Connect while the test runs."""
    monkeypatch.setenv("SPARK_CONNECT_MODE_ENABLED", "1")
    return _connect_session


@pytest.fixture(params=["classic", "connect"])
def session(request):
    """Each session kind in turn: the classic local[2] session, then a Spark Connect one."""
    return request.getfixturevalue("spark" if request.param == "classic" else "connect")


@pytest.fixture()
def store_root(tmp_path):
    """A fresh directory for a Store; removed with tmp_path."""
    return str(tmp_path / "store")


@pytest.fixture(scope="session")
def s3_options(tmp_path_factory):
    """fsspec options for a fresh S3-API server (moto's) on 127.0.0.1 with the bucket `sparkdl`."""
    import boto3

    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                               str(port)], stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's S3 server did not start; see {log.name}") from None
                time.sleep(0.2)
        options = {"key": "testing", "secret": "testing", "endpoint_url": endpoint,
                   "client_kwargs": {"region_name": "us-east-1"}}
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                     aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket="sparkdl")
        yield options
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()

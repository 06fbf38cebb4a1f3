"""Shared fixtures: one local[2] SparkSession for the whole run, a Spark Connect session served
by it (same executors), and a temporary Store root."""
from __future__ import annotations

import os
import socket
import sys

import pytest

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def spark():
    import pyspark
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    if int(pyspark.__version__.split(".")[0]) >= 4:  # pyspark 3.5 ships no Connect server
        builder = (builder.config("spark.plugins",
                                  "org.apache.spark.sql.connect.SparkConnectPlugin")
                   .config("spark.connect.grpc.binding.address", "127.0.0.1")
                   .config("spark.connect.grpc.binding.port", str(_free_port())))
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


@pytest.fixture()
def connect(spark, monkeypatch):
    """A Spark Connect session (what Databricks serverless gives users) to the server that the
    classic session runs. pyspark's functions follow Connect while the test runs."""
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    monkeypatch.setenv("SPARK_CONNECT_MODE_ENABLED", "1")
    port = spark.conf.get("spark.connect.grpc.binding.port")
    return ConnectSession.builder.remote(f"sc://127.0.0.1:{port}").getOrCreate()


@pytest.fixture(params=["classic", "connect"])
def session(request):
    """Each session kind in turn: the classic local[2] session, then a Spark Connect one."""
    return request.getfixturevalue("spark" if request.param == "classic" else "connect")


@pytest.fixture()
def store_root(tmp_path):
    """A fresh directory for a Store; removed with tmp_path."""
    return str(tmp_path / "store")

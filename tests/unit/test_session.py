"""The session kinds: which one a SparkSession is, and what a Connect client can know of slots."""
from __future__ import annotations

import pyspark
import pytest

from sparkdl.launch.session import ConnectSession, local_cores
from sparkdl.launch.slots import Executor


class _Conf:
    """A Spark Connect session's configuration, as `spark.conf.get` returns it."""

    def __init__(self, values):
        self.values = values

    def get(self, key, default=None):
        return self.values.get(key, default)


class _Remote:
    def __init__(self, **values):
        self.conf = _Conf(values)


def _connect(**conf):
    """A ConnectSession over `conf` (keys with "_" for ".")."""
    return ConnectSession(_Remote(**{k.replace("_", "."): v for k, v in conf.items()}))


def test_a_connect_session_on_pyspark_before_4_fails_naming_what_to_use(monkeypatch):
    monkeypatch.setattr(pyspark, "__version__", "3.5.9")
    with pytest.raises(RuntimeError, match=r"needs pyspark >= 4.0 .* this is pyspark 3.5.9. "
                                           r"Use a classic SparkSession"):
        ConnectSession(_Remote())


def test_connect_slots_come_from_the_configuration():
    assert _connect(spark_master="local[3]").executors() == [Executor(3, 0)]
    assert _connect(spark_master="yarn", spark_executor_instances="4",
                    spark_executor_cores="2").executors() == [Executor(2, 0)] * 4
    # standalone: spark.cores.max split into executors of spark.executor.cores
    assert _connect(spark_master="spark://h:7077", spark_cores_max="4", spark_executor_cores="1",
                    spark_executor_resource_gpu_amount="1").executors() == [Executor(1, 1)] * 4
    assert _connect(spark_master="spark://h:7077").executors() is None  # unknown: num_proc


def test_local_master_cores():
    assert local_cores("local[2]") == 2 and local_cores("local") == 1
    assert local_cores("local[*]") >= 1 and local_cores("spark://h:7077") is None
    assert local_cores("local[4, 2]") == 4  # with maxFailures
    assert local_cores("local-cluster[2,1,1024]") is None  # workers, not this process's cores

"""MLflow tracking against a real tracking server on 127.0.0.1 (sqlite backend, served artifacts):
params, per-epoch metrics while training runs, TensorBoard logs, the model, resume."""
from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import keras
import mlflow
import numpy as np
import pytest
from keras_helpers import SlowEpochs, assembled_df, make_estimator
from pyspark.ml.functions import vector_to_array
from pyspark.sql import functions as F


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow_cli = os.path.join(os.path.dirname(sys.executable), "mlflow")
    server = subprocess.Popen(
        [mlflow_cli, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
         "--artifacts-destination", str(root / "artifacts")],
        stdout=open(root / "server.log", "wb"), stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("MLflow server did not start: "
                               + (root / "server.log").read_text()[-2000:])
        time.sleep(0.5)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(previous)
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def df(spark):
    return assembled_df(spark, rows=1200, seed=8)


def test_active_run_gets_params_live_metrics_logs_and_a_servable_model(spark, df, store_root,
                                                                       tracking_uri):
    mlflow.set_experiment("sparkdl-active")
    client = mlflow.MlflowClient()
    est = make_estimator(store_root, metrics=["accuracy"], validation=0.25, batch_size=64,
                         epochs=3, random_seed=2, verbose=0, callbacks=[SlowEpochs(1.5)])
    with mlflow.start_run() as run:
        live, done = [], threading.Event()

        def poll():  # metrics arrive while training runs, epoch by epoch
            while not done.wait(0.2):
                live.append(len(client.get_metric_history(run.info.run_id, "loss")))

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            fitted = est.fit(df)
        finally:
            done.set()
            poller.join()
    assert any(0 < n < 3 for n in live)

    data = client.get_run(run.info.run_id).data
    assert {k: data.params[k] for k in ("batch_size", "epochs", "num_proc", "optimizer",
                                        "model", "run_id")} == {
        "batch_size": "64", "epochs": "3", "num_proc": "2", "optimizer": "Adam",
        "model": "Sequential", "run_id": fitted.getRunId()}
    assert float(data.params["optimizer.learning_rate"]) == pytest.approx(0.01)
    assert int(data.params["train_rows"]) + int(data.params["val_rows"]) == 1200
    history = fitted.getHistory()
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        logged = client.get_metric_history(run.info.run_id, name)
        assert [m.step for m in logged] == [1, 2, 3]
        np.testing.assert_allclose([m.value for m in logged], history[name], rtol=1e-6)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "model_summary.txt" in artifacts
    if importlib.util.find_spec("tensorflow") is not None:  # Keras logs with tf.summary
        assert "tensorboard" in artifacts
        assert client.list_artifacts(run.info.run_id, "tensorboard")

    # the logged model: Keras' flavour, and a pyfunc that takes the DataFrame's columns
    assert isinstance(mlflow.keras.load_model(fitted.mlflow_model_uri), keras.Model)
    served = mlflow.pyfunc.load_model(fitted.mlflow_model_uri)
    test = df.limit(200)
    pdf = test.select("id", vector_to_array("features").alias("features")).toPandas()
    predicted = served.predict(pdf[["features"]])
    expected = (fitted.transform(test).select("id", "label__output").toPandas()
                .set_index("id").loc[pdf["id"], "label__output"].to_numpy())
    np.testing.assert_allclose(predicted["label__output"].to_numpy(), expected, rtol=1e-5)
    # and as MLflow's Spark UDF, in the executors' Python workers
    udf = mlflow.pyfunc.spark_udf(spark, fitted.mlflow_model_uri, result_type="float",
                                  env_manager="local")
    scored = (test.select("id", udf(vector_to_array("features").alias("features")).alias("p"))
              .toPandas().set_index("id").loc[pdf["id"], "p"].to_numpy())
    np.testing.assert_allclose(scored, expected, rtol=1e-5)


def test_resumed_fit_continues_its_mlflow_run(df, store_root, tracking_uri):
    mlflow.set_experiment("sparkdl-resume")
    client = mlflow.MlflowClient()
    base = dict(batch_size=64, random_seed=4, verbose=0, run_id="tracked", log_to_mlflow=True)
    make_estimator(store_root, epochs=2, **base).fit(df)
    assert mlflow.active_run() is None  # the run sparkdl started is ended
    make_estimator(store_root, epochs=3, **base).fit(df)  # one more epoch, same run

    [run] = mlflow.search_runs(filter_string="tags.`sparkdl.run_id` = 'tracked'",
                               output_format="list")
    assert run.info.status == "FINISHED" and run.info.run_name == "tracked"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3]
    assert run.data.params["epochs"] == "2"  # params keep the first fit's values


def test_no_tracking_without_a_run_or_when_turned_off(df, store_root, tracking_uri):
    mlflow.set_experiment("sparkdl-off")
    with mlflow.start_run() as run:
        fitted = make_estimator(store_root, epochs=1, verbose=0, log_to_mlflow=False).fit(
            df.where(F.col("id") < 400))
    assert fitted.mlflow_model_uri is None
    assert mlflow.MlflowClient().get_run(run.info.run_id).data.metrics == {}

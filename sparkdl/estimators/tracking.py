"""MLflow tracking of a fit, on the driver: params once, each epoch's metrics as rank 0 reports
them (while training runs), then the TensorBoard logs and the model (Keras flavour, pyfunc over
DataFrame columns: `sparkdl.train.pyfunc`).

MLflow is imported only when a fit asks for it or a run is already active.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import sys
import tempfile
import time
from importlib import metadata
from typing import Any

from sparkdl.data.meta import STRING

log = logging.getLogger(__name__)

RUN_TAG = "sparkdl.run_id"  # the sparkdl run an MLflow run tracks: a resume continues it
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value


def require_mlflow(setting: bool | None) -> None:
    """Fail before any job when MLflow logging is asked for and MLflow is not installed."""
    if setting and importlib.util.find_spec("mlflow") is None:
        raise ImportError("log_to_mlflow=True needs MLflow, which is not installed; expected "
                          "pip install 'sparkdl[mlflow]' (or log_to_mlflow=None)")


def tracking_run(setting: bool | None, run_id: str) -> MlflowRun | None:
    """The MLflow run this fit logs to, or None.

    With an active run (and `setting` not False), that run. With `setting` True and none
    active, the run of the current experiment tagged with this sparkdl `run_id` (a resume), or
    a new one named after it."""
    if setting is False or (setting is None and "mlflow" not in sys.modules):
        return None
    import mlflow

    active = mlflow.active_run()
    if active is None and not setting:
        return None
    if active is not None:
        mlflow.set_tag(RUN_TAG, run_id)
        return MlflowRun(active.info.run_id, owned=False)
    found = mlflow.search_runs(filter_string=f"tags.`{RUN_TAG}` = '{run_id}'",
                               output_format="list", max_results=1)
    started = (mlflow.start_run(run_id=found[0].info.run_id) if found
               else mlflow.start_run(run_name=run_id, tags={RUN_TAG: run_id}))
    log.info("logging to MLflow run %s (%s)", started.info.run_id,
             "resumed" if found else "new")
    return MlflowRun(started.info.run_id, owned=True)


class MlflowRun:
    """One MLflow run, written through a client with its id (the channel thread logs epochs;
    MLflow's active run is per thread). `owned`: started by this fit, ended by it."""

    def __init__(self, mlflow_run_id: str, owned: bool) -> None:
        import mlflow

        self.id, self.owned = mlflow_run_id, owned
        self._client = mlflow.MlflowClient()

    def log_params(self, params: dict[str, Any], summary: str) -> None:
        """Params not logged yet (a resumed run keeps the values of its first fit)."""
        from mlflow.entities import Param

        logged = self._client.get_run(self.id).data.params
        new = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in params.items() if k not in logged]
        self._client.log_batch(self.id, params=new)
        self._client.log_text(self.id, summary, "model_summary.txt")

    def on_message(self, rank: int, payload: Any) -> None:
        """`sparkdl.run`'s on_message: an epoch's metrics, the epoch as step. A tracking server
        that fails costs a warning, never the training."""
        if not isinstance(payload, dict) or payload.get("event") != "epoch":
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, payload["epoch"])
                   for k, v in payload.get("logs", {}).items()]
        try:
            self._client.log_batch(self.id, metrics=metrics)
        except Exception:
            log.warning("could not log epoch %s to MLflow run %s", payload["epoch"], self.id,
                        exc_info=True)

    def finish(self, keras_model: Any, columns: Any, custom_objects: bytes, signature: Any,
               logs: tuple[Any, str]) -> str:
        """Log the TensorBoard logs (`logs`: store and directory) and the model; end an owned
        run. Returns the model's URI."""
        import mlflow
        from mlflow.models import Model

        from sparkdl.train import pyfunc

        store, logs_dir = logs
        with tempfile.TemporaryDirectory(prefix="sparkdl-mlflow-") as tmp:
            if store.exists(logs_dir):
                store.get_dir(logs_dir, tmp)
                self._client.log_artifacts(self.id, tmp, "tensorboard")
        info = Model.log(None, pyfunc, name="model", run_id=self.id, keras_model=keras_model,
                         columns=columns, custom_objects=custom_objects, signature=signature,
                         pip_requirements=_requirements())
        if self.owned:
            mlflow.end_run()
        return info.model_uri

    def fail(self) -> None:
        """End an owned run as failed; a resume with the same sparkdl run_id continues it."""
        import mlflow

        if self.owned:
            mlflow.end_run(status="FAILED")


def signature(feature_specs: list[Any], output_cols: list[str], scalar: list[bool]) -> Any:
    """MLflow signature over DataFrame columns: numbers, strings or (nested) arrays of those in,
    one float or float array column per model output out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.schema import Array

    def nested(dtype: Any, depth: int) -> Any:
        return dtype if depth == 0 else Array(nested(dtype, depth - 1))

    inputs = [ColSpec(nested(DataType.string if spec.dtype == STRING else DataType.double,
                             len(spec.shape)), spec.name) for spec in feature_specs]
    outputs = [ColSpec(DataType.float if one else Array(DataType.float), name)
               for name, one in zip(output_cols, scalar, strict=True)]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def fit_params(est: Any, model: Any, optimizer: dict[str, Any], meta: Any, num_proc: int,
               run_id: str) -> dict[str, Any]:
    """What an MLflow user compares runs by: the estimator's plain params, the model, the
    optimizer config, the ranks and the data."""
    plain = {p.name: v for p, v in est.extractParamMap().items()
             if isinstance(v, str | int | float | bool | list) and p.name != "callbacks"}
    config = optimizer.get("config", optimizer)
    return {**plain, "model": type(model).__name__, "model_params": model.count_params(),
            **{f"optimizer.{k}": json.dumps(v) if isinstance(v, dict) else v
               for k, v in config.items()},
            "optimizer": optimizer.get("class_name", ""), "num_proc": num_proc,
            "store": est.getStore().url, "run_id": run_id, "train_rows": meta.train_rows,
            "val_rows": meta.val_rows}


def model_summary(model: Any) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *_, **__: lines.append(line))
    return "\n".join(lines)


def _requirements() -> list[str]:
    """Pins of what the pyfunc needs when served; sparkdl itself must be installed there."""
    wanted = ["keras", "tensorflow", "tensorflow-cpu", "numpy", "pandas", "cloudpickle",
              "pyarrow"]
    pins = []
    for name in wanted:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


"""KerasEstimator and KerasModel: distributed Keras training and batch inference in Spark ML."""
from __future__ import annotations

import hashlib
import inspect
import logging
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import cloudpickle
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.param import TypeConverters
from pyspark.sql import DataFrame

from sparkdl.data.meta import STRING
from sparkdl.estimators import validation as check
from sparkdl.estimators.horovod_params import (
    ESTIMATOR_PARAMS,
    MODEL_PARAMS,
    refuse_horovod_params,
)
from sparkdl.estimators.params import TrainingParams, _param, with_accessors
from sparkdl.estimators.persistence import BlobPersistence
from sparkdl.estimators.progress import EpochReporter
from sparkdl.estimators.recovery import with_retries
from sparkdl.estimators.runs import (
    EPOCH_PARAMS,
    claim_run,
    copy_identity,
    derived_run_id,
    fit_fingerprint,
)
from sparkdl.estimators.tracking import fit_params, model_summary, require_mlflow, tracking_run
from sparkdl.estimators.transform import (
    inference_batch_size,
    predict_dataframe,
    scalar_outputs,
)
from sparkdl.launch.driver import dumps_by_value
from sparkdl.train.backend import rank_env, session_backend

log = logging.getLogger(__name__)
RETRY_SLOT_WAIT_S = 120.0  # for a lost executor's replacement to register before a retry


class KerasParams(TrainingParams):
    """Keras-specific params: the model and how to compile it."""

    model = _param("model", "the keras.Model to train (Keras 3; Sequential, functional or "
                   "subclassed, built so its input shapes are known)")
    optimizer = _param("optimizer", "Keras optimizer instance or name (default: the model's "
                       "own when compiled); its learning rate is scaled by num_proc while training")
    loss = _param("loss", "Keras loss: name, function, Loss instance, or a list/dict per output "
                  "(default: the compiled model's)")
    loss_weights = _param("loss_weights", "per-output loss weights (list or dict)")
    metrics = _param("metrics", "Keras metrics (names, functions, or per-output list/dict)")
    callbacks = _param("callbacks", "extra Keras callbacks run on every rank")
    jit_compile = _param("jit_compile", "compile the model's forward and backward pass with XLA; "
                         "gradient averaging and the optimizer update stay outside XLA, where "
                         "Horovod's collectives run", TypeConverters.toBoolean)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(model=None, optimizer=None, loss=None, loss_weights=None, metrics=None,
                         callbacks=[], jit_compile=False)


@with_accessors
class KerasEstimator(Estimator, KerasParams, BlobPersistence):
    """Train a Keras 3 model with Horovod on ``num_proc`` barrier-mode Spark tasks.

    A pyspark.ml ``Estimator``: ``fit(df)`` checks the params against the DataFrame and the
    model on the driver, writes the needed columns once as Parquet in `store`, trains on
    `num_proc` Horovod ranks (one barrier stage; a checkpoint after every epoch) and returns a
    `KerasModel`. It works alone and as a stage of ``Pipeline``, ``CrossValidator`` and
    ``TrainValidationSplit``. The constructor takes keywords only; every parameter is a Spark ML
    ``Param`` with a camel-cased getter and setter (``getBatchSize``, ``setBatchSize``).

    Parameters
    ----------
    model : keras.Model
        The model to train: Keras 3 (Sequential, functional or subclassed), built so that its
        input shapes are known.
    optimizer : keras.optimizers.Optimizer or str, default None
        An optimizer instance or name (``"adam"``); None: the compiled model's. Its learning
        rate (or ``LearningRateSchedule``) is multiplied by the number of ranks while training.
    loss : str, callable, keras.losses.Loss, list or dict, default None
        The loss, or one per output; None: the compiled model's.
    loss_weights : list or dict, default None
        Per-output loss weights.
    metrics : list or dict, default None
        Keras metrics: names, functions or instances, or one list per output. Their values are
        those of all rows: each metric's state is summed over the ranks.
    custom_objects : dict, default {}
        Custom Keras objects the model needs to load. Objects registered with
        ``keras.saving.register_keras_serializable`` and plain functions used as losses or
        metrics are added by themselves.
    feature_cols : list of str
        Input columns, one per model input: numeric scalars, numeric (nested) arrays or ML
        vectors, reshaped to the input's shape.
    label_cols : list of str
        Label columns, one per model output.
    sample_weight_col : str, default None
        A column of per-row sample weights.
    validation : float or str, default None
        A fraction in (0, 1) of the rows, split with `random_seed`, or the name of a boolean or
        integer column whose true (non-zero) rows validate; None: no validation.
    callbacks : list of keras.callbacks.Callback, default []
        Extra callbacks, run on every rank; they must be picklable.
    batch_size : int, default 32
        Rows per batch on each rank, in training and inference.
    val_batch_size : int, default None
        Rows per validation batch; None: `batch_size`.
    epochs : int, default 1
        Epochs of the run. A resumed run trains only those left.
    train_steps_per_epoch : int, default None
        Batches per epoch on each rank; None: every training row once per epoch.
    validation_steps_per_epoch : int, default None
        Validation batches per epoch on each rank; None: every validation row.
    shuffle : bool, default True
        Shuffle the training rows every epoch.
    random_seed : int, default None
        A seed in [0, 2**31) for the validation split, the shuffling and each rank (which adds
        its rank); None: a random one.
    store : Store
        Where the materialised data, the checkpoints and the TensorBoard logs go.
    run_id : str, default None
        The run's name in the store: fitting again with the same `run_id` resumes after its
        last checkpoint, provided it is a fit of the same model, data and params. None: a new
        ``run_<UTC time>_<hex>``.
    num_proc : int, default None
        Horovod ranks; None: the cluster's task slots (with task GPUs, the fewer of CPU and GPU
        slots).
    verbose : int, default 1
        0 silent; 1 a progress bar or one line per epoch on the driver; 2 also Keras' own
        lines in rank 0's executor log.
    output_cols : list of str, default None
        Names of the fitted model's prediction columns, one per output; None:
        ``<label>__output``.
    cache_key : str, default None
        Reuse the data materialised under this name, across applications too (you vouch that
        the DataFrame did not change); None: reuse only a deterministic plan over unchanged
        input files within the application.
    jit_compile : bool, default False
        Compile the forward and backward pass with XLA.
    stall_timeout : float, default 300
        Seconds a rank may go without finishing a batch before it is ended and the fit fails
        naming it.
    max_retries : int, default 2
        Relaunches of the ranks from the last checkpoint after a rank fails (a lost executor,
        a signal, a stall); 0 turns them off.
    log_to_mlflow : bool, default None
        Log params, per-epoch metrics, TensorBoard logs and the model to MLflow: None when an
        MLflow run is active, True also starts (or resumes) one, False never.
    use_gpu : bool, default None
        None uses the GPUs Spark assigns to the tasks, if any; True requires them; False hides
        every GPU from the ranks.

    Raises
    ------
    TypeError
        For a positional argument, or a horovod.spark.keras parameter that sparkdl does not take
        (``backend``, ``inmemory_cache_all``, ...); the message names what to use instead.

    See Also
    --------
    KerasModel : What `fit` returns.
    Store : Where the data, checkpoints and logs live.

    Notes
    -----
    ``fit`` raises ``ValueError`` or ``TypeError`` before any Spark job for a param, column or
    model that cannot work, naming it, and ``sparkdl.launch.RankFailedError`` when a rank fails
    and no retry is left.

    Examples
    --------
    >>> est = KerasEstimator(model=model, optimizer=keras.optimizers.Adam(1e-3),
    ...                      loss="binary_crossentropy", metrics=["accuracy"],
    ...                      feature_cols=["features"], label_cols=["label"],
    ...                      store=Store.create("/tmp/sparkdl"), num_proc=2, epochs=4,
    ...                      validation=0.2)
    >>> fitted = Pipeline(stages=[assembler, est]).fit(train_df)
    >>> fitted.transform(test_df).select("label__output").show(3)
    """

    @refuse_horovod_params(ESTIMATOR_PARAMS)
    @keyword_only
    def __init__(self, *, model: Any = None, optimizer: Any = None, loss: Any = None,
                 loss_weights: Any = None, metrics: Any = None, custom_objects: Any = None,
                 feature_cols: Any = None, label_cols: Any = None, sample_weight_col: Any = None,
                 validation: Any = None, callbacks: Any = None, batch_size: Any = None,
                 val_batch_size: Any = None, epochs: Any = None,
                 train_steps_per_epoch: Any = None, validation_steps_per_epoch: Any = None,
                 shuffle: Any = None, random_seed: Any = None, store: Any = None,
                 run_id: Any = None, num_proc: Any = None, verbose: Any = None,
                 output_cols: Any = None, cache_key: Any = None,
                 jit_compile: Any = None, stall_timeout: Any = None,
                 max_retries: Any = None, log_to_mlflow: Any = None,
                 use_gpu: Any = None) -> None:
        super().__init__()
        self._own_run = False  # set on copies: see copy()
        self._set(**{k: v for k, v in self._input_kwargs.items() if v is not None})

    @refuse_horovod_params(ESTIMATOR_PARAMS)
    @keyword_only
    def setParams(self, **kwargs: Any) -> KerasEstimator:
        """Set any of the constructor's params by keyword.

        Returns
        -------
        KerasEstimator
            This estimator.

        Raises
        ------
        TypeError
            For a horovod.spark.keras parameter that sparkdl does not take (the message names
            what to use instead).
        """
        return self._set(**self._input_kwargs)

    def _fit(self, df: DataFrame) -> KerasModel:
        from sparkdl.data.materialize import materialize
        from sparkdl.launch.session import session_of
        from sparkdl.launch.slots import available_slots, check_gpus, check_num_proc

        plan = _FitPlan(self, df)
        session = session_of(df.sparkSession)
        check_gpus(session, self.getUseGpu())
        num_proc = check_num_proc(self.getNumProc(), available_slots(session, self.getNumProc()))
        with session.described(f"sparkdl fit {plan.run_id}: materialise"):
            meta = materialize(df, plan.store, plan.feature_cols, plan.label_cols,
                               sample_weight_col=self.getSampleWeightCol(),
                               validation=self.getValidation(), num_proc=num_proc,
                               seed=42 if self.getRandomSeed() is None else self.getRandomSeed(),
                               check=lambda specs: check.check_inputs(
                                   plan.signature, plan.feature_cols, specs, plan.backend),
                               cache_key=self.getCacheKey())
        try:
            run_id = self._claim_run(plan, meta, session.input_files(df), num_proc)
            return self._train(plan, meta, num_proc, run_id, session)
        finally:
            if meta.reuse == "once":
                meta.release()  # written for this fit alone

    def copy(self, extra: Any = None) -> KerasEstimator:
        """A copy of this estimator, with `extra` params set, that trains in a run of its own.

        ``CrossValidator`` and ``TrainValidationSplit`` copy the estimator for every fold and
        param map. A copy's `run_id`, when set, becomes ``<run_id>-<digest>``, the digest
        covering its model and initial weights, the data it materialised, its params, epochs,
        num_proc and callbacks: no fold or param map resumes from another's checkpoints.

        Parameters
        ----------
        extra : dict, default None
            Params to set on the copy, ``{param: value}``.

        Returns
        -------
        KerasEstimator
            The copy.
        """
        that = super().copy(extra)
        that._own_run = True
        return that

    def _claim_run(self, plan: _FitPlan, meta: Any, files: list[Any], num_proc: int) -> str:
        """The run this fit trains in; resuming it must be a fit of the same model, data and
        params (see sparkdl.estimators.runs)."""
        run_id = plan.run_id
        if self.getRunId() is None:
            return run_id
        params = {name: self.getOrDefault(name) for name in EPOCH_PARAMS}
        fingerprint = fit_fingerprint(plan.model, plan.optimizer, params, meta, files)
        if self._own_run:
            callbacks = _pickled_or_named(list(self.getCallbacks() or []))
            run_id = derived_run_id(run_id, fingerprint, self.getEpochs(),
                                    copy_identity(plan.model, meta.key, num_proc, callbacks))
        claim_run(plan.store, run_id, fingerprint)
        return run_id

    def _train(self, plan: _FitPlan, meta: Any, num_proc: int, run_id: str,
               session: Any) -> KerasModel:
        from sparkdl.launch import run
        from sparkdl.launch.slots import wait_for_slots
        from sparkdl.train.keras_worker import train_keras

        log.info("training run %s on %d rank(s): %d train / %d validation rows", run_id,
                 num_proc, meta.train_rows, meta.val_rows)
        reporter = EpochReporter(self.getVerbose())
        tracking = tracking_run(self.getLogToMlflow(), run_id)
        on_message = reporter
        if tracking is not None:
            tracking.log_params(fit_params(self, plan.model, plan.optimizer, meta, num_proc,
                                           run_id), model_summary(plan.model))

            def on_message(rank: int, payload: Any) -> None:
                reporter(rank, payload)
                tracking.on_message(rank, payload)
        spec = plan.spec(meta, run_id)

        def launch() -> list[Any]:
            return run(train_keras, num_proc=num_proc, args=(spec,), on_message=on_message,
                       env=rank_env(plan.backend),
                       description=f"sparkdl fit {run_id}: train on {num_proc} ranks",
                       stall_timeout=self.getStallTimeout(), use_gpu=self.getUseGpu())

        def epoch_in_progress() -> int:
            return reporter.epochs[-1]["epoch"] + 1 if reporter.epochs else 1

        try:
            results = with_retries(
                launch, self.getMaxRetries(), epoch_in_progress, reporter.say,
                lambda: wait_for_slots(session, num_proc, RETRY_SLOT_WAIT_S))
        except BaseException:
            if tracking is not None:
                tracking.fail()
            raise
        out = results[0]
        history = out["history"]
        if reporter.epochs and (history.get("epoch") or [None])[0] != reporter.epochs[0]["epoch"]:
            # retried: this fit's epochs span attempts; the run history has each once
            history = _epochs_from(out["run_history"], reporter.epochs[0]["epoch"])
        model = self._copyValues(KerasModel()._trained(
            out["model"], history, out["run_history"], run_id, plan.custom_objects))
        if tracking is not None:
            model.mlflow_model_uri = tracking.finish(*model.mlflow_model_parts(meta, plan.store))
        return model

    # persistence: JSON params as metadata; Keras objects as their configs, the rest pickled
    def _blobs(self) -> dict[str, bytes]:
        from sparkdl.train.serialize import model_to_bytes, to_keras_configs

        objects = {p.name: to_keras_configs(v) for p, v in self._paramMap.items()
                   if p.name not in ("model", "store")}
        if self.isSet(self.store) and self.getStore() is not None:  # no credentials in a save
            objects["store"] = self.getStore().without_storage_options()
        blobs = {"objects.pkl": _dumps_param("callbacks/custom objects", objects)}
        if self.isSet(self.model):
            blobs["model.keras"] = model_to_bytes(self.getModel())
        return blobs

    def _restore(self, blobs: dict[str, bytes], metadata: dict[str, Any]) -> None:
        from sparkdl.train.serialize import from_keras_configs, model_from_bytes, with_registered

        objects = cloudpickle.loads(blobs["objects.pkl"])
        custom = with_registered(objects.get("custom_objects"))
        self._set(**{k: from_keras_configs(v, custom) for k, v in objects.items()})
        if "model.keras" in blobs:
            self._set(model=model_from_bytes(blobs["model.keras"], custom))


def _pickled_or_named(objects: list[Any]) -> bytes:
    """`objects` pickled, or their type names when they cannot be (the ranks' launch reports
    that)."""
    try:
        return dumps_by_value(objects)
    except Exception:
        return repr([type(o).__qualname__ for o in objects]).encode()


def _dumps_param(what: str, value: Any) -> bytes:
    try:
        return dumps_by_value(value)
    except Exception as exc:
        raise TypeError(f"cannot save the estimator: its {what} cannot be pickled ({exc}); "
                        "expected picklable objects") from exc


class _FitPlan:
    """The estimator's params checked against the DataFrame and the model, before any job."""

    def __init__(self, est: KerasEstimator, df: DataFrame) -> None:
        from sparkdl.data.schema import inspect_columns
        from sparkdl.train.serialize import optimizer_config, with_registered

        self.est = est
        self.backend = session_backend()
        if est.getJitCompile() and self.backend != "tensorflow":
            raise ValueError(f"jit_compile=True compiles with XLA, which the Keras backend "
                             f"{self.backend!r} does not use; expected jit_compile=False there "
                             "(or the TensorFlow backend)")
        self.model = est.getModel()
        self.signature = check.check_model(self.model)
        cols = df.columns
        self.feature_cols = check.check_columns("feature_cols", est.getFeatureCols(), cols,
                                                len(self.signature.input_shapes), "input")
        self.label_cols = check.check_columns("label_cols", est.getLabelCols(), cols,
                                              len(self.signature.output_shapes), "output")
        weight = est.getSampleWeightCol()
        if weight is not None:
            check.check_columns("sample_weight_col", [weight], cols, None, "sample weight")
        check.check_validation(est.getValidation(), cols)
        for name in ("epochs", "batch_size"):
            check.check_positive(name, est.getOrDefault(name))
        retries = est.getMaxRetries()
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0 (0 turns retries off); got "
                             f"{retries!r}")
        if not est.getStallTimeout() > 0:
            raise ValueError(f"stall_timeout must be a number of seconds > 0; got "
                             f"{est.getStallTimeout()!r}")
        for name in ("val_batch_size", "train_steps_per_epoch", "validation_steps_per_epoch"):
            check.check_positive(name, est.getOrDefault(name), optional=True)
        num_proc = est.getNumProc()
        if num_proc is not None:
            check.check_positive("num_proc", num_proc)
        self.store = check.check_store(est.getStore())
        check.check_run_id(est.getRunId())
        self.run_id = est.getRunId() or _new_run_id()  # a copy's own run derives from it
        require_mlflow(est.getLogToMlflow())
        # one seed for every rank: shuffling order and initialisation are reproducible from it
        self.seed = est.getRandomSeed()
        if self.seed is None:
            self.seed = random.randrange(2**31)
        check.check_seed("random_seed", self.seed)
        others = [*self.label_cols, *([weight] if weight else [])]
        specs = inspect_columns(df, [*self.feature_cols, *others],
                                string_cols=set(self.feature_cols) - set(others))
        check.check_inputs(self.signature, self.feature_cols, specs, self.backend)
        self.compile_args = self._compile_args()
        optimizer = est.getOptimizer() or getattr(self.model, "optimizer", None)
        if optimizer is None:
            raise ValueError("optimizer is not set and the model is not compiled; expected "
                             "e.g. optimizer=keras.optimizers.Adam(1e-3)")
        try:
            self.optimizer = optimizer_config(optimizer)
        except ValueError as exc:
            raise ValueError(f"optimizer {optimizer!r} is not a Keras optimizer: {exc}") from exc
        self.custom_objects = {**_plain_functions(self.compile_args.values()),
                               **with_registered(est.getCustomObjects())}
        check.check_picklable("custom_objects", self.custom_objects)
        check.check_picklable("callbacks", est.getCallbacks())

    def _compile_args(self) -> dict[str, Any]:
        est, model = self.est, self.model
        loss = est.getLoss()
        if loss is None:
            loss = getattr(model, "loss", None) if getattr(model, "compiled", False) else None
        if loss is None:
            raise ValueError("loss is not set and the model is not compiled with one; expected "
                             "a Keras loss such as loss='mse'")
        args = {"loss": loss, "loss_weights": est.getLossWeights(), "metrics": est.getMetrics()}
        for name, value in args.items():
            check.check_picklable(name, value)
        return args

    def spec(self, meta: Any, run_id: str) -> Any:
        from sparkdl.train.keras_worker import KerasTrainSpec
        from sparkdl.train.serialize import model_to_bytes

        est = self.est
        return KerasTrainSpec(
            model=model_to_bytes(self.model), optimizer=self.optimizer,
            compile_args=self.compile_args, custom_objects=self.custom_objects,
            callbacks=list(est.getCallbacks() or []), meta=meta, store=self.store, run_id=run_id,
            epochs=est.getEpochs(), batch_size=est.getBatchSize(),
            val_batch_size=est.getValBatchSize() or est.getBatchSize(),
            train_steps=est.getTrainStepsPerEpoch(), val_steps=est.getValidationStepsPerEpoch(),
            shuffle=est.getShuffle(), seed=self.seed, verbose=est.getVerbose(),
            jit_compile=est.getJitCompile())


def _plain_functions(values: Any) -> dict[str, Any]:
    """Functions among losses and metrics (nested in lists and dicts) by name, except Keras'
    own: a saved model names them, and loads only where custom_objects holds them."""
    found: dict[str, Any] = {}
    for value in values:
        if isinstance(value, dict):
            found.update(_plain_functions(value.values()))
        elif isinstance(value, list | tuple):
            found.update(_plain_functions(value))
        elif inspect.isfunction(value) and value.__module__.split(".")[0] != "keras":
            found[value.__name__] = value
    return found


def _epochs_from(history: dict[str, list[float]], first: int) -> dict[str, list[float]]:
    """The entries of a run history from epoch `first` (1-based) on."""
    keep = [i for i, epoch in enumerate(history.get("epoch", [])) if epoch >= first]
    return {k: [v[i] for i in keep] for k, v in history.items()}


def _new_run_id() -> str:
    return f"run_{datetime.now(UTC):%Y%m%d_%H%M%S}_{uuid.uuid4().hex[:6]}"


@with_accessors
class KerasModel(Model, TrainingParams, BlobPersistence):
    """A trained Keras model as a Spark ML transformer: ``transform`` appends its predictions.

    `KerasEstimator.fit` returns one; `from_keras` wraps a model trained elsewhere;
    ``KerasModel.load(path)`` (or ``PipelineModel.load``) reads a saved one, with no Store and no
    Horovod. ``transform(df)`` keeps every input column and appends one column per model output,
    named by the ``output_cols`` param (default ``<label>__output``): ``float`` when the output
    has one value per row, else ``array<float>``. Inference runs on the executors in one pandas
    UDF, the model loaded once per Python worker (and GPU, when Spark assigns the tasks GPUs).
    Integer and boolean inputs reach the model as their own type, other numbers as float32.
    The params (``feature_cols``, ``output_cols``, ``batch_size``, ``use_gpu``, ...) have
    camel-cased getters and setters (``setOutputCols``).

    Raises
    ------
    TypeError
        For a horovod.spark.keras constructor parameter (``model``, ``feature_columns``, ...):
        the message points to `from_keras`.

    Examples
    --------
    >>> model = est.fit(train_df).setOutputCols(["p"])
    >>> model.transform(test_df).select("id", "p").show(3)
    >>> model.write().overwrite().save("/tmp/m")
    >>> KerasModel.load("/tmp/m").getHistory()["val_loss"]
    """

    @refuse_horovod_params(MODEL_PARAMS)
    def __init__(self) -> None:
        super().__init__()
        self._model_bytes: bytes | None = None
        self._history: dict[str, list[float]] = {}
        self._run_history: dict[str, list[float]] = {}
        self._run_id: str | None = None
        self._custom_objects: dict[str, Any] = {}  # the param's plus those registered at fit
        self._custom_objects_pickled: bytes | None = None
        self._keras: Any = None
        self._shipped: tuple[Any, Any, str] | None = None  # (owner, shipped bytes, digest)
        self.mlflow_model_uri: str | None = None  # where fit logged the model, if it did

    @classmethod
    def from_keras(cls, model: Any, feature_cols: list[str], output_cols: list[str], *,
                   batch_size: int | None = None,
                   custom_objects: dict[str, Any] | None = None) -> KerasModel:
        """A KerasModel of a Keras 3 model trained elsewhere, to predict with it on the executors.

        The result is the transformer `KerasEstimator.fit` returns: it transforms in a
        ``Pipeline``, and saves and loads as a stage.

        Parameters
        ----------
        model : keras.Model or str
            A Keras 3 model, or the path of a ``.keras`` file (loaded without compiling).
        feature_cols : list of str
            The input columns, one per model input.
        output_cols : list of str
            The prediction columns to append, one per model output.
        batch_size : int, default None
            Sets the inference batch, ``max(batch_size, 512)`` rows per forward pass; None: 32.
        custom_objects : dict, default None
            Custom Keras objects the model needs, as `KerasEstimator` takes them.

        Returns
        -------
        KerasModel
            A fitted model with `feature_cols` and `output_cols` set.

        Raises
        ------
        TypeError
            When `model` is not a Keras 3 model (a legacy ``tf_keras`` one included).
        ValueError
            When `feature_cols` or `output_cols` do not hold one name per model input or output.

        Examples
        --------
        >>> scorer = KerasModel.from_keras("/dbfs/models/churn.keras", ["features"], ["churn_p"])
        >>> scorer.transform(df).select("id", "churn_p").show(3)
        """
        from sparkdl.train.serialize import model_to_bytes, with_registered

        custom = with_registered(custom_objects)
        if isinstance(model, str):
            import keras

            model = keras.saving.load_model(model, custom_objects=custom, compile=False)
        signature = check.check_model(model)
        for param, cols, count, what in [
                ("feature_cols", feature_cols, len(signature.input_shapes), "input"),
                ("output_cols", output_cols, len(signature.output_shapes), "output")]:
            if isinstance(cols, str) or len(cols or []) != count:
                raise ValueError(f"{param} is {cols!r}; expected a list of {count} column "
                                 f"name(s), one per model {what}")
        that = cls()._trained(model_to_bytes(model), {}, {}, None, custom)
        that._set(feature_cols=list(feature_cols), output_cols=list(output_cols),
                  custom_objects=dict(custom_objects or {}))
        if batch_size is not None:
            that._set(batch_size=batch_size)
        return that

    def _trained(self, model_bytes: bytes, history: dict[str, list[float]],
                 run_history: dict[str, list[float]], run_id: str | None,
                 custom_objects: dict[str, Any]) -> KerasModel:
        self._model_bytes, self._history, self._run_id = model_bytes, history, run_id
        self._run_history, self._custom_objects = run_history, custom_objects
        self._custom_objects_pickled = None
        return self

    def _pickled_custom_objects(self) -> bytes:
        """The custom objects as executors load them, pickled once: finding the user's modules
        to pickle by value took a third of building a transform's DataFrame."""
        if self._custom_objects_pickled is None:
            self._custom_objects_pickled = dumps_by_value(self._custom_objects)
        return self._custom_objects_pickled

    def getModel(self) -> Any:
        """The trained model, loaded on the driver.

        Returns
        -------
        keras.Model
            The model compiled with the user's optimizer config (its own learning rate) and the
            optimizer state training reached.

        Raises
        ------
        ValueError
            When this KerasModel holds no model (one made by ``KerasModel()`` itself).
        """
        if self._keras is None:
            from sparkdl.train.serialize import model_from_bytes

            self._keras = model_from_bytes(self._require_bytes(), self._custom_objects)
        return self._keras

    def getHistory(self) -> dict[str, list[float]]:
        """Per-epoch metrics of the fit that made this model.

        Returns
        -------
        dict of str to list
            ``loss``, each metric and its ``val_`` counterpart, one value per epoch this fit
            trained, and ``epoch``, those epochs' 1-based numbers (a resume starts after 1).
            Empty for a model from `from_keras`.
        """
        return {k: list(v) for k, v in self._history.items()}

    def getRunHistory(self) -> dict[str, list[float]]:
        """Per-epoch metrics of the whole run, across interrupted fits, retries and resumes.

        Returns
        -------
        dict of str to list
            As `getHistory`, for every epoch of the run, each once.
        """
        return {k: list(v) for k, v in self._run_history.items()}

    def getRunId(self) -> str | None:
        """The run this model was trained in.

        Returns
        -------
        str or None
            The run's name in the store (a copy's ``<run_id>-<digest>``), or None for a model
            from `from_keras`.
        """
        return self._run_id

    def _require_bytes(self) -> bytes:
        if self._model_bytes is None:
            raise ValueError("this KerasModel holds no trained model; get one from "
                             "KerasEstimator.fit or KerasModel.load")
        return self._model_bytes

    def _transform(self, df: DataFrame) -> DataFrame:
        from sparkdl.launch.session import session_of
        from sparkdl.launch.slots import check_gpus

        session = session_of(df.sparkSession)
        check_gpus(session, self.getUseGpu())
        shipped, key = self._shipped_model(session)
        return predict_dataframe(df, shipped, key, self.getModel(), self.getFeatureCols(),
                                 self.resolved_output_cols(), self.getBatchSize(),
                                 self._pickled_custom_objects(), self.getUseGpu())

    def mlflow_model_parts(self, meta: Any, store: Any) -> tuple[Any, ...]:
        """What `MlflowRun.finish` logs: the Keras model, its column mapping (as transform),
        custom objects, signature and the run's TensorBoard logs."""
        from sparkdl.estimators.tracking import signature as columns_signature
        from sparkdl.train.pyfunc import Columns
        from sparkdl.train.signature import model_signature

        model, outputs = self.getModel(), self.resolved_output_cols()
        shapes = model_signature(model)
        scalar = scalar_outputs(shapes)
        dtypes = [STRING if shapes.takes_strings(i) else "float32"
                  for i in range(len(shapes.input_shapes))]
        columns = Columns(feature_cols=self.getFeatureCols(), input_shapes=shapes.input_shapes,
                          output_cols=outputs, scalar_outputs=scalar,
                          batch_size=inference_batch_size(self.getBatchSize()),
                          input_dtypes=dtypes)
        features = [meta.columns[c] for c in self.getFeatureCols()]
        return (model, columns, self._pickled_custom_objects(),
                columns_signature(features, outputs, scalar), (store, store.logs_dir(self._run_id)))

    def _shipped_model(self, session: Any) -> tuple[Any, str]:
        """The model bytes shipped once per SparkContext (a broadcast) or Spark Connect session
        (inline in the UDF), reused by every transform."""
        if self._shipped is None or self._shipped[0] is not session.owner:
            data = self._require_bytes()
            self._shipped = (session.owner, session.ship(data),
                             hashlib.sha256(data).hexdigest()[:16])
        return self._shipped[1], self._shipped[2]

    def _extra_metadata(self) -> dict[str, Any]:
        return {"history": self._history, "run_history": self._run_history,
                "run_id": self._run_id}

    def _blobs(self) -> dict[str, bytes]:
        return {"model.keras": self._require_bytes(),
                "custom_objects.pkl": self._pickled_custom_objects()}

    def _restore(self, blobs: dict[str, bytes], metadata: dict[str, Any]) -> None:
        self._trained(blobs["model.keras"], metadata.get("history", {}),
                      metadata.get("run_history", {}), metadata.get("run_id"),
                      cloudpickle.loads(blobs["custom_objects.pkl"]))
        self._custom_objects_pickled = blobs["custom_objects.pkl"]  # transforms ship it as is


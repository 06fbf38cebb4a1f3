"""Keras 3 specifics on 2 Horovod ranks: subclassed models and registered custom objects,
learning-rate scaling for constants and schedules, mixed precision, gradient accumulation, and
no legacy Keras."""
from __future__ import annotations

import keras
import numpy as np
import pytest
from keras_helpers import (
    RecordOnRanks,
    SubclassedMLP,
    accuracy,
    assembled_df,
    make_estimator,
    mean_gap,
    mlp,
    no_spark_job,
    recorded,
    squared_error,
)
from pyspark.ml import Pipeline, PipelineModel

import sparkdl


@pytest.fixture(scope="module")
def features_df(spark):
    return assembled_df(spark, rows=1600, seed=5)


def _estimator(store_root, **overrides):
    return make_estimator(store_root, **{**dict(batch_size=32, epochs=3, random_seed=11,
                                                verbose=0), **overrides})


def test_subclassed_model_with_custom_layer_loss_and_metric(spark, features_df, store_root,
                                                            tmp_path):
    keras.utils.set_random_seed(4)
    model = SubclassedMLP(hidden=16)
    model.build((None, 4))
    # the model and its layer are known to the ranks through keras' registry alone; the loss
    # goes through custom_objects, the metric function needs no entry there
    est = _estimator(store_root, model=model, loss=squared_error,
                     metrics=[keras.metrics.BinaryAccuracy(name="acc"), mean_gap],
                     custom_objects={"squared_error": squared_error})
    pm = Pipeline(stages=[est]).fit(features_df)
    history = pm.stages[-1].getHistory()
    assert history["loss"][-1] < history["loss"][0] and {"acc", "mean_gap"} <= set(history)

    out = pm.transform(features_df)
    assert accuracy(out) > 0.9
    path = str(tmp_path / "subclassed")
    pm.write().save(path)
    loaded = PipelineModel.load(path)
    trained = loaded.stages[-1].getModel()
    assert isinstance(trained, SubclassedMLP) and trained.hidden == 16
    before = out.orderBy("id").select("label__output").toPandas()["label__output"].to_numpy()
    after = (loaded.transform(features_df).orderBy("id").select("label__output").toPandas()
             ["label__output"].to_numpy())
    np.testing.assert_allclose(after, before, rtol=1e-6)


@pytest.mark.parametrize("schedule", [False, True], ids=["constant", "schedule"])
def test_learning_rate_scaled_by_ranks_and_returned_as_given(spark, features_df, store_root,
                                                             tmp_path, schedule):
    rate = (keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=10, decay_rate=0.5)
            if schedule else 0.05)
    optimizer = keras.optimizers.SGD(rate, momentum=0.9)
    fitted = _estimator(store_root, optimizer=optimizer, epochs=2,
                        callbacks=[RecordOnRanks(str(tmp_path))]).fit(features_df)

    for rank in (0, 1):
        rates, _ = recorded(str(tmp_path), rank)
        for step, lr in rates:  # while training: the user's rate times num_proc
            expected = float(rate(step)) if schedule else rate
            assert lr == pytest.approx(2 * expected, rel=1e-5)
    # gradients were averaged and updates identical: both ranks end with the same weights
    np.testing.assert_allclose(recorded(str(tmp_path), 0)[1], recorded(str(tmp_path), 1)[1],
                               rtol=1e-6)

    # the returned model carries the user's own optimizer config and the state training reached
    returned = fitted.getModel().optimizer
    assert returned.get_config() == optimizer.get_config()
    steps = 2 * int(np.ceil(features_df.count() / (32 * 2)))
    assert int(returned.iterations.numpy()) == steps
    momentum = [v for v in returned.variables if "momentum" in v.name]
    assert momentum and any(np.abs(v.numpy()).sum() > 0 for v in momentum)


def test_a_resumed_run_keeps_the_learning_rate_a_callback_lowered(spark, features_df,
                                                                  store_root, tmp_path):
    """ReduceLROnPlateau (here lowering it after every epoch but the first) changes a variable,
    not the config: the checkpoint keeps it, so a run stopped after 2 epochs goes on at the
    lowered rate."""
    def fit(epochs, run_id, directory):
        directory.mkdir()
        lower = keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.1, patience=0,
                                                  min_delta=1e9)
        _estimator(store_root, optimizer=keras.optimizers.SGD(0.01), epochs=epochs,
                   run_id=run_id, callbacks=[lower, RecordOnRanks(str(directory))]
                   ).fit(features_df)
        return [lr for _, lr in recorded(str(directory), 1)[0]]

    whole = fit(4, "lr-whole", tmp_path / "whole")
    fit(2, "lr-resumed", tmp_path / "first")
    resumed = fit(4, "lr-resumed", tmp_path / "second")  # epochs 3 and 4
    np.testing.assert_allclose(whole, [0.02, 0.02, 0.002, 0.0002], rtol=1e-5)  # x num_proc
    assert resumed[0] == pytest.approx(whole[2], rel=1e-5)  # epoch 3 starts where it stopped


def test_mixed_precision_trains_with_loss_scaling(spark, features_df, store_root, tmp_path):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = mlp()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    fitted = _estimator(store_root, model=model, epochs=2, run_id="mixed",
                        callbacks=[RecordOnRanks(str(tmp_path))]).fit(features_df)
    assert isinstance(fitted.getModel().optimizer, keras.optimizers.LossScaleOptimizer)
    np.testing.assert_allclose(recorded(str(tmp_path), 0)[1], recorded(str(tmp_path), 1)[1],
                               rtol=1e-6)
    assert accuracy(fitted.transform(features_df)) > 0.9
    # resuming restores the loss scale's state too (Keras' LossScaleOptimizer adds its variables
    # again when built twice)
    resumed = _estimator(store_root, model=model, epochs=3, run_id="mixed").fit(features_df)
    assert resumed.getHistory()["epoch"] == [3]


def test_legacy_keras_is_refused_before_any_job(spark, features_df, store_root, monkeypatch):
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", "1")
    with no_spark_job(spark), pytest.raises(RuntimeError, match="Keras 2 .* is not supported"):
        _estimator(store_root).fit(features_df)


@pytest.mark.tensorflow
def test_jit_compile_trains_the_same_model_on_every_rank(spark, features_df, store_root,
                                                         tmp_path):
    fitted = _estimator(store_root, jit_compile=True, epochs=2,
                        callbacks=[RecordOnRanks(str(tmp_path))]).fit(features_df)
    np.testing.assert_allclose(recorded(str(tmp_path), 0)[1], recorded(str(tmp_path), 1)[1],
                               rtol=1e-6)
    assert accuracy(fitted.transform(features_df)) > 0.9


def _accumulate_on_rank(steps, accumulate, with_scale):
    """SGD(1.0) with gradient accumulation gets rank r's gradient r + 1 + step for a variable at
    0 (and, `with_scale`, for a float8-style scale that takes its gradient as its value);
    returns how often the ranks averaged gradients, and the variables' final values."""
    from sparkdl.train import distributed
    from sparkdl.train.backend import horovod

    hvd = horovod()  # the backend's Horovod module, as sparkdl's ranks use
    hvd.init()
    calls = []
    average = distributed.average_gradients
    distributed.average_gradients = lambda grads: calls.append(1) or average(grads)
    variables = [keras.Variable(np.zeros(2, "float32")) for _ in range(1 + with_scale)]
    if with_scale:
        variables[1].overwrite_with_gradient = True
    optimizer = distributed.distributed_optimizer(
        keras.optimizers.SGD(1.0, gradient_accumulation_steps=accumulate))
    for step in range(steps):
        grad = keras.ops.full((2,), float(hvd.rank() + 1 + step))
        optimizer.apply([grad] * len(variables), variables)
    return len(calls), [v.numpy().tolist() for v in variables]


def test_gradient_accumulation_averages_once_per_update(spark):
    # steps 0-1 then 2-3 make two updates by the mean over both ranks and steps: 2, then 4
    results = sparkdl.run(_accumulate_on_rank, num_proc=2, args=(4, 2, False))
    assert results == [(2, [[-6.0, -6.0]]), (2, [[-6.0, -6.0]])]


def test_gradient_accumulation_with_a_float8_scale_averages_every_step(spark):
    # Keras sets the scale on update steps to the largest of its steps' values: the ranks'
    # means of steps 2 and 3 are 3.5 and 4.5; per-rank values would leave 4 and 5
    results = sparkdl.run(_accumulate_on_rank, num_proc=2, args=(4, 2, True))
    assert results == [(4, [[-6.0, -6.0], [4.5, 4.5]])] * 2


def test_gradient_accumulation_trains_the_same_model_on_every_rank(spark, features_df,
                                                                   store_root, tmp_path):
    optimizer = keras.optimizers.SGD(0.05, momentum=0.9, gradient_accumulation_steps=2)
    fitted = _estimator(store_root, optimizer=optimizer,
                        callbacks=[RecordOnRanks(str(tmp_path))]).fit(features_df)
    np.testing.assert_allclose(recorded(str(tmp_path), 0)[1], recorded(str(tmp_path), 1)[1],
                               rtol=1e-6)
    assert accuracy(fitted.transform(features_df)) > 0.9
    returned = fitted.getModel().optimizer
    assert returned.gradient_accumulation_steps == 2
    steps = 3 * int(np.ceil(features_df.count() / (32 * 2)))  # 3 epochs
    assert int(returned.iterations.numpy()) == steps // 2

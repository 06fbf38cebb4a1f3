"""A horovod.spark.keras parameter that sparkdl does not take fails with a TypeError naming it and
what to use instead (no Spark job, no SparkSession)."""
from __future__ import annotations

import inspect

import pytest

from sparkdl import KerasEstimator, KerasModel
from sparkdl.estimators.horovod_params import ESTIMATOR_PARAMS, MODEL_PARAMS

# horovod 0.28.1: KerasEstimator.__init__'s parameters, then the EstimatorParams it does not take
HOROVOD_ESTIMATOR = [
    "num_proc", "data_module", "model", "backend", "store", "custom_objects", "optimizer", "loss",
    "loss_weights", "sample_weight_col", "gradient_compression", "metrics", "feature_cols",
    "label_cols", "continuous_cols", "categorical_cols", "validation", "callbacks", "batch_size",
    "val_batch_size", "epochs", "verbose", "random_seed", "shuffle_buffer_size", "shuffle",
    "partitions_per_process", "run_id", "train_steps_per_epoch", "validation_steps_per_epoch",
    "transformation_fn", "train_reader_num_workers", "val_reader_num_workers",
    "reader_pool_type", "label_shapes", "checkpoint_callback", "inmemory_cache_all",
    "backend_env", "use_gpu", "mp_start_method",
    "compress_sparse_cols", "transformation_edit_fields", "transformation_removed_fields",
    "backward_passes_per_step",
]
HOROVOD_MODEL = ["history", "model", "feature_columns", "label_columns", "custom_objects",
                 "run_id", "_metadata", "_floatx"]


def _accepted(method) -> set[str]:
    return set(inspect.signature(inspect.unwrap(method)).parameters) - {"self"}


def test_every_horovod_estimator_param_is_taken_or_has_advice():
    taken = _accepted(KerasEstimator.__init__)
    assert sorted(set(HOROVOD_ESTIMATOR) - taken) == sorted(ESTIMATOR_PARAMS)
    assert not taken & set(ESTIMATOR_PARAMS)


def test_every_horovod_model_param_has_advice():
    assert sorted(MODEL_PARAMS) == sorted(HOROVOD_MODEL)


@pytest.mark.parametrize("name", sorted(ESTIMATOR_PARAMS))
def test_a_horovod_only_estimator_param_names_its_replacement(name):
    with pytest.raises(TypeError) as info:
        KerasEstimator(epochs=2, **{name: object()})
    message = str(info.value)
    assert message.startswith(f"KerasEstimator() does not take {name}, horovod.spark.keras")
    assert f"{name}: {ESTIMATOR_PARAMS[name]}" in message
    with pytest.raises(TypeError, match=rf"KerasEstimator.setParams\(\) does not take {name}, "):
        KerasEstimator().setParams(**{name: object()})


def test_the_advice_says_what_to_use():
    with pytest.raises(TypeError, match=r"backend: .*set num_proc=N instead"):
        KerasEstimator(backend=object(), num_proc=2)
    with pytest.raises(TypeError, match=r"set gradient_accumulation_steps=<n> on the Keras"):
        KerasEstimator(backward_passes_per_step=4)
    with pytest.raises(TypeError, match=r"does not take inmemory_cache_all, data_module, .*\n"
                                        r"  inmemory_cache_all: .*\n  data_module: "):
        KerasEstimator(inmemory_cache_all=True, data_module=object())


def test_a_horovod_model_constructor_call_points_to_from_keras():
    with pytest.raises(TypeError, match=r"(?s)KerasModel\(\) does not take model, feature_columns, "
                                        r".*KerasModel.from_keras\(model, feature_cols"):
        KerasModel(model=object(), feature_columns=["features"])


def test_sparkdl_params_and_unknown_names_behave_as_before():
    est = KerasEstimator(epochs=3, num_proc=2, shuffle=False)
    assert (est.getEpochs(), est.getNumProc(), est.getShuffle()) == (3, 2, False)
    assert est.setParams(batch_size=16) is est and est.getBatchSize() == 16
    assert KerasModel().getBatchSize() == 32
    with pytest.raises(TypeError, match="unexpected keyword argument 'no_such_param'"):
        KerasEstimator(no_such_param=1)
    with pytest.raises(TypeError, match="forces keyword arguments"):
        KerasEstimator(None)

"""scikit-learn's estimator contract, checked with scikit-learn itself (a test extra)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import weights_equal

sklearn = pytest.importorskip("sklearn")

from lenet5 import LeNet5  # noqa: E402
from sklearn.base import clone, is_classifier  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import Pipeline, make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer  # noqa: E402
from sklearn.utils.validation import check_is_fitted  # noqa: E402


def to_unit_range(x):
    return np.asarray(x, dtype=np.float64) / 255.0


def test_is_a_classifier():
    assert is_classifier(LeNet5())
    assert sklearn.utils.get_tags(LeNet5()).estimator_type == "classifier"


def test_clone_copies_parameters_not_state(fitted_small):
    twin = clone(fitted_small)
    assert twin.get_params() == fitted_small.get_params()
    assert not hasattr(twin, "classes_")
    assert hasattr(fitted_small, "classes_")


def test_clone_then_fit_is_reproducible(small, make_model):
    (x, y), _ = small
    model = make_model().fit(x, y)
    again = clone(model).fit(x, y)
    assert weights_equal(model.get_weights(), again.get_weights())


def test_check_is_fitted(small, make_model):
    from sklearn.exceptions import NotFittedError as SkNotFittedError

    model = make_model()
    with pytest.raises(SkNotFittedError):
        check_is_fitted(model)
    (x, y), _ = small
    check_is_fitted(model.fit(x, y))


def test_pipeline(small, make_model):
    (x, y), (xt, yt) = small
    pipe = make_pipeline(FunctionTransformer(to_unit_range), make_model())
    pipe.fit(x.reshape(len(x), -1), y)
    assert 0.0 <= pipe.score(xt.reshape(len(xt), -1), yt) <= 1.0
    assert pipe.predict(xt.reshape(len(xt), -1)).shape == (len(xt),)
    # nested parameters reach the estimator
    pipe.set_params(lenet5__epochs=2)
    assert pipe.named_steps["lenet5"].epochs == 2


def test_grid_search(small, make_model):
    (x, y), _ = small
    search = GridSearchCV(
        Pipeline([("scale", FunctionTransformer(to_unit_range)), ("net", make_model())]),
        {"net__learning_rate": [0.01, 0.05], "net__batch_size": [32]},
        cv=2,
    )
    search.fit(x[:400], y[:400])
    assert search.best_params_["net__learning_rate"] in (0.01, 0.05)
    assert len(search.cv_results_["mean_test_score"]) == 2
    assert isinstance(search.best_estimator_.named_steps["net"], LeNet5)


def test_cross_val_score_uses_stratified_folds(small, make_model):
    (x, y), _ = small
    scores = cross_val_score(make_model(), x[:400], y[:400], cv=3)
    assert scores.shape == (3,)
    assert ((scores >= 0) & (scores <= 1)).all()

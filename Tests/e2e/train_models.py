"""Trains the two iris models the e2e tests serve, from scikit-learn's bundled iris data (no download).

model-1 (revision 00001): a linear SVC, as in KServe's sklearn-iris example; it answers the README's seed
input [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]] with [1, 1].
model-2 (revision 00002): a depth-1 decision stump, which cannot tell versicolor (1) from virginica (2)
and so answers differently on part of the input space.

`train(dir)` writes DIR/model-1/model.joblib and DIR/model-2/model.joblib and returns the inputs on which
the two models disagree, with each model's answer, so that tests can tell which model answered.

    python train_models.py DIR   # writes the models and prints the distinguishing inputs as JSON
"""

import json
import pathlib
import sys
from dataclasses import dataclass
from typing import List

import joblib
import numpy as np
from sklearn import datasets, svm, tree

SEED_INPUT = [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]
SEED_ANSWER_MODEL_1 = [1, 1]


@dataclass(frozen=True)
class TrainedModels:
    model_1_dir: pathlib.Path
    model_2_dir: pathlib.Path
    # One instance per row; model 1 and model 2 give different classes on every one of them.
    distinguishing_inputs: List[List[float]]
    model_1_answers: List[int]
    model_2_answers: List[int]


def train(out_dir) -> TrainedModels:
    out = pathlib.Path(out_dir)
    iris = datasets.load_iris()
    x, y = iris.data, iris.target

    model_1 = svm.SVC(gamma="scale", random_state=0)
    model_1.fit(x, y)
    model_2 = tree.DecisionTreeClassifier(max_depth=1, random_state=0)
    model_2.fit(x, y)

    seed = model_1.predict(np.array(SEED_INPUT)).tolist()
    if seed != SEED_ANSWER_MODEL_1:
        raise AssertionError(f"model-1 answers the seed input with {seed}, expected {SEED_ANSWER_MODEL_1}")

    # Known inputs from the data set itself where the models disagree.
    p1, p2 = model_1.predict(x), model_2.predict(x)
    differ = np.flatnonzero(p1 != p2)
    if len(differ) < 2:
        raise AssertionError("model-1 and model-2 agree on (almost) every iris sample")
    chosen = differ[:4]
    inputs = [[float(v) for v in x[i]] for i in chosen]

    for name, model in (("model-1", model_1), ("model-2", model_2)):
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        joblib.dump(model, d / "model.joblib")

    return TrainedModels(
        model_1_dir=out / "model-1",
        model_2_dir=out / "model-2",
        distinguishing_inputs=inputs,
        model_1_answers=[int(v) for v in p1[chosen]],
        model_2_answers=[int(v) for v in p2[chosen]],
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: train_models.py DIR")
    t = train(sys.argv[1])
    print(json.dumps({"inputs": t.distinguishing_inputs, "model-1": t.model_1_answers, "model-2": t.model_2_answers}))

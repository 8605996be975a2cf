"""What training scripts use: build the estimator a task describes, move params in and out.

```python
import ember.client as flare
from ember_sklearn import client as sk

model = flare.receive()
estimator = sk.build_estimator(model)          # from the spec the task carries
sk.set_linear_params(estimator, model.params, sk.model_spec(model))
```
"""

from ember.client import NUM_STEPS_CURRENT_ROUND
from ember_sklearn.kmeans import cluster_sums, kmeans_step, local_centers, predict_clusters
from ember_sklearn.linear import get_linear_params, load_linear_model, set_linear_params
from ember_sklearn.model_io import load_model
from ember_sklearn.spec import PHASE_KEY, SPEC_KEY, build_estimator, model_spec
from ember_sklearn.svm import support_params, svm_decision_function, svm_predict

__all__ = [
    "NUM_STEPS_CURRENT_ROUND",
    "PHASE_KEY",
    "SPEC_KEY",
    "build_estimator",
    "cluster_sums",
    "get_linear_params",
    "kmeans_step",
    "load_linear_model",
    "load_model",
    "local_centers",
    "model_spec",
    "predict_clusters",
    "set_linear_params",
    "support_params",
    "svm_decision_function",
    "svm_predict",
]

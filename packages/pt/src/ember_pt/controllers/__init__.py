"""ember-pt's server workflows, loaded by a job's target on the server."""

from ember.controllers import FedAvgController

#: NVFlare's ``PTFedAvgEarlyStopping``: FedAvg with in-time aggregation (a running weighted
#: sum as results arrive) that stops on ``stop_cond`` (e.g. ``"accuracy >= 0.9"``) or after
#: ``patience`` rounds without a better ``key_metric``; Ember's FedAvgController does all of
#: it, for every framework, so this is the same class
PTFedAvgEarlyStopping = FedAvgController

__all__ = ["PTFedAvgEarlyStopping"]

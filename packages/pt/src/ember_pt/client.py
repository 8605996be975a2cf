"""Helpers for training scripts: the server sends numpy arrays, a model wants a state_dict.

model.load_state_dict(to_state_dict(input_model.params))
flare.send(FLModel(params=model.state_dict(), ...))   # tensors are sent as they are
flare.send(FLModel(params=from_state_dict(model.state_dict()), ...))  # or as numpy
"""

from ember_pt.convert import from_state_dict, to_state_dict

__all__ = ["from_state_dict", "to_state_dict"]

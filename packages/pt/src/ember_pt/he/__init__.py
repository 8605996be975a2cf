"""Homomorphic encryption for FedAvg (TenSEAL CKKS; ``pip install ember-pt[he]``).

The recipe is :class:`ember_pt.recipes.FedAvgRecipeWithHE`; this package holds its parts:
:mod:`~ember_pt.he.ckks` (contexts, encrypted layers as uint8 arrays), :mod:`~ember_pt.he.keys`
(where keys live, provisioning), :class:`~ember_pt.he.aggregator.HEAggregator` (the server's
sum of ciphertexts), :class:`~ember_pt.he.controller.HEFedAvgController` and the sites'
params converters (:mod:`~ember_pt.he.convert`). Importing it imports tenseal.
"""

from ember_pt.he.ckks import HEError, decrypt_array, encrypt_array, is_encrypted, new_key_pair
from ember_pt.he.convert import decrypt_params

__all__ = [
    "HEError",
    "decrypt_array",
    "decrypt_params",
    "encrypt_array",
    "is_encrypted",
    "new_key_pair",
]

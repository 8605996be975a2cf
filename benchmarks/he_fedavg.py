"""HE FedAvg's cost: FedAvgRecipeWithHE against plain FedAvgRecipe in the same run.

    python benchmarks/he_fedavg.py [--hidden 128] [--rounds 3] [--clients 2] [--repeat 2]

An ordinary user script (written to a temporary folder): each site trains a small MLP
(64 -> hidden -> 10, torch.set_num_threads(1)) for a few SGD steps on its half of
scikit-learn's digits, keeps the received model as it is and sends a new state_dict. Both
recipes run in SimEnv with in-process sites, alternately, ``--repeat`` times; times are the
best run's wall time of ``recipe.execute``. Printed: the plaintext and ciphertext size of the
global model (what the server saves and sends) and of one site's encrypted result (what it
uploads per round), their ratios to plaintext, the
time ratio HE / plain, and the largest difference between the decrypted HE global model and
plain FedAvg's. The output ends with one JSON line of named figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

CLIENT = """
import numpy as np
import torch
from sklearn.datasets import load_digits

import ember.client as flare
from ember.client import FLModel
from he_bench_net import Net

torch.set_num_threads(1)
flare.init()
k = int(flare.get_site_name().rsplit("-", 1)[-1])
x, y = load_digits(return_X_y=True)
x = torch.tensor(x[k - 1 :: 2] / 16.0, dtype=torch.float32)
y = torch.tensor(y[k - 1 :: 2])
net = Net()
while flare.is_running():
    received = flare.receive()
    if received is None:
        break
    net.load_state_dict(received.params)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
    acc = float((net(x).argmax(1) == y).float().mean())
    flare.send(FLModel(params={n: t.detach().clone() for n, t in net.state_dict().items()},
                       metrics={"accuracy": acc}, meta={flare.NUM_STEPS_CURRENT_ROUND: len(y)}))
"""

NET = """
import torch
from torch import nn

HIDDEN = {hidden}


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(64, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    import torch
    from safetensors.numpy import load_file

    from ember import SimEnv
    from ember_pt.he.ckks import decrypt_array, encrypt_array, is_encrypted, unpack
    from ember_pt.he.keys import secret_context
    from ember_pt.recipes import FedAvgRecipe, FedAvgRecipeWithHE

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="ember-he-bench-"))
    (root / "client.py").write_text(CLIENT)
    (root / "he_bench_net.py").write_text(textwrap.dedent(NET.format(hidden=args.hidden)))
    sys.path.insert(0, str(root))
    from he_bench_net import Net

    def run(cls: Any, tag: str, i: int) -> tuple[float, dict[str, np.ndarray]]:
        recipe = cls(
            name=f"{tag}-{i}",
            min_clients=args.clients,
            num_rounds=args.rounds,
            model=Net(),
            train_script=str(root / "client.py"),
        )
        env = SimEnv(num_clients=args.clients, workspace_root=str(root / tag), progress=False)
        start = time.perf_counter()
        result = recipe.execute(env)
        seconds = time.perf_counter() - start
        if result.get_status() != "FINISHED:COMPLETED":
            raise SystemExit(f"{tag} failed: {result.get_message()}")
        path = Path(result.get_result()) / "server" / "models" / "global_model.safetensors"
        return seconds, load_file(str(path))

    times: dict[str, list[float]] = {"plain": [], "he": []}
    plain_model: dict[str, np.ndarray] = {}
    he_model: dict[str, np.ndarray] = {}
    for i in range(args.repeat):
        seconds, plain_model = run(FedAvgRecipe, "plain", i)
        times["plain"].append(seconds)
        seconds, he_model = run(FedAvgRecipeWithHE, "he", i)
        times["he"].append(seconds)

    plain_bytes = sum(v.nbytes for v in plain_model.values())
    cipher_bytes = sum(v.nbytes for v in he_model.values())
    params = sum(v.size for v in plain_model.values())
    diff = 0.0
    upload_bytes = 0  # a site's encrypted result: fresh ciphertexts, one level more than the sum
    for key, value in he_model.items():
        if is_encrypted(value):
            header, _ = unpack(value)
            context = secret_context(header["key"])
            value = decrypt_array(context, value)
            upload_bytes += encrypt_array(context, header["key"], value).nbytes
        diff = max(diff, float(np.abs(value - plain_model[key]).max()))
    plain_s, he_s = min(times["plain"]), min(times["he"])
    print(f"model: {params} float32 parameters, {args.clients} sites, {args.rounds} rounds")
    print(
        f"global model: plaintext {plain_bytes} B, ciphertext {cipher_bytes} B "
        f"({cipher_bytes / plain_bytes:.1f}x)"
    )
    print(f"a site's encrypted result: {upload_bytes} B ({upload_bytes / plain_bytes:.1f}x)")
    print(f"job time: plain {plain_s:.2f} s, HE {he_s:.2f} s ({he_s / plain_s:.2f}x)")
    print(f"max |decrypted HE - plain| over the global model: {diff:.2e}")
    print(
        json.dumps(
            {
                "params": params,
                "plain_bytes": plain_bytes,
                "cipher_bytes": cipher_bytes,
                "size_ratio": round(cipher_bytes / plain_bytes, 2),
                "upload_bytes": upload_bytes,
                "upload_ratio": round(upload_bytes / plain_bytes, 2),
                "plain_s": round(plain_s, 3),
                "he_s": round(he_s, 3),
                "time_ratio": round(he_s / plain_s, 2),
                "max_abs_diff": diff,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

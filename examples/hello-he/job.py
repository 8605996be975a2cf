"""hello-he: hello-pt's digits MLP with homomorphic encryption (ember-pt[he], TenSEAL CKKS).

python job.py                               # SimEnv: throw-away keys for this job
python job.py --launch-external-process     # each site's script in its own process
python job.py --encrypt-layers fc2.weight fc2.bias   # encrypt only these layers

The sites decrypt the global model, train as in hello-pt (client.py is hello-pt's, unchanged)
and encrypt their results; the server sums the ciphertexts holding only the public key, so
the global model it saves is ciphertext. Here job.py plays a site: it decrypts that model
with the job's secret key (which SimEnv's sites hold) and prints its test accuracy.
"""

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # model.py and data.py

import torch  # noqa: E402
from data import accuracy, test_data  # noqa: E402
from model import DigitsMLP  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

from ember import SimEnv  # noqa: E402
from ember_pt.he import decrypt_params, is_encrypted  # noqa: E402
from ember_pt.recipes import FedAvgRecipeWithHE  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-clients", type=int, default=2)
    parser.add_argument("--num-rounds", type=int, default=5)
    parser.add_argument("--launch-external-process", action="store_true")
    parser.add_argument("--encrypt-layers", nargs="+", default=None)
    parser.add_argument("--workspace-root", default="/tmp/ember/simulation")
    args, _ = parser.parse_known_args()

    torch.manual_seed(0)
    recipe = FedAvgRecipeWithHE(
        name="hello-he",
        min_clients=args.n_clients,
        num_rounds=args.num_rounds,
        model=DigitsMLP(),
        train_script=str(HERE / "client.py"),
        train_args=f"--n-sites {args.n_clients}",
        launch_external_process=args.launch_external_process,
        encrypt_layers=args.encrypt_layers,
    )
    run = recipe.execute(SimEnv(num_clients=args.n_clients, workspace_root=args.workspace_root))
    print(f"status: {run.get_status()}")
    result = Path(run.get_result())
    print(f"result: {result}")
    if run.get_status() != "FINISHED:COMPLETED":
        raise SystemExit(run.get_message())
    saved = load_file(str(result / "server" / "models" / "global_model.safetensors"))
    encrypted = sorted(k for k, v in saved.items() if is_encrypted(v))
    print(f"the server holds {len(encrypted)} of {len(saved)} layers encrypted: {encrypted}")
    model = DigitsMLP()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in decrypt_params(saved).items()})
    print(
        f"test accuracy of the decrypted global model after {args.num_rounds} rounds: "
        f"{accuracy(model, *test_data()):.4f}"
    )


if __name__ == "__main__":
    main()

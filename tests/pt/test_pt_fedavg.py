"""pytorch-fedavg jobs in SimEnv: exact averages, external processes, streamed half tensors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pt_tiny import BigNet, TinyNet
from safetensors.numpy import load_file

from ember import SimEnv
from ember_pt.persistor import TorchPersistor
from ember_pt.recipes import FedAvgRecipe

SCRIPTS = Path(__file__).parent / "scripts"


def run(tmp_path: Path, script: str, **kwargs: Any) -> Path:
    options: dict[str, Any] = {
        "name": "pt-job",
        "min_clients": 2,
        "num_rounds": 2,
        "model": {"path": "pt_tiny.TinyNet", "args": {"width": 3}},
        "train_script": str(SCRIPTS / script),
    }
    options.update(kwargs)
    env = SimEnv(num_clients=2, workspace_root=str(tmp_path / "ws"), progress=False)
    result = FedAvgRecipe(**options).execute(env)
    assert result.get_status() == "FINISHED:COMPLETED", result.get_message()
    return Path(result.get_result())


@pytest.mark.parametrize(
    ("external", "transfer", "server_format"),
    [
        (False, "FULL", "numpy"),
        (True, "FULL", "numpy"),
        (False, "DIFF", "numpy"),
        (True, "DIFF", "pytorch"),
        (False, "FULL", "pytorch"),
    ],
)
def test_global_model_is_the_hand_computed_average(
    tmp_path: Path, external: bool, transfer: str, server_format: str
) -> None:
    # the script checks it receives tensors; a DIFF is computed from them at the site
    result = run(
        tmp_path,
        "pt_add_client.py",
        launch_external_process=external,
        params_transfer_type=transfer,
        server_expected_format=server_format,
    )
    initial = {k: v.numpy() for k, v in TinyNet(3).state_dict().items()}
    # site-k sends params + k with weight k: each round adds (1*1 + 2*2) / 3 = 5/3
    expected = dict(initial)
    for _ in range(2):
        expected = {
            k: (((v + 1) * np.float32(1) + (v + 2) * np.float32(2)) / np.float32(3))
            for k, v in expected.items()
        }
    saved = load_file(str(result / "server" / "models" / "global_model.safetensors"))
    assert set(saved) == set(initial)
    for key, value in expected.items():
        np.testing.assert_allclose(saved[key], value, rtol=1e-6)
        np.testing.assert_allclose(saved[key], initial[key] + 2 * 5 / 3, rtol=1e-5)
    assert (result / "server" / "models" / "best_model.safetensors").is_file()


@pytest.mark.parametrize("external", [False, True], ids=["in-process", "external-process"])
def test_large_half_precision_models_stream_bit_exactly(tmp_path: Path, external: bool) -> None:
    torch.manual_seed(0)
    result = run(
        tmp_path,
        "pt_big_client.py",
        model=BigNet(),
        launch_external_process=external,
        key_metric=None,
    )
    net = BigNet()
    saved = load_file(str(result / "server" / "models" / "global_model.safetensors"))
    # two identical float16 results average to themselves, bit for bit
    assert saved["w16"].dtype == np.float16
    assert np.array_equal(
        saved["w16"].view(np.uint16), net.w16.detach().view(torch.int16).numpy().view(np.uint16)
    )
    # bfloat16 is widened exactly to float32 on the server
    assert saved["wbf"].dtype == np.float32
    assert np.array_equal(saved["wbf"], net.wbf.detach().float().numpy())


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_initial_checkpoint_is_bundled_and_loaded(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = TinyNet(3).state_dict()
    if suffix == ".pt":
        torch.save({"state_dict": state, "epoch": 3}, tmp_path / "init.pt")
    else:
        from safetensors.torch import save_file

        save_file(state, str(tmp_path / "init.safetensors"))
    monkeypatch.chdir(tmp_path)
    result = run(
        tmp_path,
        "pt_add_client.py",
        initial_ckpt=f"init{suffix}",
        num_rounds=1,
        model={"path": "pt_tiny.TinyNet", "args": {"width": 3}},
    )
    assert (result / "job" / "app" / "ckpt" / f"init{suffix}").is_file()
    saved = load_file(str(result / "server" / "models" / "global_model.safetensors"))
    np.testing.assert_allclose(saved["fc.bias"], state["fc.bias"].numpy() + 5 / 3, rtol=1e-6)


def test_server_expected_format_must_be_a_known_format(tmp_path: Path) -> None:
    from ember.recipes.validation import RecipeArgumentError

    with pytest.raises(RecipeArgumentError, match=r"server_expected_format='xgboost'.*ember-xgb"):
        FedAvgRecipe(
            min_clients=1,
            model=TinyNet(3),
            train_script=str(SCRIPTS / "pt_add_client.py"),
            server_expected_format="xgboost",  # no package registers it
        )


def test_params_converters_share_memory_with_the_arrays() -> None:
    from ember.client.formats import convert_params

    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    tensors = convert_params(arrays, "numpy", "pytorch")
    assert isinstance(tensors["w"], torch.Tensor)
    tensors["w"] += 1  # a view, not a copy
    assert arrays["w"][0, 0] == 1
    back = convert_params(tensors, "pytorch", "numpy")
    assert isinstance(back["w"], np.ndarray)
    assert np.shares_memory(back["w"], arrays["w"])


def test_pickled_objects_in_a_checkpoint_are_refused(tmp_path: Path) -> None:
    from ember.runtime.errors import JobError

    torch.save({"model": TinyNet(3)}, tmp_path / "whole.pt")  # a module, not a state_dict
    with pytest.raises(JobError, match="cannot read PyTorch checkpoint"):
        TorchPersistor(initial_ckpt=str(tmp_path / "whole.pt")).initial_params(tmp_path)


def test_persistor_round_trips_safetensors(tmp_path: Path) -> None:
    params = {"w": np.arange(6, dtype=np.float16).reshape(2, 3), "n": np.array(4.0)}
    persistor = TorchPersistor()
    persistor.save(params, tmp_path / "m.safetensors")
    back = persistor.load(tmp_path / "m.safetensors")
    assert set(back) == set(params)
    for key, value in params.items():
        assert back[key].dtype == value.dtype
        np.testing.assert_array_equal(back[key], value)

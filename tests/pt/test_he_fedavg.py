"""HE FedAvg (ember-pt[he], TenSEAL CKKS): the decrypted global model equals plain FedAvg's,
the server holds only the public context, keys come from provisioning, bad arguments fail.

CKKS precision: poly_modulus_degree 8192, 40-bit scale; the server multiplies by the weight
and by 1/total, so a value near 10 comes back within 1e-4 (absolute; measured about 1e-5).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file

pytest.importorskip("tenseal")

from ember import SimEnv
from ember.provision.kits import provision
from ember.recipes import RecipeArgumentError
from ember.system.kit import Kit
from ember_pt.he import HEError, decrypt_array, encrypt_array, is_encrypted
from ember_pt.he.aggregator import HEAggregator
from ember_pt.he.ckks import load_context, new_key_pair, unpack
from ember_pt.he.keys import PUBLIC_FILE, SECRET_FILE, secret_context
from ember_pt.recipes import FedAvgRecipe, FedAvgRecipeWithHE

SCRIPTS = Path(__file__).parent / "scripts"
TOLERANCE = 1e-4  # absolute, on values up to about 10 (see the module's docstring)
PROJECT = Path(__file__).parents[1] / "core" / "fixtures" / "provision" / "project.yml"


def options(**kwargs: Any) -> dict[str, Any]:
    return {
        "min_clients": 2,
        "num_rounds": 2,
        "model": {"path": "pt_tiny.TinyNet", "args": {"width": 3}},
        "train_script": str(SCRIPTS / "pt_add_client.py"),
        **kwargs,
    }


def run(tmp_path: Path, recipe: Any, name: str) -> Path:
    env = SimEnv(num_clients=2, workspace_root=str(tmp_path / name), progress=False)
    result = recipe.execute(env)
    assert result.get_status() == "FINISHED:COMPLETED", result.get_message()
    return Path(result.get_result()) / "server" / "models" / "global_model.safetensors"


def decrypted(path: Path) -> dict[str, np.ndarray]:
    out = {}
    for key, value in load_file(str(path)).items():
        if is_encrypted(value):
            header, _ = unpack(value)
            value = decrypt_array(secret_context(header["key"]), value)
        out[key] = value
    return out


def test_he_fedavg_global_model_decrypts_to_plain_fedavgs_within_ckks_precision(
    tmp_path: Path,
) -> None:
    plain = load_file(str(run(tmp_path, FedAvgRecipe(name="plain", **options()), "plain")))
    he_path = run(tmp_path, FedAvgRecipeWithHE(name="he", **options()), "he")
    stored = load_file(str(he_path))
    # the server saved ciphertexts only: every layer is an encrypted uint8 blob
    assert all(is_encrypted(v) for v in stored.values())
    he = decrypted(he_path)
    assert set(he) == set(plain)
    for key, value in plain.items():
        assert he[key].dtype == value.dtype
        assert he[key].shape == value.shape
        np.testing.assert_allclose(he[key], value, rtol=0, atol=TOLERANCE)
    # and the server's log names the public context it used, with no secret key
    log = (he_path.parents[1] / "log.txt").read_text()
    assert "public CKKS context" in log
    assert "(no secret key)" in log


def test_encrypt_layers_leaves_the_other_layers_in_the_clear(tmp_path: Path) -> None:
    path = run(
        tmp_path,
        FedAvgRecipeWithHE(name="he-part", encrypt_layers=["fc.weight"], **options()),
        "part",
    )
    stored = load_file(str(path))
    assert is_encrypted(stored["fc.weight"])
    assert stored["fc.bias"].dtype == np.float32  # averaged in the clear
    np.testing.assert_allclose(stored["fc.bias"], [0.5 + 10 / 3, -0.5 + 10 / 3], rtol=1e-6)


def test_the_server_aggregator_refuses_a_secret_key_and_layers_sent_in_the_clear(
    tmp_path: Path,
) -> None:
    secret, public, kid = new_key_pair()
    (tmp_path / "secret.tenseal").write_bytes(secret)
    (tmp_path / "public.tenseal").write_bytes(public)
    with pytest.raises(HEError, match="holds the secret key"):
        HEAggregator(job_file=str(tmp_path / "secret.tenseal"), start=str(tmp_path))
    aggregator = HEAggregator(job_file=str(tmp_path / "public.tenseal"), start=str(tmp_path))
    assert not aggregator.context.is_private()

    from ember.controllers import FLModel

    with pytest.raises(HEError, match="sent 'w' in the clear"):
        aggregator.add("site-1", FLModel(params={"w": np.ones(3, np.float32)}), 1.0)
    # the weighted sum of ciphertexts, decrypted by a site, is the weighted average
    site = load_context(secret, secret=True, source="site")
    a, b = np.arange(5000, dtype=np.float32), np.full(5000, 2.0, np.float32)
    aggregator.add("site-1", FLModel(params={"w": encrypt_array(site, kid, a)}), 1.0)
    aggregator.add("site-2", FLModel(params={"w": encrypt_array(site, kid, b)}), 3.0)
    result = decrypt_array(site, aggregator.result().params["w"])
    np.testing.assert_allclose(result, (a + 3 * b) / 4, rtol=0, atol=1e-2)
    np.testing.assert_allclose(result[:10], ((a + 3 * b) / 4)[:10], rtol=0, atol=TOLERANCE)


def test_provisioned_server_kit_has_no_secret_key_and_clients_share_one_pair(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project.yml"
    project.write_text(PROJECT.read_text() + "homomorphic_encryption: true\n")
    result = provision(project, tmp_path / "ws")
    kits = {name: Path(folder) / "startup" for name, folder in result.participants.items()}
    server = kits[result.project.server.name]
    clients = [kits[c.name] for c in result.project.clients]
    assert not (server / SECRET_FILE).exists()
    for folder in result.participants.values():
        Kit.load(Path(folder))  # the kit files are in the signed manifest
    server_ctx = load_context((server / PUBLIC_FILE).read_bytes(), secret=False, source="s")
    assert not server_ctx.is_private()
    # no file of the server's kit holds a TenSEAL context with a secret key
    for path in server.iterdir():
        if path.suffix == ".tenseal":
            with pytest.raises(HEError):
                load_context(path.read_bytes(), secret=True, source=str(path))
    for client in clients:
        assert (client / PUBLIC_FILE).read_bytes() == (server / PUBLIC_FILE).read_bytes()
        assert load_context((client / SECRET_FILE).read_bytes(), secret=True, source="c")
        assert oct((client / SECRET_FILE).stat().st_mode & 0o777) == "0o600"
    # a site finds its secret key in the kit above its working folder, by the key id
    from ember_pt.he.ckks import key_id

    kid = key_id((server / PUBLIC_FILE).read_bytes())
    work = clients[0].parent / "jobs" / "j1" / "workspace"
    work.mkdir(parents=True)
    assert secret_context(kid, cwd=work).is_private()
    with pytest.raises(HEError, match="no secret HE context for key 0000"):
        secret_context("0000", cwd=tmp_path)


def test_a_project_without_homomorphic_encryption_gets_no_he_keys(tmp_path: Path) -> None:
    result = provision(PROJECT, tmp_path)
    for folder in result.participants.values():
        assert not list((Path(folder) / "startup").glob("*.tenseal"))
    assert not list(result.root.joinpath("state").glob("*.tenseal"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"encrypt_layers": 3}, "encrypt_layers must be None"),
        ({"encrypt_layers": []}, "encrypt_layers must be None"),
        ({"encrypt_layers": ""}, "names no layer"),
        ({"encrypt_layers": "fc.(("}, "not a valid regex"),
        ({"params_transfer_type": "DIFF"}, "averages FULL models"),
        ({"server_expected_format": "pytorch"}, "holds ciphertexts"),
        ({"framework": "tensorflow"}, "framework='pytorch' or 'numpy'"),
        ({"aggregator": {"path": "x:Y"}}, "aggregator"),
    ],
)
def test_bad_arguments_give_clear_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises((RecipeArgumentError, TypeError), match=message):
        FedAvgRecipeWithHE(**options(**kwargs))


def test_he_fedavg_runs_in_pocenv_and_the_server_holds_no_secret_key(
    tmp_path: Path, poc: Any
) -> None:
    from ember import PocEnv

    recipe = FedAvgRecipeWithHE(name="he-poc", **options(num_rounds=1))
    run_ = recipe.execute(PocEnv(clients=["site-1", "site-2"], workspace=poc.root))
    result = Path(run_.get_result(timeout=240))
    assert run_.get_status() == "FINISHED:COMPLETED", run_.get_message()
    model = decrypted(result / "server" / "models" / "global_model.safetensors")
    np.testing.assert_allclose(model["fc.bias"], [0.5 + 5 / 3, -0.5 + 5 / 3], atol=TOLERANCE)
    # the server process's folder (kit, job workspaces) holds no context with a secret key,
    # while each site's holds its job's key
    server = poc.server.folder
    contexts = [p for p in server.rglob("*.tenseal")]
    assert contexts  # the job's public context reached the server
    for path in contexts:
        assert not load_context(path.read_bytes(), secret=False, source=str(path)).is_private()
    for kit in poc.clients:
        assert list((kit.folder / "local" / "he_keys").glob("*.tenseal"))
    logs = "".join(p.read_text() for p in server.rglob("log.txt"))
    assert "(no secret key)" in logs


NUMPY_SCRIPT = """
import numpy as np
import ember.client as flare
from ember.client import FLModel

flare.init()
k = int(flare.get_site_name().rsplit("-", 1)[-1])
while flare.is_running():
    model = flare.receive()
    if model is None:
        break
    if not all(type(v) is np.ndarray and v.dtype == np.float64 for v in model.params.values()):
        raise RuntimeError(f"expected decrypted float64 arrays, got {model.params!r}")
    flare.send(FLModel(params={n: v * k for n, v in model.params.items()},
                       meta={flare.NUM_STEPS_CURRENT_ROUND: k}))
"""


def test_numpy_models_in_external_processes_average_under_encryption(tmp_path: Path) -> None:
    script = tmp_path / "np_client.py"
    script.write_text(NUMPY_SCRIPT)
    initial = {"w": np.linspace(-1, 1, 5000), "b": np.array([0.25, 4.0])}
    recipe = FedAvgRecipeWithHE(
        name="he-numpy",
        framework="numpy",
        min_clients=2,
        num_rounds=1,
        model=initial,
        train_script=str(script),
        launch_external_process=True,
        key_metric=None,
    )
    env = SimEnv(num_clients=2, workspace_root=str(tmp_path / "ws"), progress=False)
    result = recipe.execute(env)
    assert result.get_status() == "FINISHED:COMPLETED", result.get_message()
    models = Path(result.get_result()) / "server" / "models"
    saved = dict(np.load(next(models.glob("global_model.*"))))
    assert all(is_encrypted(v) for v in saved.values())
    out = {k: decrypt_array(secret_context(unpack(v)[0]["key"]), v) for k, v in saved.items()}
    # site-k sends k * x with weight k: (1 * 1 + 2 * 2) / 3 = 5/3 of the model
    for key, value in initial.items():
        np.testing.assert_allclose(out[key], value * 5 / 3, rtol=0, atol=TOLERANCE)

"""``EdgeFedBuffRecipe``: FedBuff over aggregator sites that run (simulated) devices.

The knobs come in NVFlare's config objects, here dataclasses checked when they are made:
:class:`ModelManagerConfig` (versions and aggregation), :class:`DeviceManagerConfig` (the
device selection), :class:`SimulationConfig` (the devices each aggregator site simulates)
and :class:`EvaluatorConfig` (the server's evaluation of each new version).
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

from ember.recipes import (
    APP_DIR,
    ClientApp,
    JobFile,
    Recipe,
    RecipeArgumentError,
    bundle_module,
    check_int,
    check_job_name,
    get_framework,
)
from ember_edge.fedbuff import FedBuffConfig, FedBuffError
from ember_edge.relay import check_relays
from ember_edge.simulator import SimulatorError, check_dropout, check_speed
from ember_edge.site import SITE_SCRIPT, SITE_SCRIPT_SOURCE

CONTROLLER = "ember_edge.controller:FedBuffController"
SITE_WORKFLOW = "ember_edge.site:EdgeSiteLink"


def _target(name: str, value: Any, files: dict[str, JobFile] | None = None) -> str:
    """A ``"module:attr"`` string, or a class/function made into one (its module bundled
    when it is not installed)."""
    if isinstance(value, str):
        if ":" not in value:
            raise RecipeArgumentError(f"{name} must be 'module:attribute', got {value!r}")
        return value
    module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        raise RecipeArgumentError(
            f"{name} must be 'module:attribute' or an importable class or function, got {value!r}"
        )
    if files is not None:
        bundle_module(module, files)
    return f"{module}:{qualname}"


@dataclass(frozen=True)
class ModelManagerConfig:
    """Model versions: a new one after ``num_updates_for_model`` device updates, up to
    ``max_model_version``; updates ``max_model_history`` versions old or older are dropped
    (None: none is); ``staleness_weight``: weigh an update ``1 / (1 + sqrt(staleness))``;
    ``global_lr`` scales each step."""

    num_updates_for_model: int = 100
    max_model_version: int = 10
    max_model_history: int | None = None
    global_lr: float = 1.0
    staleness_weight: bool = False


@dataclass(frozen=True)
class DeviceManagerConfig:
    """The device selection: ``device_selection_size`` devices at work at once, refilled once
    ``min_hole_to_fill`` slots are empty (from devices not used for the current version with
    ``device_reuse``, never-used ones without); version 0 waits for
    ``initial_min_client_num`` known devices (None: the selection size); a device that has
    not answered within ``device_wait_timeout`` seconds (None: ``edge.device_wait_timeout``)
    loses its slot; ``device_sampling``: ``"random"`` among all usable devices, or
    ``"balanced"`` across aggregator sites (each free slot to the site with the fewest
    selected devices)."""

    device_selection_size: int = 100
    min_hole_to_fill: int = 1
    device_reuse: bool = True
    initial_min_client_num: int | None = None
    device_wait_timeout: float | None = None
    device_sampling: str = "random"


@dataclass(frozen=True)
class SimulationConfig:
    """The devices each aggregator site simulates in its process: ``num_devices`` devices,
    each a ``task_processor`` (``"module:Class"`` or the class, made with
    ``task_processor_args``; see :class:`ember_edge.simulator.DeviceTaskProcessor`), taking
    ``speed`` seconds per task (a distribution, see
    :func:`ember_edge.simulator.check_speed`) and vanishing mid-task with probability
    ``dropout``; ``seed`` makes it repeatable."""

    task_processor: Any
    task_processor_args: dict[str, Any] = field(default_factory=dict)
    num_devices: int = 100
    speed: dict[str, Any] | None = None
    dropout: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class EvaluatorConfig:
    """The server's evaluation of each new model version: ``evaluator`` (``"module:function"``
    or the function) takes the params (a dict of numpy arrays) and returns metrics."""

    evaluator: Any


@dataclass(frozen=True)
class GatewayConfig:
    """Real devices: each aggregator site runs an HTTP(S) device gateway
    (:class:`ember_edge.gateway.DeviceGateway`) that devices talk to in NVFlare's edge
    protocol (see packages/edge/README.md). ``host``/``port``: where it listens (port 0:
    any free port; a dict ``{site: port}`` gives each site its own); its URL is logged and
    written to ``<site workspace>/gateway.json``. ``tls``: True HTTPS, False plain HTTP,
    None HTTPS where the site has a startup kit (PocEnv/ProdEnv), HTTP elsewhere (SimEnv);
    ``cert``/``key``: the certificate (else the kit's ``startup/gateway.crt``, else a
    self-signed one made per job, named in gateway.json). ``authenticator``: a
    :class:`ember_edge.gateway.DeviceAuthenticator` (``"module:Class"`` or the class, made
    with ``authenticator_args``; None: every device is admitted); ``long_poll``: whether a
    device's ``/task?wait=s`` may be held (up to ``edge.gateway_long_poll``) until its task
    comes."""

    host: str = "127.0.0.1"
    port: int | dict[str, int] = 0
    tls: bool | None = None
    cert: str | None = None
    key: str | None = None
    authenticator: Any = None
    authenticator_args: dict[str, Any] = field(default_factory=dict)
    long_poll: bool = True


def _gateway_args(
    gateway: GatewayConfig, devices: DeviceManagerConfig, files: dict[str, JobFile]
) -> dict[str, Any]:
    """EdgeSiteLink's ``gateway`` argument from a GatewayConfig (checked)."""
    if not isinstance(gateway, GatewayConfig):
        raise RecipeArgumentError(f"gateway_config must be a GatewayConfig, got {gateway!r}")
    ports = gateway.port if isinstance(gateway.port, dict) else {"": gateway.port}
    for site, port in ports.items():
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            where = f"[{site!r}]" if site else ""
            raise RecipeArgumentError(f"gateway_config.port{where} must be 0..65535, got {port!r}")
    if not isinstance(gateway.host, str) or not gateway.host:
        raise RecipeArgumentError(f"gateway_config.host must be a host name, got {gateway.host!r}")
    if gateway.tls not in (None, True, False):
        raise RecipeArgumentError("gateway_config.tls must be True, False or None")
    if bool(gateway.cert) != bool(gateway.key):
        raise RecipeArgumentError("gateway_config needs both cert and key, or neither")
    if not isinstance(gateway.authenticator_args, dict):
        raise RecipeArgumentError("gateway_config.authenticator_args must be a dict")
    return {
        "host": gateway.host,
        "port": dict(gateway.port) if isinstance(gateway.port, dict) else gateway.port,
        "tls": gateway.tls,
        "cert": gateway.cert,
        "key": gateway.key,
        "authenticator": None
        if gateway.authenticator is None
        else _target("gateway_config.authenticator", gateway.authenticator, files),
        "authenticator_args": dict(gateway.authenticator_args),
        "long_poll": bool(gateway.long_poll),
        "task_ttl": devices.device_wait_timeout,
    }


#: the frameworks of an edge job's model (the server aggregates numpy arrays in both)
EDGE_FRAMEWORKS = ("numpy", "pytorch")


def edge_framework(framework: str | None, model: Any, initial_ckpt: str | None) -> str:
    """The framework of an edge job's model: ``framework`` checked, or (None) ``"pytorch"``
    for an ``nn.Module`` or a .pt/.pth/.safetensors checkpoint, else ``"numpy"``. Imports no
    torch: an ``nn.Module`` exists only once torch is imported."""
    if framework is not None:
        if framework not in EDGE_FRAMEWORKS:
            raise RecipeArgumentError(
                f"framework must be one of {list(EDGE_FRAMEWORKS)} or None, got {framework!r}"
            )
        return str(framework)
    if model is None and initial_ckpt is None:
        raise RecipeArgumentError("give the initial model: model=... or initial_ckpt=...")
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        return "pytorch"
    if isinstance(initial_ckpt, str) and initial_ckpt.endswith((".pt", ".pth", ".safetensors")):
        return "pytorch"
    return "numpy"


class EdgeFedBuffRecipe(Recipe):
    """FedBuff (buffered asynchronous aggregation) for fleets of devices behind aggregator
    sites (NVFlare's ``EdgeFedBuffRecipe``).

    Every site of the job is an aggregator: its site workflow (``EdgeSiteLink``) runs the
    devices of ``simulation_config`` and reports per-version sums of their updates; the
    server's ``FedBuffController`` makes a new model version from every
    ``num_updates_for_model`` updates. ``model``/``initial_ckpt``: the initial model, numpy
    (an array or a dict of arrays, ``{"path", "args"}`` of a function returning one, or a
    .npy/.npz checkpoint) or PyTorch (an ``nn.Module``, ``{"path", "args"}`` of its class
    with ``framework="pytorch"``, or a .pt/.pth/.safetensors checkpoint; saved as
    ``.safetensors``; devices get numpy params, see
    :class:`ember_edge.torch_devices.TorchDeviceProcessor`); ``framework``: ``"numpy"`` or
    ``"pytorch"`` (None: told from ``model``/``initial_ckpt``); ``min_clients``: aggregator
    sites that must stay alive; ``report_interval``: seconds a site gathers updates before
    it reports (None: ``edge.report_interval``). Sync mode (exactly FedAvg's average per version):
    ``device_selection_size == num_updates_for_model == min_hole_to_fill`` and no staleness
    weight. See packages/edge/README.md.

    Devices: with ``simulation_config`` each site simulates them in its process; without it
    (NVFlare's semantics) real devices connect over HTTP(S) to a device gateway in each
    site, configured by ``gateway_config`` (a :class:`GatewayConfig`; None: its defaults,
    any free port on loopback, every device admitted). Each gateway's address is logged and
    written to ``<site workspace>/gateway.json`` (the HTTP-mode simulator,
    :mod:`ember_edge.http_devices`, reads it from there).

    Tiers: two by default (server, aggregator sites with the devices). ``relays={relay:
    [leaf, ...]}`` makes three: the server talks to the relay sites only, each relay to its
    leaf sites, which hold the devices (:mod:`ember_edge.relay`); every site of the job must
    then be a relay or a leaf, and ``min_clients`` counts relays.
    """

    #: numpy or pytorch: the framework argument, or told from the model
    framework: ClassVar[str | None] = None

    def __init__(
        self,
        *,
        name: str = "edge-fedbuff",
        model: Any = None,
        initial_ckpt: str | None = None,
        framework: str | None = None,
        model_manager_config: ModelManagerConfig | None = None,
        device_manager_config: DeviceManagerConfig | None = None,
        simulation_config: SimulationConfig | None = None,
        evaluator_config: EvaluatorConfig | None = None,
        gateway_config: GatewayConfig | None = None,
        min_clients: int = 1,
        report_interval: float | None = None,
        seed: int = 0,
        relays: dict[str, list[str]] | None = None,
    ) -> None:
        name = check_job_name(name)
        min_clients = check_int("min_clients", min_clients, 1)
        seed = check_int("seed", seed, 0)
        models = model_manager_config or ModelManagerConfig()
        devices = device_manager_config or DeviceManagerConfig()
        for value, cls in (
            (models, ModelManagerConfig),
            (devices, DeviceManagerConfig),
        ):
            if not isinstance(value, cls):
                raise RecipeArgumentError(f"expected a {cls.__name__}, got {type(value).__name__}")
        if simulation_config is not None and gateway_config is not None:
            raise RecipeArgumentError(
                "give simulation_config (simulated devices in the sites) or gateway_config "
                "(real devices through each site's HTTP gateway), not both"
            )
        if simulation_config is not None and not isinstance(simulation_config, SimulationConfig):
            raise RecipeArgumentError(
                "simulation_config must be a SimulationConfig(task_processor=...) (or None: "
                f"real devices connect to each site's gateway), got {simulation_config!r}"
            )
        if evaluator_config is not None and not isinstance(evaluator_config, EvaluatorConfig):
            raise RecipeArgumentError(
                f"evaluator_config must be an EvaluatorConfig, got {evaluator_config!r}"
            )
        knobs = {**asdict(models), **asdict(devices)}
        try:
            FedBuffConfig(**knobs, seed=seed)
        except FedBuffError as exc:
            raise RecipeArgumentError(str(exc)) from None
        if report_interval is not None and (
            isinstance(report_interval, bool)
            or not isinstance(report_interval, int | float)
            or not math.isfinite(report_interval)
            or report_interval <= 0
        ):
            raise RecipeArgumentError(
                f"report_interval must be seconds > 0 or None, got {report_interval!r}"
            )
        if relays is not None:
            try:
                relays = check_relays(relays)
            except ValueError as exc:
                raise RecipeArgumentError(
                    f"{exc} (three tiers: relays={{relay: [leaves]}})"
                ) from None
            if min_clients > len(relays):
                raise RecipeArgumentError(
                    f"min_clients={min_clients} exceeds the {len(relays)} relays: with relays, "
                    "min_clients counts relay sites (the server talks to them only)"
                )
        sim = simulation_config
        files: dict[str, JobFile] = {f"{APP_DIR}/{SITE_SCRIPT}": SITE_SCRIPT_SOURCE}
        site_args: dict[str, Any]
        if sim is None:  # real devices (NVFlare's semantics): each site runs a gateway
            gateway = gateway_config if gateway_config is not None else GatewayConfig()
            site_args = {"gateway": _gateway_args(gateway, devices, files)}
        else:
            processor = _target("simulation_config.task_processor", sim.task_processor, files)
            check_int("simulation_config.num_devices", sim.num_devices, 1)
            try:
                speed = check_speed(sim.speed)
                dropout = check_dropout(sim.dropout)
            except SimulatorError as exc:
                raise RecipeArgumentError(f"simulation_config: {exc}") from None
            if not isinstance(sim.task_processor_args, dict):
                raise RecipeArgumentError("simulation_config.task_processor_args must be a dict")
            site_args = {
                "processor": processor,
                "processor_args": dict(sim.task_processor_args),
                "num_devices": sim.num_devices,
                "speed": speed,
                "dropout": dropout,
                "seed": sim.seed,
            }
        evaluator = (
            None
            if evaluator_config is None
            else _target("evaluator_config.evaluator", evaluator_config.evaluator, files)
        )
        framework = edge_framework(framework, model, initial_ckpt)
        setup = get_framework(framework).setup(model, initial_ckpt, files)
        self.model_manager_config = models
        self.device_manager_config = devices
        self.simulation_config = sim
        #: the gateways' settings (None: simulated devices)
        self.gateway_config = None if sim is not None else (gateway_config or GatewayConfig())
        self.assemble(
            name=name,
            min_clients=min_clients,
            workflows=[
                {
                    "target": CONTROLLER,
                    "args": {
                        "persistor": setup.persistor,
                        **knobs,
                        "min_clients": min_clients,
                        "evaluator": evaluator,
                        "seed": seed,
                        "task_meta": dict(setup.task_meta),
                        "relays": relays,
                    },
                }
            ],
            client=ClientApp(
                script=f"{APP_DIR}/{SITE_SCRIPT}",
                site_workflow={
                    "target": SITE_WORKFLOW,
                    "args": {**site_args, **({"relays": relays} if relays else {})},
                },
            ),
            files=files,
            framework=framework,
        )
        # every aggregator site works at once, whatever cap the env puts on training
        self.job.all_sites_at_once = True
        if report_interval is not None:  # a job setting: its relations are checked
            self.set_config("edge.report_interval", float(report_interval))


def _check_shape(name: str, value: Any) -> list[int]:
    if (
        not isinstance(value, list | tuple)
        or not value
        or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in value)
    ):
        raise RecipeArgumentError(f"{name} must be a tuple of sizes >= 1, got {value!r}")
    return [int(d) for d in value]


def _class_path(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


class ETFedBuffRecipe(EdgeFedBuffRecipe):
    """FedBuff for devices that train with ExecuTorch (NVFlare's ``ETFedBuffRecipe``; the
    ``ember-edge[et]`` extra).

    ``device_model``: a :class:`ember_edge.executorch.DeviceModel` (``net`` and its loss;
    any module built as ``Class(net)`` whose forward ``(input, label)`` returns the loss
    first), or ``{"path", "args"}`` of the net's class (wrapped in a ``DeviceModel``). The
    server holds, aggregates and saves the net's state_dict (numpy, ``.safetensors``, like
    ``EdgeFedBuffRecipe`` with a PyTorch model; ``initial_ckpt`` gives its weights). Each
    aggregator site exports every model version once to a training-capable ``.pte``
    (:class:`ember_edge.executorch.PteExporter`; sites of one process share it) with inputs
    of ``input_shape`` and int64 labels of ``output_shape`` (their first size is the batch
    size); its devices get the ``.pte`` bytes as their task (``DeviceTask.payload``), a
    simulated one trains it with ExecuTorch's training runtime
    (:class:`ember_edge.executorch.ETDeviceProcessor`). ``device_training_params``
    (``epoch``, ``lr``, ``batch_size``, ``momentum``, ...) go to each device's
    ``training_config``. The other parameters are :class:`EdgeFedBuffRecipe`'s;
    without ``simulation_config`` real devices get each version's ``.pte`` from their site's
    gateway (NVFlare's ExecuTorch task: base64, ``model_buffer_type: executorch``) with
    ``device_training_params`` as the task meta's ``training_config``.
    """

    framework = "pytorch"
    replaces = ("model", "framework")

    def __init__(
        self,
        *,
        name: str = "et-fedbuff",
        device_model: Any = None,
        input_shape: Any = None,
        output_shape: Any = None,
        device_training_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not _executorch_installed():
            raise RecipeArgumentError(
                "ETFedBuffRecipe needs ExecuTorch (executorch), which is not installed: "
                "pip install 'ember-edge[et]'"
            )
        from ember.recipes import model_factory

        shape_in = _check_shape("input_shape", input_shape)
        shape_out = _check_shape("output_shape", output_shape)
        if shape_in[0] != shape_out[0]:
            raise RecipeArgumentError(
                f"input_shape {tuple(shape_in)} and output_shape {tuple(shape_out)} must "
                "start with the same batch size"
            )
        training = dict(device_training_params or {})
        if training.setdefault("batch_size", shape_in[0]) != shape_in[0]:
            raise RecipeArgumentError(
                f"device_training_params batch_size={training['batch_size']!r} must be the "
                f"export's batch size, input_shape[0]={shape_in[0]}"
            )
        sim = kwargs.get("simulation_config")
        if sim is not None and not isinstance(sim, SimulationConfig):
            raise RecipeArgumentError(
                "ETFedBuffRecipe's simulation_config must be a SimulationConfig(task_processor="
                "...) (an ember_edge.executorch.ETDeviceProcessor subclass), or None: real "
                f"devices get the .pte through each site's gateway; got {sim!r}"
            )
        from ember_edge.executorch import ETDeviceProcessor, build_from_spec

        wrapper = "ember_edge.executorch.DeviceModel"
        factory = model_factory(device_model)
        torch = sys.modules.get("torch")
        if factory is not None:
            net_spec, model = factory, factory
        elif (
            torch is not None
            and isinstance(device_model, torch.nn.Module)
            and isinstance(getattr(device_model, "net", None), torch.nn.Module)
        ):
            net = device_model.net
            net_spec, model, wrapper = (
                {"path": _class_path(net), "args": {}},
                net,
                _class_path(device_model),
            )
            try:  # the sites rebuild the net from its class: it must fit the model given
                built = build_from_spec(net_spec)
                same = {k: tuple(v.shape) for k, v in built.state_dict().items()} == {
                    k: tuple(v.shape) for k, v in net.state_dict().items()
                }
            except Exception as exc:
                raise RecipeArgumentError(
                    f"the sites rebuild device_model.net as {net_spec['path']}() but that "
                    f"fails ({exc}); give device_model={{'path': ..., 'args': {{...}}}} of "
                    "the net instead"
                ) from None
            if not same:
                raise RecipeArgumentError(
                    f"{net_spec['path']}() does not have device_model.net's parameters; give "
                    "device_model={'path': ..., 'args': {...}} of the net instead"
                )
        else:
            raise RecipeArgumentError(
                "device_model must be a DeviceModel(net) (ember_edge.executorch) or "
                f"{{'path': 'package.module.NetClass', 'args': {{...}}}}, got {device_model!r}"
            )
        if sim is not None:
            processor = sim.task_processor
            if isinstance(processor, type) and not issubclass(processor, ETDeviceProcessor):
                raise RecipeArgumentError(
                    "simulation_config.task_processor must be an "
                    f"ember_edge.executorch.ETDeviceProcessor subclass, got {processor.__name__}"
                )
            args = dict(sim.task_processor_args)
            args["training_config"] = {**training, **dict(args.get("training_config") or {})}
            kwargs["simulation_config"] = replace(sim, task_processor_args=args)
        super().__init__(name=name, model=model, framework="pytorch", **kwargs)
        self.device_model = device_model
        self.input_shape = tuple(shape_in)
        self.output_shape = tuple(shape_out)
        self.device_training_params = training
        for path in (str(net_spec["path"]), wrapper):
            bundle_module(path.rpartition(".")[0], self.files)
        site = self.job.client.site_workflow
        assert site is not None
        site["args"]["encoder"] = {
            "target": "ember_edge.executorch:PteExporter",
            "args": {
                "net": net_spec,
                "input_shape": shape_in,
                "output_shape": shape_out,
                "device_model": wrapper,
            },
        }
        if "gateway" in site["args"]:  # real devices: the training parameters go with each task
            site["args"]["gateway"]["training_config"] = dict(training)


def _executorch_installed() -> bool:
    """Whether ExecuTorch's training runtime is installed (imports none of it)."""
    import importlib.util

    try:
        return importlib.util.find_spec("executorch.extension.training") is not None
    except (ImportError, ValueError):
        return False


__all__ = [
    "DeviceManagerConfig",
    "ETFedBuffRecipe",
    "EdgeFedBuffRecipe",
    "EvaluatorConfig",
    "GatewayConfig",
    "ModelManagerConfig",
    "SimulationConfig",
]

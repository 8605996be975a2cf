"""``Recipe``: a job described in Python, runnable in every env and exportable to a folder."""

from __future__ import annotations

import argparse
import functools
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ember.client.formats import NUMPY
from ember.job.definition import ClientApp, JobDefinition, JobFile, write_job
from ember.recipes.framework import ModelSetup, get_framework
from ember.recipes.validation import RecipeArgumentError, check_str

if TYPE_CHECKING:
    from ember.envs.base import Env
    from ember.envs.run import Run

DEFAULT_EXPORT_DIR = "/tmp/ember/jobs"


class Recipe:
    """A job (``self.job``) plus the files it carries (``self.files``: job path -> source).

    A recipe built on another takes the base recipe's parameters through ``**kwargs``; its
    signature (``help()``, ``inspect.signature``, ``ember recipe show``) is its own
    parameters followed by the base's, less those listed in :attr:`replaces`. Example::

        class MedianRecipe(FedAvgRecipe):
            controller = "my_package.median:MedianController"

            def __init__(self, *, name: str = "median", trim: int = 0, **kwargs: Any) -> None:
                self.trim = check_int("trim", trim, 0)
                super().__init__(name=name, **kwargs)

            def controller_args(self, args: dict[str, Any]) -> dict[str, Any]:
                return {**args, "trim": self.trim}
    """

    #: the framework named in the job's meta; :class:`FedAvgRecipe` takes it as an argument
    framework: ClassVar[str | None] = None
    #: parameters of the base recipe this one sets itself: not in its signature, refused
    replaces: ClassVar[tuple[str, ...]] = ()

    def __init__(self, job: JobDefinition, files: dict[str, JobFile]) -> None:
        self.job = job
        self.files = dict(files)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__ and cls.replaces:
            cls.__init__ = _refusing(cls.__init__, cls.replaces, cls.__name__)  # type: ignore[method-assign]
        cls.__signature__ = inspect.Signature(recipe_parameters(cls))  # type: ignore[attr-defined]

    @property
    def name(self) -> str:
        return self.job.name

    def assemble(
        self,
        *,
        name: str,
        min_clients: int,
        workflows: list[dict[str, Any]],
        client: ClientApp,
        files: dict[str, JobFile],
        framework: str | None = None,
    ) -> None:
        """Make this recipe's job: the server ``workflows`` in order (each ``{"target":
        "module:Class", "args": {...}}``), ``client`` at every site (from
        :func:`client_app`), ``files`` to bundle. Every recipe ends its ``__init__`` here."""
        job = JobDefinition(
            name=name,
            min_clients=min_clients,
            workflows=workflows,
            client=client,
            meta={"recipe": type(self).__name__, "framework": framework or self.framework},
        )
        Recipe.__init__(self, job, files)

    def framework_name(self, framework: Any) -> str:
        """``framework`` (None: the class's own, else numpy) checked against the class's: a
        recipe class that sets :attr:`framework` takes only that one."""
        fixed = type(self).framework
        if framework is None:
            return fixed or NUMPY
        name = check_str("framework", framework)
        if fixed is not None and name != fixed:
            raise RecipeArgumentError(
                f"{type(self).__name__} is for framework {fixed!r}, got framework={name!r}; "
                f"use the unified ember.recipes.{self._unified_name()}(framework={name!r}) "
                "instead"
            )
        return name or NUMPY

    def model_setup(
        self, framework: str, model: Any, initial_ckpt: str | None, files: dict[str, JobFile]
    ) -> ModelSetup:
        """The persistor and task meta for ``model``/``initial_ckpt`` (may add files to
        bundle into the job): the registered framework's. Override for a model the
        framework alone cannot describe."""
        return get_framework(framework).setup(model, initial_ckpt, files)

    def _unified_name(self) -> str:
        """The first class of ember.recipes in this recipe's MRO (FedAvgRecipe, ...)."""
        for klass in type(self).__mro__:
            if klass.__module__.startswith("ember.recipes.") and klass is not Recipe:
                return klass.__name__
        return type(self).__name__

    def set_config(self, name: str, value: Any) -> None:
        """Override a setting of the config registry for this job only (a timeout, a limit)."""
        from ember.config import Config

        Config({**self.job.config, name: value}, environ={})  # refuses unknown names and types
        self.job.config[name] = value

    def enable_log_streaming(self, *file_names: str) -> None:
        """Stream each site's log files (``log.txt`` when none are named) and its scripts'
        output to the server while the job runs (NVFlare's name). The server keeps them
        under ``server/site_logs/<site>/``; ``ember job logs ID --site S --follow`` and the
        SimEnv console show them (settings ``logs.stream`` and ``logs.stream_files``)."""
        names = list(file_names) or ["log.txt"]
        for name in names:
            if (
                not isinstance(name, str)
                or not name
                or "," in name
                or name.startswith(("/", "\\"))
                or ".." in Path(name).parts
            ):
                raise RecipeArgumentError(
                    "enable_log_streaming takes names of files in a site's job folder "
                    f"(relative, no '..' or ','), got {name!r}"
                )
        self.set_config("logs.stream", True)
        self.set_config("logs.stream_files", ",".join(dict.fromkeys(names)))

    def add_client_input_filter(
        self, filter: Any, tasks: list[str] | None = None, clients: list[str] | None = None
    ) -> None:
        """Apply ``filter`` (an :class:`ember.filters.Filter`) at each site to the data of
        its tasks as they arrive, before the script sees it. ``tasks``: only these task
        names (None: all); ``clients``: only these sites (None: all)."""
        self._add_filter("client", "input", filter, tasks, clients)

    def add_client_output_filter(
        self, filter: Any, tasks: list[str] | None = None, clients: list[str] | None = None
    ) -> None:
        """Apply ``filter`` at each site to its task results before they leave the site
        (what it removes never reaches the wire): ``ExcludeVars``, ``GaussianPrivacy``..."""
        self._add_filter("client", "output", filter, tasks, clients)

    def add_server_input_filter(
        self, filter: Any, tasks: list[str] | None = None, clients: list[str] | None = None
    ) -> None:
        """Apply ``filter`` at the server to the results of ``clients`` as they arrive,
        before the workflow aggregates them."""
        self._add_filter("server", "input", filter, tasks, clients)

    def add_server_output_filter(
        self, filter: Any, tasks: list[str] | None = None, clients: list[str] | None = None
    ) -> None:
        """Apply ``filter`` at the server to the task data each of ``clients`` is sent."""
        self._add_filter("server", "output", filter, tasks, clients)

    def _add_filter(self, side: str, direction: str, value: Any, tasks: Any, clients: Any) -> None:
        from ember.filters.chain import add_filter_spec
        from ember.recipes.components import bundle_module

        spec = add_filter_spec(
            f"add_{side}_{direction}_filter", side, direction, value, tasks, clients
        )
        workflow = self.job.client.site_workflow
        if side == "client" and workflow is not None:
            from ember.plugins.entries import load_target
            from ember.runtime.site_runner import refuse_filters_around

            refuse_filters_around(load_target(workflow["target"]))
        bundle_module(type(value).__module__, self.files)
        self.job.filters.append(spec)

    def export(self, job_dir: str | Path) -> Path:
        """Write a self-contained job folder that every env and ``ember simulate`` can run.

        Refuses (:class:`~ember.config.ConfigRelationError`) a job whose settings break a
        declared relation, such as ``streaming.transaction_timeout`` below
        ``runtime.task_timeout``."""
        from ember.config import check_relations

        check_relations(self.job.config, what=f"job {self.name!r}")
        return write_job(self.job, self.files, Path(job_dir))

    def execute(self, env: Env) -> Run:
        """Run the job in ``env``; with ``--export [--export-dir DIR]`` on the command line,
        export it instead (to DIR/<name>) and return a Run in status ``EXPORTED``."""
        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("--export", action="store_true")
        parser.add_argument("--export-dir", default=DEFAULT_EXPORT_DIR)
        known, _ = parser.parse_known_args(sys.argv[1:])
        if known.export:
            from ember.envs.run import ExportedRun

            job_dir = self.export(Path(known.export_dir) / self.name)
            print(f"exported job {self.name!r} to {job_dir}")
            return ExportedRun(job_dir)
        return env.deploy(self)


def recipe_parameters(cls: type) -> list[inspect.Parameter]:
    """The keyword parameters ``cls(...)`` takes: along ``cls``'s MRO (the order ``super()``
    calls follow), each ``__init__``'s own parameters not already listed, for as long as
    the ``__init__`` before passes ``**kwargs`` on; less the names in ``replaces``. A
    ``framework`` parameter defaults to the class's framework."""
    params: list[inspect.Parameter] = []
    names = set(getattr(cls, "replaces", ()))
    for klass in cls.__mro__:
        if klass is Recipe or klass is object:
            break
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        own = list(inspect.signature(inspect.unwrap(init)).parameters.values())[1:]  # no self
        params += [p for p in own if p.kind is not p.VAR_KEYWORD and p.name not in names]
        names |= {p.name for p in own}
        if not any(p.kind is p.VAR_KEYWORD for p in own):
            break
    fixed = getattr(cls, "framework", None)
    return [
        p.replace(default=fixed) if p.name == "framework" and fixed is not None else p
        for p in params
    ]


def _refusing(
    init: Callable[..., None], replaced: tuple[str, ...], owner: str
) -> Callable[..., None]:
    """``init`` refusing, by name, the base-recipe parameters the recipe sets itself."""

    @functools.wraps(init)
    def checked(self: Recipe, *args: Any, **kwargs: Any) -> None:
        given = sorted(set(kwargs) & set(replaced))
        if given:
            raise RecipeArgumentError(
                f"{owner} sets {', '.join(given)} itself; drop "
                + ", ".join(f"{g}=" for g in given)
                + f" (see help({owner}) for what it takes)"
            )
        init(self, *args, **kwargs)

    return checked

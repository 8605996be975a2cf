"""The hooks an Ember plugin may implement.

Every hook but ``ember_provision_kit_files`` is a registration hook: it takes no arguments
and returns a list of entries (see :mod:`ember.plugins.entries`). A plugin module
implements any subset of them with ``@ember.plugins.hookimpl`` and is announced by one entry point::

    [project.entry-points.ember]
    my_plugin = "my_package.plugin"

Hook modules must stay cheap to import: never import a framework (torch, tensorflow, ...)
at module level; name components by ``"module:attribute"`` targets instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ember.plugins.markers import hookspec

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from ember.common.setting import Setting
    from ember.plugins.entries import (
        CommandEntry,
        DecomposerEntry,
        FilterEntry,
        FrameworkEntry,
        ParamsConverterEntry,
        RecipeEntry,
        TensorAdapterEntry,
    )
    from ember.provision.project import Project


@hookspec
def ember_recipes() -> list[RecipeEntry]:
    """Recipes this plugin provides, listed by ``ember recipe list``."""
    raise NotImplementedError


@hookspec
def ember_fobs_decomposers() -> list[DecomposerEntry]:
    """FOBS decomposers, one per type they serialize."""
    raise NotImplementedError


@hookspec
def ember_tensor_adapters() -> list[TensorAdapterEntry]:
    """Adapters that let the downloader stream a framework's tensors one at a time."""
    raise NotImplementedError


@hookspec
def ember_params_converters() -> list[ParamsConverterEntry]:
    """Converters between a framework's parameter format and an exchange format."""
    raise NotImplementedError


@hookspec
def ember_frameworks() -> list[FrameworkEntry]:
    """Model frameworks for recipes (``FedAvgRecipe(framework=...)``): what scripts receive
    and how the server loads and saves the model."""
    raise NotImplementedError


@hookspec
def ember_cli_commands() -> list[CommandEntry]:
    """Top-level ``ember`` subcommands."""
    raise NotImplementedError


@hookspec
def ember_filters() -> list[FilterEntry]:
    """Filter types (:class:`ember.filters.Filter` subclasses) by name, which a site's privacy
    policy (``local/privacy.json``) and ``ember plugins`` name. Example::

        @hookimpl
        def ember_filters():
            return [FilterEntry("RoundTo", "my_package.filters:RoundTo",
                                description="round every variable")]
    """
    raise NotImplementedError


@hookspec
def ember_config_settings() -> list[Setting]:
    """Tunables (timeouts, limits) this plugin declares in the config registry."""
    raise NotImplementedError


@hookspec
def ember_provision_kit_files(
    project: Project,
    state: Path,
    kind: str,
    name: str,
    issue_certificate: Callable[[str, list[str]], tuple[bytes, bytes]],
) -> dict[str, bytes]:
    """Extra files for one participant's ``startup/`` kit, written by ``ember provision``
    before the kit is signed: ``{file name: bytes}``. ``project`` is the validated project
    file (:class:`ember.provision.project.Project`), ``state`` is the project's private
    ``state/`` folder (beside its root CA: keep project-wide secrets there, so later
    provisionings reuse them), ``kind`` is ``server``, ``client`` or ``admin``;
    ``issue_certificate(common_name, hosts)`` returns ``(certificate PEM, key PEM)`` of a
    new server certificate for ``hosts`` signed by the project's root CA (for a service
    the participant runs, which others verify with the kit's ``rootCA.pem``). An
    implementation takes only the arguments it needs. Example (ember-pt[he]: the clients
    get the HE secret context, the server only the public one)::

        @hookimpl
        def ember_provision_kit_files(project, state, kind, name):
            if kind != "client":
                return {}
            return {"my_token.txt": b"..."}
    """
    raise NotImplementedError

"""``ember provision``: startup kits for a project, and participants added to it later."""

from __future__ import annotations

from pathlib import Path

import click

from ember.cli.output import echo_json, echo_table, format_option
from ember.provision.policy import ROLES

DEFAULT_PROJECT_FILE = Path("project.yml")


def _project_name(workspace: Path, project_file: Path | None) -> str:
    """The project to add to: the one ``-p`` names, else the only one in ``workspace``."""
    from ember.provision.kits import PROJECT_COPY, STATE
    from ember.provision.project import load_project

    if project_file is not None:
        return load_project(project_file).name
    found = sorted(p.parent.parent.name for p in workspace.glob(f"*/{STATE}/{PROJECT_COPY}"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise click.ClickException(
            f"{workspace} holds no provisioned project; provision one first "
            "(`ember provision -p project.yml -w WORKSPACE`)"
        )
    raise click.ClickException(
        f"{workspace} holds several projects ({', '.join(found)}); name one with -p PROJECT_FILE"
    )


@click.command()
@click.option(
    "-p",
    "--project",
    "project_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The project file (default: ./project.yml; with --init, where to write it).",
)
@click.option(
    "-w",
    "--workspace",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("workspace"),
    show_default=True,
    help="Where projects are provisioned: <workspace>/<project>/{state,prod_NN}.",
)
@click.option("--add-client", metavar="NAME", help="Add a site to a provisioned project.")
@click.option("--add-admin", metavar="E-MAIL", help="Add an admin to a provisioned project.")
@click.option("--org", help="The new participant's organisation (a client's default: its name).")
@click.option("--role", type=click.Choice(ROLES), help="The new admin's role.")
@click.option(
    "--custom-code/--no-custom-code",
    "custom_code",
    default=None,
    help="May jobs bring their own code to the new site (default: the project's setting).",
)
@click.option("--init", "init", is_flag=True, help="Write a commented sample project.yml.")
@format_option
def provision(
    project_file: Path | None,
    workspace: Path,
    add_client: str | None,
    add_admin: str | None,
    org: str | None,
    role: str | None,
    custom_code: bool | None,
    init: bool,
    fmt: str,
) -> None:
    """Make a startup kit per participant of a project file, signed by the project's CA.

    \b
    ember provision --init                        write a sample project.yml
    ember provision -p project.yml -w workspace   kits in workspace/<project>/prod_NN/
    ember provision -w workspace --add-client site-3 --org org-c
    ember provision -w workspace --add-admin bob@org-c.example --org org-c --role lead
    """
    from ember.provision.kits import ProvisionError, add_participant
    from ember.provision.kits import provision as run_provision
    from ember.provision.project import ProjectError, write_sample

    if add_client and add_admin:
        raise click.UsageError("add one participant at a time: --add-client or --add-admin")
    adding = bool(add_client or add_admin)
    if init and adding:
        raise click.UsageError("--init writes a project file; it does not add participants")
    if not adding and (org or role or custom_code is not None):
        raise click.UsageError("--org, --role and --custom-code go with --add-client/--add-admin")
    if add_client and role:
        raise click.UsageError("--role is for admins (--add-admin); a site has no role")
    if add_admin and custom_code is not None:
        raise click.UsageError("--custom-code is for sites (--add-client)")
    try:
        if init:
            path = write_sample(project_file or DEFAULT_PROJECT_FILE)
            if fmt == "json":
                echo_json({"project_file": str(path)})
            else:
                click.echo(f"wrote {path}; edit it, then run `ember provision -p {path}`")
            return
        if adding:
            result = add_participant(
                workspace,
                _project_name(workspace, project_file),
                client=add_client,
                admin=add_admin,
                org=org,
                role=role,
                allow_custom_code=custom_code,
            )
        else:
            result = run_provision(project_file or DEFAULT_PROJECT_FILE, workspace)
    except (ProjectError, ProvisionError) as exc:
        raise click.ClickException(str(exc)) from None
    if fmt == "json":
        echo_json(result.as_dict())
        return
    project = result.project
    kinds = {project.server.name: "server"}
    kinds.update({c.name: "client" for c in project.clients})
    kinds.update({a.name: f"admin ({a.role})" for a in project.admins})
    ca = "a new root CA" if result.new_ca else "the project's root CA"
    what = "added to" if adding else "provisioned"
    click.echo(f"{what} project {project.name!r} in {result.prod}, signed by {ca}:")
    rows = [(name, kinds.get(name, ""), path) for name, path in result.participants.items()]
    echo_table(["participant", "kind", "folder"], rows, "(none)", indent="  ")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"Hand each participant its folder. Keep {result.ca.key.parent} private and backed "
        "up: its rootCA.key signs every kit, and no new root is ever made for this project."
    )

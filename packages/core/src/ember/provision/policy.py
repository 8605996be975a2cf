"""Authorization policy: which rights each admin role has, and a pure check of one request.

A policy (``authorization.json`` in a server's or site's startup kit) maps roles to rights::

    {"format": 1,
     "roles": {"lead": {"submit_job": true, "manage_job": "own", "download_job": "own",
                        "view": true, "operate": false}, ...}}

``submit_job``, ``view`` and ``operate`` are booleans. ``manage_job`` (abort, clone, delete)
and ``download_job`` are scopes over the job's submitter: ``own`` (the actor submitted it),
``org`` (someone of the actor's organisation did; includes ``own``), ``any`` or ``none``.
The server checks admin commands with it; a site checks ``submit_job`` for the submitter of
each job it is asked to run. Anything not granted is refused: an unknown role has no rights.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ember.errors import EmberError

POLICY_FORMAT = 1
ROLES = ("project_admin", "org_admin", "lead", "member")
BOOL_RIGHTS = ("submit_job", "view", "operate")
SCOPED_RIGHTS = ("manage_job", "download_job")
RIGHTS = (*BOOL_RIGHTS, *SCOPED_RIGHTS)
SCOPES = ("own", "org", "any", "none")

_DEFAULT: dict[str, Any] = {
    "format": POLICY_FORMAT,
    "roles": {
        "project_admin": {
            "submit_job": True,
            "manage_job": "any",
            "download_job": "any",
            "view": True,
            "operate": True,
        },
        "org_admin": {
            "submit_job": False,
            "manage_job": "org",
            "download_job": "org",
            "view": True,
            "operate": False,
        },
        "lead": {
            "submit_job": True,
            "manage_job": "own",
            "download_job": "own",
            "view": True,
            "operate": False,
        },
        "member": {
            "submit_job": False,
            "manage_job": "none",
            "download_job": "none",
            "view": True,
            "operate": False,
        },
    },
}


class PolicyError(EmberError, ValueError):
    """An authorization policy is malformed, or a check names an unknown right."""


def default_policy() -> dict[str, Any]:
    """The policy every provisioned kit starts with (NVFlare's defaults, in Ember's terms):
    a project admin may do anything; an org admin manages and downloads its organisation's
    jobs but submits none; a lead submits, manages and downloads its own jobs; a member
    views. Only a project admin operates the system (status, shutdown)."""
    return copy.deepcopy(_DEFAULT)


def validate_policy(policy: Mapping[str, Any]) -> None:
    """Raise :class:`PolicyError` naming the first malformed entry of ``policy``."""
    if not isinstance(policy, Mapping) or not isinstance(policy.get("roles"), Mapping):
        raise PolicyError('an authorization policy is an object with a "roles" object')
    if policy.get("format", POLICY_FORMAT) != POLICY_FORMAT:
        raise PolicyError(
            f"authorization policy format {policy.get('format')!r} is not supported "
            f"(this Ember reads format {POLICY_FORMAT})"
        )
    for role, rights in policy["roles"].items():
        if not isinstance(rights, Mapping):
            raise PolicyError(f"roles.{role} must be an object of rights")
        for right, value in rights.items():
            if right in BOOL_RIGHTS:
                if not isinstance(value, bool):
                    raise PolicyError(f"roles.{role}.{right} must be true or false")
            elif right in SCOPED_RIGHTS:
                if value not in SCOPES:
                    raise PolicyError(
                        f"roles.{role}.{right} must be one of {', '.join(SCOPES)}, not {value!r}"
                    )
            else:
                raise PolicyError(
                    f"roles.{role}: unknown right {right!r}; rights are {', '.join(RIGHTS)}"
                )


def allowed(
    policy: Mapping[str, Any],
    role: str,
    right: str,
    actor_org: str | None,
    job_submitter: str | None,
    job_submitter_org: str | None,
    actor_name: str,
) -> bool:
    """May ``actor_name`` (of ``actor_org``, with ``role``) exercise ``right``?

    For ``manage_job``/``download_job`` the job's submitter and its organisation decide the
    scope; without a job (``job_submitter`` None) only ``any`` grants them. An empty
    organisation matches no one. Raises :class:`PolicyError` for an unknown right or a
    malformed policy.
    """
    if right not in RIGHTS:
        raise PolicyError(f"unknown right {right!r}; rights are {', '.join(RIGHTS)}")
    validate_policy(policy)
    rights = policy["roles"].get(role)
    if rights is None:
        return False
    value = rights.get(right, False if right in BOOL_RIGHTS else "none")
    if right in BOOL_RIGHTS:
        return bool(value)
    if value == "any":
        return True
    if value == "none" or job_submitter is None:
        return False
    if job_submitter == actor_name:
        return True  # "own" and "org" both cover one's own jobs
    return value == "org" and bool(actor_org) and job_submitter_org == actor_org

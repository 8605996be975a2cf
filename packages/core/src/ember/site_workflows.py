"""The site-side workflow contract: a runtime that wraps a site's link to the server.

A recipe sets ``ClientApp.site_workflow = {"target": "module:Class", "args": {...}}``; each
site then builds ``Class(inner, peers=..., site=..., site_dir=..., job_dir=..., fetcher=...,
params_format=..., **args)`` around its :class:`ServerLink` and the script's Client API talks
to that instead. The wrapper is itself a :class:`ServerLink` (``get_task``,
``submit_result``, ``log_metrics``, ``report_failure``, ``report_done``): it may fill tasks
in, send results elsewhere, or answer other sites through :class:`PeerLink` (requests to
peers by name, routed through the server in networked envs). The script sees only the plain
Client API. :class:`SwarmSiteLink` (swarm learning: sites aggregate peer to peer) is the
worked example; :class:`TunnelSiteLink` opens the loopback endpoints of a job's tunnels
(``ember.tunnel``).
"""

from ember.client.link import ServerLink
from ember.runtime.peers import PeerLink
from ember.runtime.swarm_site import SwarmSiteLink
from ember.tunnel.site import TunnelSiteLink

__all__ = ["PeerLink", "ServerLink", "SwarmSiteLink", "TunnelSiteLink"]

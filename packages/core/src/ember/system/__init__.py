"""A running Ember system: the server and client daemons, job processes, the admin API.

PocEnv runs it on localhost from a prepared workspace; ProdEnv on provisioned hosts.
"""

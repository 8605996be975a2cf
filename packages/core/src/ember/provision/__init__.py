"""Provisioning: the project's certificate authority and participants' certificates."""

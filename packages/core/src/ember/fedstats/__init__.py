"""Federated statistics, internals: the statistics and their configuration (``spec``), a
site's privacy policy and checks (``privacy``), the generator base classes (``generator``),
the site's side of a job (``site``), the global statistics (``aggregate``) and the report
(``report``).

Import the public names from :mod:`ember.statistics`, not from here.
"""

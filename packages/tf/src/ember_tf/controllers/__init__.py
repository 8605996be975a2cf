"""ember-tf's server workflows, loaded by a job's target on the server."""

"""Jobs as data: what a recipe produces, what an env deploys, what ``export`` writes."""

from ember.job.definition import JOB_FILE, JobDefinition, JobDefinitionError

__all__ = ["JOB_FILE", "JobDefinition", "JobDefinitionError"]

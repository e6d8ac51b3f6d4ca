"""Celery tasks: thin wrappers that turn an id into a service call."""

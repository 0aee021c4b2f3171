"""Distributed training on Ray Train: the driver-side API and one adapter per framework."""

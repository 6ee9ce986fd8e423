"""Infrahub generators: the same allocation core, run by Infrahub itself (proposed change pipeline,
``infrahubctl generator``). Imported inside Infrahub's task worker with the repository root on the
path, so nothing here may import Prefect or our CLI."""

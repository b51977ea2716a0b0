"""ACME's mlgate policies, registered in the `mlgate.policies` entry-point group."""

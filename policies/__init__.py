"""The built-in policies, one module each, registered in the `mlgate.policies` group."""

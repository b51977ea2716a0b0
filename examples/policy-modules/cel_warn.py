"""A second instance of the `cel` policy, for rules that only warn.

mlgate applies one mode per policy; rules of another mode live in another instance. This
module in `policyPaths` is all it takes: configure `cel-warn` with `mode: warn`.
"""

from policies import cel


class CelWarn(cel.Cel):
    """CEL rules that warn instead of denying."""

    name = "cel-warn"

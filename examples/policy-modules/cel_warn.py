"""A second instance of the `cel` policy, found through `policyPaths`.

Rules can carry their own `mode` inside one `cel` policy; a second instance is for rules
that need their own match, failure mode or timeout. This module is all it takes.
"""

from policies import cel


class CelWarn(cel.Cel):
    """CEL rules that warn instead of denying."""

    name = "cel-warn"

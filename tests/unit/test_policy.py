"""The policy contract: params from the generic argument, the environment, the old contract."""

from __future__ import annotations

import pytest

from webhook import policy, workloads
from webhook.signatures import settings as registry_settings


class BudgetParams(policy.Params):
    limit: int = 3


class Budget(policy.ValidatingPolicy[BudgetParams]):
    name = "budget"

    def validate(self, workload: workloads.Workload) -> list[policy.Violation]:
        return []


class Stricter(Budget):
    """A subclass keeps its parent's params model."""

    name = "stricter"


def test_the_params_model_is_the_generic_argument() -> None:
    assert Budget.params_model is BudgetParams and Stricter.params_model is BudgetParams
    assert Budget.phase == "validate" and policy.MutatingPolicy.phase == "mutate"
    bound = Budget(BudgetParams(limit=5))
    assert bound.params.limit == 5
    assert bound.env == policy.Environment(name="budget")  # direct use: a default environment


@pytest.mark.parametrize(("registry_deadline", "timeout", "deadline", "budget"), [
    (1.5, 2.0, 4.0, 1.5),    # the registries section is the tightest
    (1.5, 1.0, 4.0, 0.8),    # the policy's own timeout, less the margin
    (5.0, 5.0, 2.0, 1.8),    # the request's deadline, less the margin
    (1.5, 0.1, 4.0, 0.05),   # never below 50 ms
])
def test_the_registry_budget_fits_inside_every_timeout_around_it(
        registry_deadline: float, timeout: float, deadline: float, budget: float) -> None:
    registries = registry_settings.Registries.model_validate({"deadline": registry_deadline})
    env = policy.Environment(name="p", timeout=timeout, deadline=deadline, registries=registries)
    assert env.registry_budget == pytest.approx(budget)


def test_a_class_written_for_the_old_contract_fails_with_each_change_to_make() -> None:
    with pytest.raises(TypeError) as caught:
        class Old(policy.ValidatingPolicy[BudgetParams]):  # noqa: F841 - never created
            name = "old"
            phase = "validate"
            Params = BudgetParams

            def check_params(self, params: BudgetParams) -> None: ...

            def setup(self, config: object) -> None: ...

            def close(self) -> None: ...

            def validate(self, workload: workloads.Workload,  # type: ignore[override]
                         params: BudgetParams) -> list[policy.Violation]:
                return []
    message = str(caught.value)
    assert message.startswith("policy class ")
    for change in ("remove `Params = ...`", "remove `phase = ...`", "move `check_params`",
                   "move `setup(config)`", "rename `close()` to `async def aclose()`",
                   "drop the params argument of validate()"):
        assert change in message

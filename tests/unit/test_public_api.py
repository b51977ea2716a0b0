"""The package's public face is exactly its `__all__`."""

from __future__ import annotations

import webhook


def test_all_names_exist_and_are_sorted() -> None:
    assert webhook.__all__ == sorted(webhook.__all__)
    for name in webhook.__all__:
        assert hasattr(webhook, name), name


def test_public_names_are_the_policy_authors_kit() -> None:
    assert {"Policy", "MutatingPolicy", "ValidatingPolicy", "Environment", "Violation",
            "Params", "Workload", "PodSpecView", "ContainerView", "Context", "ContainerType",
            "Duration", "Quantity", "LabelSelector", "ImageReference", "InvalidReference",
            "MlgateError", "ConfigError", "PluginError", "PolicyError"} == set(webhook.__all__)


def test_a_policy_author_can_type_check_against_the_package() -> None:
    from pathlib import Path

    assert (Path(webhook.__file__).parent / "py.typed").is_file()

"""The built-in projections, each a pure fold: running order, class poles, championship."""

from __future__ import annotations

from simulator.asyncapi import ViewTypes

__all__ = ["view_types"]


def view_types() -> dict[str, ViewTypes]:
    """The types each built-in projection publishes (its view, a changed row), by name."""
    from consumers.projections import championship, class_poles, running_order

    return {
        projection.CONSUMER.name: ViewTypes(view=projection.VIEW, row=projection.ROW)
        for projection in (running_order, class_poles, championship)
    }

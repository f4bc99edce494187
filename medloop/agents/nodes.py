"""The nodes of one research cycle.

retrieve -> propose -> design -> execute -> evaluate -> analyze -> record -> review -> reflect
(and finalize at the end). Each group lives in its own module; this class joins them.
"""

from __future__ import annotations

from medloop.agents.closing_nodes import ClosingNodes
from medloop.agents.decision_nodes import DecisionNodes
from medloop.agents.planning_nodes import PlanningNodes

__all__ = ["CampaignNodes"]


class CampaignNodes(PlanningNodes, DecisionNodes, ClosingNodes):
    """All nodes of the campaign graph, bound to one set of services."""

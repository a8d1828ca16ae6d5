"""The plan contract: ``Plan`` and its parts (``plan``), the rules every plan obeys
(``rules``), and the verifier that checks them (``verify``)."""

from graft.plan.plan import SPATIAL, TEMPORAL, Plan, Route, Stage, Unserved

__all__ = ["SPATIAL", "TEMPORAL", "Plan", "Route", "Stage", "Unserved"]

"""A local simulator of the EmailOctopus and Constant Contact APIs (see README: The sandbox)."""

from sandbox.server import Faults, Sandbox

__all__ = ["Faults", "Sandbox"]

"""A local simulator of the EmailOctopus and Constant Contact APIs (see README: The sandbox).

Each provider module registers itself with the server (`sandbox.server.simulates`) when it is
imported here; a new provider is one more module and one more import.
"""

from sandbox import constant_contact_v2, constant_contact_v3, emailoctopus  # noqa: F401  (they register)
from sandbox.server import Faults, Sandbox

__all__ = ["Faults", "Sandbox"]

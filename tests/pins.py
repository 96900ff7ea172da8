"""The pins of constraints.txt, by normalised package name (PEP 503), for the environment tests."""
import os
import re

from packaging.requirements import Requirement

CONSTRAINTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "constraints.txt")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.lower())


def read_constraints() -> dict:
    """``{normalised name: Requirement}`` of every line of constraints.txt (comments dropped)."""
    pins = {}
    with open(CONSTRAINTS) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                req = Requirement(line)
                pins[normalise(req.name)] = req
    return pins

"""Dassl's utility names: file/JSON IO, seeding, logging, checkpoints, meters and registries."""
from .logger import *  # noqa: F401,F403
from .meters import *  # noqa: F401,F403
from .registry import Registry  # noqa: F401
from .tools import *  # noqa: F401,F403
from .torchtools import *  # noqa: F401,F403

"""humanlike-tui: fine-tune a small open LLM into a warm, human-sounding conversational partner.

This module holds the version only: importing the package must stay cheap (no torch, no textual).
"""

__version__ = "0.1.0"

"""nurture: an email nurture sequence engine."""

__version__ = "0.1.0"

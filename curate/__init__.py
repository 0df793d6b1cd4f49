"""curate: facial-expression dataset curation, studies and review."""

__version__ = "0.1.0"

"""citesearch: semantic search and extractive answers with exact citations.

This package holds what the CLI, the HTTP service and the evaluation share: settings and the search path.
"""

from citesearch.search import (
    Citation,
    Explanation,
    Hit,
    InvalidSearchRequest,
    Searcher,
    SearchRequest,
    SearchResult,
)
from citesearch.settings import Settings

__all__ = [
    "Citation",
    "Explanation",
    "Hit",
    "InvalidSearchRequest",
    "SearchRequest",
    "SearchResult",
    "Searcher",
    "Settings",
]
__version__ = "0.1.0"

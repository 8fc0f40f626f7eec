"""Thin HTTP routes: parse and check the request, call ``citesearch``, shape the response."""

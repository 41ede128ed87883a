"""Repositories of the payments cluster: typed records in and out, MongoDB only here."""

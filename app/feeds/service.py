"""What goes into the feeds: a repository's released versions, or the newest released versions
of every public repository, each with its export's state and the releases before it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..domain import Domain
from ..model import Source, Version
from .atom import DELTA_LINKS, DeltaLink, FeedEntry

ENTRIES = 50  # entries of a feed: the newest released versions
SERVER_SCAN = 2000  # released versions the server's feed reads at most to find its entries

# (repository, version, base or None) -> the export's (or the delta package's) ExportStatus
ExportStatusOf = Callable[[Source, Version, Version | None], Any]


class FeedService:
    """Builds feed entries from the domain and the export service's states."""

    def __init__(self, domain: Domain, export_status: ExportStatusOf) -> None:
        self.domain = domain
        self.export_status = export_status

    def _entry(self, repo: Source, version: Version,
               earlier: list[Version]) -> FeedEntry:
        status = self.export_status(repo, version, None)
        deltas = [DeltaLink(older.id, self.export_status(repo, version, older).file)
                  for older in earlier[:DELTA_LINKS]]
        return FeedEntry(repo, version, status.state, status.file, deltas)

    def repository_entries(self, repo: Source, limit: int = ENTRIES) -> list[FeedEntry]:
        """The newest released versions of one repository (the caller may see it)."""
        released, _ = self.domain.content.list_versions(repo, True, 0, limit + DELTA_LINKS)
        return [self._entry(repo, version, released[index + 1:])
                for index, version in enumerate(released[:limit])]

    def is_public(self, repo: Source) -> bool:
        """Whether anyone may see a repository (its access and its owner's: the rule of every
        global list)."""
        return self.domain.accounts.is_public(repo)

    def server_entries(self, limit: int = ENTRIES) -> list[FeedEntry]:
        """The newest released versions of every public repository."""
        repos: dict[str, Source | None] = {}
        released_of: dict[str, list[Version]] = {}
        entries: list[FeedEntry] = []
        content = self.domain.content
        for version in content.newest_releases(0, SERVER_SCAN):
            url = version.source
            if url not in repos:
                repo = content.find_repo(url)
                repos[url] = repo if repo is not None and self.is_public(repo) else None
            repo = repos[url]
            if repo is None:
                continue
            if url not in released_of:
                released_of[url] = content.list_versions(repo, True, 0, limit + DELTA_LINKS)[0]
            ids = [older.url for older in released_of[url]]
            position = ids.index(version.url) if version.url in ids else len(ids)
            entries.append(self._entry(repo, version, released_of[url][position + 1:]))
            if len(entries) >= limit:
                break
        return entries

"""The domain layer: accounts, content and the OCL loader over MongoDB repositories."""

from __future__ import annotations

from typing import Any

from .accounts import Accounts
from .content import Content
from .repositories import Repositories


class Domain:
    """Every domain service over one database; the app keeps one in `app.extensions`."""

    def __init__(self, db: Any, shared_database: bool = True) -> None:
        self.db = db
        self.repos = Repositories(db)
        self.accounts = Accounts(self.repos)
        self.content = Content(self.repos, self.accounts, shared_database)

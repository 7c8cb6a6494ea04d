"""The domain layer: accounts, content, browsing and the OCL loader over the store's repositories."""

from __future__ import annotations

from ..store import Store
from .accounts import Accounts
from .browse import Browse
from .content import Content


class Domain:
    """Every domain service over one store; the app keeps one in `app.extensions`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.repos = store
        self.accounts = Accounts(store)
        self.content = Content(store, self.accounts)
        self.collections = self.content.collections
        self.browse = Browse(store, self.accounts, self.content)

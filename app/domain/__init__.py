"""The domain layer: accounts, content and the OCL loader over the store's repositories."""

from __future__ import annotations

from ..store import Store
from .accounts import Accounts
from .content import Content


class Domain:
    """Every domain service over one store; the app keeps one in `app.extensions`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.repos = store
        self.accounts = Accounts(store)
        self.content = Content(store, self.accounts)

"""The domain layer: accounts, content, browsing and the OCL loader over the store's repositories."""

from __future__ import annotations

from contextlib import AbstractContextManager

from ..store import Store
from .accounts import Accounts
from .browse import Browse
from .content import Content


class Domain:
    """Every domain service over one store; the app keeps one in `app.extensions`.

    The store itself is not an attribute: features reach content and accounts through these
    services (and their rights), and own only the repositories `create_app` hands them."""

    def __init__(self, store: Store) -> None:
        self._transaction = store.transaction
        self.accounts = Accounts(store)
        self.content = Content(store, self.accounts)
        self.collections = self.content.collections
        self.browse = Browse(store, self.accounts, self.content)

    def transaction(self, source_url: str | None = None) -> AbstractContextManager[None]:
        """A unit of work over the store (`Store.transaction`): a feature's own writes made one
        with the domain's (an import's batch of lines and their results, a webhook delivery and
        its job)."""
        return self._transaction(source_url)

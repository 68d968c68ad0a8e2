"""Stores: the durable state of perdure. ``open_store(url)`` picks the backend from the URL."""

from perdure.store.base import Store
from perdure.store.open import open_store

__all__ = ["Store", "open_store"]

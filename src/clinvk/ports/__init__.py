"""Ports: the interfaces the domain needs, spoken in domain types only."""

from clinvk.ports.backends import BackendRunner, EventSink
from clinvk.ports.images import ImageFetcher
from clinvk.ports.sessions import SessionStore
from clinvk.ports.system import Clock, IdGenerator

__all__ = ["BackendRunner", "Clock", "EventSink", "IdGenerator", "ImageFetcher", "SessionStore"]

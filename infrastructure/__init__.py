"""Adapters: event store, codec, venue simulator, clock, settings, service scripts."""

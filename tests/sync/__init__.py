"""Subscriber (sync/) tests."""

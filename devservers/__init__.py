"""Local stand-ins for the services consul-backup talks to, for tests, bench and demo.

Every server here binds to 127.0.0.1 on a free port and stops with its owner.
"""

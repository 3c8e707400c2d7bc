"""The library beneath the course's numbered scripts: Redis clients and settings, RQ job
queues with progress events, the stock and seat servers, and the two worker systems.

Importing the package imports nothing else: each script imports the modules it needs.
"""

"""The public status page: a read-only aiohttp app over the store's named queries."""

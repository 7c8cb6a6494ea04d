"""termsync subscriber: keeps a local database (SQLite or MongoDB) in step with a termsync or OCL
server."""

"""termsync subscriber: keeps a local MongoDB in step with a termsync or OCL server."""

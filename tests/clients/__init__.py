"""Real OCL clients (the `ocl` CLI, ocldev, the OpenMRS module's protocol) against a live termsync."""

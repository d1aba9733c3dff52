"""One worker process per task queue."""

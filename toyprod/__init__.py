"""toyprod: the demo shop whose faults Vigil detects.

A small FastAPI service with a database-like connection pool, an in-process payments client, Prometheus
metrics, structured JSON logs shipped to Vigil, and chaos switches that reproduce the log and metric
signatures of real production faults.
"""

SERVICE = "toyprod"
VERSION = "1.4.2"
COMMIT = "3f9c2ab71e04"

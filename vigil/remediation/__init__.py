"""Remediation actions under a policy: the action catalogue (`runbooks/actions/*.yml`), parameter binding from
trusted sources only, the remediation policy (`runbooks/policy.yml`) that decides auto / approval / never, the
runbook links that name actions, planning, execution with redacted output, and recovery measurement.

Only `execution` and `verification` reach the outside world; the integrations worker's activities
(`activities/remediation.py`) call them with what the rest of this package validated."""

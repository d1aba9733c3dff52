"""Remediation actions under a policy: the action catalogue (`runbooks/actions/*.yml`), parameter binding from
trusted sources only, and the remediation policy (`runbooks/policy.yml`) that decides auto / approval / never.

Nothing here has side effects: executors that carry actions out live elsewhere and take what this package
validated."""

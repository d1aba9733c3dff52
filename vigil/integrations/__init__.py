"""Integration plugins on `vigil-integrations`: a notifier (Slack), a ticket tracker (Jira), a code host (GitHub)."""

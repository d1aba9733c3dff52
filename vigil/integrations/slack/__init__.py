"""The Slack notifier: the incident's one message in a channel (updated in place, events in its thread, buttons
for the on-call), built with Block Kit by `blocks` and kept up to date by `notifier` on `vigil-integrations`."""

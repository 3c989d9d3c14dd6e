"""Policy, alert delivery, dataset curation and retraining launchers (see the open issues)."""

"""driftwarden: monitoring, drift detection and retraining triggers for LLMs in production.

The installed package maps the repository's top-level folders as subpackages:
``driftwarden.core``, ``driftwarden.streams``, ``driftwarden.detectors``,
``driftwarden.retrain_trigger``, ``driftwarden.dashboards``, ``driftwarden.deploy``,
``driftwarden.bench`` and ``driftwarden.cli``.
"""

__version__ = "0.1.0"

"""Alerting: the policy's rules and engine (detection and drift windows in, alerts and retraining
requests out), delivery to the receivers, and durable retry of what a receiver did not take."""

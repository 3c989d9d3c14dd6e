"""Grafana dashboards as code and the HTML report (see the open issues)."""

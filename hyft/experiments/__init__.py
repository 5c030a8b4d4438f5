"""The experiment runner (config → cells → results.json) and the report (tables, figures, report.md)."""

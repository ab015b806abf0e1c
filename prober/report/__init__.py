"""Monthly SLA reports: the numbers (compute), their shape (model) and their formats (render)."""

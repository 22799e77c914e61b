"""Retail: an online shop's customer-service API (users, orders, cancellations, returns, exchanges)."""

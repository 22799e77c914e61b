"""Banking: a retail bank's support API (accounts, transfers, payees, cards, disputes, limits)."""

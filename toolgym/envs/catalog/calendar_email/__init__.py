"""Calendar & email: an assistant's view of one person's calendar, contacts and mailbox."""
